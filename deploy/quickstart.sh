#!/usr/bin/env bash
# Lexum quick start: installs what is missing, builds lexumd and lexumctl,
# starts a three-node cluster on 127.0.0.1, submits the fleet program, starts
# the example worker, shows the goals converging, then submits a second
# version with a tug-of-war and shows the oscillation trap (E005).
# The cluster keeps running afterwards: `deploy/local-cluster.sh down` stops it.
#
# Safe to re-run. LEXUM_PROFILE=debug uses a debug build instead of release;
# LEXUM_BIN_DIR=DIR uses prebuilt lexumd, lexumctl and examples/fleet_worker.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="$root/.lexum-local"
profile="${LEXUM_PROFILE:-release}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lexum/target}"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Installing what is missing"
bash deploy/setup.sh

if [ -n "${LEXUM_BIN_DIR:-}" ] && [ -x "$LEXUM_BIN_DIR/lexumd" ] && [ -x "$LEXUM_BIN_DIR/lexumctl" ] \
    && [ -x "$LEXUM_BIN_DIR/examples/fleet_worker" ]; then
  say "Using prebuilt binaries from $LEXUM_BIN_DIR"
  bin="$LEXUM_BIN_DIR"
else
  say "Building lexumd, lexumctl and the example worker ($profile)"
  if [ ! -x "$CARGO_TARGET_DIR/$profile/lexumd" ]; then
    echo "This is the first build in $CARGO_TARGET_DIR: it compiles RocksDB from source,"
    echo "which takes about 15 minutes on two cores (later runs take seconds)."
  fi
  # Cargo draws a progress bar on a terminal; elsewhere (a log, CI) a line a
  # minute shows that the long RocksDB step is still going.
  ticker=""
  if [ ! -t 2 ]; then
    (start=$SECONDS; while sleep 60; do echo "  still building ($(((SECONDS - start) / 60)) min)"; done) &
    ticker=$!
    trap 'kill "$ticker" 2>/dev/null || true' EXIT
  fi
  if [ "$profile" = "release" ]; then
    cargo build --release -p lexum-node -p lexum-client --bins --examples
  else
    # The same selection as deploy/test.sh, so a tested tree rebuilds nothing.
    cargo build --workspace --all-targets
  fi
  if [ -n "$ticker" ]; then
    kill "$ticker" 2>/dev/null || true
    trap - EXIT
  fi
  bin="$CARGO_TARGET_DIR/$profile"
fi
export LEXUM_BIN_DIR="$bin"
ctl=("$bin/lexumctl" --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103)

say "Starting a three-node cluster on 127.0.0.1:7101-7103"
bash deploy/local-cluster.sh up

say "Checking and submitting examples/fleet.lxm"
"${ctl[@]}" check examples/fleet.lxm
"${ctl[@]}" submit examples/fleet.lxm

say "Creating three node pools (instances of the kind Pool)"
"${ctl[@]}" create Pool/web want=3 Pool/db want=2 Pool/cache want=4

say "Starting the example worker (a simulated cloud: node pools, firewall rules)"
mkdir -p "$state"
if [ -f "$state/worker.pid" ] && kill -0 "$(cat "$state/worker.pid")" 2>/dev/null; then
  kill "$(cat "$state/worker.pid")" 2>/dev/null || true
fi
"$bin/examples/fleet_worker" --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 >"$state/worker.log" 2>&1 &
echo $! >"$state/worker.pid"
echo "worker pid $(cat "$state/worker.pid"), log .lexum-local/worker.log"

# Prints the goals table until every listed goal (`Domain.Goal`) has one of
# the wanted statuses (bounded), then returns 0; returns 1 on timeout.
wait_for() {
  local wanted="$1" goals="$2" seconds="$3"
  for _ in $(seq 1 $((seconds * 2))); do
    local json
    json="$("${ctl[@]}" goals --output json 2>/dev/null || true)"
    local done=1
    local targets=()
    read -r -a targets <<<"$goals"
    for target in "${targets[@]}"; do
      local domain="${target%.*}" goal="${target##*.}"
      domain="$(printf '%s' "$domain" | sed 's/[][]/\\&/g')"
      echo "$json" | tr -d ' \n' \
        | grep -Eq "\"domain\":\"${domain}\"[^}]*\"goal\":\"${goal}\"[^}]*\"status\":\"(${wanted})\"" || done=0
    done
    if [ "$done" = 1 ]; then
      "${ctl[@]}" goals
      return 0
    fi
    sleep 0.5
  done
  "${ctl[@]}" goals || true
  return 1
}

say "Watching the fleet converge"
"${ctl[@]}" goals || true
if wait_for "SATISFIED" "Pool[web].Sized Pool[db].Sized Pool[cache].Sized Firewall.InSync" 60; then
  echo "fleet converged: every goal SATISFIED"
else
  echo "the fleet did not converge within 60s; see .lexum-local/*.log" >&2
  exit 1
fi

say "Version 2: the fleet plus a tug-of-war (examples/tugofwar.lxm)"
cat examples/fleet.lxm examples/tugofwar.lxm >"$state/fleet-v2.lxm"
"${ctl[@]}" submit "$state/fleet-v2.lxm"
if wait_for "TRAPPED" "Warm.Heating Chill.Cooling" 60; then
  echo
  echo "Both goals are TRAPPED with E005: they undo each other, so Lexum stopped dispatching them."
  "${ctl[@]}" history --limit 4 || true
else
  echo "the tug-of-war was not trapped within 60s" >&2
  exit 1
fi

say "Next"
cat <<EOF
The cluster and the worker keep running. Try:
  ${ctl[0]} status                      # leader, term, state hash of every node
  ${ctl[0]} set Pool[web].want=7        # the worker resizes the pool
  ${ctl[0]} create Pool/batch want=6     # another pool of the fleet
  ${ctl[0]} why Pool[web].nodes          # who wrote it, and because of what
  ${ctl[0]} explain Warm.Heating         # why it is trapped
  ${ctl[0]} watch                       # follow events live (Ctrl-C to stop)
  ${ctl[0]} release Warm                # release the trap (it will trap again)
  deploy/local-cluster.sh down          # stop the cluster (--wipe deletes its data)
  kill \$(cat .lexum-local/worker.pid)    # stop the worker
EOF
