#!/usr/bin/env bash
# PostgreSQL init script (the official image runs /docker-entrypoint-initdb.d/*
# once, when the data directory is first created).
#
# One database and one login role per service, the role owning its database,
# and nobody else allowed to connect to it: a service never reads another
# service's database (docs: ARCHITECTURE.md). Passwords come from the
# environment, one variable per service, or from the file its _FILE
# variant names (compose passes secret files: scripts/compose-secrets.sh):
#
#   INTAKE_DB_PASSWORD[_FILE]  ROUTING_DB_PASSWORD[_FILE]
#   BILLING_DB_PASSWORD[_FILE]  NOTIFICATION_DB_PASSWORD[_FILE]
#
# Safe to run again: existing roles get their password reset, existing
# databases are left alone.
set -euo pipefail

create_service_db() {
    local name="$1" password="$2"
    if [[ -z "$password" ]]; then
        echo "01-databases.sh: no password for role $name (set ${name^^}_DB_PASSWORD or ${name^^}_DB_PASSWORD_FILE)" >&2
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

# password_of NAME: $NAME_DB_PASSWORD, else the content of $NAME_DB_PASSWORD_FILE.
password_of() {
    local var="${1^^}_DB_PASSWORD" file
    file="${var}_FILE"
    if [[ -n "${!var:-}" ]]; then
        printf '%s' "${!var}"
    elif [[ -n "${!file:-}" ]]; then
        [[ -r "${!file}" ]] || { echo "01-databases.sh: cannot read $file=${!file}" >&2; exit 1; }
        printf '%s' "$(<"${!file}")"
    fi
}

for service in intake routing billing notification; do
    create_service_db "$service" "$(password_of "$service")"
done
