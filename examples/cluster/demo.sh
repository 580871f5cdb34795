#!/usr/bin/env bash
# A local cluster: redis-server, two replicas and a router, all on loopback.
# Open http://127.0.0.1:8100/ for the player; http://127.0.0.1:8100/status shows the cluster.
# Ctrl-C stops everything. Needs redis-server (apt-get install redis-server) and `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/../.."
REDIS_PORT=${REDIS_PORT:-6390}
export LIVEGEN_REDIS_URL="redis://127.0.0.1:${REDIS_PORT}"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
sleep 0.5
node bin/livegen.js serve --port 8001 --cluster-id replica-1 & pids+=($!)
node bin/livegen.js serve --port 8002 --cluster-id replica-2 & pids+=($!)
node bin/livegen.js router --port 8100 --cluster-id router-1 & pids+=($!)
echo "router: http://127.0.0.1:8100/  (status: /status, metrics: /metrics)"
echo "try: kill -9 a replica while a story plays; the page goes on from the other one"
wait
