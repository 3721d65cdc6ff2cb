# Sourced by the scripts here: node_config DIR NAME PORT EXTRA writes DIR/strata.toml, a node
# in front of the bench origin (:19080) with a 128 MiB store under DIR/store, listening on
# PORT (admin on PORT+100), EXTRA appended (e.g. an [access_log] section).
node_config() {
  cat > "$1/strata.toml" <<TOML
[node]
id = "$2"
listen = "127.0.0.1:$3"
admin_listen = "127.0.0.1:$(( $3 + 100 ))"

[store]
path = "$1/store"
size = "128MiB"
memory = "64MiB"

[[origins]]
id = "origin"
url = "http://127.0.0.1:19080"

[default_behavior]
origin = "origin"
cache_policy = "UseOriginCacheControlHeaders"
$4
TOML
}

# wait_ready PORT [TRIES]: waits (TRIES tenths of a second, default 100) until the node
# listening on PORT answers /readyz on its admin port (PORT+100).
wait_ready() {
  for _ in $(seq "${2:-100}"); do
    curl -sf -o /dev/null "http://127.0.0.1:$(($1 + 100))/readyz" && return
    sleep 0.1
  done
}

# stop_nodes, as an EXIT trap: kills and reaps the nodes whose pids are in PIDS, then removes
# WORK.
stop_nodes() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
