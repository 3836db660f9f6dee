#!/usr/bin/env bash
# Quick start: installs what the service needs and runs it on libvirt's built-in test driver
# (test:///default, an in-process fake host with one running VM "test"). Try it:
#   curl http://127.0.0.1:8000/api/v1/status
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh runtime
[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
npm run build
exec node dist/cli.js serve "$@"
