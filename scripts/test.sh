#!/usr/bin/env bash
# Every check livegen has: installs what is missing, then type-checks, lints and runs
# the whole test suite (real sockets, real ffmpeg). `npm test` and .ci/run call this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh chromium:chromium
echo "== typecheck"
npx tsc -p tsconfig.json --noEmit
npx tsc -p web/tsconfig.json --noEmit
echo "== lint"
npx eslint .
echo "== tests"
npx vitest run "$@"
