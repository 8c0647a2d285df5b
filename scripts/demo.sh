#!/usr/bin/env bash
# Run Wardline on this machine and walk through a demo:
#
#   scripts/demo.sh         build, start the four services in the background, run `wardctl demo`
#   scripts/demo.sh stop    stop what the demo started (pid files .wardline/*.pid)
#
# It ensures PostgreSQL and a NATS >= 2.10 with JetStream (its own on 4223 when
# the one on 4222 is too old), creates the services' databases, builds the
# release binaries, and leaves the services running for you to poke at with
# target/release/wardctl. Works from any directory.
#
# Transport security is on, as it ships (docs/threat-model.md): a
# development CA, certificates and NATS nkeys are made once under
# .wardline/pki (wardline-dev-pki); NATS runs with TLS and one identity per
# service (deploy/nats/permissions.conf); wardline-provision creates the
# streams as the provisioning identity; the gRPC ports serve mutual TLS and
# wardctl presents .wardline/pki/wardctl's certificate. PostgreSQL is the
# local one on loopback (plaintext never leaves the machine).
#
# Variables:
#   WARDLINE_PG_URL       admin connection, default postgres://postgres@127.0.0.1:5432/postgres
#   NATS_URL              a NATS with TLS and Wardline's identities, else our own
#                         on 4223 (see scripts/ensure-nats.sh)
#   (tokens: the development issuer in .wardline/pki/issuer, made by
#   wardline-dev-pki; the services verify its JWKS as they would an
#   identity provider's, and wardctl signs with its key in development)
#   WARDLINE_STATE_DIR    default <repo>/.wardline (pids, logs, secret, PKI, NATS store)
#   RUST_LOG              default info
#   NOTIFICATION_SMTP_HOST  an SMTP relay for notification's email (with
#                         NOTIFICATION_SMTP_PORT/_TLS/_USERNAME/_PASSWORD);
#                         unset: a local mail sink (scripts/wardline-mail-sink.py)
#                         writes every message to $WARDLINE_STATE_DIR/mail/
#   WARDLINE_MAIL_SINK_PORT  port of that sink, default 1025
#   WARDLINE_BIN_DIR      where the binaries are, default target/release
#   WARDLINE_SKIP_BUILD   1 skips cargo build (use binaries already in WARDLINE_BIN_DIR)
#   NOTIFICATION_WEBHOOK_ALLOW_HTTP  default true here (loopback development
#                         only): wardline-load's webhook receiver is http://127.0.0.1
#   NOTIFICATION_EGRESS_ALLOW_HOSTS  default 127.0.0.1 here, for that receiver
#                         (outbound requests go only to public addresses otherwise)
#   WARDCTL_DEMO_ARGS     extra arguments of `wardctl demo`, e.g. "--scenario my.yaml"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

STATE="$WARDLINE_STATE"
LOGS="$STATE/logs"
PG_URL="${WARDLINE_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
read -r PG_HOST PG_PORT < <(url_host_port "$PG_URL" 5432)

BIN_DIR="${WARDLINE_BIN_DIR:-target/release}"
INTAKE_DB=wardline_intake
INTAKE_GRPC_ADDR=127.0.0.1:50051
INTAKE_ADMIN_ADDR=127.0.0.1:9101
ROUTING_DB=wardline_routing
ROUTING_GRPC_ADDR=127.0.0.1:50052
ROUTING_ADMIN_ADDR=127.0.0.1:9102
BILLING_DB=wardline_billing
BILLING_GRPC_ADDR=127.0.0.1:50053
BILLING_ADMIN_ADDR=127.0.0.1:9103
NOTIFICATION_DB=wardline_notification
NOTIFICATION_GRPC_ADDR=127.0.0.1:50054
NOTIFICATION_ADMIN_ADDR=127.0.0.1:9104
MAIL_SINK_PORT="${WARDLINE_MAIL_SINK_PORT:-1025}"

stop_all() {
    local f found=0
    shopt -s nullglob
    for f in "$STATE"/*.pid; do
        found=1
        # The pid file is named after the service; its binary is wardline-<name>.
        stop_pidfile "$f" "wardline-$(basename "$f" .pid)"
    done
    ((found)) || log "nothing to stop (no pid files in $STATE)"
}

if [[ "${1:-}" == stop ]]; then
    stop_all
    log "services stopped; NATS and PostgreSQL keep running (our own NATS stops with: scripts/ensure-nats.sh stop)"
    exit 0
elif [[ $# -gt 0 ]]; then
    die "usage: scripts/demo.sh [stop]"
fi

# ---------------------------------------------------------------- infrastructure

WARDLINE_PG_URL="$PG_URL" scripts/ensure-postgres.sh

# Each service's database with its two roles (docs/access-model.md,
# "Row-level security"): <db>_owner owns it and migrates it
# (<PREFIX>_MIGRATE_DATABASE_URL), <db>_app is what the service runs as
# (<PREFIX>_DATABASE_URL: no superuser, no BYPASSRLS, owns nothing). One
# random password for the demo's roles, kept in $STATE/db-password. A
# database from an earlier demo (owned by the admin role) is handed over.
DB_PASSWORD_FILE="$STATE/db-password"
mkdir -p "$STATE"
if [[ ! -s "$DB_PASSWORD_FILE" ]]; then
    (umask 077 && head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DB_PASSWORD_FILE")
fi
DB_PASSWORD="$(<"$DB_PASSWORD_FILE")"

ensure_database() {
    local db="$1"
    if [[ "$(psql "$PG_URL" -XAtqc "select 1 from pg_database where datname = '$db'")" != 1 ]]; then
        log "creating database $db"
        psql "$PG_URL" -Xq -v ON_ERROR_STOP=1 -c "create database \"$db\"" >&2
    fi
    psql "$PG_URL" -Xq -v ON_ERROR_STOP=1 -v db="$db" -v owner="${db}_owner" -v app="${db}_app" \
        -v password="$DB_PASSWORD" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', r) FROM (VALUES (:'owner'), (:'app')) AS v(r)
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L', r, :'password')
  FROM (VALUES (:'owner'), (:'app')) AS v(r) \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'owner') \gexec
\connect :"db"
SELECT format('ALTER TABLE %s OWNER TO %I', c.oid::regclass, :'owner')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
   AND pg_get_userbyid(c.relowner) <> :'owner' \gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'owner')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> :'owner' \gexec
SQL
}
ensure_database "$INTAKE_DB"
ensure_database "$ROUTING_DB"
ensure_database "$BILLING_DB"
ensure_database "$NOTIFICATION_DB"

# The runtime and owner URLs of database $1.
db_url() { echo "postgres://${1}_app:$DB_PASSWORD@$PG_HOST:$PG_PORT/$1"; }
db_owner_url() { echo "postgres://${1}_owner:$DB_PASSWORD@$PG_HOST:$PG_PORT/$1"; }

# ---------------------------------------------------------------- build

if [[ "${WARDLINE_SKIP_BUILD:-0}" != 1 ]]; then
    have cargo || die "cargo not found (install Rust with rustup)"
    log "cargo build --release -p wardline-intake -p wardline-routing -p wardline-billing -p wardline-notification -p wardctl -p wardline-load -p wardline-devpki -p wardline-kit"
    cargo build --release -p wardline-intake -p wardline-routing -p wardline-billing -p wardline-notification -p wardctl -p wardline-load -p wardline-devpki -p wardline-kit >&2
fi

# ---------------------------------------------------------------- transport security

PKI="$STATE/pki"
mkdir -p "$STATE"
"$BIN_DIR/wardline-dev-pki" "$PKI" >&2
NATS_URL="$(WARDLINE_PKI_DIR="$PKI" scripts/ensure-nats.sh)"
export NATS_URL NATS_CA_FILE="$PKI/ca.pem"
log "creating the streams as the provisioning identity (wardline-provision)"
NATS_NKEY_SEED_FILE="$PKI/provision/nats.nk" WARDLINE_LOG_FORMAT=pretty "$BIN_DIR/wardline-provision" >&2 ||
    die "wardline-provision failed (NATS at $NATS_URL)"

# ---------------------------------------------------------------- secrets

mkdir -p "$STATE" "$LOGS"
# Tokens come from the development issuer wardline-dev-pki made: the
# services verify its JWKS (production's path, with an identity provider's
# JWKS instead), and only wardctl, in development, signs with its key. An
# HS256 secret left in the caller's environment would conflict: dropped.
unset WARDLINE_JWT_SECRET WARDLINE_JWKS_URL
ISSUER_DIR="$PKI/issuer"
[[ -s "$ISSUER_DIR/jwks.json" && -s "$ISSUER_DIR/es256.key" ]] ||
    die "wardline-dev-pki did not make the development issuer in $ISSUER_DIR"

# ---------------------------------------------------------------- services

# wait_ready NAME URL PID LOG: wait up to 60s for URL to answer 200.
wait_ready() {
    local name="$1" url="$2" pid="$3" logfile="$4" deadline=$((SECONDS + 60)) code
    while true; do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
        [[ "$code" == 200 ]] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            warn "$name exited before it was ready; last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            warn "$name not ready at $url after 60s (last answer: $code); last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}

# start_service NAME ADMIN_ADDR GRPC_ADDR VAR=VALUE...: (re)start
# $BIN_DIR/wardline-NAME in the background with the given environment.
start_service() {
    local name="$1" admin="$2" grpc="$3"
    shift 3
    local bin="$BIN_DIR/wardline-$name" pidfile="$STATE/$name.pid" logfile="$LOGS/$name.log" addr pid
    [[ -x "$bin" ]] || die "$bin was not built"
    stop_pidfile "$pidfile" "wardline-$name"
    for addr in "$admin" "$grpc"; do
        if port_open "${addr%:*}" "${addr##*:}"; then
            die "$addr is taken by another process; stop it (ss -ltnp | grep ${addr##*:}) and retry"
        fi
    done
    [[ -f "$logfile" ]] && mv -f "$logfile" "$logfile.prev"
    log "starting $name (gRPC $grpc, admin http://$admin, log $logfile)"
    # setsid: the service outlives this script and the terminal's Ctrl-C.
    local prefix
    prefix="$(tr '[:lower:]' '[:upper:]' <<<"$name")"
    env "$@" RUST_LOG="${RUST_LOG:-info}" WARDLINE_LOG_FORMAT=json \
        NATS_URL="$NATS_URL" NATS_CA_FILE="$PKI/ca.pem" NATS_NKEY_SEED_FILE="$PKI/$name/nats.nk" \
        "${prefix}_TLS_CERT_FILE=$PKI/$name/tls.pem" "${prefix}_TLS_KEY_FILE=$PKI/$name/tls.key" \
        "${prefix}_TLS_CLIENT_CA_FILE=$PKI/ca.pem" \
        WARDLINE_JWKS_FILE="$ISSUER_DIR/jwks.json" WARDLINE_JWT_ISSUER=wardline-dev \
        setsid "$bin" </dev/null >>"$logfile" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    wait_ready "$name" "http://$admin/readyz" "$pid" "$logfile"
    log "$name ready (pid $pid)"
}

start_service intake "$INTAKE_ADMIN_ADDR" "$INTAKE_GRPC_ADDR" \
    INTAKE_DATABASE_URL="$(db_url "$INTAKE_DB")" \
    INTAKE_MIGRATE_DATABASE_URL="$(db_owner_url "$INTAKE_DB")" \
    INTAKE_GRPC_ADDR="$INTAKE_GRPC_ADDR" \
    INTAKE_ADMIN_ADDR="$INTAKE_ADMIN_ADDR"

start_service routing "$ROUTING_ADMIN_ADDR" "$ROUTING_GRPC_ADDR" \
    ROUTING_DATABASE_URL="$(db_url "$ROUTING_DB")" \
    ROUTING_MIGRATE_DATABASE_URL="$(db_owner_url "$ROUTING_DB")" \
    ROUTING_GRPC_ADDR="$ROUTING_GRPC_ADDR" \
    ROUTING_ADMIN_ADDR="$ROUTING_ADMIN_ADDR"

start_service billing "$BILLING_ADMIN_ADDR" "$BILLING_GRPC_ADDR" \
    BILLING_DATABASE_URL="$(db_url "$BILLING_DB")" \
    BILLING_MIGRATE_DATABASE_URL="$(db_owner_url "$BILLING_DB")" \
    BILLING_GRPC_ADDR="$BILLING_GRPC_ADDR" \
    BILLING_ADMIN_ADDR="$BILLING_ADMIN_ADDR"

# Notification's email: to the relay in NOTIFICATION_SMTP_HOST (with
# NOTIFICATION_SMTP_PORT/_TLS/_USERNAME/_PASSWORD) when one is configured,
# else to a local mail sink that writes every message to $STATE/mail/.
MAIL_NOTE="SMTP relay ${NOTIFICATION_SMTP_HOST:-}"
DEMO_MAIL_ARGS=()
if [[ -z "${NOTIFICATION_SMTP_HOST:-}" ]]; then
    have python3 || die "python3 not found (needed for the local mail sink); or set NOTIFICATION_SMTP_HOST"
    stop_pidfile "$STATE/mail-sink.pid" wardline-mail-sink
    port_open 127.0.0.1 "$MAIL_SINK_PORT" &&
        die "127.0.0.1:$MAIL_SINK_PORT is taken; set WARDLINE_MAIL_SINK_PORT or NOTIFICATION_SMTP_HOST"
    log "starting the local mail sink on 127.0.0.1:$MAIL_SINK_PORT (messages in $STATE/mail/)"
    setsid python3 scripts/wardline-mail-sink.py "$MAIL_SINK_PORT" "$STATE/mail" </dev/null >>"$LOGS/mail-sink.log" 2>&1 &
    echo $! >"$STATE/mail-sink.pid"
    for _ in $(seq 50); do port_open 127.0.0.1 "$MAIL_SINK_PORT" && break; sleep 0.1; done
    export NOTIFICATION_SMTP_HOST=127.0.0.1 NOTIFICATION_SMTP_PORT="$MAIL_SINK_PORT" NOTIFICATION_SMTP_TLS=none
    MAIL_NOTE="local mail sink: every message in $STATE/mail/ (log $LOGS/mail-sink.log)"
    DEMO_MAIL_ARGS=(--mail-dir "$STATE/mail")
fi

# http:// webhooks to 127.0.0.1 are allowed on this development machine so
# that wardline-load's receiver there can time notifications.
start_service notification "$NOTIFICATION_ADMIN_ADDR" "$NOTIFICATION_GRPC_ADDR" \
    NOTIFICATION_WEBHOOK_ALLOW_HTTP="${NOTIFICATION_WEBHOOK_ALLOW_HTTP:-true}" \
    NOTIFICATION_EGRESS_ALLOW_HOSTS="${NOTIFICATION_EGRESS_ALLOW_HOSTS:-127.0.0.1}" \
    NOTIFICATION_SECRET_KEYS_FILE="$PKI/notification/secret-keys" \
    NOTIFICATION_DATABASE_URL="$(db_url "$NOTIFICATION_DB")" \
    NOTIFICATION_MIGRATE_DATABASE_URL="$(db_owner_url "$NOTIFICATION_DB")" \
    NOTIFICATION_GRPC_ADDR="$NOTIFICATION_GRPC_ADDR" \
    NOTIFICATION_ADMIN_ADDR="$NOTIFICATION_ADMIN_ADDR"

# ---------------------------------------------------------------- demo

export WARDCTL_INTAKE_URL="https://$INTAKE_GRPC_ADDR"
export WARDCTL_ROUTING_URL="https://$ROUTING_GRPC_ADDR"
export WARDCTL_BILLING_URL="https://$BILLING_GRPC_ADDR"
export WARDCTL_NOTIFICATION_URL="https://$NOTIFICATION_GRPC_ADDR"
# wardctl: mutual TLS to the services, the operator's NATS identity.
export WARDCTL_CA_FILE="$PKI/ca.pem" WARDCTL_CLIENT_CERT_FILE="$PKI/wardctl/tls.pem" WARDCTL_CLIENT_KEY_FILE="$PKI/wardctl/tls.key"
export NATS_NKEY_SEED_FILE="$PKI/provision/nats.nk"
printf '\n' >&2
read -r -a EXTRA_DEMO_ARGS <<<"${WARDCTL_DEMO_ARGS:-}"
if ! WARDLINE_ENV=development WARDLINE_DEV_ISSUER_KEY="$ISSUER_DIR/es256.key" "$BIN_DIR/wardctl" demo "${DEMO_MAIL_ARGS[@]}" "${EXTRA_DEMO_ARGS[@]}"; then
    warn "wardctl demo failed"
    for name in intake routing billing notification; do
        warn "last lines of $LOGS/$name.log:"
        tail -n 40 "$LOGS/$name.log" >&2 || true
    done
    exit 1
fi

cat >&2 <<EOF

Wardline is running:
  intake   gRPC $WARDCTL_INTAKE_URL   admin http://$INTAKE_ADMIN_ADDR (/readyz /healthz /metrics)
  routing  gRPC $WARDCTL_ROUTING_URL   admin http://$ROUTING_ADMIN_ADDR (/readyz /healthz /metrics)
  billing  gRPC $WARDCTL_BILLING_URL   admin http://$BILLING_ADMIN_ADDR (/readyz /healthz /metrics)
  notification gRPC $WARDCTL_NOTIFICATION_URL   admin http://$NOTIFICATION_ADMIN_ADDR; email to the $MAIL_NOTE
  NATS     $NATS_URL (TLS; identities in $PKI)
  logs     $LOGS/  (JSON lines; e.g. tail -f $LOGS/routing.log)

Try more with $BIN_DIR/wardctl, after:
  export WARDCTL_INTAKE_URL=$WARDCTL_INTAKE_URL WARDCTL_ROUTING_URL=$WARDCTL_ROUTING_URL WARDCTL_BILLING_URL=$WARDCTL_BILLING_URL WARDCTL_NOTIFICATION_URL=$WARDCTL_NOTIFICATION_URL NATS_URL=$NATS_URL WARDLINE_ENV=development WARDLINE_DEV_ISSUER_KEY=$ISSUER_DIR/es256.key
  export WARDCTL_CA_FILE=$WARDCTL_CA_FILE WARDCTL_CLIENT_CERT_FILE=$WARDCTL_CLIENT_CERT_FILE WARDCTL_CLIENT_KEY_FILE=$WARDCTL_CLIENT_KEY_FILE NATS_CA_FILE=$NATS_CA_FILE NATS_NKEY_SEED_FILE=$NATS_NKEY_SEED_FILE
e.g.
  $BIN_DIR/wardctl --tenant stmarys ticket list
  $BIN_DIR/wardctl --tenant stmarys analyst list
  $BIN_DIR/wardctl --tenant stmarys assignments
  $BIN_DIR/wardctl --tenant stmarys queue
  $BIN_DIR/wardctl --tenant lakeside usage
  $BIN_DIR/wardctl --tenant lakeside invoice draft
  $BIN_DIR/wardctl --tenant stmarys contract get
  $BIN_DIR/wardctl --tenant stmarys delivery list
  $BIN_DIR/wardctl --tenant stmarys recipient list
  $BIN_DIR/wardline-load --rate 50 --duration 10     # the pipeline under load, what a ticket costs

Stop the services with: scripts/demo.sh stop
EOF
