#!/usr/bin/env bash
# Credentials for a Lexum cluster, made with openssl in one step:
#
#   deploy/credentials.sh [--prefix PATH] [--group GROUP | --shared] DIR NAME...
#
# NAME... are the host names and IP addresses nodes are reached by (peers
# and clients); they all go into one node certificate. DIR receives:
#
#   ca.pem                the CA certificate (clients: lexumctl --ca / LEXUM_CA)
#   ca/ca.key             the CA key (keep it off the nodes; a subdirectory so
#                         `kubectl create secret --from-file=DIR` leaves it out)
#   node.pem node-key.pem the node certificate (server and client auth) and key
#   tokens.toml           lexumd's tokens file: a peer token and one token per
#                         role, named admin, writer, reader and worker
#   tokens.env            LEXUM_TOKEN_READ, _WRITE, _WORKER, _ADMIN and LEXUM_CA (DIR/ca.pem)
#                         for a shell (`. DIR/tokens.env`)
#   worker.env            LEXUM_TOKEN (the worker token) and LEXUM_CA, for a
#                         worker's EnvironmentFile or env_file
#   auth.toml             [auth] and [tls] sections pointing at the files
#
# PATH is where DIR will be seen by lexumd and workers (default: DIR itself),
# e.g. /etc/lexum/credentials inside a container. Files that exist are kept,
# so running it again changes nothing; delete DIR to start over. Secrets are
# private to their owner (0600); --group GROUP makes them readable by GROUP
# (e.g. lexum, for the systemd units), --shared by everyone (for a directory
# bind-mounted into containers, where the host directory is the boundary).
set -euo pipefail

prefix=""
group=""
shared=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --group) group="$2"; shift 2 ;;
    --shared) shared=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    --*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "usage: $0 [--prefix PATH] [--group GROUP | --shared] DIR NAME..." >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
dir="$1"
shift
umask 077
mkdir -p "$dir/ca"
dir="$(cd "$dir" && pwd)"
prefix="${prefix:-$dir}"

if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -keyout "$dir/ca/ca.key" -out "$dir/ca.pem" -subj /CN=lexum-ca 2>/dev/null
fi

if [ ! -f "$dir/node.pem" ]; then
  sans=""
  for name in "$@"; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then kind=IP; else kind=DNS; fi
    sans="${sans:+$sans,}$kind:$name"
  done
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$sans" >"$dir/ca/node.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/node-key.pem" -out "$dir/ca/node.csr" -subj /CN=lexum-node 2>/dev/null
  openssl x509 -req -in "$dir/ca/node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca/ca.key" -CAserial "$dir/ca/ca.srl" -CAcreateserial \
    -out "$dir/node.pem" -days 825 -extfile "$dir/ca/node.ext" 2>/dev/null
fi

secret() { openssl rand -hex 24; }

if [ ! -f "$dir/tokens.toml" ]; then
  read_token="$(secret)" write_token="$(secret)" worker_token="$(secret)" admin_token="$(secret)"
  {
    echo "# lexumd tokens ([auth] tokens_file). Each name is the principal of its writes."
    echo "peer_token = \"$(secret)\""
    for entry in "admin admin $admin_token" "writer write $write_token" "reader read $read_token" \
        "worker worker $worker_token"; do
      set -- $entry
      printf '\n[[tokens]]\nname = "%s"\nrole = "%s"\ntoken = "%s"\n' "$1" "$2" "$3"
    done
  } >"$dir/tokens.toml"
  {
    echo "# . this file, then e.g. LEXUM_TOKEN=\$LEXUM_TOKEN_ADMIN lexumctl submit goals.lxm"
    echo "export LEXUM_TOKEN_READ=$read_token"
    echo "export LEXUM_TOKEN_WRITE=$write_token"
    echo "export LEXUM_TOKEN_WORKER=$worker_token"
    echo "export LEXUM_TOKEN_ADMIN=$admin_token"
    echo "export LEXUM_CA=$dir/ca.pem"
  } >"$dir/tokens.env"
  printf 'LEXUM_TOKEN=%s\nLEXUM_CA=%s/ca.pem\n' "$worker_token" "$prefix" >"$dir/worker.env"
fi

if [ ! -f "$dir/auth.toml" ]; then
  cat >"$dir/auth.toml" <<EOF
[auth]
tokens_file = "$prefix/tokens.toml"

[tls]
cert = "$prefix/node.pem"
key = "$prefix/node-key.pem"
ca = "$prefix/ca.pem"
EOF
fi

served=("$dir/ca.pem" "$dir/node.pem" "$dir/node-key.pem" "$dir/tokens.toml" "$dir/tokens.env" "$dir/worker.env" "$dir/auth.toml")
if [ -n "$group" ]; then
  chgrp "$group" "$dir" "${served[@]}"
  chmod 0750 "$dir"
  chmod 0640 "${served[@]}"
elif [ "$shared" = 1 ]; then
  chmod 0755 "$dir"
  chmod 0644 "${served[@]}"
fi
echo "credentials in $dir (CA key in $dir/ca/)"
