#!/usr/bin/env bash
# PostgreSQL init script (the official image runs /docker-entrypoint-initdb.d/*
# once, when the data directory is first created).
#
# One database and one login role per service, the role owning its database,
# and nobody else allowed to connect to it: a service never reads another
# service's database (docs: ARCHITECTURE.md). Passwords come from the
# environment (see .env), one variable per service:
#
#   INTAKE_DB_PASSWORD  ROUTING_DB_PASSWORD  BILLING_DB_PASSWORD  NOTIFICATION_DB_PASSWORD
#
# Safe to run again: existing roles get their password reset, existing
# databases are left alone.
set -euo pipefail

create_service_db() {
    local name="$1" password="$2"
    if [[ -z "$password" ]]; then
        echo "01-databases.sh: no password for role $name (set ${name^^}_DB_PASSWORD)" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --no-psqlrc \
        --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
        -v name="$name" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'name', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'name', :'name') \gexec
SQL
    echo "01-databases.sh: database and role $name ready" >&2
}

create_service_db intake "${INTAKE_DB_PASSWORD:-}"
create_service_db routing "${ROUTING_DB_PASSWORD:-}"
create_service_db billing "${BILLING_DB_PASSWORD:-}"
create_service_db notification "${NOTIFICATION_DB_PASSWORD:-}"
