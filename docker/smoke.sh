#!/usr/bin/env bash
# Smoke test of the compose stack on a machine with Docker (CI runs it on the just-built images):
#   1. the secrets guard refuses the placeholders of .env.example;
#   2. with generated secrets the whole stack starts and every healthcheck passes;
#   3. one pass of the loop: data API -> one ingestion DAG run (collect, clean, decide) -> the
#      training DAG run its retrain decision schedules (a tiny search, champion/challenger,
#      promotion) -> a prediction from the promoted model -> the UI's page answering;
#   4. Prometheus holds Airflow's and serving's metrics; Grafana has its two dashboards.
# The images ${DOCKERHUB_NAMESPACE}/tasador-*:${TAG} must be present locally or pullable.
# Knobs: SMOKE_INGEST_DAG (tasador_ingestion), SMOKE_TIMEOUT_S (1800); SMOKE_KEEP_UP=1 leaves a
# stack that passed running, with its secrets in SMOKE_ENV_FILE, for docker/distributed_check.py
# (the image workflow's next step; its last step stops the stack).
set -euo pipefail
cd "$(dirname "$0")/.."

INGEST_DAG="${SMOKE_INGEST_DAG:-tasador_ingestion}"
TRAIN_DAG=tasador_training
TIMEOUT_S="${SMOKE_TIMEOUT_S:-1800}"
SERVING="http://127.0.0.1:8000"
UI="http://127.0.0.1:8501"
PROMETHEUS="http://127.0.0.1:9090"
GRAFANA="http://127.0.0.1:3000"
ENV_FILE="${SMOKE_ENV_FILE:-$(mktemp)}"
KEEP_UP="${SMOKE_KEEP_UP:-0}"
export COMPOSE_PROJECT_NAME=tasador-smoke
# A small, fast first pass (the variables reach the services through docker-compose.yml).
export PUBLISH_ADDRESS=127.0.0.1 SERVING_PORT=8000 UI_PORT=8501 PROMETHEUS_PORT=9090 GRAFANA_PORT=3000
export TASADOR_DATASOURCE_SCALE=0.001 TASADOR_SEARCH_TRIALS=4 TASADOR_SEARCH_WORKERS=2
export TASADOR_SEARCH_SAMPLE_ROWS=2000 TASADOR_SEARCH_CV_FOLDS=2 TASADOR_SHAP_SAMPLE_ROWS=50

compose() { docker compose --env-file "$ENV_FILE" "$@"; }
airflow() { compose exec -T airflow-scheduler airflow "$@"; }
log() { printf '\n== %s\n' "$*"; }

finish() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    compose ps --all || true
    compose logs --no-color --tail 150 || true
  fi
  if [ "$status" -eq 0 ] && [ "$KEEP_UP" = 1 ]; then
    exit 0
  fi
  compose down --volumes --remove-orphans || true
  rm -f "$ENV_FILE"
  exit "$status"
}
trap finish EXIT

# Waits until the command succeeds; gives up after TIMEOUT_S.
wait_for() {
  local what=$1 deadline=$((SECONDS + TIMEOUT_S))
  shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out waiting for: $what" >&2
      return 1
    fi
    sleep 10
  done
}

# The state of a DAG's run: a given run id, or the newest run when none is given.
run_state() {
  airflow dags list-runs "$1" -o json 2>/dev/null | python3 -c '
import json, sys
runs = json.loads(sys.stdin.read() or "[]")
wanted = [r for r in runs if len(sys.argv) < 2 or r["run_id"] == sys.argv[1]]
print(wanted[0]["state"] if wanted else "missing")' "${@:2}"
}

has_run() { [ "$(run_state "$1")" != missing ]; }

# Waits until a DAG run succeeds; fails when it fails or after TIMEOUT_S.
wait_for_run() {
  local deadline=$((SECONDS + TIMEOUT_S)) state
  while true; do
    state=$(run_state "$@")
    echo "$1 ${2:-newest run}: ${state}"
    case "$state" in
      success) return 0 ;;
      failed) return 1 ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out waiting for the run of $1" >&2
      return 1
    fi
    sleep 15
  done
}

log "the placeholders of .env.example are refused"
cp .env.example "$ENV_FILE"
if compose run --rm --no-deps secrets-check; then
  echo "the secrets check accepted the placeholders" >&2
  exit 1
fi

log "generated secrets are accepted"
fernet_key=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
while IFS= read -r line; do
  case "$line" in
    *=change-me*) echo "${line%%=*}=$(openssl rand -hex 24)" ;;
    AIRFLOW_FERNET_KEY=) echo "AIRFLOW_FERNET_KEY=${fernet_key}" ;;
    *) echo "$line" ;;
  esac
done <.env.example >"$ENV_FILE"
compose run --rm --no-deps secrets-check

log "the stack starts and every service becomes healthy"
compose up --detach --wait --wait-timeout 900
compose ps --all

log "the data API answers"
compose exec -T datasource healthcheck http://127.0.0.1:8001/health

log "one run of ${INGEST_DAG}"
wait_for "the DAG processor to register ${INGEST_DAG}" airflow dags details "$INGEST_DAG"
airflow dags unpause --treat-dag-id-as-regex --yes '.*'
run_id="smoke-$(date +%s)"
airflow dags trigger "$INGEST_DAG" --run-id "$run_id"
wait_for_run "$INGEST_DAG" "$run_id"

log "the training run its retrain decision scheduled"
wait_for "the retrain Asset to schedule ${TRAIN_DAG}" has_run "$TRAIN_DAG"
wait_for_run "$TRAIN_DAG"

log "a prediction from the promoted model"
wait_for "the serving API to load the production model" curl -fsS "${SERVING}/ready"
curl -fsS -X POST "${SERVING}/predict" -H 'content-type: application/json' -d '{
  "brokered_by": 22611.0, "status": "for_sale", "bed": 3, "bath": 2, "acre_lot": 0.15,
  "street": 1758218.0, "city": "Austin", "state": "Texas", "zip_code": "78745",
  "house_size": 1650, "prev_sold_date": "2016-05-20"}'
echo

log "the UI answers"
curl -fsS "${UI}/_stcore/health"
curl -fsS "${UI}/" | grep -qi streamlit

log "Prometheus has Airflow's and serving's metrics; Grafana has the dashboards"
prometheus_has() {
  curl -fsS --get "${PROMETHEUS}/api/v1/query" --data-urlencode "query=$1" | grep -q '"value"'
}
wait_for "Airflow's task metrics in Prometheus" \
  prometheus_has 'airflow_task_finish_total{dag_id="tasador_ingestion",task_id="collect"}'
prometheus_has 'airflow_dagrun_duration_seconds_count{dag_id="tasador_training"}'
prometheus_has 'up{job="serving"} == 1'
grafana_password="$(grep '^GRAFANA_ADMIN_PASSWORD=' "$ENV_FILE" | cut -d= -f2-)"
# The login goes to curl on stdin (-K -), not on its command line.
printf 'user = "admin:%s"\n' "$grafana_password" \
  | curl -fsS -K - "${GRAFANA}/api/search?tag=tasador" | grep -q '"uid":"tasador-loop"'
log "smoke test passed"
