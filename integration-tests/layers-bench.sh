#!/usr/bin/env bash
# APPEND and FETCH through each storage layer against a plain store, in the same run: a
# `strata` process on SQLite without layers and one with the layer, both targets of one
# imap-bench run, then again with the targets in the other order (the second target shares
# the machine with the first one's background work). Prints imap-bench's tables.
#   MESSAGES=2000 LAYERS="sis compress encrypt" integration-tests/layers-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${MESSAGES:-2000}
layers=${LAYERS:-sis compress encrypt}
phases=${PHASES:-append-1,append-n,fetch-bodies,fetch-headers}
cargo build --release --workspace --bins >&2
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

# Starts a server named $1 on port $2 with extra TOML $3.
start() {
  local dir="$work/$1"
  mkdir -p "$dir"
  head -c 32 /dev/urandom | base64 | sed 's/^/1:/' > "$dir/keyring"
  chmod 600 "$dir/keyring"
  printf 'data_dir = "%s/data"\n[imap]\nstarttls = "127.0.0.1:%s"\ntls = ""\nmax_connections = 10000\nmax_connections_per_ip = 10000\n[log]\nlevel = "warn"\n[index.fts]\nenabled = false\n[storage]\nbackend = "sql"\n[storage.sql]\nurl = "sqlite:%s/bodies.db"\n%b\n' \
    "$dir" "$2" "$dir" "$3" > "$dir/strata.toml"
  echo bench | ./target/release/strata --config "$dir/strata.toml" user add bench --password-stdin >/dev/null
  ./target/release/strata --config "$dir/strata.toml" serve 2>"$dir/log" &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return; sleep 0.1; done
  echo "server $1 did not start" >&2
  exit 1
}

port=12100
for layer in $layers; do
  case $layer in
    sis) toml='[storage.single_instance]' ;;
    compress) toml='[storage.compression]' ;;
    encrypt) toml="[storage.encryption]\nkeys = \"$work/LAYER/keyring\"" ;;
    *) echo "unknown layer $layer" >&2; exit 2 ;;
  esac
  for order in 1 2; do
    plain="plain-$layer-$order"
    with="$layer-$order"
    start "$plain" $((port)) ""
    start "$with" $((port + 1)) "${toml//LAYER/$with}"
    if [ "$order" = 1 ]; then
      targets=(--target "plain=127.0.0.1:$port" --target "$layer=127.0.0.1:$((port + 1))")
    else
      targets=(--target "$layer=127.0.0.1:$((port + 1))" --target "plain=127.0.0.1:$port")
    fi
    echo "## $layer, order $order"
    ./target/release/imap-bench run "${targets[@]}" --user bench --password bench \
      --messages "$messages" --phases "$phases"
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    pids=()
    port=$((port + 2))
  done
done
