#!/usr/bin/env bash
# Make sure a PostgreSQL >= 14 accepts connections at $WARDLINE_PG_URL as a
# superuser without a password. Installs (Debian packages) and starts the
# server when it is missing or stopped. Safe to run again and again: when the
# server already answers, this is a single psql round trip.
#
# Variables:
#   WARDLINE_PG_URL   default postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WARDLINE_ROOT"

PG_URL="${WARDLINE_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_MIN_VERSION_NUM=140000
read -r PG_HOST PG_PORT < <(url_host_port "$PG_URL" 5432)
export PGCONNECT_TIMEOUT=3

# pg_try: 0 = connected and new enough, 1 = cannot connect, 2 = too old.
pg_try() {
    local v
    have psql || return 1
    v="$(psql "$PG_URL" -XAtqc 'show server_version_num' 2>/dev/null)" || return 1
    if ((v < PG_MIN_VERSION_NUM)); then
        return 2
    fi
}

pg_wait() {
    local deadline=$((SECONDS + ${1:-30})) rc
    while true; do
        rc=0
        pg_try || rc=$?
        [[ $rc -ne 1 ]] && return "$rc"
        ((SECONDS >= deadline)) && return 1
        sleep 0.5
    done
}

pg_done() {
    log "PostgreSQL $(psql "$PG_URL" -XAtqc 'show server_version' 2>/dev/null) ready at $PG_HOST:$PG_PORT"
    exit 0
}

# clusters: prints "version name port" for every cluster under /etc/postgresql.
clusters() {
    have pg_lsclusters || return 0
    pg_lsclusters -h 2>/dev/null | awk '{ print $1, $2, $3 }'
}

start_clusters() {
    local ver name _port
    while read -r ver name _port; do
        [[ -n "$ver" ]] || continue
        if pg_ctlcluster "$ver" "$name" status >/dev/null 2>&1; then
            continue
        fi
        log "starting cluster $ver/$name"
        # --skip-systemctl-redirect: start the server directly, also where
        # systemd is installed but not running (containers, CI sandboxes).
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >&2 ||
            warn "pg_ctlcluster $ver $name start failed"
    done < <(clusters)
}

# Password-free local TCP connections. Acceptable ONLY because this script
# sets up a dev/test box whose server listens on loopback: every local user
# becomes able to connect as any role, postgres included. Never run this
# against a server that matters.
trust_loopback() {
    local ver name port hba changed=0
    while read -r ver name port; do
        [[ -n "$ver" && "$port" == "$PG_PORT" ]] || continue
        hba="/etc/postgresql/$ver/$name/pg_hba.conf"
        [[ -f "$hba" ]] || continue
        if grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+(md5|scram-sha-256|password|peer|ident)' "$hba"; then
            log "setting trust auth for 127.0.0.1/32 and ::1/128 in $hba (dev/test box only)"
            as_root sed -E -i.wardline.bak \
                's#^([[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)(md5|scram-sha-256|password|peer|ident)#\1trust#' \
                "$hba"
            changed=1
            if pg_ctlcluster "$ver" "$name" status >/dev/null 2>&1; then
                as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload >&2 || true
            fi
        fi
    done < <(clusters)
    return $((1 - changed))
}

# A server that does not matter is the only one this script may change.
if ! is_loopback "$PG_HOST"; then
    pg_try && pg_done
    die "cannot connect to $PG_URL (not a local server, so not installing or starting anything)"
fi

# 1. Already there? (the fast path)
rc=0
pg_try || rc=$?
[[ $rc -eq 0 ]] && pg_done
[[ $rc -eq 2 ]] && die "the server at $PG_HOST:$PG_PORT is older than PostgreSQL 14"

# 2. Installed? Otherwise install from Debian's packages (which create and
#    start a cluster "main" on 5432).
if ! have psql || ! have pg_ctlcluster; then
    apt_install postgresql
    hash -r
fi
have pg_ctlcluster || die "pg_ctlcluster still missing after installing postgresql"

# 3. A server package without a cluster (e.g. one was dropped): create one.
if [[ -z "$(clusters)" ]]; then
    ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
    [[ -n "$ver" ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    log "creating cluster $ver/main on port $PG_PORT"
    as_root pg_createcluster --port "$PG_PORT" "$ver" main >&2
fi

# 4. Start what is stopped, wait until it accepts connections, then make
#    loopback connections password-free if a password is what stops us.
start_clusters
deadline=$((SECONDS + 30))
until pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; do
    ((SECONDS >= deadline)) && break
    sleep 0.5
done
rc=0
if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; then
    pg_try || rc=$? # accepting connections: a failure now is authentication
else
    pg_wait 5 || rc=$?
fi
if [[ $rc -eq 1 ]] && trust_loopback; then
    rc=0
    pg_wait 15 || rc=$?
fi
[[ $rc -eq 0 ]] && pg_done
[[ $rc -eq 2 ]] && die "the server at $PG_HOST:$PG_PORT is older than PostgreSQL 14"

if have pg_lsclusters; then pg_lsclusters >&2 || true; fi
psql "$PG_URL" -XAtqc 'select 1' >&2 || true
die "PostgreSQL still refuses $PG_URL; see the clusters above and their logs in /var/log/postgresql"
