"""The train and evaluate steps: torchvision models on shard sets, DDP, AMP, checkpoints that survive requeues."""
