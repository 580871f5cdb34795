#!/usr/bin/env bash
# Every check livegen has: installs what is missing, then type-checks, lints and runs
# the whole test suite (real sockets, real ffmpeg). `npm test` and .ci/run call this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh chromium:chromium redis-server:redis-server
echo "== typecheck"
npx tsc -p tsconfig.json --noEmit
npx tsc -p web/tsconfig.json --noEmit
echo "== lint"
npx eslint .
echo "== tests"
mkdir -p test-artifacts
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=test-artifacts/vitest.json "$@" || status=$?
# One plain closing line, whatever the reporter printed above.
node -e '
  const r = JSON.parse(require("fs").readFileSync("test-artifacts/vitest.json", "utf8"));
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || true
exit "$status"
