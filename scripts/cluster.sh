#!/usr/bin/env bash
# `make cluster`: three `churn-mlops serve --workers 1` instances behind HAProxy
# (deploy/haproxy/haproxy.cfg) on 127.0.0.1, sharing the machine's PostgreSQL and Redis and the
# model registry in var/models, as pods of one Deployment share theirs. Ctrl-C stops everything.
#
#   CLUSTER_DATABASE_URL  default postgresql://postgres@127.0.0.1:5432/churn_cluster (created)
#   CLUSTER_REDIS_URL     default redis://127.0.0.1:6379/0
#   CLUSTER_PORT          HAProxy's port, default 8080; the instances take CLUSTER_PORT+1..+3
#                         (unless CLUSTER_API_PORTS="p1 p2 p3"), the stats page CLUSTER_PORT+324
#   CLUSTER_DIR           logs, spill files, metrics, the development key: var/cluster
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
DIR=${CLUSTER_DIR:-var/cluster}
PORT=${CLUSTER_PORT:-8080}
read -r -a API_PORTS <<<"${CLUSTER_API_PORTS:-$((PORT + 1)) $((PORT + 2)) $((PORT + 3))}"
STATS_PORT=$((PORT + 324))
DATABASE_URL=${CLUSTER_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/churn_cluster}
REDIS_URL=${CLUSTER_REDIS_URL:-redis://127.0.0.1:6379/0}

command -v haproxy >/dev/null || { echo "cluster: haproxy is not installed (make tools)" >&2; exit 1; }
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "cluster: stopping"
  # SIGTERM: each instance finishes its requests and writes its prediction log first.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

# The database, if it is not there yet; then the schema, once, before any instance starts.
"$BIN/python" - "$DATABASE_URL" <<'PY'
import asyncio, sys
from urllib.parse import urlsplit

import asyncpg

url = urlsplit(sys.argv[1])
name = url.path.lstrip("/")

async def main() -> None:
    admin = await asyncpg.connect(url._replace(path="/postgres").geturl())
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
            print(f"cluster: created database {name}")
    finally:
        await admin.close()

asyncio.run(main())
PY
CHURN_DATABASE_URL=$DATABASE_URL "$BIN/churn-mlops" db upgrade

export CHURN_DATABASE_URL=$DATABASE_URL CHURN_REDIS_URL=$REDIS_URL
export CHURN_DEV_API_KEY_FILE=$DIR/dev-api-key CHURN_WORKERS=1
unset CHURN_MODEL_DIR  # follow the registry's champion

start() {  # start N PORT: instance apiN in the background, its output in $DIR/apiN.log
  local name=api$1
  mkdir -p "$DIR/$name"
  CHURN_PREDICTION_LOG_SPILL_PATH=$DIR/$name/predictions.jsonl \
    CHURN_METRICS_MULTIPROC_DIR=$DIR/$name/metrics \
    "$BIN/churn-mlops" serve --port "$2" --workers 1 >"$DIR/$name.log" 2>&1 &
  pids+=("$!")
}

wait_ready() {  # wait_ready PORT
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1/health/ready" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "cluster: the instance on port $1 did not become ready (see $DIR/*.log)" >&2
  return 1
}

# The first one alone: on a first run it trains a model and makes it the champion, and creates
# the development key; the other two then find both.
start 1 "${API_PORTS[0]}"
wait_ready "${API_PORTS[0]}"
start 2 "${API_PORTS[1]}"
start 3 "${API_PORTS[2]}"
wait_ready "${API_PORTS[1]}"
wait_ready "${API_PORTS[2]}"

CHURN_LB_PORT=$PORT CHURN_LB_STATS_PORT=$STATS_PORT CHURN_LB_SOCKET=$DIR/haproxy.sock \
  CHURN_API1_PORT=${API_PORTS[0]} CHURN_API2_PORT=${API_PORTS[1]} CHURN_API3_PORT=${API_PORTS[2]} \
  haproxy -db -W -f deploy/haproxy/haproxy.cfg >"$DIR/haproxy.log" 2>&1 &
pids+=("$!")

cat <<EOF

  Load balancer   http://127.0.0.1:$PORT  (try: curl -s http://127.0.0.1:$PORT/model -H "X-API-Key: \$(cat $DIR/dev-api-key)")
  HAProxy stats   http://127.0.0.1:$STATS_PORT/stats
  Instances       http://127.0.0.1:${API_PORTS[0]}  http://127.0.0.1:${API_PORTS[1]}  http://127.0.0.1:${API_PORTS[2]}  (metrics at /metrics)
  API key         $DIR/dev-api-key
  Logs            $DIR/api{1,2,3}.log  $DIR/haproxy.log
  Drain one       echo "set server churn/api1 state drain" | socat stdio unix-connect:$DIR/haproxy.sock
  Database        $DATABASE_URL      Redis  $REDIS_URL

  Every answer names its instance in the X-Served-By header. Ctrl-C stops everything.
EOF
# Until Ctrl-C, or until one of them exits (its log says why); then the trap stops the rest.
wait -n "${pids[@]}" || true
