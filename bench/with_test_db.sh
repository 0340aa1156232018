#!/bin/sh
# Runs a bench program against the test server (the ctest `bench` smoke):
# SCHEMAGATE_BENCH_DATABASE_URL := SCHEMAGATE_TEST_DATABASE_URL; exit 77
# (ctest: skipped) when no test server is configured, except under CI.
if [ -z "$SCHEMAGATE_TEST_DATABASE_URL" ]; then
  [ -n "$CI" ] && { echo "SCHEMAGATE_TEST_DATABASE_URL unset" >&2; exit 1; }
  exit 77
fi
SCHEMAGATE_BENCH_DATABASE_URL="$SCHEMAGATE_TEST_DATABASE_URL" exec "$@"
