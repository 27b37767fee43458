# Shared by the scripts of tests/cluster: sourced, not run.

# as_root NAME "$@": re-runs the calling script as root under `sudo` (never waiting for a password
# when there is no terminal, as in CI), or exits saying NAME must run as root.
as_root() {
    local name=$1
    shift
    [[ $(id -u) -eq 0 ]] && return 0
    if command -v sudo >/dev/null 2>&1; then
        local sudo_opts=()
        [[ -t 0 ]] || sudo_opts=(-n)
        exec sudo "${sudo_opts[@]}" -- bash "$(readlink -f "${BASH_SOURCE[1]}")" "$@"
    fi
    echo "$name: must run as root (and sudo is not available)" >&2
    exit 1
}

# until_node_up NODE SECS: waits until NODE is schedulable; a node left DOWN/DRAINED (an earlier node
# loss, processes killed) whose slurmd is back is put into service once. Uses the caller's log/die.
until_node_up() {
    local node=$1 end=$((SECONDS + $2)) resumed=0 s
    while :; do
        s=$(sinfo -h -N -n "$node" -o '%T' </dev/null 2>/dev/null | head -n1 || true)
        case $s in
            idle | mixed | allocated | completing) return 0 ;;
            down* | drain* | fail*)
                if ((!resumed)); then
                    log "$node is '$s', resuming it"
                    scontrol update NodeName="$node" State=RESUME </dev/null >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        ((SECONDS < end)) || die "$node not idle after $2s (state: '${s:-none}')"
        sleep 0.5
    done
}
