#!/usr/bin/env bash
# The whole test suite: installs what is missing, then builds and runs every
# test of the workspace. The cargo target dir lives outside the clone so later
# runs reuse the RocksDB build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# --browser: Chromium for the live view's browser test (jepsen/tests/live_view.rs);
# --bench: etcd for the comparison's smoke run (jepsen/tests/bench_smoke.rs).
bash deploy/setup.sh --browser --bench
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lexum/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# One selection for everything (the quick start's debug build uses it too):
# another package or target selection can resolve features differently and
# rebuild RocksDB from scratch. `cargo build` puts lexumd, lexumctl and the
# example worker in target/debug, where the cluster tests start them
# (`cargo test` alone builds only test executables). Benches run once, in
# test mode.
# Formatting first (rustfmt.toml; vendor/ is upstream's code, left as is).
if command -v rustfmt >/dev/null && git rev-parse --git-dir >/dev/null 2>&1; then
  git ls-files -z '*.rs' ':!:vendor/*' | xargs -0 rustfmt --edition 2021 --check
else
  echo "rustfmt or git not found: Rust formatting not checked" >&2
fi
cargo build --workspace --all-targets --locked
cargo test --workspace --all-targets --locked
# Every nemesis against every workload for two minutes (docs/jepsen.md).
JEPSEN_SKIP_BUILD=1 bash jepsen/run --time-limit 120 --nemesis all --workload all --store "$(mktemp -d)"
# The Python SDK (client/python), in the virtualenv setup.sh made: installed
# from the tree the way a user installs it, linted, type-checked, and tested
# against the lexumd just built (real three-node clusters on loopback).
venv="${LEXUM_VENV:-$HOME/.cache/lexum/venv}"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  --force-reinstall ./client/python
(cd client/python && "$venv/bin/ruff" check . && "$venv/bin/ruff" format --check . && "$venv/bin/mypy" \
  && "$venv/bin/pytest" -q)
