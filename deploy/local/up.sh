#!/usr/bin/env bash
# deploy/local/up.sh — bring up the schemagate local stack on this machine.
#
#   1. installs the Debian 12 packages (deploy/install-deps.sh) and builds;
#   2. starts a private PostgreSQL 15 under .local/pg/ (the "embedded default"),
#      unless SCHEMAGATE_DATABASE_URL points at a database of your own;
#   3. starts two coordinators (schemagated) that share that database;
#   4. starts the sample app behind schemagate-agent, which waits until the
#      migrations in migrations/ are applied before it starts the app;
#   5. waits until the app answers and prints the rollout status.
#
# Safe to re-run: whatever is already running is left alone. Stop everything
# with deploy/local/down.sh (add --purge to delete .local/ as well).
#
# Settings (environment):
#   SCHEMAGATE_DATABASE_URL    use this database; no private PostgreSQL is started
#   SCHEMAGATE_LOCAL_PG_PORT   port of the private PostgreSQL       (default 55432)
#   SCHEMAGATE_LOCAL_PORT_1    port of the first coordinator        (default 50051)
#   SCHEMAGATE_LOCAL_PORT_2    port of the second coordinator       (default 50052)
#   SCHEMAGATE_LOCAL_APP_PORT  port of the sample app               (default 8080)
#   SCHEMAGATE_BUILD_DIR       CMake build directory                (default build)
#   SCHEMAGATE_BUILD_JOBS      parallel build jobs                  (default nproc)
set -euo pipefail

# --- Where things are --------------------------------------------------------
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

BUILD_DIR="${SCHEMAGATE_BUILD_DIR:-build}"
[[ "$BUILD_DIR" == /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"
BUILD_JOBS="${SCHEMAGATE_BUILD_JOBS:-$(nproc)}"

PG_PORT="${SCHEMAGATE_LOCAL_PG_PORT:-55432}"
COORD_PORTS=("${SCHEMAGATE_LOCAL_PORT_1:-50051}" "${SCHEMAGATE_LOCAL_PORT_2:-50052}")
APP_PORT="${SCHEMAGATE_LOCAL_APP_PORT:-8080}"
DB_NAME=schemagate_demo
PG_BIN=/usr/lib/postgresql/15/bin

LOCAL="$REPO/.local"
RUN_DIR="$LOCAL/run"     # pid files and state markers
LOG_DIR="$LOCAL/logs"    # one log per process
PG_DIR="$LOCAL/pg"       # the private PostgreSQL: data/ and socket/
PG_DATA="$PG_DIR/data"
PG_SOCKET="$PG_DIR/socket"
PG_LOG="$LOG_DIR/postgresql.log"

COORDINATORS="127.0.0.1:${COORD_PORTS[0]},127.0.0.1:${COORD_PORTS[1]}"

# --- Helpers -----------------------------------------------------------------
say()  { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'up.sh: warning: %s\n' "$*" >&2; }
# Once something may have been started, errors also say how to stop it.
STOP_HINT=""
die() {
  printf '\nup.sh: error: %s\n' "$*" >&2
  [[ -z "$STOP_HINT" ]] || printf '%s\n' "$STOP_HINT" >&2
  exit 1
}

# Prints the last lines of a log file, indented, to help explain a failure.
show_log() {
  local file="$1" lines="${2:-25}"
  if [[ -s "$file" ]]; then
    printf '\n--- last %s lines of %s ---\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" | sed 's/^/    /' >&2
    printf -- '--- end of %s ---\n' "$file" >&2
  fi
}

# Hides the password of a postgres:// URL before it is printed.
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# True if something listens on 127.0.0.1:PORT (or any address) already.
port_in_use() { [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]; }

# Who holds a port, for error messages (process names need root).
port_owner() {
  ss -Htlnp "sport = :$1" 2>/dev/null | head -n1 |
    sed -nE 's/.*users:\(\("([^"]+)",pid=([0-9]+).*/(held by \1, pid \2)/p' || true
}

# True while PID is a live process (an exited, not yet reaped one is not).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# running NAME PROGRAM: true if .local/run/NAME.pid holds the pid of a live
# process whose program (argv[0]) is PROGRAM, so a stale pid file whose pid
# was reused by something else is never mistaken for ours.
running() {
  local pidfile="$RUN_DIR/$1.pid" pid argv0
  [[ -f "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1)" || return 1
  [[ "$(basename -- "$argv0")" == "$2" ]]
}

pid_of() { cat "$RUN_DIR/$1.pid"; }

# Warns when a process still runs a binary that has been rebuilt since.
check_stale_binary() {
  local exe
  exe="$(readlink "/proc/$2/exe" 2>/dev/null || true)"
  if [[ "$exe" == *" (deleted)" ]]; then
    warn "$1 (pid $2) runs an older build; run deploy/local/down.sh && deploy/local/up.sh to restart it"
  fi
}

# start_bg NAME LOGFILE CMD ARGS...: starts CMD in the background in its own
# session (so Ctrl-C or closing this terminal does not stop it), stdin from
# /dev/null, stdout+stderr to LOGFILE (the previous log is kept as .prev).
# The pid file is written by the process itself just before it execs CMD,
# so it always holds the pid of CMD.
start_bg() {
  local name="$1" log="$2"
  shift 2
  if [[ -f "$log" ]]; then mv -f "$log" "$log.prev"; fi
  rm -f "$RUN_DIR/$name.pid"
  # shellcheck disable=SC2016  # expanded by the inner bash, on purpose
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN_DIR/$name.pid" "$@" \
    </dev/null >"$log" 2>&1 &
  # Wait (briefly) for the pid file so callers can use it at once.
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$RUN_DIR/$name.pid" ]] && return 0
    sleep 0.1
  done
  die "$name did not start (no pid file after 5s); see $log"
}

# Gives files to the postgres user when we are root (see as_pg).
own_pg() {
  if ((EUID == 0)); then chown postgres:postgres "$@"; fi
}

# Runs a PostgreSQL server binary as the right user: PostgreSQL refuses to
# run as root, so as root we use the postgres account.
as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# --- 1. Dependencies and build -----------------------------------------------
say "Installing dependencies (deploy/install-deps.sh)"
if ((EUID != 0)) && ! command -v sudo >/dev/null; then
  warn "not root and no sudo: install-deps.sh can only check, not install, packages"
fi
bash "$REPO/deploy/install-deps.sh" ||
  die "installing dependencies failed (see above). Run 'sudo deploy/install-deps.sh' to retry."

say "Building in $BUILD_DIR (jobs: $BUILD_JOBS)"
if ! cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD_DIR.configure.log" 2>&1; then
  show_log "$BUILD_DIR.configure.log" 40
  die "cmake configure failed; full output in $BUILD_DIR.configure.log"
fi
rm -f "$BUILD_DIR.configure.log"
cmake --build "$BUILD_DIR" -j "$BUILD_JOBS" ||
  die "the build failed (see the compiler output above)"

SCHEMAGATED="$BUILD_DIR/schemagated"
AGENT="$BUILD_DIR/schemagate-agent"
CTL="$BUILD_DIR/schemagatectl"
for bin in "$SCHEMAGATED" "$AGENT"; do
  [[ -x "$bin" ]] || die "the build finished but $bin is missing"
done

mkdir -p "$RUN_DIR" "$LOG_DIR"
STOP_HINT="Whatever did start keeps running; deploy/local/down.sh stops it (logs: .local/logs/)."

# --- 2. The database ---------------------------------------------------------
if [[ -n "${SCHEMAGATE_DATABASE_URL:-}" ]]; then
  # Your own database: check that it answers, start nothing.
  DATABASE_URL="$SCHEMAGATE_DATABASE_URL"
  say "Using SCHEMAGATE_DATABASE_URL ($(redact "$DATABASE_URL")); no private PostgreSQL"
  if ! err="$(PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -XAtqc 'select 1' 2>&1 </dev/null)"; then
    die "cannot connect to SCHEMAGATE_DATABASE_URL ($(redact "$DATABASE_URL")):
    $err
  Check the URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE) and that the database exists,
  or unset SCHEMAGATE_DATABASE_URL to use the private PostgreSQL under .local/pg/."
  fi
else
  say "Private PostgreSQL 15 under .local/pg/ (port $PG_PORT)"
  [[ -x "$PG_BIN/initdb" ]] ||
    die "$PG_BIN/initdb not found; is the postgresql (15) package installed? Run deploy/install-deps.sh"

  mkdir -p "$PG_DIR"
  if ((EUID == 0)); then
    # The server runs as the postgres user, who must be able to reach .local/pg.
    chmod 755 "$LOCAL" "$PG_DIR"
    if ! runuser -u postgres -- test -x "$PG_DIR"; then
      die "the postgres user cannot reach $PG_DIR: a parent directory is closed to other users
  (for example /root has mode 700). Either clone the repository somewhere else
  (e.g. /opt or /srv), or allow traversal with 'chmod o+x' on the parent directories,
  or use a database of your own with SCHEMAGATE_DATABASE_URL=postgres://..."
    fi
  fi

  # Initialise once; an existing data directory is reused as it is.
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    info "initdb (trust authentication: for local use only)"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    chmod 700 "$PG_DATA"
    own_pg "$PG_DATA"
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C \
        >"$LOG_DIR/initdb.log" 2>&1; then
      show_log "$LOG_DIR/initdb.log"
      die "initdb failed; see $LOG_DIR/initdb.log"
    fi
    # Local settings live in their own file, rewritten on every start.
    echo "include_if_exists = 'schemagate-local.conf'" >>"$PG_DATA/postgresql.conf"
  elif [[ "$(<"$PG_DATA/PG_VERSION")" != 15 ]]; then
    die "$PG_DATA holds a PostgreSQL $(<"$PG_DATA/PG_VERSION") cluster, not 15; remove it with deploy/local/down.sh --purge"
  fi

  if as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; then
    # Already running: use the port it really listens on (line 4 of postmaster.pid).
    running_port="$(sed -n 4p "$PG_DATA/postmaster.pid")"
    info "already running (pid $(head -n1 "$PG_DATA/postmaster.pid"), port $running_port); reused"
    if [[ "$running_port" != "$PG_PORT" ]]; then
      warn "PostgreSQL runs on port $running_port, not SCHEMAGATE_LOCAL_PG_PORT=$PG_PORT; using $running_port"
      PG_PORT="$running_port"
    fi
  else
    if port_in_use "$PG_PORT"; then
      die "port $PG_PORT is already in use $(port_owner "$PG_PORT")
  Choose another port for the private PostgreSQL, e.g. SCHEMAGATE_LOCAL_PG_PORT=55433 $0"
    fi
    # Unix socket inside .local unless its path is too long for a socket
    # (108 bytes); then TCP only (everything here connects over TCP anyway).
    socket_dirs=""
    if (("${#PG_SOCKET}" + 20 < 108)); then
      mkdir -p "$PG_SOCKET"
      own_pg "$PG_SOCKET"
      socket_dirs="$PG_SOCKET"
    fi
    cat >"$PG_DATA/schemagate-local.conf" <<EOF
# Written by deploy/local/up.sh on every start; edit up.sh, not this file.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$socket_dirs'
EOF
    own_pg "$PG_DATA/schemagate-local.conf"
    # pg_ctl opens the log file as the server's user.
    touch "$PG_LOG"
    own_pg "$PG_LOG"
    info "starting (log: $PG_LOG)"
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 >/dev/null 2>"$LOG_DIR/pg_ctl.log"; then
      show_log "$LOG_DIR/pg_ctl.log"
      show_log "$PG_LOG"
      die "PostgreSQL did not start; see $PG_LOG"
    fi
    rm -f "$LOG_DIR/pg_ctl.log"
  fi
  # Tells down.sh that this PostgreSQL is ours to stop.
  echo "$PG_DATA" >"$RUN_DIR/postgres.started-by-up"

  DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB_NAME"
  admin_url="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  exists="$(psql "$admin_url" -XAtqc "select 1 from pg_database where datname = '$DB_NAME'" </dev/null)" ||
    die "cannot connect to the private PostgreSQL at 127.0.0.1:$PG_PORT; see $PG_LOG"
  if [[ "$exists" != 1 ]]; then
    info "creating database $DB_NAME"
    psql "$admin_url" -XAtqc "create database $DB_NAME" </dev/null >/dev/null
  fi
  info "database: $DATABASE_URL"
fi

# Remember which database the stack uses; warn when a re-run asks for another
# one while processes started against the old one still run.
url_file="$RUN_DIR/database-url"
if [[ -f "$url_file" && "$(<"$url_file")" != "$DATABASE_URL" ]] &&
    { running coordinator-1 schemagated || running coordinator-2 schemagated ||
      running sample-app schemagate-agent; }; then
  warn "the running stack uses $(redact "$(<"$url_file")"), not $(redact "$DATABASE_URL");
  processes already running are left as they are. Run deploy/local/down.sh first to switch."
else
  (umask 077 && echo "$DATABASE_URL" >"$url_file")
fi

# --- 3. Two coordinators ------------------------------------------------------
# wait_serving NAME LOG: waits until a coordinator logs "serving on" or exits.
wait_serving() {
  local name="$1" log="$2" pid i
  pid="$(pid_of "$name")"
  for ((i = 0; i < 300; i++)); do
    grep -q 'serving on' "$log" 2>/dev/null && return 0
    if ! alive "$pid"; then
      show_log "$log"
      die "$name exited during start-up; see $log"
    fi
    sleep 0.1
  done
  show_log "$log"
  die "$name did not report 'serving on' within 30s; see $log"
}

for i in 1 2; do
  name="coordinator-$i"
  port="${COORD_PORTS[$((i - 1))]}"
  log="$LOG_DIR/$name.log"
  if running "$name" schemagated; then
    say "$name already running (pid $(pid_of "$name"), 127.0.0.1:$port); left alone"
    check_stale_binary "$name" "$(pid_of "$name")"
    continue
  fi
  say "Starting $name on 127.0.0.1:$port (id local-$i, log $log)"
  if port_in_use "$port"; then
    die "port $port is already in use $(port_owner "$port")
  Choose other coordinator ports, e.g. SCHEMAGATE_LOCAL_PORT_$i=$((port + 100)) $0"
  fi
  start_bg "$name" "$log" "$SCHEMAGATED" \
    --database-url "$DATABASE_URL" \
    --migrations-dir migrations \
    --listen "127.0.0.1:$port" \
    --id "local-$i"
  wait_serving "$name" "$log"
  info "pid $(pid_of "$name")"
done

# --- 4. The sample app, behind the agent ------------------------------------
app_log="$LOG_DIR/sample-app.log"
if running sample-app schemagate-agent; then
  say "sample-app (agent) already running (pid $(pid_of sample-app)); left alone"
  check_stale_binary sample-app "$(pid_of sample-app)"
else
  say "Starting the sample app through schemagate-agent (port $APP_PORT, log $app_log)"
  if port_in_use "$APP_PORT"; then
    die "port $APP_PORT is already in use $(port_owner "$APP_PORT")
  Choose another port for the sample app, e.g. SCHEMAGATE_LOCAL_APP_PORT=8081 $0"
  fi
  # The agent waits until the schema fits the app's migrations, then starts
  # the app as its child, forwards SIGTERM to it and exits with its code.
  start_bg sample-app "$app_log" env DATABASE_URL="$DATABASE_URL" "$AGENT" wait \
    --coordinator "$COORDINATORS" \
    --migrations-dir migrations \
    --app sample-app --app-version 0.1.0 \
    --instance-id local-sample-app \
    -- deploy/local/sample-app.py --port "$APP_PORT"
  info "agent pid $(pid_of sample-app)"
fi

# --- 5. Wait until the app answers -------------------------------------------
say "Waiting for the sample app on http://127.0.0.1:$APP_PORT/ (up to 120s)"
agent_pid="$(pid_of sample-app)"
body="$(mktemp)"
trap 'rm -f "$body"' EXIT
code=000
for ((i = 0; i < 240; i++)); do
  code="$(curl -s -o "$body" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$APP_PORT/" 2>/dev/null || true)"
  [[ "$code" == 200 ]] && break
  if ! alive "$agent_pid"; then
    show_log "$app_log" 30
    show_log "$LOG_DIR/coordinator-1.log" 15
    die "schemagate-agent exited before the app answered; see $app_log
  (agent exit codes: 3 timed out, 4 incompatible/mismatch, 5 failed migration, 7 no coordinator reachable)
  Coordinator logs: $LOG_DIR/coordinator-1.log, $LOG_DIR/coordinator-2.log"
  fi
  sleep 0.5
done
if [[ "$code" != 200 ]]; then
  show_log "$app_log" 30
  show_log "$LOG_DIR/coordinator-1.log" 15
  [[ -s "$body" ]] && { echo "    last answer (HTTP $code):" >&2; sed 's/^/    /' "$body" >&2; }
  die "the sample app did not answer with HTTP 200 within 120s (last status: $code).
  The agent may still be waiting for migrations; see $app_log and the coordinator logs
  $LOG_DIR/coordinator-1.log, $LOG_DIR/coordinator-2.log"
fi
info "answered: $(tr -d '\n' <"$body")"

# --- Status and what next ----------------------------------------------------
echo
if [[ -x "$CTL" ]]; then
  say "schemagatectl status --coordinator 127.0.0.1:${COORD_PORTS[0]}"
  "$CTL" status --coordinator "127.0.0.1:${COORD_PORTS[0]}" ||
    warn "schemagatectl status exited with $? (not every migration applied?)"
else
  say "schemagate-agent check --coordinator 127.0.0.1:${COORD_PORTS[0]} (schemagatectl is not built)"
  "$AGENT" check --coordinator "127.0.0.1:${COORD_PORTS[0]}" --migrations-dir migrations ||
    warn "schemagate-agent check exited with $?"
fi

rel_build="${BUILD_DIR#"$REPO"/}"
cat <<EOF

The local stack is up.
  sample app        http://127.0.0.1:$APP_PORT/   (liveness: /healthz)
  coordinators      127.0.0.1:${COORD_PORTS[0]} (local-1), 127.0.0.1:${COORD_PORTS[1]} (local-2)
  database          $(redact "$DATABASE_URL")
  logs              .local/logs/  (coordinator-1.log, coordinator-2.log, sample-app.log$([[ -z "${SCHEMAGATE_DATABASE_URL:-}" ]] && echo ", postgresql.log"))

What next:
  curl http://127.0.0.1:$APP_PORT/
  $rel_build/schemagate-agent check --coordinator $COORDINATORS
EOF
if [[ -x "$CTL" ]]; then
  cat <<EOF
  $rel_build/schemagatectl status --coordinator 127.0.0.1:${COORD_PORTS[0]}
  $rel_build/schemagatectl history --coordinator 127.0.0.1:${COORD_PORTS[1]}
  $rel_build/schemagatectl instances --coordinator 127.0.0.1:${COORD_PORTS[0]}
EOF
fi
cat <<EOF
  Add a migration to migrations/, then restart the app: deploy/local/down.sh && deploy/local/up.sh
  Stop everything:   deploy/local/down.sh          (--purge also deletes .local/)
EOF
