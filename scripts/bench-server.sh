#!/usr/bin/env bash
# Server benchmark: h2load against scenescore POST /v1/score (binary, 1 and 64 candidates) and
# against nghttpd serving a static file of the same size as scenescore's response, with the same
# h2load flags for every run (TLS, -c 16 -m 32 -t 1, warm-up, fixed duration). The server runs
# on core 0 (scenescore --threads 1, nghttpd -n 1), h2load on core 1. Prints a Markdown table
# (req/s, ratio vs nghttpd, p50/p99/p99.9 latency from h2load --log-file) and the exact commands.
#
#   scripts/bench-server.sh [--json OUT.json] [--duration 10] [--warm-up 2] [--keep]
#
# Target: scenescore at 1 candidate >= 0.7x nghttpd's req/s.
# Every server it starts is stopped on exit (trap); it listens and connects on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/lib.sh
REPO=$(pwd)

BIN=${SCENESCORE_BIN:-$REPO/.build/release/scenescore}
MODEL_DIR=$REPO/var/models/default
JSON_OUT=""
DURATION=10
WARMUP=2
CLIENTS=16
STREAMS=32
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --json) JSON_OUT=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warm-up) WARMUP=$2; shift 2 ;;
    --model-dir) MODEL_DIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

for tool in h2load nghttpd curl openssl taskset python3; do
  command -v "$tool" >/dev/null || { echo "bench-server: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "bench-server: $BIN not found; build it with: swift build -c release --product scenescore" >&2; exit 1; }

if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=0; CLIENT_CPU=1; else SERVER_CPU=0; CLIENT_CPU=0
  echo "bench-server: only one core; server and h2load share core 0" >&2; fi

WORK=$(mktemp -d /tmp/scenescore-bench.XXXXXX)
SS_PID=""
NG_PID=""
cleanup() {
  local pid
  for pid in "$SS_PID" "$NG_PID"; do [ -n "$pid" ] && stop_pid "$pid"; done
  if [ "$KEEP" = 1 ]; then echo "bench-server: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# --- certificates (throwaway CA + server cert for localhost / 127.0.0.1) -------------------------
CERTS=$WORK/certs
make_certs "$CERTS"

# --- request bodies (reference client's encode_request) ------------------------------------------
CASES=(1 64)
python3 scripts/bench/make_bodies.py "$WORK/bodies" "${CASES[@]}"
CT="content-type: application/vnd.scenescore.v1"

wait_https() {  # URL PID LOG
  local i
  for i in $(seq 600); do
    if ! kill -0 "$2" 2>/dev/null; then echo "bench-server: server exited during startup:" >&2; tail -20 "$3" >&2; exit 1; fi
    if curl -sf --http2 --cacert "$CERTS/ca.pem" -o /dev/null --max-time 2 "$1"; then return 0; fi
    sleep 0.1
  done
  echo "bench-server: $1 not ready after 60 s" >&2; tail -20 "$3" >&2; exit 1
}

RUNS=$WORK/runs.jsonl; : > "$RUNS"
COMMANDS=()
run_h2load() {  # SERVER CASE METHOD URL BODY RESPONSE_BYTES
  local server=$1 case=$2 method=$3 url=$4 body=$5 bytes=$6
  local tag; tag=$(echo "$server-$case" | tr ' ' '_')
  local cmd=(taskset -c "$CLIENT_CPU" h2load -c "$CLIENTS" -m "$STREAMS" -t 1 -D "$DURATION" --warm-up-time "$WARMUP")
  if [ "$method" = POST ]; then cmd+=(-d "$body" -H "$CT"); fi
  cmd+=(--log-file "$WORK/$tag.tsv" "$url")
  local shown; shown=$(printf '%q ' "${cmd[@]}")
  COMMANDS+=("$shown")
  echo "bench-server: $server, $case: $shown" >&2
  "${cmd[@]}" > "$WORK/$tag.out" 2>&1 || { echo "bench-server: h2load failed:" >&2; tail -20 "$WORK/$tag.out" >&2; exit 1; }
  python3 -c 'import json,sys; print(json.dumps(dict(zip(["server","case","method","command","stdout","log","response_bytes"], sys.argv[1:7]+[int(sys.argv[7])]))))' \
    "$server" "$case" "$method" "$shown" "$WORK/$tag.out" "$WORK/$tag.tsv" "$bytes" >> "$RUNS"
}

# --- scenescore ------------------------------------------------------------------------------------
PORT=$(free_port)
mkdir -p "$WORK/scenescore"
SS_CMD=(taskset -c "$SERVER_CPU" "$BIN" serve --host 127.0.0.1 --port "$PORT" --tls-cert "$CERTS/server.pem"
        --tls-key "$CERTS/server.key" --model-dir "$MODEL_DIR" --threads 1 --log-level warning)
(cd "$WORK/scenescore" && exec "${SS_CMD[@]}" > "$WORK/scenescore.log" 2>&1) &
SS_PID=$!
wait_https "https://127.0.0.1:$PORT/readyz" "$SS_PID" "$WORK/scenescore.log"  # ready = models loaded (healthz is liveness)

declare -A RESP_BYTES
mkdir -p "$WORK/htdocs"
for n in "${CASES[@]}"; do
  code=$(curl -sS --http2 --cacert "$CERTS/ca.pem" -o "$WORK/htdocs/score-$n" -w '%{http_code}' -H "$CT" \
         --data-binary "@$WORK/bodies/req-$n.bin" "https://127.0.0.1:$PORT/v1/score")
  [ "$code" = 200 ] || { echo "bench-server: scenescore answered $code for $n candidates" >&2; exit 1; }
  RESP_BYTES[$n]=$(stat -c %s "$WORK/htdocs/score-$n")
done
for n in "${CASES[@]}"; do
  label="$n candidate"; [ "$n" = 1 ] || label="$n candidates"
  run_h2load scenescore "$label" POST "https://127.0.0.1:$PORT/v1/score" "$WORK/bodies/req-$n.bin" "${RESP_BYTES[$n]}"
done
# Transport only: GET /healthz does no inference, so this row separates the cost of HTTP/2 +
# TLS + routing from the model's forward pass.
curl -sS --http2 --cacert "$CERTS/ca.pem" -o "$WORK/htdocs/healthz" "https://127.0.0.1:$PORT/healthz"
run_h2load scenescore "transport only" GET "https://127.0.0.1:$PORT/healthz" "" "$(stat -c %s "$WORK/htdocs/healthz")"
stop_pid "$SS_PID"; SS_PID=""

# --- nghttpd: the same response bytes as static files -----------------------------------------------
NPORT=$(free_port)
NG_CMD=(taskset -c "$SERVER_CPU" nghttpd -a 127.0.0.1 -n 1 -d "$WORK/htdocs" "$NPORT" "$CERTS/server.key" "$CERTS/server.pem")
"${NG_CMD[@]}" > "$WORK/nghttpd.log" 2>&1 &
NG_PID=$!
wait_https "https://127.0.0.1:$NPORT/score-1" "$NG_PID" "$WORK/nghttpd.log"
NG_METHOD=POST
for n in "${CASES[@]}"; do
  got=$(curl -sS --http2 --cacert "$CERTS/ca.pem" -o "$WORK/ng-check" -w '%{http_code}' -H "$CT" \
        --data-binary "@$WORK/bodies/req-$n.bin" "https://127.0.0.1:$NPORT/score-$n" || true)
  if [ "$got" != 200 ] || ! cmp -s "$WORK/ng-check" "$WORK/htdocs/score-$n"; then NG_METHOD=GET; fi
done
[ "$NG_METHOD" = POST ] || echo "bench-server: nghttpd did not answer POST with the file; using GET for nghttpd" >&2
for n in "${CASES[@]}"; do
  label="$n candidate"; [ "$n" = 1 ] || label="$n candidates"
  run_h2load nghttpd "$label" "$NG_METHOD" "https://127.0.0.1:$NPORT/score-$n" "$WORK/bodies/req-$n.bin" "${RESP_BYTES[$n]}"
done
run_h2load nghttpd "transport only" GET "https://127.0.0.1:$NPORT/healthz" "" "$(stat -c %s "$WORK/htdocs/healthz")"
stop_pid "$NG_PID"; NG_PID=""

# --- report --------------------------------------------------------------------------------------------
python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])]))' "$RUNS" > "$WORK/runs.json"
echo
echo "## Server benchmark: h2load, TLS (ALPN h2), -c $CLIENTS -m $STREAMS -t 1, ${WARMUP}s warm-up + ${DURATION}s"
echo
echo "Server on core $SERVER_CPU, h2load on core $CLIENT_CPU. nghttpd serves scenescore's own response bytes as"
echo "static files (method: $NG_METHOD; nghttpd answers a POST to a static file with the file)."
echo
status=0
python3 scripts/bench/report.py "$WORK/runs.json" ${JSON_OUT:+--json "$JSON_OUT"} || status=$?
echo
echo "Commands:"
echo '```'
echo "cd $WORK/scenescore && $(printf '%q ' "${SS_CMD[@]}")"
printf '%q ' "${NG_CMD[@]}"; echo
for c in "${COMMANDS[@]}"; do echo "$c"; done
echo '```'
[ -z "$JSON_OUT" ] || echo "JSON: $JSON_OUT"
exit $status
