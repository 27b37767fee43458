#!/usr/bin/env bash
# The extra nodes of the test cluster (node1, node2, ... in partition `multi`): each is Debian's
# stock `slurmd -N NODE` in its own UTS and mount namespace, so it has its own hostname and its
# own node-local directory (a private tmpfs at /local-ssd) while it shares every other file with
# the machine, as cluster nodes share NFS. Job steps are children of their node's slurmd, so they
# inherit its hostname and its /local-ssd. All nodes listen on 127.0.0.1, each on its own Port=
# (see slurm-up.sh); nothing about the network is configured.
#
# Usage: tests/cluster/node.sh start NODE   start NODE's slurmd unless it runs (fresh namespace, empty /local-ssd)
#        tests/cluster/node.sh up NODE      start, resume it if DOWN/DRAINED, wait until it is idle
#        tests/cluster/node.sh stop NODE    stop NODE's slurmd gracefully (its running jobs live on)
#        tests/cluster/node.sh kill NODE    node loss: SIGKILL its slurmd and every process on it
#        tests/cluster/node.sh pids NODE    the processes on NODE (in its namespace), one a line
# Needs root; re-runs itself under `sudo -n` otherwise, as slurm-up.sh does.
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"
export LC_ALL=C

# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
as_root node.sh "$@"

LOCAL_DIR=${NODE_LOCAL_DIR:-/local-ssd}
LOCAL_SIZE=${NODE_LOCAL_SIZE:-2g}
WAIT_SECS=${NODE_WAIT_SECS:-60}

log() { echo "node.sh: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

usage() {
    sed -n 's/^# Usage: //p; s/^#        \(tests\/cluster\/node.sh\)/\1/p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

(($# == 2)) || usage
CMD=$1
NODE=$2
[[ $NODE =~ ^[a-z][a-z0-9-]*$ ]] || die "not a node name: '$NODE'"
[[ $NODE != "$(hostname -s)" ]] || die "$NODE is this machine's own node; use slurm-up.sh / slurm-down.sh"

HOST_UTS=$(readlink /proc/$$/ns/uts)

# pids: every process whose UTS namespace is NODE's (not the machine's), found by asking each
# namespace for its hostname; this finds the job steps even after their slurmd is gone.
pids() {
    local -A name_of=()
    local f pid ns
    for f in /proc/[0-9]*/ns/uts; do
        ns=$(readlink "$f" 2>/dev/null) || continue
        [[ $ns == "$HOST_UTS" ]] && continue
        pid=${f#/proc/}
        pid=${pid%%/*}
        if [[ -z ${name_of[$ns]+x} ]]; then
            name_of[$ns]=$(nsenter -t "$pid" -u hostname 2>/dev/null || true)
        fi
        [[ ${name_of[$ns]} == "$NODE" ]] && echo "$pid"
    done
    return 0
}

# slurmd_pid: NODE's slurmd (a process named slurmd whose command line says -N NODE).
slurmd_pid() {
    local p
    for p in $(pgrep -x slurmd || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qE -- "(^| )-N $NODE( |$)" && {
            echo "$p"
            return 0
        }
    done
    return 1
}

start() {
    if slurmd_pid >/dev/null; then
        return 0
    fi
    mkdir -p "$LOCAL_DIR" "/var/lib/slurm/slurmd/$NODE"
    chmod 1777 "$LOCAL_DIR"
    rm -f "/run/slurmd-$NODE.pid"
    log "starting slurmd for $NODE (own hostname, private tmpfs at $LOCAL_DIR)"
    # slurmd forks into the background and its parent exits, so this returns once it is up;
    # the namespaces live as long as a process in them does.
    setsid unshare --uts --mount --propagation private -- sh -c '
        hostname "$1" && mount -t tmpfs -o "size=$3,mode=1777" tmpfs "$2" && exec slurmd -N "$1"' \
        sh "$NODE" "$LOCAL_DIR" "$LOCAL_SIZE" </dev/null >/dev/null 2>&1 ||
        die "slurmd -N $NODE failed to start (see /var/log/slurm/slurmd.$NODE.log)"
    local end=$((SECONDS + WAIT_SECS))
    until slurmd_pid >/dev/null; do
        ((SECONDS < end)) || die "slurmd -N $NODE not running after ${WAIT_SECS}s"
        sleep 0.2
    done
}

up() {
    start
    until_node_up "$NODE" "$WAIT_SECS"
}

stop() {
    local p
    p=$(slurmd_pid) || return 0
    log "stopping slurmd for $NODE ($p)"
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.25
    done
    kill -9 "$p" 2>/dev/null || true
}

kill_node() {
    local -a victims
    # Again and again: a slurmstepd may fork between the listing and the kill.
    for _ in 1 2 3; do
        mapfile -t victims < <(pids)
        ((${#victims[@]})) || return 0
        log "killing $NODE: ${victims[*]}"
        kill -9 "${victims[@]}" 2>/dev/null || true
    done
    mapfile -t victims < <(pids)
    for _ in $(seq 1 40); do
        ((${#victims[@]})) || return 0
        sleep 0.25
        mapfile -t victims < <(pids)
    done
    die "processes on $NODE survived SIGKILL: ${victims[*]}"
}

case $CMD in
    start) start ;;
    up) up ;;
    stop) stop ;;
    kill) kill_node ;;
    pids) pids ;;
    *) usage ;;
esac
