#!/usr/bin/env bash
# Make the secret files docker-compose.yml reads (compose `secrets:`), each
# a random value, keeping any that exist:
#
#   scripts/compose-secrets.sh              ./secrets (or $WARDLINE_SECRETS_DIR)
#
#   postgres_password                 the PostgreSQL superuser's
#   {intake,routing,billing,notification}_db_password
#                                     each service's runtime database role
#                                     (created with it on the first start)
#   {intake,routing,billing,notification}_db_owner_password
#                                     each service's owner role (owns the
#                                     database, runs the migrations)
#   grafana_admin_password            Grafana's admin (the `metrics` profile)
#
# The directory is 0700 (only its owner gets in); the files are 0644 so the
# containers' users (postgres 999, the services 10001) can read the bind
# mounts. To use your own values, write the files yourself (no trailing
# newline needed; letters, digits, '-', '_', '.'). A database password only
# takes effect when the postgres volume is first initialised; later, change
# it with ALTER ROLE and in the file together.
#
# Variables:
#   WARDLINE_SECRETS_DIR  default <repo>/secrets (compose reads the same variable)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir="${WARDLINE_SECRETS_DIR:-$WARDLINE_ROOT/secrets}"
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
made=0
for name in postgres_password intake_db_password routing_db_password billing_db_password \
    notification_db_password intake_db_owner_password routing_db_owner_password \
    billing_db_owner_password notification_db_owner_password grafana_admin_password; do
    file="$dir/$name"
    if [[ -s "$file" ]]; then
        continue
    fi
    # 40 hex digits (160 random bits): safe inside URLs and config files.
    head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file"
    made=$((made + 1))
done
chmod 0644 "$dir"/*
log "secrets in $dir ($made made, the others kept)"
