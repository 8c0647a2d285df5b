#!/usr/bin/env bash
# PostgreSQL init script (the official image runs /docker-entrypoint-initdb.d/*
# once, when the data directory is first created).
#
# One database and two login roles per service (docs/access-model.md,
# "Row-level security"):
#   <service>_owner  owns the database and its tables; the service migrates
#                    as it at start-up (<PREFIX>_MIGRATE_DATABASE_URL)
#   <service>        the runtime role the service serves as
#                    (<PREFIX>_DATABASE_URL): no superuser, no BYPASSRLS, no
#                    CREATEDB/CREATEROLE, owns nothing; the service's start-up
#                    grants it DML on the tables, so row-level security binds it
# Nobody else may connect to a service's database: a service never reads
# another service's database (docs: ARCHITECTURE.md). Passwords come from the
# environment, one variable per role, or from the file its _FILE variant
# names (compose passes secret files: scripts/compose-secrets.sh):
#
#   INTAKE_DB_PASSWORD[_FILE]        INTAKE_DB_OWNER_PASSWORD[_FILE]
#   ROUTING_DB_PASSWORD[_FILE]       ROUTING_DB_OWNER_PASSWORD[_FILE]
#   BILLING_DB_PASSWORD[_FILE]       BILLING_DB_OWNER_PASSWORD[_FILE]
#   NOTIFICATION_DB_PASSWORD[_FILE]  NOTIFICATION_DB_OWNER_PASSWORD[_FILE]
#
# Safe to run again (e.g. `docker compose exec postgres bash
# /docker-entrypoint-initdb.d/01-databases.sh` after an upgrade): existing
# roles get their password reset and their attributes tightened, existing
# databases are left alone except that a database the runtime role still
# owns (from before the two roles) is handed to the owner role, with
# everything in it.
set -euo pipefail

create_service_db() {
    local name="$1" password="$2" owner_password="$3"
    if [[ -z "$password" || -z "$owner_password" ]]; then
        echo "01-databases.sh: no password for role $name or ${name}_owner (set ${name^^}_DB_PASSWORD and ${name^^}_DB_OWNER_PASSWORD, or their _FILE variants)" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --no-psqlrc \
        --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
        -v name="$name" -v owner="${name}_owner" \
        -v password="$password" -v owner_password="$owner_password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', r, p)
  FROM (VALUES (:'name', :'password'), (:'owner', :'owner_password')) AS v(r, p)
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L', r, p)
  FROM (VALUES (:'name', :'password'), (:'owner', :'owner_password')) AS v(r, p) \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'name', :'owner') \gexec
-- The runtime role connects and uses temporary tables, nothing more.
SELECT format('REVOKE ALL ON DATABASE %I FROM %I', :'name', :'name') \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', :'name', :'name') \gexec
-- Upgrading from one role per service: the owner takes over.
SELECT format('ALTER DATABASE %I OWNER TO %I', :'name', :'owner')
  FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
 WHERE d.datname = :'name' AND r.rolname = :'name' \gexec
\connect :"name"
SELECT format('REASSIGN OWNED BY %I TO %I', :'name', :'owner')
 WHERE EXISTS (SELECT FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
                WHERE r.rolname = :'name') \gexec
SQL
    echo "01-databases.sh: database $name, roles $name and ${name}_owner ready" >&2
}

# password_of VAR: $VAR, else the content of $VAR_FILE.
password_of() {
    local var="$1" file
    file="${var}_FILE"
    if [[ -n "${!var:-}" ]]; then
        printf '%s' "${!var}"
    elif [[ -n "${!file:-}" ]]; then
        [[ -r "${!file}" ]] || { echo "01-databases.sh: cannot read $file=${!file}" >&2; exit 1; }
        printf '%s' "$(<"${!file}")"
    fi
}

for service in intake routing billing notification; do
    create_service_db "$service" \
        "$(password_of "${service^^}_DB_PASSWORD")" \
        "$(password_of "${service^^}_DB_OWNER_PASSWORD")"
done
