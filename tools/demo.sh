#!/usr/bin/env bash
# The demo: continuous training on the bundled sample data, twice, on the embedded default
# (SQLite metadata DB, local-disk registry, local model server), then a prediction over HTTP.
#
#   run 1: January's trips              -> no champion yet: gate vs a Dummy baseline -> v1 deployed
#   run 2: January + February's trips   -> a real challenger vs champion v1 on the same holdout
#                                          -> promoted or kept, with the reason
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
PORT=${MLOPS_DEMO_PORT:-8765}
MODEL=trip_tips
export AIRFLOW_HOME=$ROOT/.airflow
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export MLOPS_AIRFLOW_REGISTRY_URI=$AIRFLOW_HOME/demo_registry
export MLOPS_AIRFLOW_SERVER_URL=http://127.0.0.1:$PORT
export GX_ANALYTICS_ENABLED=false
PIDFILE=$AIRFLOW_HOME/model-server.pid
start=$(date +%s)

mkdir -p "$AIRFLOW_HOME"
rm -rf "$MLOPS_AIRFLOW_REGISTRY_URI"   # each demo tells the story from the start
echo "== Airflow home: $AIRFLOW_HOME (metadata DB: SQLite)"
"$BIN/airflow" db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1

stop_server() {
  if [ -f "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
  fi
}
trap stop_server EXIT
stop_server
if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port $PORT is taken: stop what listens there or set MLOPS_DEMO_PORT" >&2
  exit 1
fi
echo "== model server: mlops-airflow serve $MODEL --port $PORT (waits for a champion; log: $AIRFLOW_HOME/model-server.log)"
"$BIN/mlops-airflow" serve "$MODEL" --port "$PORT" >"$AIRFLOW_HOME/model-server.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null

run_ct() {  # $1: label, $2: data_uri
  echo
  echo "================================================================================"
  echo "== $1: airflow dags test mlops_continuous_training (data: $2)"
  echo "================================================================================"
  local log="$AIRFLOW_HOME/demo-$(echo "$1" | tr ' ' '-').log"
  if ! "$BIN/airflow" dags test mlops_continuous_training -c "{\"data_uri\": \"$2\"}" >"$log" 2>&1; then
    echo "the run failed; its log: $log" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  "$BIN/mlops-airflow" runs show "$MODEL"
}
run_ct "run 1" "$ROOT/include/data/trips_2026_01.csv"
run_ct "run 2" "$ROOT/include/data/trips_2026_*.csv"

echo
echo "== mlops-airflow models list"
"$BIN/mlops-airflow" models list
echo
echo "== mlops-airflow models show $MODEL --alias champion"
"$BIN/mlops-airflow" models show "$MODEL" --alias champion
echo
echo "== a prediction from the deployed model: POST http://127.0.0.1:$PORT/predict"
request='{"rows": [{"hour": 22, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5, "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}]}'
echo "request:  $request"
echo "response: $(curl -fsS -H 'content-type: application/json' -d "$request" "http://127.0.0.1:$PORT/predict")"
echo
echo "== a bad request is refused with the field and the reason"
bad='{"rows": [{"hour": 77, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5, "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}]}'
echo "response: $(curl -sS -H 'content-type: application/json' -d "$bad" "http://127.0.0.1:$PORT/predict")"
echo
echo "demo wall time: $(( $(date +%s) - start ))s"
