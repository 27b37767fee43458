#!/usr/bin/env bash
# Stop the SLURM test cluster started by tests/cluster/slurm-up.sh (its extra nodes too).
# Not used by CI; for developers who want their machine back.
#
# Usage: tests/cluster/slurm-down.sh [--purge]
#   --purge  also forget all jobs: wipe slurmctld/slurmd state and drop the
#            accounting database (next slurm-up starts from job id 1).
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
as_root slurm-down "$@"

PURGE=0
[[ ${1:-} == --purge ]] && PURGE=1

log() { echo "slurm-down: $*" >&2; }

# stop NAME PIDFILE: stop the daemon via its pid file, falling back to the
# exact process name (pid files are lost when /run is cleared).
stop() {
    local name=$1 pidfile=$2 p
    local -a pids=()
    if [[ -s $pidfile ]]; then
        p=$(<"$pidfile")
        # Only trust the pid file if it still points at the right program.
        [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$name" ]] && pids=("$p")
    fi
    ((${#pids[@]})) || mapfile -t pids < <(pgrep -x "$name" || true)
    if ((${#pids[@]} == 0)); then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (${pids[*]})"
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 60); do
        pgrep -x "$name" >/dev/null || break
        sleep 0.25
    done
    if pgrep -x "$name" >/dev/null; then
        log "$name did not exit, killing it"
        kill -9 "${pids[@]}" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# With proctrack/linuxproc, job steps would otherwise outlive slurmd.
if pgrep -x slurmctld >/dev/null; then
    mapfile -t jobs < <(squeue -h -o %A </dev/null 2>/dev/null || true)
    if ((${#jobs[@]})); then
        log "cancelling jobs: ${jobs[*]}"
        scancel "${jobs[@]}" </dev/null 2>/dev/null || true
        for _ in $(seq 1 40); do
            [[ -z $(squeue -h -o %A </dev/null 2>/dev/null) ]] && break
            sleep 0.25
        done
    fi
fi

# The extra nodes (tests/cluster/node.sh), each a slurmd in its own namespaces.
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
mapfile -t extra < <(sed -n 's/^NodeName=\([^ ]*\) .*NodeHostname=.* Port=.*/\1/p' /etc/slurm/slurm.conf 2>/dev/null || true)
for n in "${extra[@]}"; do
    bash "$HERE/node.sh" stop "$n" || true
done
stop slurmd "/run/slurmd-$(hostname -s).pid"
rm -f /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop slurmdbd /run/slurmdbd.pid

if ((PURGE)); then
    log "purging slurm state and accounting database"
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
    mariadb --protocol=socket -uroot -e 'DROP DATABASE IF EXISTS slurm_acct_db' 2>/dev/null || true
fi

# mariadb-admin shutdown waits for a clean InnoDB shutdown.
if mariadb-admin --protocol=socket -uroot ping >/dev/null 2>&1; then
    log "stopping MariaDB"
    mariadb-admin --protocol=socket -uroot shutdown || true
fi
stop mariadbd /run/mysqld/mysqld.pid

stop munged /run/munge/munged.pid

log "done"
