#!/usr/bin/env bash
# What an access log costs nginx (the proxy_cache peer of ../shared/bench) beside what it
# costs strata, in one alternating run: nginx with its log off and on, strata with its log
# off and on, all pinned to the server CPU, 1 KiB hits, per-round ratios (alternate.sh).
#
#   cargo build --release
#   (cd ../shared/bench && ./ctl.sh start origin)
#   flock /tmp/strata-bench.lock tools/bench/nginx_access_log.sh [ROUNDS] [SECS]
#
# nginx renders ../shared/bench/peers/nginx.conf.in (ports 19102 and 19103); its log line
# has CloudFront's fields where nginx has a variable for them, tab-separated, and is
# buffered as a busy site would (`buffer=64k flush=1s`; NGINX_BUFFER= for a write per line).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH:-/work/shared/bench}
ROUNDS=${1:-30}
SECS=${2:-2}
BIN=${STRATA_BIN:-$ROOT/target/release/strata}
BUFFER=${NGINX_BUFFER-buffer=64k flush=1s}
WORK=$(mktemp -d /tmp/strata-nginx-log.XXXXXX)
chmod 755 "$WORK" # nginx's workers (nobody) reach the cache through it
PIDS=()
source "$ROOT/tools/bench/node_config.sh"
trap stop_nodes EXIT

FORMAT='$time_iso8601\t$hostname\t$body_bytes_sent\t$remote_addr\t$request_method\t$host\t$uri\t$status\t$http_referer\t$http_user_agent\t$args\t-\t$upstream_cache_status\t$request_id\t$http_host\t$scheme\t$request_length\t$request_time\t$http_x_forwarded_for\t-\t-\t$upstream_cache_status\t$server_protocol\t-\t-\t$remote_port\t$upstream_header_time\t$upstream_cache_status\t$sent_http_content_type\t$sent_http_content_length\t-\t-\tdefault'

nginx_node() { # name port log(0|1)
  local d=$WORK/$1 log="access_log off;"
  mkdir -p "$d/tmp" "$d/cache"
  chmod 777 "$d/cache"
  if [[ $3 == 1 ]]; then
    log="log_format cf '$FORMAT'; access_log $d/access.log cf $BUFFER;"
  fi
  sed -e "s#@RUN@#$d#g" -e "s#@PORT@#$2#g" -e "s#@ORIGIN_PORT@#19080#g" -e "s#@CACHE_MB@#1024#g" \
    -e "s#^  access_log off;.*#  $log#" "$BENCH/peers/nginx.conf.in" > "$d/nginx.conf"
  taskset -c "${SERVER_CPU:-0}" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
  for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$2/s/1k.bin" && break
    sleep 0.1
  done
  PIDS+=("$(cat "$d/nginx.pid")")
  curl -sf -o /dev/null "http://127.0.0.1:$2/s/1k.bin" || {
    echo "nginx $1 does not serve /s/1k.bin: $(tail -3 "$d/error.log")" >&2
    exit 1
  }
}

nginx_node nginx-off 19102 0
nginx_node nginx-on 19103 1
"$ROOT/tools/bench/alternate.sh" "$ROUNDS" "$SECS" \
  strata-off:"$BIN":0 strata-on:"$BIN":1 \
  nginx-off@http://127.0.0.1:19102 nginx-on@http://127.0.0.1:19103 \
  -- strata-on/strata-off nginx-on/nginx-off nginx-off/strata-off nginx-on/strata-on
echo "nginx log lines: $(wc -l < "$WORK/nginx-on/access.log")"
head -c 400 "$WORK/nginx-on/access.log"; echo
