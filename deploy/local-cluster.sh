#!/usr/bin/env bash
# A three-node Lexum cluster on 127.0.0.1 for trying things out.
#
#   deploy/local-cluster.sh up           start nodes 1-3 (gRPC 7101-7103, metrics 9101-9103)
#   deploy/local-cluster.sh up --secure  the same with TLS and a token per role (see below)
#   deploy/local-cluster.sh down         stop them (data is kept; `down --wipe` deletes it)
#   deploy/local-cluster.sh status       show which nodes run and the cluster status
#
# Data and logs live in .lexum-local/ at the repository root. Binaries come
# from $LEXUM_BIN_DIR, else the cargo target dir (release, then debug); `up`
# builds them in release mode when neither has them.
#
# `up --secure` runs deploy/credentials.sh into .lexum-local/: a CA (ca.pem),
# the nodes' certificate, a peer token and one token per role, with
# tokens.env holding LEXUM_TOKEN_READ, _WRITE, _WORKER, _ADMIN and LEXUM_CA:
#
#   . .lexum-local/tokens.env
#   LEXUM_TOKEN=$LEXUM_TOKEN_ADMIN lexumctl submit goals.lxm
#
# The cluster stays secure across `down` and `up` until `down --wipe`.
# LEXUM_LOCAL_DIR, LEXUM_LOCAL_PORTS and LEXUM_LOCAL_METRICS_PORTS (three
# ports each, space-separated) move the state and ports (the tests use them).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${LEXUM_LOCAL_DIR:-$root/.lexum-local}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/lexum/target}"
read -r -a grpc_ports <<<"${LEXUM_LOCAL_PORTS:-7101 7102 7103}"
read -r -a metrics_ports <<<"${LEXUM_LOCAL_METRICS_PORTS:-9101 9102 9103}"
endpoints="127.0.0.1:${grpc_ports[0]},127.0.0.1:${grpc_ports[1]},127.0.0.1:${grpc_ports[2]}"

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

# lexumctl with the admin token and the CA when the cluster is secure.
ctl() {
  local bin_dir="$1"
  shift
  if [ -f "$state/secure" ]; then
    (. "$state/tokens.env" && LEXUM_TOKEN="$LEXUM_TOKEN_ADMIN" "$bin_dir/lexumctl" --endpoints "$endpoints" "$@")
  else
    "$bin_dir/lexumctl" --endpoints "$endpoints" "$@"
  fi
}

up() {
  local bin_dir
  bin_dir="$(bins)"
  mkdir -p "$state"
  if [ "${1:-}" = "--secure" ]; then
    "$root/deploy/credentials.sh" "$state" 127.0.0.1 localhost >/dev/null
    touch "$state/secure"
    echo "secure: TLS and tokens; . $state/tokens.env for LEXUM_TOKEN_{READ,WRITE,WORKER,ADMIN} and LEXUM_CA"
  elif [ -n "${1:-}" ]; then
    echo "usage: $0 up [--secure]" >&2
    return 2
  fi
  local security=()
  if [ -f "$state/secure" ]; then
    security=(--config "$state/auth.toml")
  fi
  local peers=(--peer "1=127.0.0.1:${grpc_ports[0]}" --peer "2=127.0.0.1:${grpc_ports[1]}" --peer "3=127.0.0.1:${grpc_ports[2]}")
  for id in 1 2 3; do
    if running "$id"; then
      echo "node $id already running (pid $(cat "$state/node$id.pid"))"
      continue
    fi
    "$bin_dir/lexumd" "${security[@]}" --id "$id" --listen "127.0.0.1:${grpc_ports[$((id - 1))]}" \
      --metrics-listen "127.0.0.1:${metrics_ports[$((id - 1))]}" \
      --data-dir "$state/node$id" "${peers[@]}" >"$state/node$id.log" 2>&1 &
    echo $! >"$state/node$id.pid"
    echo "node $id started (pid $!, log $state/node$id.log)"
  done
  for _ in $(seq 1 120); do
    if ctl "$bin_dir" status --output json 2>/dev/null | grep -q '"leader": *[1-9]'; then
      echo "leader elected"
      return 0
    fi
    sleep 0.5
  done
  echo "no leader after 60s; see $state/node*.log" >&2
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
    ctl "$bin_dir" status || true
  fi
}

case "${1:-}" in
  up) shift; up "${1:-}" ;;
  down) shift; down "${1:-}" ;;
  status) status ;;
  *) echo "usage: $0 up [--secure]|down [--wipe]|status" >&2; exit 2 ;;
esac
