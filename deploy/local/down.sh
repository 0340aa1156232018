#!/usr/bin/env bash
# deploy/local/down.sh — stop what deploy/local/up.sh started.
#
# Stops, in reverse order of start: the sample app's agent (which forwards
# SIGTERM to the app), the two coordinators, then the private PostgreSQL
# under .local/pg/ (only if up.sh started it; a database given with
# SCHEMAGATE_DATABASE_URL is never touched). Waits for each to exit.
# Only processes recorded in .local/run/*.pid are signalled. Safe to run
# any number of times.
#
#   deploy/local/down.sh           stop everything, keep data and logs
#   deploy/local/down.sh --purge   also delete .local/ (database, logs, pid files)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

LOCAL="$REPO/.local"
RUN_DIR="$LOCAL/run"
PG_DATA="$LOCAL/pg/data"
PG_BIN=/usr/lib/postgresql/15/bin
STOP_TIMEOUT=20   # seconds to wait after SIGTERM before SIGKILL

purge=0
for arg in "$@"; do
  case "$arg" in
    --purge) purge=1 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "down.sh: unknown argument '$arg' (usage: down.sh [--purge])" >&2; exit 2 ;;
  esac
done

say()  { printf '==> %s\n' "$*"; }
warn() { printf 'down.sh: warning: %s\n' "$*" >&2; }

as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# True while PID is a live process. A process that has exited but not yet
# been reaped by its parent (a zombie: init reaps up.sh's orphans, sometimes
# lazily) counts as gone.
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "$state" != Z && -n "$state" ]]
}

# session_left SID: the live processes of session SID. up.sh starts every
# process in a session of its own (session id = its pid), so these are the
# process and whatever it started (e.g. the app under the agent). While any
# of them lives, the kernel does not hand that pid out again, so they are ours.
session_left() {
  local p
  for p in $(pgrep -s "$1" 2>/dev/null || true); do
    if alive "$p"; then echo "$p"; fi
  done
}

# stop NAME PROGRAM: stops the process in .local/run/NAME.pid if it is alive
# and really is PROGRAM (a stale pid file whose pid now belongs to something
# else is only removed). SIGTERM first, then waits up to STOP_TIMEOUT seconds;
# then SIGKILL. Finally ends anything its session left behind (an app whose
# agent was killed with SIGKILL, say).
stop() {
  local name="$1" program="$2" pidfile="$RUN_DIR/$1.pid" pid argv0 i left
  if [[ ! -f "$pidfile" ]]; then
    say "$name: not running (no pid file)"
    return 0
  fi
  pid="$(<"$pidfile")"
  if ! [[ "$pid" =~ ^[0-9]+$ ]]; then
    say "$name: not running (invalid pid file removed)"
    rm -f "$pidfile"
    return 0
  fi
  if alive "$pid"; then
    argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1 || true)"
    if [[ "$(basename -- "$argv0")" != "$program" ]]; then
      say "$name: pid $pid is not $program any more (stale pid file removed; nothing signalled)"
      rm -f "$pidfile"
      return 0
    fi
    say "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      warn "$name (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        alive "$pid" || break
        sleep 0.1
      done
    fi
  else
    say "$name: not running (stale pid file removed)"
  fi
  left="$(session_left "$pid")"
  if [[ -n "$left" ]]; then
    warn "$name: processes left behind in its session: ${left//$'\n'/ }; stopping them"
    # shellcheck disable=SC2086
    kill -TERM $left 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      [[ -n "$(session_left "$pid")" ]] || break
      sleep 0.1
    done
    left="$(session_left "$pid")"
    # shellcheck disable=SC2086
    [[ -z "$left" ]] || kill -KILL $left 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

if [[ ! -d "$LOCAL" ]]; then
  say "nothing to stop (.local/ does not exist)"
  exit 0
fi

# Reverse order of up.sh: app, coordinators, database.
stop sample-app schemagate-agent
stop coordinator-2 schemagated
stop coordinator-1 schemagated

marker="$RUN_DIR/postgres.started-by-up"
if [[ -f "$marker" ]]; then
  if [[ -f "$PG_DATA/postmaster.pid" ]] &&
      as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; then
    say "postgresql: stopping (pg_ctl stop -m fast on .local/pg/data)"
    if ! as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null; then
      warn "pg_ctl stop -m fast failed; trying -m immediate"
      as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 30 >/dev/null ||
        { echo "down.sh: error: could not stop PostgreSQL in $PG_DATA; see .local/logs/postgresql.log" >&2; exit 1; }
    fi
  else
    say "postgresql: not running"
  fi
  rm -f "$marker"
else
  say "postgresql: not started by up.sh (nothing to stop)"
fi

rm -f "$RUN_DIR/database-url"

if ((purge)); then
  # Never delete the files of a running server, even one up.sh did not mark.
  if [[ -f "$PG_DATA/postmaster.pid" ]] &&
      as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; then
    say "postgresql: still running on .local/pg/data; stopping it before the purge"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null ||
      { echo "down.sh: error: could not stop PostgreSQL in $PG_DATA; not purging" >&2; exit 1; }
  fi
  say "purging .local/ (database, logs, pid files)"
  rm -rf "$LOCAL"
fi
say "done"
