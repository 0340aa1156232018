#!/bin/sh
# Development certificates and tokens for compose.tls.yaml, into
# deploy/compose/dev-tls/ (git-ignored):
#
#   deploy/compose/make-dev-certs.sh
#   docker compose -f deploy/compose/compose.yaml -f deploy/compose/compose.tls.yaml up -d --build
#
#   ca.crt                          the CA every client trusts
#   coordinator.crt, .key           both coordinators: coordinator-1, coordinator-2,
#                                   localhost, 127.0.0.1 (serverAuth and clientAuth:
#                                   the health check presents it as a client)
#   agent.crt, .key                 the sample app's agents (mutual TLS)
#   operator.crt, .key              schemagatectl from the host
#   operator.token, agent.token
#
# For a laptop only. Compose mounts these files into the containers as they
# are, and the containers run as uid 10001, so the files are world-readable
# (the directory itself is not). Existing files are kept; delete dev-tls/ to
# start over.
set -eu
out=${SCHEMAGATE_DEV_TLS_DIR:-$(dirname "$0")/dev-tls}
curve="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
mkdir -p "$out"
chmod 0700 "$out"
cd "$out"

[ -s ca.crt ] || openssl req -x509 $curve -keyout ca.key -out ca.crt -days 365 \
    -subj /CN=schemagate-dev-ca 2>/dev/null

# issue NAME CN EXTENSIONS...
issue() {
  name=$1 cn=$2
  shift 2
  [ -s "$name.crt" ] && return 0
  printf '%s\n' "$@" > "$name.ext"
  openssl req $curve -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
      -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
issue coordinator coordinator \
  "subjectAltName=DNS:coordinator-1,DNS:coordinator-2,DNS:localhost,IP:127.0.0.1" \
  "extendedKeyUsage=serverAuth,clientAuth"
issue agent sample-app-agent "extendedKeyUsage=clientAuth"
issue operator operator "extendedKeyUsage=clientAuth"

[ -s operator.token ] || openssl rand -hex 32 > operator.token
[ -s agent.token ] || openssl rand -hex 32 > agent.token

chmod 0600 ca.key
chmod 0644 ca.crt coordinator.crt coordinator.key agent.crt agent.key operator.crt \
    operator.key operator.token agent.token
echo "made in $out"
