#!/bin/sh
# Makes the files the secretGenerator of this overlay turns into Secrets:
# a CA, the coordinators' certificate, the agents' client certificate and
# the two tokens, under secrets/ next to this script (git-ignored).
#
#   deploy/k8s/overlays/tls/make-secrets.sh [NAMESPACE]     # default: billing
#
# For a test cluster or a small installation; in production use your PKI or
# cert-manager (docs/deploy.md). Files that exist are kept, so running it
# again does not rotate anything; delete secrets/ to start over. The same
# openssl commands are explained in docs/security.md.
set -eu
namespace=${1:-billing}
out=${SCHEMAGATE_SECRETS_DIR:-$(dirname "$0")/secrets}
curve="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
umask 077
mkdir -p "$out/tokens" "$out/server" "$out/agent"
cd "$out"

[ -s ca.crt ] || openssl req -x509 $curve -keyout ca.key -out ca.crt -days 365 \
    -subj /CN=schemagate-ca 2>/dev/null

# The coordinators: every name agents and operators dial (the Service, short
# and full), and localhost for schemagatectl and the probes inside the pod.
# clientAuth too: the probes present this certificate to the coordinator.
if [ ! -s server/tls.crt ]; then
  printf '%s\n' \
    "subjectAltName=DNS:schemagate,DNS:schemagate.$namespace,DNS:schemagate.$namespace.svc,DNS:schemagate.$namespace.svc.cluster.local,DNS:localhost,IP:127.0.0.1" \
    "extendedKeyUsage=serverAuth,clientAuth" > server/ext
  openssl req $curve -keyout server/tls.key -out server/csr -subj /CN=schemagate 2>/dev/null
  openssl x509 -req -in server/csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
      -extfile server/ext -out server/tls.crt 2>/dev/null
  rm -f server/csr server/ext
fi

# The agents' client certificate (mutual TLS).
if [ ! -s agent/tls.crt ]; then
  echo "extendedKeyUsage=clientAuth" > agent/ext
  openssl req $curve -keyout agent/tls.key -out agent/csr -subj /CN=schemagate-agent 2>/dev/null
  openssl x509 -req -in agent/csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
      -extfile agent/ext -out agent/tls.crt 2>/dev/null
  rm -f agent/csr agent/ext
fi

[ -s tokens/operator.token ] || openssl rand -hex 32 > tokens/operator.token
[ -s tokens/agent.token ] || openssl rand -hex 32 > tokens/agent.token

echo "made in $out (namespace $namespace): ca.crt, server/, agent/, tokens/"
echo "ca.key stays here, outside the Secrets: keep it safe or delete it."
