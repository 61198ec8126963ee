#!/usr/bin/env bash
# Load-tool benchmark: `scenescore load` against h2load, the same -c/-m, side by side.
#
#   1. nghttpd serving a static response (scenescore's own 1-candidate response bytes), closed
#      loop: the tool's req/s against h2load's (goal >= 1.0x, must >= 0.8x), runs interleaved;
#   2. nghttpd, open loop at 80 % of h2load's maximum (of the h2load run just before, since this
#      shared machine's speed drifts): the rate the tool holds (goal: within 1 %);
#   3. the scenescore server (POST /v1/score, 1 candidate), closed loop: req/s and p50 of the tool
#      (every response checked: --check fast) against h2load's (p50 from its --log-file): within 10 %.
#
# The server runs on core 0 (nghttpd -n 1, scenescore --threads 1), the load generators on core 1,
# TLS with ALPN h2, one client thread each. Prints a Markdown table (medians over the runs) and the
# exact commands.
#
#   scripts/bench-load.sh [--duration 10] [--warm-up 2] [--runs 5] [-c 16] [-m 32] [--json OUT.json] [--keep]
#
# Every process it starts is stopped on exit (trap); it listens and connects on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/lib.sh
REPO=$(pwd)

BIN=${SCENESCORE_BIN:-$REPO/.build/release/scenescore}
MODEL_DIR=$REPO/var/models/default
DURATION=10
WARMUP=2
RUNS=5
CLIENTS=16
STREAMS=32
JSON_OUT=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --warm-up) WARMUP=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -c) CLIENTS=$2; shift 2 ;;
    -m) STREAMS=$2; shift 2 ;;
    --model-dir) MODEL_DIR=$2; shift 2 ;;
    --json) JSON_OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

for tool in h2load nghttpd curl openssl taskset python3; do
  command -v "$tool" >/dev/null || { echo "bench-load: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "bench-load: $BIN not found; build it with: swift build -c release --product scenescore" >&2; exit 1; }
"$BIN" load --help >/dev/null 2>&1 || { echo "bench-load: $BIN has no 'load' command" >&2; exit 1; }

if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=0; CLIENT_CPU=1; else SERVER_CPU=0; CLIENT_CPU=0
  echo "bench-load: only one core; server and load generators share core 0" >&2; fi

WORK=$(mktemp -d /tmp/scenescore-bench-load.XXXXXX)
SS_PID=""
NG_PID=""
cleanup() {
  local pid
  for pid in "$SS_PID" "$NG_PID"; do [ -n "$pid" ] && stop_pid "$pid"; done
  if [ "$KEEP" = 1 ]; then echo "bench-load: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# --- certificates, model, request body ------------------------------------------------------------
CERTS=$WORK/certs
make_certs "$CERTS"
if [ ! -f "$MODEL_DIR/backbone.safetensors" ]; then
  echo "bench-load: no model in $MODEL_DIR; using seeded random weights (scenescore model init --random)" >&2
  MODEL_DIR=$WORK/model
  "$BIN" model init --random --dir "$MODEL_DIR" >/dev/null
fi
python3 scripts/bench/make_bodies.py "$WORK/bodies" 1
BODY=$WORK/bodies/req-1.bin
CT="content-type: application/vnd.scenescore.v1"

wait_https() {  # URL PID LOG
  local i
  for i in $(seq 600); do
    if ! kill -0 "$2" 2>/dev/null; then echo "bench-load: server exited during startup:" >&2; tail -20 "$3" >&2; exit 1; fi
    if curl -sf --http2 --cacert "$CERTS/ca.pem" -o /dev/null --max-time 2 "$1"; then return 0; fi
    sleep 0.1
  done
  echo "bench-load: $1 not ready after 60 s" >&2; tail -20 "$3" >&2; exit 1
}

RUNS_FILE=$WORK/runs.jsonl; : > "$RUNS_FILE"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
COMMANDS=()
record() {  # TARGET TOOL MODE OUTFILE [LOG] [RATE]
  python3 -c 'import json,sys; print(json.dumps(dict(zip(["target","tool","mode","out","log","rate"], sys.argv[1:]))))' "$@" >> "$RUNS_FILE"
}
run_h2load() {  # TARGET URL TAG
  local out=$WORK/$3.h2load.out log=$WORK/$3.h2load.tsv
  local cmd=(taskset -c "$CLIENT_CPU" h2load -c "$CLIENTS" -m "$STREAMS" -t 1 -D "$DURATION" --warm-up-time "$WARMUP"
             -d "$BODY" -H "$CT" --log-file "$log" "$2")
  COMMANDS+=("$(printf '%q ' "${cmd[@]}")")
  echo "bench-load: $(printf '%q ' "${cmd[@]}")" >&2
  "${cmd[@]}" > "$out" 2>&1 || { echo "bench-load: h2load failed:" >&2; tail -20 "$out" >&2; exit 1; }
  record "$1" h2load closed "$out" "$log"
}
run_tool() {  # TARGET URL TAG CHECK [RATE]
  local out=$WORK/$3.load.json
  local cmd=(taskset -c "$CLIENT_CPU" "$BIN" load "$2" --cacert "$CERTS/ca.pem" -c "$CLIENTS" -m "$STREAMS" -t 1
             -D "${DURATION}s" --warm-up "${WARMUP}s" --replay "$BODY" --check "$4" --json -q)
  local mode=closed
  if [ -n "${5:-}" ]; then cmd+=(--rate "$5"); mode=open; fi
  COMMANDS+=("$(printf '%q ' "${cmd[@]}")")
  echo "bench-load: $(printf '%q ' "${cmd[@]}")" >&2
  "${cmd[@]}" > "$out" 2> "$WORK/$3.load.err" || { echo "bench-load: scenescore load failed:" >&2; cat "$WORK/$3.load.err" >&2; exit 1; }
  record "$1" scenescore-load "$mode" "$out" "" "${5:-}"
}

# --- 3 first (its response bytes are nghttpd's static file): the scenescore server ----------------
PORT=$(free_port)
mkdir -p "$WORK/scenescore"
SS_CMD=(taskset -c "$SERVER_CPU" "$BIN" serve --host 127.0.0.1 --port "$PORT" --tls-cert "$CERTS/server.pem"
        --tls-key "$CERTS/server.key" --model-dir "$MODEL_DIR" --threads 1 --log-level warning)
(cd "$WORK/scenescore" && exec "${SS_CMD[@]}" > "$WORK/scenescore.log" 2>&1) &
SS_PID=$!
wait_https "https://127.0.0.1:$PORT/readyz" "$SS_PID" "$WORK/scenescore.log"
mkdir -p "$WORK/htdocs"
code=$(curl -sS --http2 --cacert "$CERTS/ca.pem" -o "$WORK/htdocs/score-1" -w '%{http_code}' -H "$CT" \
       --data-binary "@$BODY" "https://127.0.0.1:$PORT/v1/score")
[ "$code" = 200 ] || { echo "bench-load: scenescore answered $code" >&2; exit 1; }
for r in $(seq "$RUNS"); do
  run_h2load scenescore "https://127.0.0.1:$PORT/v1/score" "ss-$r"
  run_tool scenescore "https://127.0.0.1:$PORT/v1/score" "ss-$r" fast
done
stop_pid "$SS_PID"; SS_PID=""

# --- 1 and 2: nghttpd serving the same bytes ---------------------------------------------------------
NPORT=$(free_port)
NG_CMD=(taskset -c "$SERVER_CPU" nghttpd -a 127.0.0.1 -n 1 -d "$WORK/htdocs" "$NPORT" "$CERTS/server.key" "$CERTS/server.pem")
"${NG_CMD[@]}" > "$WORK/nghttpd.log" 2>&1 &
NG_PID=$!
wait_https "https://127.0.0.1:$NPORT/score-1" "$NG_PID" "$WORK/nghttpd.log"
for r in $(seq "$RUNS"); do
  run_h2load nghttpd "https://127.0.0.1:$NPORT/score-1" "ng-$r"
  RATE=$(python3 scripts/bench/load_report.py "$RUNS_FILE" --open-rate)  # 80 % of the run just before
  run_tool nghttpd "https://127.0.0.1:$NPORT/score-1" "ng-$r" status
  run_tool nghttpd "https://127.0.0.1:$NPORT/score-1" "ng-open-$r" status "$RATE"
done
stop_pid "$NG_PID"; NG_PID=""

# --- report ------------------------------------------------------------------------------------------------
echo
echo "## Load tool benchmark: scenescore load vs h2load, TLS (ALPN h2), -c $CLIENTS -m $STREAMS -t 1, ${WARMUP}s warm-up + ${DURATION}s, median of $RUNS interleaved runs"
echo
echo "Server on core $SERVER_CPU (nghttpd -n 1 serving scenescore's 1-candidate response as a static file; scenescore"
echo "serve --threads 1), load generators on core $CLIENT_CPU. $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //');"
echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
status=0
python3 scripts/bench/load_report.py "$RUNS_FILE" ${JSON_OUT:+--json "$JSON_OUT"} || status=$?
echo
echo "Commands:"
echo '```'
echo "cd $WORK/scenescore && $(printf '%q ' "${SS_CMD[@]}")"
printf '%q ' "${NG_CMD[@]}"; echo
for c in "${COMMANDS[@]}"; do echo "$c"; done
echo '```'
exit $status
