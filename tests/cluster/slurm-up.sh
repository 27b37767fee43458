#!/usr/bin/env bash
# Bring up a real SLURM cluster (munge + MariaDB + slurmdbd + slurmctld +
# slurmd) on this machine for the test suite: this machine's own node (all its
# CPUs) in partitions cpu (default), gpu and short (MaxTime 30 minutes, for the
# submit checks' tests), and extra nodes node1, node2 (1 CPU each, see
# tests/cluster/node.sh) in partition multi, for multi-node jobs.
#
# Idempotent: packages are only installed when missing, configs are only
# rewritten when their content changes, and healthy daemons are left alone.
# Daemons are started by hand because CI machines/containers have no systemd.
#
# Usage: tests/cluster/slurm-up.sh        (as root, or via sudo)
# Stop:  tests/cluster/slurm-down.sh
set -euo pipefail

# CI may call us with an empty environment; the daemons live in /usr/sbin.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"
export LC_ALL=C

# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
as_root slurm-up "$@"

HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")  # before the cd below: the path may be relative
# Daemons inherit our cwd; don't pin the (possibly temporary) CI checkout.
cd /
START_TS=$SECONDS
CLUSTER=clusterdeck-ci
NODE=$(hostname -s)
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
DB_NAME=slurm_acct_db
DB_USER=slurm
# Local throw-away CI database reachable only through the unix socket, so a
# fixed password is fine and keeps slurmdbd.conf stable across runs.
DB_PASS=clusterdeck-ci-slurmdbd
WAIT_SECS=${SLURM_UP_TIMEOUT:-60}
# The extra nodes of partition `multi` and their slurmd ports (their memory: below, from this machine's).
EXTRA_NODES=(node1 node2)
EXTRA_PORT0=6831

log() { echo "slurm-up: $*" >&2; }

dump_logs() {
    local f
    for f in "$LOG_DIR"/*.log /var/log/munge/munged.log /var/log/mysql/*.log; do
        [[ -f $f ]] || continue
        echo "----- tail $f -----" >&2
        tail -n 40 "$f" >&2 || true
    done
}

die() {
    log "ERROR: $*"
    dump_logs
    exit 1
}

# wait_for SECONDS DESCRIPTION CMD... : poll CMD until it succeeds.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" </dev/null >/dev/null 2>&1; do
        ((SECONDS < end)) || die "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
}

running() { pgrep -x "$1" >/dev/null 2>&1; }

# Detach a daemon completely from our stdio so CI's output pipe can close.
spawn() { setsid "$@" </dev/null >/dev/null 2>&1 & }

# install_if_changed DEST MODE: write stdin to DEST only when it differs, so
# re-runs do not needlessly restart daemons. Returns 0 when DEST changed.
install_if_changed() {
    local dest=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        chmod "$mode" "$dest"
        chown root:root "$dest"
        return 1
    fi
    install -m "$mode" -o root -g root "$tmp" "$dest"
    rm -f "$tmp"
    return 0
}

# --------------------------------------------------------------------------
# 1. Packages (skipped entirely when already installed, keeps re-runs fast)
# --------------------------------------------------------------------------
PKGS=(munge mariadb-server mariadb-client slurm-wlm slurmctld slurmd slurmdbd slurm-client tmux openssh-server)  # tmux: the app test; sshd: the remote tests
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# A fresh Debian's python3 makes no virtual environment without python3-venv; the README's commands need one.
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting the daemons with stock configs (or
    # via init scripts); we start them ourselves below.
    own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
    if ((own_policy)); then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
fi

mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd/$NODE"
# The node-local directory: a private tmpfs on each extra node (node.sh), a plain directory here.
mkdir -p /local-ssd
chmod 1777 /local-ssd

# Extra nodes' names resolve (to 127.0.0.1, where their slurmd listens) for the DDP rendezvous.
# Appended, not rewritten: /etc/hosts may be a bind mount.
for n in "${EXTRA_NODES[@]}"; do
    grep -qE "^127\.0\.0\.1([[:space:]].*)?[[:space:]]$n([[:space:]]|\$)" /etc/hosts ||
        echo "127.0.0.1 $n" >>/etc/hosts
done

# --------------------------------------------------------------------------
# 2. munge (authentication for every slurm RPC)
# --------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating munge key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
# munged refuses to start unless the key and its dirs are private to munge.
mkdir -p /var/lib/munge /var/log/munge
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge
chmod 700 /etc/munge
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge
chown munge:munge /run/munge
chmod 755 /run/munge

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    if running munged; then
        die "munged is running but not answering (see /var/log/munge/munged.log)"
    fi
    # A killed munged leaves its pid/lock files behind and refuses to start.
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    log "starting munged"
    runuser -u munge -- munged </dev/null >/dev/null 2>&1 || die "munged failed to start"
    wait_for 15 munged munge_ok
fi

# --------------------------------------------------------------------------
# 3. MariaDB (storage backend for slurmdbd / sacct history)
# --------------------------------------------------------------------------
mysql_ok() { mariadb-admin --protocol=socket -uroot ping >/dev/null 2>&1; }
if ! mysql_ok; then
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        log "initialising MariaDB datadir"
        mkdir -p /var/lib/mysql /var/log/mysql
        chown mysql:mysql /var/lib/mysql /var/log/mysql
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
            --auth-root-authentication-method=socket \
            >/var/log/mysql/install-db.log 2>&1 ||
            die "mariadb-install-db failed"
    fi
    if running mariadbd || running mysqld; then
        # Probably still starting (e.g. a parallel run); give it a moment.
        wait_for 30 "MariaDB (already running)" mysql_ok
    else
        mkdir -p /run/mysqld /var/log/mysql
        chown mysql:mysql /run/mysqld /var/log/mysql
        rm -f /run/mysqld/mysqld.pid /run/mysqld/mysqld.sock
        log "starting MariaDB"
        # Settings recommended by slurmdbd (it warns about small values).
        spawn mariadbd --user=mysql \
            --log-error=/var/log/mysql/error.log \
            --innodb-buffer-pool-size=256M \
            --innodb-log-file-size=64M \
            --innodb-lock-wait-timeout=900
        wait_for 60 MariaDB mysql_ok
    fi
fi
mariadb --protocol=socket -uroot <<SQL || die "could not set up the slurm accounting database"
CREATE DATABASE IF NOT EXISTS ${DB_NAME};
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
GRANT ALL PRIVILEGES ON ${DB_NAME}.* TO '${DB_USER}'@'localhost';
SQL

# --------------------------------------------------------------------------
# 4. Slurm configuration
# --------------------------------------------------------------------------
# Use what slurmd itself detects: a node configured with more CPUs/memory
# than slurmd reports (e.g. under a cpuset limit) gets drained.
hw=$(slurmd -C </dev/null 2>/dev/null | head -n1 || true)
CPUS=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
MEM_MB=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
[[ -n $CPUS ]] || CPUS=$(nproc)
[[ -n $MEM_MB ]] || MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
# Stay below the detected memory (slurmd drains a node that reports less than
# RealMemory); keep ~5% or at least 256 MB for the OS and the daemons.
MARGIN=$((MEM_MB / 20))
((MARGIN < 256)) && MARGIN=256
REAL_MEM=$((MEM_MB - MARGIN))
# Each extra node claims a quarter of that, at most 4 GB: a node configured with more memory than
# slurmd reports is drained, and small machines must not be drained.
EXTRA_MEM=$((REAL_MEM / 4 < 4096 ? REAL_MEM / 4 : 4096))
# Jobs that ask for no memory would otherwise take the whole node.
DEF_MEM_PER_CPU=$((REAL_MEM / CPUS < 1024 ? REAL_MEM / CPUS : 1024))

dbd_changed=0
install_if_changed "$CONF_DIR/slurmdbd.conf" 600 <<EOF && dbd_changed=1
# Generated by tests/cluster/slurm-up.sh -- edits will be overwritten.
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF

extra_nodes=""
for i in "${!EXTRA_NODES[@]}"; do
    n=${EXTRA_NODES[$i]}
    extra_nodes+="NodeName=$n NodeHostname=$n NodeAddr=127.0.0.1 Port=$((EXTRA_PORT0 + i)) CPUs=1 RealMemory=$EXTRA_MEM State=UNKNOWN"$'\n'
done
multi=$(IFS=,; echo "${EXTRA_NODES[*]}")

slurm_changed=0
install_if_changed "$CONF_DIR/slurm.conf" 644 <<EOF && slurm_changed=1
# Generated by tests/cluster/slurm-up.sh -- edits will be overwritten.
ClusterName=$CLUSTER
# 127.0.0.1 so nothing depends on how the hostname resolves.
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/slurmctld
# %n: one slurmd per node on this machine (see tests/cluster/node.sh).
SlurmdSpoolDir=$STATE_DIR/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
# No MTA in CI; the default mail program does not exist.
MailProg=/bin/true
MpiDefault=none

# No cgroups: CI sandboxes rarely offer a usable (writable, v2) hierarchy.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30

# sacct history comes from slurmdbd; no AccountingStorageEnforce so any
# user/account may submit without sacctmgr setup.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819

SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
MaxArraySize=1001
MaxJobCount=20000

# Short timeouts keep tests snappy; a node that was down comes back by itself.
# A node whose slurmd is gone is DOWN (its jobs NODE_FAIL) after 20-30 s; a
# loaded 2-core machine still answers pings well within that.
ReturnToService=2
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=20
InactiveLimit=0
KillWait=5
MinJobAge=60
Waittime=0
SchedulerParameters=batch_sched_delay=0,bf_interval=2,sched_min_interval=100000

NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
# A time limit to refuse a longer job against (tests/test_slurm_preflight.py).
PartitionName=short Nodes=$NODE Default=NO MaxTime=30 State=UP
${extra_nodes}PartitionName=multi Nodes=$multi Default=NO MaxTime=INFINITE State=UP
EOF

# --------------------------------------------------------------------------
# 5. Daemons: slurmdbd -> slurmctld -> slurmd
# --------------------------------------------------------------------------
# stop_daemon NAME: used only when its config changed under a running daemon.
stop_daemon() {
    local name=$1
    running "$name" || return 0
    log "restarting $name (config changed)"
    pkill -x "$name" || true
    for _ in $(seq 1 40); do
        running "$name" || return 0
        sleep 0.25
    done
    pkill -9 -x "$name" || true
    sleep 0.5
}

dbd_ok() { sacctmgr -n -P show cluster format=cluster </dev/null >/dev/null 2>&1; }
ctld_ok() { scontrol ping </dev/null 2>/dev/null | grep -q 'is UP'; }

((dbd_changed)) && stop_daemon slurmdbd
if ! running slurmdbd; then
    rm -f /run/slurmdbd.pid
    log "starting slurmdbd"
    slurmdbd </dev/null >/dev/null 2>&1 || die "slurmdbd failed to start"
fi
wait_for 60 slurmdbd dbd_ok

# slurmctld registers the cluster itself, but doing it up front avoids a
# window where the first jobs are not recorded.
if ! sacctmgr -n -P show cluster format=cluster </dev/null | grep -qx "$CLUSTER"; then
    log "registering cluster $CLUSTER in accounting DB"
    sacctmgr -i add cluster "$CLUSTER" </dev/null >/dev/null || die "sacctmgr add cluster failed"
fi

# Jobs of users without an association are run but recorded without one
# (sacct -j then shows them as root), so register the developer who called
# us through sudo plus any extra users from SLURM_UP_USERS.
for u in ${SUDO_USER:-} ${SLURM_UP_USERS:-}; do
    [[ $u == root ]] && continue
    id "$u" >/dev/null 2>&1 || continue
    if [[ -z $(sacctmgr -n -P show assoc where cluster="$CLUSTER" user="$u" format=user </dev/null) ]]; then
        log "adding accounting user $u"
        sacctmgr -i add user "$u" account=root cluster="$CLUSTER" </dev/null >/dev/null ||
            die "sacctmgr add user $u failed"
    fi
done

((slurm_changed)) && stop_daemon slurmctld
if ! running slurmctld; then
    rm -f /run/slurmctld.pid
    log "starting slurmctld"
    slurmctld </dev/null >/dev/null 2>&1 || die "slurmctld failed to start"
fi
wait_for 60 slurmctld ctld_ok

# This machine's own slurmd is the one in this machine's UTS namespace; the
# extra nodes' slurmds (node.sh) run in namespaces of their own.
main_slurmd() {
    local p host_uts
    host_uts=$(readlink /proc/$$/ns/uts)
    for p in $(pgrep -x slurmd || true); do
        [[ $(readlink "/proc/$p/ns/uts" 2>/dev/null) == "$host_uts" ]] && echo "$p"
    done
    return 0
}
if ((slurm_changed)) && [[ -n $(main_slurmd) ]]; then
    # Jobs running here outlive a slurmd restart, unless SlurmdSpoolDir moved
    # (the new slurmd cannot find their steps and slurmctld ends them).
    log "restarting slurmd (config changed)"
    kill $(main_slurmd) 2>/dev/null || true
    for _ in $(seq 1 40); do
        [[ -z $(main_slurmd) ]] && break
        sleep 0.25
    done
    [[ -z $(main_slurmd) ]] || kill -9 $(main_slurmd) 2>/dev/null || true
fi
if [[ -z $(main_slurmd) ]]; then
    rm -f "/run/slurmd-$NODE.pid" /run/slurmd.pid
    log "starting slurmd"
    slurmd </dev/null >/dev/null 2>&1 || die "slurmd failed to start"
fi
# The controller may still list the node as idle from before, so ask slurmd
# itself whether it is up.
wait_for 30 slurmd scontrol show slurmd

# The extra nodes: restarted when the config changed, started when not running
# (e.g. after a node-loss test), resumed when DOWN, then waited for (below).
for n in "${EXTRA_NODES[@]}"; do
    ((slurm_changed)) && bash "$HERE/node.sh" stop "$n"
    bash "$HERE/node.sh" start "$n" || die "could not start node $n"
done

# --------------------------------------------------------------------------
# 6. Wait until the node is schedulable and accounting answers
# --------------------------------------------------------------------------
end=$((SECONDS + WAIT_SECS))
until_node_up "$NODE" "$WAIT_SECS"
state=$(sinfo -h -N -n "$NODE" -p cpu -o '%T' </dev/null 2>/dev/null | head -n1)
for n in "${EXTRA_NODES[@]}"; do
    NODE_WAIT_SECS=$((end > SECONDS ? end - SECONDS : 1)) bash "$HERE/node.sh" up "$n" ||
        die "node $n did not come up"
done
wait_for $((end > SECONDS ? end - SECONDS : 1)) "sacct" sacct -n -X -a -S now </dev/null

partitions=$(sinfo -h -o '%P' </dev/null | paste -sd, -)
echo "slurm-up: cluster $CLUSTER ready in $((SECONDS - START_TS))s: node $NODE ($state, CPUs=$CPUS RealMemory=${REAL_MEM}M), nodes $multi (CPUs=1 each), partitions $partitions"
