#!/usr/bin/env bash
# A three-node Lexum cluster on 127.0.0.1 for trying things out.
#
#   deploy/local-cluster.sh up       start nodes 1-3 (gRPC 7101-7103, metrics 9101-9103)
#   deploy/local-cluster.sh down     stop them (data is kept; `down --wipe` deletes it)
#   deploy/local-cluster.sh status   show which nodes run and the cluster status
#
# Data and logs live in .lexum-local/ at the repository root. Binaries come
# from $LEXUM_BIN_DIR, else the cargo target dir (release, then debug); `up`
# builds them in release mode when neither has them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.lexum-local"
target="${CARGO_TARGET_DIR:-$HOME/.cache/lexum/target}"

find_bins() {
  for dir in "${LEXUM_BIN_DIR:-}" "$target/release" "$target/debug" "$root/target/release" "$root/target/debug"; do
    if [ -n "$dir" ] && [ -x "$dir/lexumd" ] && [ -x "$dir/lexumctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

bins() {
  if ! bin_dir="$(find_bins)"; then
    echo "building release binaries (first run only)..." >&2
    (cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release -p lexum-node -p lexum-client >&2)
    bin_dir="$target/release"
  fi
  echo "$bin_dir"
}

running() {
  local pidfile="$state/node$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

up() {
  local bin_dir
  bin_dir="$(bins)"
  mkdir -p "$state"
  local peers=(--peer 1=127.0.0.1:7101 --peer 2=127.0.0.1:7102 --peer 3=127.0.0.1:7103)
  for id in 1 2 3; do
    if running "$id"; then
      echo "node $id already running (pid $(cat "$state/node$id.pid"))"
      continue
    fi
    "$bin_dir/lexumd" --id "$id" --listen "127.0.0.1:710$id" --metrics-listen "127.0.0.1:910$id" \
      --data-dir "$state/node$id" "${peers[@]}" >"$state/node$id.log" 2>&1 &
    echo $! >"$state/node$id.pid"
    echo "node $id started (pid $!, log .lexum-local/node$id.log)"
  done
  for _ in $(seq 1 120); do
    if "$bin_dir/lexumctl" --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 status --output json 2>/dev/null \
        | grep -q '"leader": *[1-9]'; then
      echo "leader elected"
      return 0
    fi
    sleep 0.5
  done
  echo "no leader after 60s; see .lexum-local/node*.log" >&2
  return 1
}

down() {
  for id in 1 2 3; do
    if running "$id"; then
      kill "$(cat "$state/node$id.pid")" 2>/dev/null || true
      echo "node $id stopped"
    fi
    rm -f "$state/node$id.pid"
  done
  if [ "${1:-}" = "--wipe" ]; then
    rm -rf "$state"
    echo "data wiped"
  fi
}

status() {
  for id in 1 2 3; do
    if running "$id"; then echo "node $id: running (pid $(cat "$state/node$id.pid"))"; else echo "node $id: stopped"; fi
  done
  local bin_dir
  if bin_dir="$(find_bins)"; then
    "$bin_dir/lexumctl" --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 status || true
  fi
}

case "${1:-}" in
  up) up ;;
  down) shift; down "${1:-}" ;;
  status) status ;;
  *) echo "usage: $0 up|down [--wipe]|status" >&2; exit 2 ;;
esac
