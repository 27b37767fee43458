"""Remote mode: cluster profiles, one SSH connection per login node (paramiko), and SFTP file access."""
