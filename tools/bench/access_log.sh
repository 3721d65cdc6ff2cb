#!/usr/bin/env bash
# Requests/s and server CPU µs/request of one strata node with the access log off against
# one with it on (cloudfront format), on 1 KiB hits, through ../shared/bench/run.sh: both
# nodes pinned to the server CPU, wrk on the other, targets interleaved in every rep.
#
#   cargo build --release
#   (cd ../shared/bench && ./ctl.sh start origin)
#   flock /tmp/strata-bench.lock tools/bench/access_log.sh [REPS] [FORMAT]
#
# TESTS (default hit) and SIZES (default 1k) pass through to run.sh: SIZES=16k for larger
# hits, TESTS=zipf for the mixed Zipf stream (hits and misses, ZIPF_WARM seconds of warm-up,
# default 30) — 1 KiB hits are the worst case, the most lines per CPU second.
# Starts and stops its own two nodes (ports 19210, 19211); results in
# /tmp/cdnbench/results/<timestamp>/ (table.txt, raw.tsv). With PERF=1, afterwards records
# a perf profile (cpu-clock, call graphs) of the log-on node under the same wrk load and
# prints its top entries (report in $PERF_OUT, default /tmp/strata-alog-perf.txt).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH:-/work/shared/bench}
REPS=${1:-7}
FORMAT=${2:-cloudfront}
BIN=${STRATA_BIN:-$ROOT/target/release/strata}
WORK=$(mktemp -d /tmp/strata-alog.XXXXXX)
PIDS=()
source "$ROOT/tools/bench/node_config.sh"
trap stop_nodes EXIT

node() { # name port extra
  mkdir -p "$WORK/$1"
  node_config "$WORK/$1" "$1" "$2" "$3"
  taskset -c "${SERVER_CPU:-0}" "$BIN" serve --config "$WORK/$1/strata.toml" \
    > "$WORK/$1/stdout.log" 2>&1 &
  PIDS+=($!)
}

node log-off 19210 ""
node log-on 19211 "
[access_log]
path = \"$WORK/log-on/access.log\"
format = \"$FORMAT\""
for port in 19210 19211; do
  wait_ready "$port"
done
"$BENCH/run.sh" --tests "${TESTS:-hit}" --sizes "${SIZES:-1k}" --zipf-warm "${ZIPF_WARM:-30}" \
  --reps "$REPS" --ref log-off \
  log-off=http://127.0.0.1:19210 log-on=http://127.0.0.1:19211
if [[ ${PERF:-0} == 1 ]]; then
  pid=${PIDS[1]}
  perf record -F 2000 -g -p "$pid" -o "$WORK/perf.data" -- sleep 8 >/dev/null 2>&1 &
  perfpid=$!
  sleep 0.5
  taskset -c "${CLIENT_CPU:-1}" wrk -t1 -c64 -d6s http://127.0.0.1:19211/s/1k.bin | grep Requests/sec
  wait "$perfpid" || true
  perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -v '^$' > "${PERF_OUT:-/tmp/strata-alog-perf.txt}" || true
  grep -E '^ +[0-9.]+%' "${PERF_OUT:-/tmp/strata-alog-perf.txt}" | head -40
fi
echo "access log lines written: $(grep -vc '^#' "$WORK/log-on/access.log" || true)"
curl -s "http://127.0.0.1:19311/metrics" | grep -i 'access_log_dropped' || true
