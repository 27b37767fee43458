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
