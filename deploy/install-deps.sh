#!/usr/bin/env bash
# Installs everything schemagate needs to build, test and run, from Debian 12
# packages only. Idempotent and non-interactive: packages already present are
# left alone, so re-running it is cheap.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libpqxx-dev libpq-dev libpg-query-dev
  # The static schemagate-agent's libpq.a needs libpgcommon.a and libpgport.a
  # (agent/CMakeLists.txt); Debian ships them only here.
  postgresql-server-dev-15
  libgtest-dev libgmock-dev googletest
  libcli11-dev libssl-dev openssl
  # schemagated's HTTP endpoint (/metrics, /healthz)
  libcpp-httplib-dev
  # the fleet file of many databases (--databases FILE)
  libyaml-cpp-dev
  postgresql postgresql-client
  python3 python3-grpcio python3-protobuf python3-yaml
  curl procps iproute2
  pgbouncer
  # bench/: the Alembic peer, GNU time for peak RSS, Google Benchmark (dbmate comes
  # from npm into bench/.tools/ when the bench runs, never at build time)
  python3-alembic python3-psycopg2 time libbenchmark-dev
  # .ci/run's sanitizer and fuzzing build (docs/testing.md); ccache for both builds.
  clang-14 libclang-rt-14-dev ccache
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
