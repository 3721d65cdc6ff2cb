#!/usr/bin/env bash
# CPU time of the access log's writer thread per line: one strata node with the log on
# (cloudfront), pinned to the server CPU, under wrk on the other for SECS seconds (1 KiB
# hits); the writer thread's user + system time from /proc, divided by the lines written.
# Steadier than req/s on a shared machine: it isolates what writing the file costs (the
# kernel's copy into the page cache, write-back, page-cache cleaning) from the request path.
#
#   cargo build --release
#   (cd ../shared/bench && ./ctl.sh start origin)
#   flock /tmp/strata-bench.lock tools/bench/access_log_writer.sh [SECS] [BIN...]
#
# With several binaries (say the build before a change and after it), they take turns,
# REPS rounds (default 3). The log goes to a fresh file under LOG_DIR (default /tmp, which
# should be on the disk the log would be on, not tmpfs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-20}
shift || true
BINS=("$@")
[[ ${#BINS[@]} -eq 0 ]] && BINS=("${STRATA_BIN:-$ROOT/target/release/strata}")
PORT=19280
PID=""
WORK=""
cleanup() {
  if [[ -n $PID ]]; then kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true; fi
  if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

source "$ROOT/tools/bench/node_config.sh"

ticks() { awk '{print $14 + $15}' "$1"; } # utime + stime, in clock ticks

one() { # bin
  WORK=$(mktemp -d "${LOG_DIR:-/tmp}/strata-alog-writer.XXXXXX")
  node_config "$WORK" writer "$PORT" "
[access_log]
path = \"$WORK/access.log\"
format = \"cloudfront\""
  taskset -c "${SERVER_CPU:-0}" "$1" serve --config "$WORK/strata.toml" > "$WORK/stdout.log" 2>&1 &
  PID=$!
  wait_ready "$PORT"
  local task
  task=$(grep -l '^strata-access' /proc/"$PID"/task/*/comm | head -1)
  task=${task%/comm}
  local w0 p0 w1 p1 rps lines hz
  hz=$(getconf CLK_TCK)
  w0=$(ticks "$task/stat"); p0=$(ticks "/proc/$PID/stat")
  rps=$(taskset -c "${CLIENT_CPU:-1}" wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$PORT/s/1k.bin" |
    awk '/Requests\/sec/ {print $2}')
  sleep 0.3 # the writer's last tick
  w1=$(ticks "$task/stat"); p1=$(ticks "/proc/$PID/stat")
  lines=$(grep -vc '^#' "$WORK/access.log" || true)
  awk -v bin="$1" -v rps="$rps" -v w=$((w1 - w0)) -v p=$((p1 - p0)) -v n="$lines" -v hz="$hz" \
    'BEGIN { printf "%s\treq/s %.0f\tlines %d\twriter %.0f ms = %.0f ns/line\tprocess %.0f ms\n",
      bin, rps, n, w * 1000 / hz, w * 1e9 / hz / (n ? n : 1), p * 1000 / hz }'
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=""
  rm -rf "$WORK"; WORK=""
}

for _ in $(seq "${REPS:-3}"); do
  for b in "${BINS[@]}"; do one "$b"; done
done
