#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (as root): packages, npm ci, lint, typecheck,
# tests (`npm test`: unit, API, browser and real-systemd tests first, then the real-libvirtd/QEMU
# end-to-end files). .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh test
npm ci --no-audit --no-fund
npm run lint
npm run typecheck
# `npm run build` without its own type check: the one above covered src/ and test/ already.
node scripts/build.mjs
npm test
