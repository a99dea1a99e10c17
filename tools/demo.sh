#!/usr/bin/env bash
# The demo: continuous training on the bundled sample data on the embedded default (SQLite
# metadata DB, local-disk registry), every model deployed to ONE local model server, then
# predictions over HTTP.
#
#   run 1: trip_tips on January's trips            -> no champion yet: gate vs a Dummy baseline -> v1 deployed
#   run 2: trip_tips on January + February's trips -> a real challenger vs champion v1 on the same holdout
#                                                     -> promoted or kept, with the reason
#   run 3: trip_fares, another model (a regressor)  -> deployed to the same server
#   run 4: one model per pickup zone, a cascade of architectures per zone -> every zone champion served
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
echo "== model server: mlops-airflow serve --port $PORT (every model of the registry, loaded on demand; log: $AIRFLOW_HOME/model-server.log)"
"$BIN/mlops-airflow" serve --port "$PORT" >"$AIRFLOW_HOME/model-server.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null

run_dag() {  # $1: label, $2: DAG id, $3: conf (JSON)
  echo
  echo "================================================================================"
  echo "== $1: airflow dags test $2 -c '$3'"
  echo "================================================================================"
  local log="$AIRFLOW_HOME/demo-$(echo "$1" | tr ' ' '-').log"
  if ! "$BIN/airflow" dags test "$2" -c "$3" >"$log" 2>&1; then
    echo "the run failed; its log: $log" >&2
    tail -40 "$log" >&2
    exit 1
  fi
}
run_dag "run 1" mlops_continuous_training "{\"data_uri\": \"$ROOT/include/data/trips_2026_01.csv\"}"
"$BIN/mlops-airflow" runs show "$MODEL"
run_dag "run 2" mlops_continuous_training "{\"data_uri\": \"$ROOT/include/data/trips_2026_*.csv\"}"
"$BIN/mlops-airflow" runs show "$MODEL"
run_dag "run 3" mlops_continuous_training "{\"model_name\": \"trip_fares\", \"target\": \"fare_usd\", \"data_uri\": \"$ROOT/include/data/trips_2026_01.csv\"}"
"$BIN/mlops-airflow" runs show trip_fares
run_dag "run 4" mlops_per_segment_training "{\"model_prefix\": \"zone_\"}"
echo "per zone (promoted / kept / failed, which architecture won and why): the summary task's log, $AIRFLOW_HOME/demo-run-4.log"
grep -A10 "Segments:" "$AIRFLOW_HOME/demo-run-4.log" | sed -n '2,11p' | sed 's/ \[airflow.*//'

echo
echo "== mlops-airflow models list"
"$BIN/mlops-airflow" models list
echo
echo "== mlops-airflow models show $MODEL --alias champion"
"$BIN/mlops-airflow" models show "$MODEL" --alias champion
URL=http://127.0.0.1:$PORT
echo
echo "== one server, every model: POST $URL/models/<name>/predict"
request='{"rows": [{"hour": 22, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5, "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}]}'
echo "request:  $request"
echo "trip_tips:  $(curl -fsS -H 'content-type: application/json' -d "$request" "$URL/models/trip_tips/predict")"
fares='{"rows": [{"hour": 22, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5, "trip_duration_min": 31.0, "payment_type": "card", "tipped": 1}]}'
echo "trip_fares: $(curl -fsS -H 'content-type: application/json' -d "$fares" "$URL/models/trip_fares/predict")"
zone='{"rows": [{"hour": 22, "day_of_week": "fri", "passengers": 1, "trip_distance_km": 18.5, "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}]}'
echo "zone_airport: $(curl -fsS -H 'content-type: application/json' -d "$zone" "$URL/models/zone_airport/predict")"
echo
echo "== the same model over the Open Inference Protocol (KServe V2): POST $URL/v2/models/trip_tips/infer"
v2='{"inputs": [{"name": "hour", "shape": [1], "datatype": "INT64", "data": [22]}, {"name": "day_of_week", "shape": [1], "datatype": "BYTES", "data": ["fri"]}, {"name": "pickup_zone", "shape": [1], "datatype": "BYTES", "data": ["airport"]}, {"name": "passengers", "shape": [1], "datatype": "INT64", "data": [1]}, {"name": "trip_distance_km", "shape": [1], "datatype": "FP64", "data": [18.5]}, {"name": "trip_duration_min", "shape": [1], "datatype": "FP64", "data": [31.0]}, {"name": "fare_usd", "shape": [1], "datatype": "FP64", "data": [46.5]}, {"name": "payment_type", "shape": [1], "datatype": "BYTES", "data": ["card"]}]}'
echo "response: $(curl -fsS -H 'content-type: application/json' -d "$v2" "$URL/v2/models/trip_tips/infer")"
echo
echo "== what the server holds: GET $URL/models"
curl -fsS "$URL/models" | "$BIN/python" -c 'import json, sys
s = json.load(sys.stdin)
names = ", ".join(m["model_name"] + " v" + str(m["version"]) for m in s["loaded"])
print(len(s["loaded"]), "models loaded,", round(s["memory_used_bytes"] / 2**20, 1), "of", round(s["memory_budget_bytes"] / 2**20), "MB:", names)'
echo
echo "== a bad request is refused with the field and the reason; an unknown model with its name"
bad='{"rows": [{"hour": 77, "day_of_week": "fri", "pickup_zone": "airport", "passengers": 1, "trip_distance_km": 18.5, "trip_duration_min": 31.0, "fare_usd": 46.5, "payment_type": "card"}]}'
echo "response: $(curl -sS -H 'content-type: application/json' -d "$bad" "$URL/models/trip_tips/predict")"
echo "response: $(curl -sS -H 'content-type: application/json' -d "$request" "$URL/models/trip_tipz/predict")"
echo
echo "demo wall time: $(( $(date +%s) - start ))s"
