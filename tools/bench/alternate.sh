#!/usr/bin/env bash
# Requests/s of several strata nodes measured in short alternating wrk runs, compared round
# by round: on a shared machine whose speed drifts over minutes, a ratio taken within one
# round (a few seconds) is steadier than a ratio of medians over long reps.
#
#   cargo build --release
#   (cd ../shared/bench && ./ctl.sh start origin)
#   flock /tmp/strata-bench.lock tools/bench/alternate.sh ROUNDS SECS NAME:BIN:LOG... [-- A/B...]
#
# Each NAME:BIN:LOG starts a node from binary BIN (a build of another commit, say), with the
# access log off (LOG 0), on (LOG 1, cloudfront, to a file under /tmp) or on to /dev/null
# (LOG null: the line is formatted and handed over, but writing it costs nothing), pinned to the
# server CPU, in front of the bench origin. Every round runs wrk (1 KiB hits, 64
# connections, SECS seconds) against each node, starting with a different one each round.
# A spec NAME@URL is a server started elsewhere (a peer with its log on or off, say): its
# URL (scheme, host and port) is loaded the same way, at /s/1k.bin.
# Prints every run (round, name, req/s, and for a node started here its CPU time — all its
# threads, user and system — per request in µs) and, for each pair A/B named after `--`
# (default: every node against the first), the median and quartiles of the per-round ratio
# A/B with a 95 % bootstrap interval of that median; for two nodes started here, the same of
# the ratio of B's CPU per request to A's (read like req/s: below 1, A costs more). Save
# the output of runs at different hours and pool them with tools/bench/rounds.py.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${1:?rounds}
SECS=${2:?seconds}
shift 2
SPECS=()
PAIRS=()
while [[ $# -gt 0 && $1 != -- ]]; do SPECS+=("$1"); shift; done
[[ $# -gt 0 ]] && shift && PAIRS=("$@")
WORK=$(mktemp -d /tmp/strata-alternate.XXXXXX)
PIDS=()
source "$ROOT/tools/bench/node_config.sh"
trap stop_nodes EXIT

NAMES=()
URLS=()
NODE_PIDS=()
port=19300
for spec in "${SPECS[@]}"; do
  if [[ $spec == *@* ]]; then
    NAMES+=("${spec%%@*}")
    URLS+=("${spec#*@}")
    NODE_PIDS+=("")
    taskset -c "${CLIENT_CPU:-1}" wrk -t1 -c64 -d2s "${spec#*@}/s/1k.bin" > /dev/null
    continue
  fi
  IFS=: read -r name bin log <<<"$spec"
  mkdir -p "$WORK/$name"
  extra=""
  case $log in
    1) path=$WORK/$name/access.log ;;
    null) path=/dev/null ;;
    *) path="" ;;
  esac
  if [[ -n $path ]]; then
    extra="
[access_log]
path = \"$path\"
format = \"cloudfront\""
  fi
  node_config "$WORK/$name" "$name" "$port" "$extra"
  taskset -c "${SERVER_CPU:-0}" "$bin" serve --config "$WORK/$name/strata.toml" \
    > "$WORK/$name/stdout.log" 2>&1 &
  PIDS+=($!)
  NODE_PIDS+=($!)
  NAMES+=("$name")
  URLS+=("http://127.0.0.1:$port")
  wait_ready "$port"
  taskset -c "${CLIENT_CPU:-1}" wrk -t1 -c64 -d2s "http://127.0.0.1:$port/s/1k.bin" > /dev/null
  port=$((port + 1))
done
[[ ${#PAIRS[@]} -eq 0 ]] && for n in "${NAMES[@]:1}"; do PAIRS+=("$n/${NAMES[0]}"); done

# cpu_ns PID: CPU time (user and system) of all the process's threads so far, in ns, from
# the scheduler's own accounting (finer than the 10-ms ticks of /proc/PID/stat).
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s + 0}'
}

n=${#NAMES[@]}
for r in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    i=$(((k + r) % n))
    pid=${NODE_PIDS[$i]}
    before=$([[ -n $pid ]] && cpu_ns "$pid" || echo 0)
    out=$(taskset -c "${CLIENT_CPU:-1}" wrk -t1 -c64 -d"${SECS}s" "${URLS[$i]}/s/1k.bin")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=-
    if [[ -n $pid ]]; then
      cpu=$(awk -v a="$before" -v b="$(cpu_ns "$pid")" -v n="$requests" \
        'BEGIN {printf "%.3f", (b - a) / 1000 / n}')
    fi
    printf '%s\t%s\t%s\t%s\n' "$r" "${NAMES[$i]}" "$rps" "$cpu" | tee -a "$WORK/runs.tsv"
  done
done

"$ROOT/tools/bench/rounds.py" "$WORK/runs.tsv" -- "${PAIRS[@]}"
