#!/bin/sh
# Entrypoint of every Wardline image: runs the binary named by $SERVICE as
# PID 1 (exec, so it gets SIGTERM directly and shuts down gracefully), with
# the arguments given after the image name (compose `command:`).
#
# Secrets from files: for each variable below, NAME_FILE names a file (a
# compose or Docker secret, a mounted Kubernetes Secret) whose content,
# without the trailing newline, becomes NAME. Setting both is an error.
#   PGPASSWORD           the runtime role's database password; the service's
#                        *_DATABASE_URL then carries no password (sqlx reads PGPASSWORD)
#   WARDLINE_MIGRATE_PGPASSWORD
#                        the owner role's password for *_MIGRATE_DATABASE_URL
set -eu
for name in PGPASSWORD WARDLINE_MIGRATE_PGPASSWORD; do
    eval "file=\${${name}_FILE:-}"
    [ -n "$file" ] || continue
    eval "current=\${${name}:-}"
    if [ -n "$current" ]; then
        echo "wardline-entrypoint: both $name and ${name}_FILE are set" >&2
        exit 2
    fi
    if ! value="$(cat "$file")"; then
        echo "wardline-entrypoint: cannot read ${name}_FILE=$file" >&2
        exit 2
    fi
    export "$name=$value"
    unset "${name}_FILE"
done
exec "/usr/local/bin/${SERVICE:?set SERVICE to the binary to run}" "$@"
