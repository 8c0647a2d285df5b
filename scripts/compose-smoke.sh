#!/usr/bin/env bash
# The compose smoke test: the real docker-compose.yml and images built from
# the real deploy/Dockerfile, under a real Docker engine, checked from the host.
#
#   scripts/compose-smoke.sh               (as root, or with sudo for the engine)
#   scripts/compose-smoke.sh --engine-only (just step 1; exit 1 when no engine can be had)
#
# 1. Makes a Docker engine available: installs Debian's docker.io and
#    docker-compose (and debootstrap) when missing, starts dockerd when it is
#    not running, waits for it.
# 2. Builds local stand-ins for the third-party images, tagged with the names
#    the compose file and the Dockerfile use (no public registry here; see
#    scripts/compose-smoke/README.md): debian:bookworm-slim, rust:1.95-bookworm,
#    postgres:15, nats:2.12-alpine, jaegertracing/jaeger:2.19.0,
#    axllent/mailpit:v1.27. Kept in the engine and rebuilt only when their
#    inputs change.
# 3. `docker-compose build`: the project's images from deploy/Dockerfile
#    (BuildKit; its cargo registry and target caches stay in the engine, so a
#    second run recompiles nothing that did not change).
# 4. `docker-compose up -d` (Prometheus and Grafana are in the `metrics`
#    profile and stay out), waits for every health check and one-shot, lets
#    the seeder play its demo.
# 5. From the host, with wardctl, the stack's development CA and its
#    development token issuer (the seeder's key): a ticket
#    created over gRPC on the published port is assigned, billed once,
#    emailed (the mail sink's API) and traced (the OTLP sink's Jaeger API);
#    tickets created while `docker-compose restart billing` runs are all
#    billed, once; an upgrade (a new WARDLINE_VERSION, `up -d`) recreates
#    every Wardline container, keeps the data and records each migration
#    once; `docker-compose down -v` leaves no container, volume or network
#    of the project.
#
# Prints the time of each phase. Logs: $WARDLINE_STATE_DIR/compose-smoke/.
#
# Variables:
#   WARDLINE_SMOKE_PROJECT   compose project name; default wardline-smoke
#   WARDLINE_SMOKE_KEEP      1 leaves the stack running at the end (and on failure)
#   WARDLINE_SMOKE_WARDCTL   wardctl binary for the host checks; default the
#                            workspace's target/debug/wardctl (built if missing)
#   WARDLINE_DOCKER          the engine's own client; default /usr/bin/docker
#                            (/usr/local/bin/docker on these machines is a newer
#                            client without buildx)
#   WARDLINE_SMOKE_TIMEOUT   seconds to wait for the stack to be healthy; default 600
# Functions run from traps, eventually and subshells look unreachable to it:
# shellcheck disable=SC2317
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WARDLINE_ROOT"

PROJECT="${WARDLINE_SMOKE_PROJECT:-wardline-smoke}"
DOCKER="${WARDLINE_DOCKER:-/usr/bin/docker}"
TIMEOUT="${WARDLINE_SMOKE_TIMEOUT:-600}"
SMOKE_STATE="$WARDLINE_STATE/compose-smoke"
STANDINS="$WARDLINE_ROOT/scripts/compose-smoke"
mkdir -p "$SMOKE_STATE"

# ---------------------------------------------------------------- timing

declare -a TIMINGS=()
_phase_name="" _phase_start=0
phase() {
    phase_end
    _phase_name="$1"
    _phase_start=$SECONDS
    printf '\n==> %s\n' "$1" >&2
}
phase_end() {
    if [[ -n "$_phase_name" ]]; then
        TIMINGS+=("$(printf '%5ss  %s' "$((SECONDS - _phase_start))" "$_phase_name")")
        _phase_name=""
    fi
}
print_timings() {
    phase_end
    log "timings:"
    local t
    for t in "${TIMINGS[@]}"; do
        printf '    %s\n' "$t" >&2
    done
    printf '    %5ss  total\n' "$SECONDS" >&2
}

# ---------------------------------------------------------------- engine

docker() { as_root "$DOCKER" "$@"; }

# docker-compose 1.29 (Debian's) with the engine's own client first on PATH:
# its BuildKit builds shell out to `docker build`.
compose() {
    as_root env PATH="$(dirname "$DOCKER"):$PATH" DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 \
        COMPOSE_PROJECT_NAME="$PROJECT" WARDLINE_SECRETS_DIR="$SMOKE_STATE/secrets" "${PORT_VARS[@]}" \
        docker-compose --project-directory "$WARDLINE_ROOT" -f "$WARDLINE_ROOT/docker-compose.yml" "$@"
}

ensure_engine() {
    local missing=()
    [[ -x "$DOCKER" ]] || missing+=(docker.io)
    have docker-compose || missing+=(docker-compose)
    have debootstrap || missing+=(debootstrap)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
    [[ -x "$DOCKER" ]] || die "$DOCKER not found after installing docker.io"
    if ! docker info >/dev/null 2>&1; then
        have dockerd || die "dockerd not found"
        log "starting dockerd (log: $SMOKE_STATE/dockerd.log)"
        as_root sh -c "nohup dockerd >'$SMOKE_STATE/dockerd.log' 2>&1 &"
        local deadline=$((SECONDS + 60))
        until docker info >/dev/null 2>&1; do
            ((SECONDS < deadline)) || die "dockerd did not answer within 60s (see $SMOKE_STATE/dockerd.log)"
            sleep 1
        done
    fi
    log "engine: $(docker version --format 'dockerd {{.Server.Version}}'), $(docker-compose version --short 2>/dev/null || echo 'docker-compose ?')"
}

# ---------------------------------------------------------------- stand-ins

# standin_current NAME HASH: true when NAME exists and is either our stand-in
# built from inputs HASH or not a stand-in at all (a real image is kept).
standin_current() {
    local label
    docker image inspect "$1" >/dev/null 2>&1 || return 1
    label="$(docker image inspect -f '{{ index .Config.Labels "io.wardline.standin" }}' "$1" 2>/dev/null || true)"
    [[ -z "$label" || "$label" == "<no value>" || "$label" == "$2" ]]
}

standin_debian() {
    local name=debian:bookworm-slim hash
    # Bump v1 when the recipe below changes.
    hash="$( (echo "bookworm minbase v1" && cat /etc/ssl/certs/ca-certificates.crt) | sha256sum | cut -c1-16)"
    if standin_current "$name" "$hash"; then
        log "$name: present"
        return 0
    fi
    local root
    root="$(mktemp -d /var/tmp/wardline-rootfs.XXXXXX)"
    log "$name: debootstrap --variant=minbase bookworm (a few minutes)"
    as_root debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian \
        >"$SMOKE_STATE/debootstrap.log" 2>&1 || die "debootstrap failed (see $SMOKE_STATE/debootstrap.log)"
    # The host's certificate authorities, so HTTPS (crates.io, pip) works
    # from the stand-ins as it does from the host; installing ca-certificates
    # in an image keeps the ones under /usr/local/share/ca-certificates.
    as_root mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/ssl/certs"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        as_root cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    fi
    as_root cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    as_root rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
    as_root tar -C "$root" -c . | docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL io.wardline.standin=$hash" \
        - "$name" >/dev/null
    as_root rm -rf "$root"
    log "$name: imported"
}

# standin_build NAME DIR [docker build args...]: builds DIR/Dockerfile as NAME.
standin_build() {
    local name="$1" dir="$2" hash
    shift 2
    hash="$(cd "$dir" && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
    hash="$(printf '%s %s %s' "$hash" "$(docker image inspect -f '{{.Id}}' debian:bookworm-slim)" "$*" | sha256sum | cut -c1-16)"
    if standin_current "$name" "$hash"; then
        log "$name: present"
        return 0
    fi
    log "$name: building the stand-in"
    DOCKER_BUILDKIT=1 docker build -q --label "io.wardline.standin=$hash" -t "$name" "$@" "$dir" \
        >"$SMOKE_STATE/standin-${name//[:\/]/_}.log" 2>&1 ||
        die "building $name failed (see $SMOKE_STATE/standin-${name//[:\/]/_}.log)"
}

standin_rust() {
    # The toolchain cargo runs on the host, copied (hard links when the
    # file system allows) into a build context beside the Dockerfile.
    local sysroot version ctx image
    sysroot="$(rustc --print sysroot)"
    version="$(rustc --version | awk '{print $2}')"
    # Tagged as the Dockerfile's builder names it (rust:1.95-bookworm).
    image="$(sed -n 's/^FROM \(rust:[^ ]*\).*/\1/p' deploy/Dockerfile | head -n 1)"
    [[ -n "$image" ]] || die "deploy/Dockerfile has no FROM rust:... builder"
    local want="${image#rust:}"
    want="${want%%-*}"
    [[ "$version" == "$want" || "$version" == "$want".* ]] ||
        warn "host rustc $version stands in for $image"
    ctx="$SMOKE_STATE/rust-context"
    if [[ ! -f "$ctx/toolchain/.version" || "$(cat "$ctx/toolchain/.version")" != "$sysroot $version" ]]; then
        rm -rf "$ctx"
        mkdir -p "$ctx/toolchain"
        local d
        for d in bin lib libexec etc; do
            [[ -d "$sysroot/$d" ]] || continue
            cp -al "$sysroot/$d" "$ctx/toolchain/" 2>/dev/null || cp -a "$sysroot/$d" "$ctx/toolchain/"
        done
        rm -rf "$ctx/toolchain/lib/rustlib/src" "$ctx/toolchain/lib/rustlib/rustc-src"
        printf '%s %s\n' "$sysroot" "$version" >"$ctx/toolchain/.version"
    fi
    cp "$STANDINS/rust/Dockerfile" "$ctx/Dockerfile"
    standin_build "$image" "$ctx"
}

standin_nats() {
    local bin ctx
    bin="$(scripts/nats-server-path.sh)"
    ctx="$SMOKE_STATE/nats-context"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp "$STANDINS/nats/Dockerfile" "$ctx/"
    cp "$bin" "$ctx/nats-server"
    standin_build "nats:2.12-alpine" "$ctx"
    log "nats stand-in: nats-server v$(nats_server_version "$bin") ($bin)"
}

standins() {
    standin_debian
    standin_rust
    standin_build "postgres:15" "$STANDINS/postgres"
    standin_nats
    local sinks="$SMOKE_STATE/sinks-context"
    rm -rf "$sinks"
    cp -r "$STANDINS/sinks" "$sinks"
    cp scripts/wardline-mail-sink.py "$sinks/"
    standin_build "jaegertracing/jaeger:2.19.0" "$sinks" --build-arg SINK=otlp
    standin_build "axllent/mailpit:v1.27" "$sinks" --build-arg SINK=mail
}

# ---------------------------------------------------------------- ports

# The published ports are variables in docker-compose.yml (defaults: the
# documented ones); the smoke picks free ones so it never clashes with what
# runs on the host (a NATS on 4222, a demo on 50051, ...).
declare -a PORT_VARS=()
declare -A PORT=()
pick_ports() {
    local names=(NATS_PORT NATS_MONITOR_PORT INTAKE_GRPC_PORT INTAKE_ADMIN_PORT ROUTING_GRPC_PORT
        ROUTING_ADMIN_PORT BILLING_GRPC_PORT BILLING_ADMIN_PORT NOTIFICATION_GRPC_PORT
        NOTIFICATION_ADMIN_PORT JAEGER_UI_PORT OTLP_GRPC_PORT MAILPIT_UI_PORT)
    local -a ports
    # All at once, every socket held until all are bound: distinct ports.
    mapfile -t ports < <(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))' "${#names[@]}")
    local i
    for i in "${!names[@]}"; do
        PORT[${names[$i]}]="${ports[$i]}"
        PORT_VARS+=("WARDLINE_PUBLISH_${names[$i]}=${ports[$i]}")
    done
}


# ---------------------------------------------------------------- the stack

project_containers() {
    docker ps -a -q --filter "label=com.docker.compose.project=$PROJECT"
}

service_container() {
    docker ps -a -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -n 1
}

# The services that run to completion, and those that keep running.
ONESHOTS=(pki provision seed)
LONGRUNNING=(nats postgres jaeger mailpit intake routing billing notification)

# wait_stack: every long-running service running (and healthy where it has
# a health check), every one-shot exited 0. Fails early on a one-shot that
# failed or a service that exited.
wait_stack() {
    local deadline=$((SECONDS + TIMEOUT)) svc id state pending
    while :; do
        pending=()
        for svc in "${ONESHOTS[@]}" "${LONGRUNNING[@]}"; do
            id="$(service_container "$svc")"
            if [[ -z "$id" ]]; then
                pending+=("$svc:absent")
                continue
            fi
            state="$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}}' "$id")"
            read -r status health code <<<"$state"
            if [[ " ${ONESHOTS[*]} " == *" $svc "* ]]; then
                if [[ "$status" == exited && "$code" != 0 ]]; then
                    dump_logs "$svc"
                    die "one-shot $svc exited with $code"
                fi
                [[ "$status" == exited ]] || pending+=("$svc:$status")
            else
                if [[ "$status" == exited || "$status" == dead ]]; then
                    dump_logs "$svc"
                    die "$svc exited with $code"
                fi
                [[ "$status" == running && ("$health" == healthy || "$health" == -) ]] ||
                    pending+=("$svc:$status/$health")
            fi
        done
        ((${#pending[@]})) || return 0
        if ((SECONDS >= deadline)); then
            for svc in "${pending[@]}"; do dump_logs "${svc%%:*}"; done
            die "not ready after ${TIMEOUT}s: ${pending[*]}"
        fi
        log "waiting for: ${pending[*]}"
        sleep 5
    done
}

dump_logs() {
    printf '\n----- logs of %s (last 60 lines) -----\n' "$1" >&2
    compose logs --no-color --tail 60 "$1" >&2 2>&1 || true
}

cleanup() {
    local rc=$?
    if ((rc != 0)); then
        warn "failed (exit $rc)"
        compose ps >&2 2>&1 || true
    fi
    if [[ "${WARDLINE_SMOKE_KEEP:-0}" == 1 ]]; then
        log "WARDLINE_SMOKE_KEEP=1: the stack stays up (project $PROJECT); stop it with:"
        log "  COMPOSE_PROJECT_NAME=$PROJECT docker-compose down -v"
    elif [[ -n "${STACK_STARTED:-}" ]]; then
        compose down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    print_timings
    exit "$rc"
}

# ---------------------------------------------------------------- host checks

WARDCTL=()
setup_wardctl() {
    local bin="${WARDLINE_SMOKE_WARDCTL:-$WARDLINE_ROOT/target/debug/wardctl}"
    if [[ ! -x "$bin" ]]; then
        log "building wardctl for the host checks"
        cargo build --locked -p wardctl >&2
    fi
    local pki
    pki="$(service_container pki)"
    mkdir -p "$SMOKE_STATE/pki"
    local f
    for f in ca.pem wardctl/tls.pem wardctl/tls.key issuer/es256.key; do
        docker cp "$pki:/pki/$f" "$SMOKE_STATE/pki/${f//\//-}"
    done
    as_root chown "$(id -u):$(id -g)" "$SMOKE_STATE/pki/"*
    chmod 0600 "$SMOKE_STATE/pki/"*.key
    WARDCTL=(env
        WARDCTL_INTAKE_URL="https://localhost:${PORT[INTAKE_GRPC_PORT]}"
        WARDCTL_ROUTING_URL="https://localhost:${PORT[ROUTING_GRPC_PORT]}"
        WARDCTL_BILLING_URL="https://localhost:${PORT[BILLING_GRPC_PORT]}"
        WARDCTL_NOTIFICATION_URL="https://localhost:${PORT[NOTIFICATION_GRPC_PORT]}"
        WARDCTL_CA_FILE="$SMOKE_STATE/pki/ca.pem"
        WARDCTL_CLIENT_CERT_FILE="$SMOKE_STATE/pki/wardctl-tls.pem"
        WARDCTL_CLIENT_KEY_FILE="$SMOKE_STATE/pki/wardctl-tls.key"
        WARDLINE_ENV=development
        WARDLINE_DEV_ISSUER_KEY="$SMOKE_STATE/pki/issuer-es256.key"
        WARDCTL_TENANT=stmarys
        "$bin")
}

# json_get EXPR: evaluates the Python expression EXPR over the JSON on stdin (as j).
json_get() { python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"; }

# eventually SECONDS DESCRIPTION COMMAND...: retries COMMAND every second.
eventually() {
    local timeout_s="$1" what="$2" deadline
    shift 2
    deadline=$((SECONDS + timeout_s))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "not within ${timeout_s}s: $what"
        sleep 1
    done
}

mail_total() {
    curl -fsS "http://127.0.0.1:${PORT[MAILPIT_UI_PORT]}/api/v1/messages" | json_get 'j["total"]'
}

# create_ticket CALLER_ID: files a ticket at St Mary's over the published
# gRPC port, prints its id.
create_ticket() {
    "${WARDCTL[@]}" --json ticket create --facility main-campus --caller-id "$1" \
        --caller-name "Compose Smoke" --caller-role nurse --caller-email "compose-smoke@wardline.example" \
        --channel portal --category orders --urgency high --impact single-user \
        --description "compose smoke: the order set does not sign" |
        json_get 'j.get("ticketId") or j.get("ticket_id")'
}

ticket_assignee() {
    "${WARDCTL[@]}" --json ticket get "$1" |
        json_get 'j.get("assigneeAnalystId") or j.get("assignee_analyst_id") or ""'
}
ticket_is_assigned() { [[ -n "$(ticket_assignee "$1")" ]]; }
# Routed: assigned, or in the queue because every analyst who could take it
# is at capacity (after the demo and a dozen smoke tickets, that happens).
ticket_is_routed() {
    [[ "$("${WARDCTL[@]}" --json ticket get "$1" |
        json_get 'bool(j.get("assigneeAnalystId") or j.get("queued"))')" == True ]]
}

# call_charges: "ticket_id count" of the month's call lines (included,
# overage or rate-card: one per billed call; surcharges and credits aside).
call_charges() {
    "${WARDCTL[@]}" --json charges | python3 -c '
import collections, json, sys
j = json.load(sys.stdin)
items = j if isinstance(j, list) else (j.get("charges") or j.get("items") or [])
counts = collections.Counter()
for c in items:
    if c.get("kind") in ("LINE_KIND_CALLS_INCLUDED", "LINE_KIND_OVERAGE", "LINE_KIND_TIER_PRICE"):
        counts[c.get("ticketId") or c.get("ticket_id")] += 1
for t, n in counts.items():
    print(t, n)'
}
charges_of() { call_charges | awk -v t="$1" '$1 == t { print $2 }'; }
billed_once() { [[ "$(charges_of "$1")" == 1 ]]; }

jaeger_services() {
    curl -fsS "http://127.0.0.1:${PORT[JAEGER_UI_PORT]}/api/services" | json_get '" ".join(j["data"] or [])'
}
traced_by_all() {
    local have svc
    have=" $(jaeger_services) "
    for svc in intake routing billing notification; do
        [[ "$have" == *" $svc "* ]] || return 1
    done
}

host_checks() {
    local mails ticket
    mails="$(mail_total)"
    ticket="$(create_ticket compose-smoke-1)"
    [[ -n "$ticket" ]] || die "wardctl ticket create printed no ticket id"
    log "ticket $ticket created over gRPC on 127.0.0.1:${PORT[INTAKE_GRPC_PORT]}"
    eventually 60 "ticket $ticket assigned" ticket_is_assigned "$ticket"
    log "assigned to $(ticket_assignee "$ticket")"
    eventually 60 "ticket $ticket billed" billed_once "$ticket"
    sleep 2
    billed_once "$ticket" || die "ticket $ticket has $(charges_of "$ticket") call charges, not 1"
    log "billed once"
    mail_arrived() { (($(mail_total) > mails)); }
    eventually 60 "an email in the mail sink" mail_arrived
    log "mail sink: $(mail_total) messages ($mails before)"
    eventually 60 "spans of intake, routing, billing and notification at the OTLP receiver" traced_by_all
    log "OTLP receiver has spans of: $(jaeger_services)"
}

# Tickets filed before, during and after `docker-compose restart billing`
# are each billed exactly once: billing's durable consumer picks up what
# it missed, and redelivery does not double-charge.
restart_billing_check() {
    local n="${WARDLINE_SMOKE_RESTART_TICKETS:-12}" i ids_file="$SMOKE_STATE/restart-tickets"
    : >"$ids_file"
    (
        for ((i = 1; i <= n; i++)); do
            create_ticket "compose-smoke-restart-$i" >>"$ids_file"
            sleep 0.5
        done
    ) &
    local writer=$!
    sleep 2
    log "docker-compose restart billing (tickets are being filed)"
    compose restart billing >/dev/null 2>&1
    wait "$writer" || die "filing tickets failed while billing restarted"
    [[ "$(wc -l <"$ids_file")" == "$n" ]] || die "filed $(wc -l <"$ids_file") of $n tickets"
    wait_stack
    all_billed_once() {
        local counts t
        counts="$(call_charges)"
        while read -r t; do
            [[ "$(awk -v t="$t" '$1 == t { print $2 }' <<<"$counts")" == 1 ]] || return 1
        done <"$ids_file"
    }
    eventually 90 "all $n tickets filed around the restart billed once" all_billed_once
    sleep 3
    all_billed_once || die "a ticket filed around the restart was billed more than once"
    log "all $n tickets filed around the restart are billed, each once"
}

# migrations_once: in every service's database each migration is recorded
# once (kit's and the service's own history tables).
migrations_once() {
    local db table bad
    for db in intake routing billing notification; do
        for table in _sqlx_migrations _wardline_kit_migrations; do
            bad="$(compose exec -T postgres psql -U postgres -d "$db" -tAc \
                "SELECT count(*) - count(DISTINCT version) + count(*) FILTER (WHERE NOT success) FROM $table" 2>&1)" ||
                die "cannot read $db.$table: $bad"
            [[ "$bad" == 0 ]] || die "$db.$table records a migration twice or a failed one"
        done
    done
}

# The documented upgrade: new images (WARDLINE_VERSION), `up -d`. The "new
# release" here is the same build under another tag with a new image id, so
# compose recreates every Wardline container; the volumes stay. Afterwards
# the tickets filed before are still there, a new one is assigned and billed
# once, and every migration is recorded once.
upgrade_check() {
    local svc next=smoke-upgrade ticket
    for svc in dev-pki intake routing billing notification wardctl; do
        printf 'FROM wardline-%s:dev\nLABEL io.wardline.smoke-upgrade=%s\n' "$svc" "$$" |
            DOCKER_BUILDKIT=1 docker build -q -t "wardline-$svc:$next" - >/dev/null
    done
    migrations_once
    log "WARDLINE_VERSION=$next docker-compose up -d"
    PORT_VARS+=("WARDLINE_VERSION=$next")
    compose up -d --no-build >"$SMOKE_STATE/upgrade.log" 2>&1 || {
        cat "$SMOKE_STATE/upgrade.log" >&2
        die "docker-compose up -d with the new version failed"
    }
    local id
    for svc in intake routing billing notification; do
        id="$(service_container "$svc")"
        [[ "$(docker inspect -f '{{.Config.Image}}' "$id")" == *":$next" ]] ||
            die "$svc was not recreated from the new image"
    done
    wait_stack
    migrations_once
    ticket="$(head -n 1 "$SMOKE_STATE/restart-tickets")"
    billed_once "$ticket" || die "ticket $ticket (filed before the upgrade) lost its charge"
    ticket="$(create_ticket compose-smoke-upgraded)"
    eventually 60 "ticket $ticket (after the upgrade) routed" ticket_is_routed "$ticket"
    eventually 60 "ticket $ticket (after the upgrade) billed" billed_once "$ticket"
    log "upgraded: every Wardline container recreated, data kept, migrations recorded once, new tickets flow"
}

# ---------------------------------------------------------------- main

main() {
    if [[ "${1:-}" == --engine-only ]]; then
        # For scripts/test.sh: can an engine be had here? (exit 1 if not)
        ( ensure_engine ) || return 1
        return 0
    fi
    trap cleanup EXIT
    phase "engine"
    ensure_engine
    phase "stand-in images"
    standins
    pick_ports
    # The smoke's own secret files (random, kept between runs).
    WARDLINE_SECRETS_DIR="$SMOKE_STATE/secrets" scripts/compose-secrets.sh
    phase "clean slate (a previous run's project, if any)"
    compose --profile metrics down -v --remove-orphans >/dev/null 2>&1 || true
    phase "docker-compose build (deploy/Dockerfile)"
    compose build >"$SMOKE_STATE/build.log" 2>&1 || {
        tail -n 80 "$SMOKE_STATE/build.log" >&2
        die "docker-compose build failed (see $SMOKE_STATE/build.log)"
    }
    docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^wardline-' | sed 's/^/    /' >&2 || true
    phase "docker-compose up -d"
    STACK_STARTED=1
    compose up -d --no-build >"$SMOKE_STATE/up.log" 2>&1 || {
        cat "$SMOKE_STATE/up.log" >&2
        local svc
        for svc in "${LONGRUNNING[@]}"; do dump_logs "$svc"; done
        die "docker-compose up failed"
    }
    phase "health checks, one-shots and the seeder's demo"
    wait_stack
    compose logs --no-color seed >"$SMOKE_STATE/seed.log" 2>&1 || true
    log "the seeder's demo passed ($(wc -l <"$SMOKE_STATE/seed.log") lines: $SMOKE_STATE/seed.log)"
    phase "host checks over the published ports"
    setup_wardctl
    host_checks
    phase "docker-compose restart billing mid-run"
    restart_billing_check
    phase "upgrade: new image version, docker-compose up -d"
    upgrade_check
    if [[ "${WARDLINE_SMOKE_KEEP:-0}" == 1 ]]; then
        log "smoke passed; the stack stays up"
        return 0
    fi
    phase "docker-compose down -v"
    compose down -v --remove-orphans >"$SMOKE_STATE/down.log" 2>&1
    STACK_STARTED=""
    local left
    left="$(project_containers)$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
    [[ -z "$left" ]] || die "down -v left containers, volumes or networks of $PROJECT: $left"
    log "nothing of $PROJECT is left"
    docker image ls -q --filter reference='wardline-*:smoke-upgrade' | xargs -r "$DOCKER" rmi -f >/dev/null 2>&1 || true
    phase_end
    log "compose smoke passed"
}

main "$@"; exit $?
