#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and test Lexum:
# - a C and C++ compiler and make (RocksDB is compiled from source),
# - libclang as bindgen loads it, with clang's own headers (RocksDB's Rust
#   bindings are generated at build time),
# - openssl (the TLS tests make their certificates with it),
# - iproute2 (the partition tests put nodes in network namespaces with `ip`;
#   jepsen/run delays and drops their packets with `tc`),
# - nftables (jepsen/run's random packet loss where the kernel has no netem),
# - python3 with venv (the Python SDK in client/python: its tools and tests
#   run in a virtualenv outside the clone, $HOME/.cache/lexum/venv or
#   LEXUM_VENV, with the versions pinned in client/python/requirements-dev.txt).
# Rust itself must already be installed. Safe to re-run: it installs only
# what is missing.
#
#   deploy/setup.sh              detect and install what is missing
#   deploy/setup.sh --dry-run    print the packages it would install, one a line
#   deploy/setup.sh --bench      also etcd (Debian's etcd-server), the anchor
#                                `bench --compare etcd` measures beside Lexum
#   deploy/setup.sh --browser    also Chromium (Debian's chromium), which the
#                                live view's browser test drives headless
#
# Each check looks for what the build actually uses, not for a package name:
# a machine may have a package that looks right (libclang-cpp14) and still
# lack the library bindgen loads. LEXUM_SETUP_ROOT makes every file check
# look under another root, so a test can run the detection against a fake
# machine layout (with PATH pointing at the fake machine's commands and a
# stub apt-get); on such a fake machine no virtualenv is made.
set -euo pipefail

root="${LEXUM_SETUP_ROOT:-}"
dry_run=0
bench=0
browser=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --bench) bench=1 ;;
    --browser) browser=1 ;;
    *) echo "usage: deploy/setup.sh [--dry-run] [--bench] [--browser]" >&2; exit 2 ;;
  esac
done

shopt -s nullglob

# True when one of the directories holds a libclang that clang-sys (bindgen's
# loader) accepts: libclang.so, libclang-*.so, libclang.so.* or
# libclang-*.so.*, but never libclang-cpp (the C++ interface library, which
# clang-sys skips and which cannot serve bindgen).
libclang_in() {
  local dir file name
  for dir in "$@"; do
    [ -d "$dir" ] || continue
    for file in "$dir"/libclang.so "$dir"/libclang-*.so "$dir"/libclang.so.* "$dir"/libclang-*.so.*; do
      name="${file##*/}"
      case "$name" in *-cpp.*) continue ;; esac
      [ -e "$file" ] && return 0
    done
  done
  return 1
}

# The directories clang-sys searches on Linux: LIBCLANG_PATH, the library
# paths from the environment, then its fixed patterns.
have_libclang_library() {
  local -a dirs=()
  local var part
  for var in LIBCLANG_PATH LD_LIBRARY_PATH LIBRARY_PATH; do
    local value="${!var:-}"
    [ -n "$value" ] || continue
    IFS=: read -r -a parts <<<"$value"
    for part in "${parts[@]}"; do [ -n "$part" ] && dirs+=("$part"); done
  done
  dirs+=("$root"/usr/local/llvm*/lib* "$root"/usr/local/lib*/*/* "$root"/usr/local/lib*/* "$root"/usr/local/lib*)
  dirs+=("$root"/usr/lib*/*/* "$root"/usr/lib*/* "$root"/usr/lib*)
  libclang_in "${dirs[@]}"
}

# Clang's builtin headers (stddef.h and friends): libclang cannot parse
# RocksDB's C header without them, and only libclang-dev brings them in
# (through libclang-common-N-dev); the runtime package libclang1-N does not.
have_clang_headers() {
  local header
  for header in "$root"/usr/lib/llvm-*/lib/clang/*/include/stddef.h "$root"/usr/lib/clang/*/include/stddef.h \
      "$root"/usr/local/lib/clang/*/include/stddef.h "$root"/usr/local/llvm*/lib/clang/*/include/stddef.h; do
    [ -f "$header" ] && return 0
  done
  return 1
}

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
have cc || missing+=(build-essential)
have c++ || missing+=(g++)
have make || missing+=(make)
have openssl || missing+=(openssl)
if ! have ip || ! have tc; then missing+=(iproute2); fi
have nft || missing+=(nftables)
if [ "$bench" = 1 ] && ! have etcd; then missing+=(etcd-server); fi
if [ "$browser" = 1 ] && ! have chromium; then missing+=(chromium); fi
if ! have_libclang_library || ! have_clang_headers; then
  missing+=(libclang-dev)
fi
# Debian keeps venv and ensurepip out of its python3 package.
if ! have python3; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi

if [ "$dry_run" = 1 ]; then
  for package in "${missing[@]}"; do echo "$package"; done
  exit 0
fi

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=()
  if [ "$EUID" -ne 0 ]; then sudo=(sudo); fi
  echo "installing: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! have cargo; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

# The Python SDK's virtualenv: made once, and filled again only when the
# pinned requirements change (a stamp holds the file's contents).
if [ -z "$root" ]; then
  script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  requirements="$script_dir/../client/python/requirements-dev.txt"
  venv="${LEXUM_VENV:-$HOME/.cache/lexum/venv}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "making the Python virtualenv $venv"
    python3 -m venv "$venv"
  fi
  if ! cmp -s "$requirements" "$venv/.lexum-requirements"; then
    echo "installing the Python SDK's tools into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/.lexum-requirements"
  fi
fi
