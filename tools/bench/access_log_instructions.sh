#!/usr/bin/env bash
# Instructions per request of one strata node with the access log off and on (1 KiB hits),
# counted by valgrind's callgrind: unlike req/s, the count does not depend on what else the
# machine is doing, so a few-percent difference is visible on a busy shared box.
#
#   cargo build --release
#   (cd ../shared/bench && ./ctl.sh start origin)
#   flock /tmp/strata-bench.lock tools/bench/access_log_instructions.sh [REPS] [FORMAT]
#
# Each node runs under callgrind; after a warm-up its counters are zeroed, wrk sends hits for
# DURATION seconds (default 8), the counters are dumped, and Ir / requests is printed.
# KEEP=1 keeps the profiles (callgrind_annotate them, or diff the two nodes'); CALLGRIND_OPTS
# adds valgrind options, e.g. `--dump-instr=yes` for costs per instruction.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REPS=${1:-2}
FORMAT=${2:-cloudfront}
DURATION=${DURATION:-8}
BIN=${STRATA_BIN:-$ROOT/target/release/strata}
WORK=$(mktemp -d /tmp/strata-alog-ir.XXXXXX)
PID=""
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  [[ ${KEEP:-0} == 1 ]] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

source "$ROOT/tools/bench/node_config.sh"

run() { # name extra-toml
  local d=$WORK/$1 port=19220
  rm -rf "$d"; mkdir -p "$d"
  node_config "$d" "$1" "$port" "$2"
  taskset -c "${SERVER_CPU:-0}" valgrind --tool=callgrind ${CALLGRIND_OPTS:-} --callgrind-out-file="$d/cg.%p" \
    "$BIN" serve --config "$d/strata.toml" > "$d/stdout.log" 2>&1 &
  PID=$!
  wait_ready "$port" 600
  for _ in 1 2 3; do curl -sf -o /dev/null "http://127.0.0.1:$port/s/1k.bin"; done
  taskset -c "${CLIENT_CPU:-1}" wrk -t1 -c16 -d2s "http://127.0.0.1:$port/s/1k.bin" > /dev/null
  callgrind_control -z "$PID" > /dev/null
  local reqs
  reqs=$(taskset -c "${CLIENT_CPU:-1}" wrk -t1 -c16 -d"${DURATION}s" "http://127.0.0.1:$port/s/1k.bin" \
    | awk '/requests in/ {print $1}')
  callgrind_control -d "$PID" > /dev/null
  sleep 1
  local ir
  ir=$(cat "$d"/cg.*.* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s}')
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  printf '%-8s rep %s: %s requests, %s instructions, %.0f instructions/request\n' \
    "$1" "$3" "$reqs" "$ir" "$(echo "$ir / $reqs" | bc -l)"
}

for ((rep = 1; rep <= REPS; rep++)); do
  run log-off "" "$rep"
  run log-on "
[access_log]
path = \"$WORK/log-on/access.log\"
format = \"$FORMAT\"" "$rep"
done
