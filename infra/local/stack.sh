#!/usr/bin/env bash
# The local stack without Docker: PostgreSQL, S3 (moto), Prefect and MLflow servers on 127.0.0.1.
#   infra/local/stack.sh up|down|status|env [--state-dir DIR] [...]   (same as `alp stack ...`)
# Needs the project's venv (`make venv`); state (data, logs, pid files) goes to ./.stack by default.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ALP="$ROOT/.venv/bin/alp"
if [[ ! -x "$ALP" ]]; then
  echo "error: $ALP not found: run \`make venv\` in $ROOT first" >&2
  exit 1
fi
exec "$ALP" stack "$@"
