#!/usr/bin/env bash
# bench/run.sh — schemagate's benchmarks, side by side with the physical floor
# (one psql session) and with what users run today (dbmate, Alembic), in one
# run on this machine. Writes a table of figures with machine, date and commit.
#
#   bench/run.sh            full run; writes docs/benchmarks.md
#   bench/run.sh --quick    smaller sizes, under 5 minutes; writes bench/results/benchmarks-quick.md
#   bench/run.sh --smoke    tiny sizes (the ctest `bench` smoke); peers only if installed
#
# Options: --no-build (use the binaries in the build directory as they are),
# --no-peers (skip dbmate and Alembic), --output FILE.
# Environment: SCHEMAGATE_BENCH_DATABASE_URL (an admin URL; default: a private
# PostgreSQL 15 started in a temporary directory and removed on exit),
# SCHEMAGATE_BENCH_BUILD_DIR (default build/), SCHEMAGATE_BENCH_KEEP_LOGS=1
# (keep every log, also after a successful run).
#
# Peers: dbmate comes from npm (package `dbmate`, which ships its binary) into
# bench/.tools/ (git-ignored) on first use; Alembic is Debian's python3-alembic
# (deploy/install-deps.sh). Every tool runs against the same server, each on a
# fresh database.
set -euo pipefail
exec </dev/null

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=full
BUILD=1
PEERS=1
OUTPUT=""
while (($#)); do
  case "$1" in
    --quick) MODE=quick ;;
    --smoke) MODE=smoke ;;
    --no-build) BUILD=0 ;;
    --no-peers) PEERS=0 ;;
    --output) OUTPUT="$2"; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

BUILD_DIR="${SCHEMAGATE_BENCH_BUILD_DIR:-$REPO/build}"
PG_BIN=/usr/lib/postgresql/15/bin
DEBIAN_PYTHON=/usr/bin/python3

case "$MODE" in
  full)
    FANOUT_SIZES=100,1000,10000; FANOUT_BIG_SET="10000 1000"; CHECK_SECONDS=4; CHECK_ROUNDS=3
    APPLY_SIZES="200 1000 10000"; APPLY_REPEATS=5; STORM_SIZES="10 50 200"; AGENT_REPEATS=30
    [[ -n "$OUTPUT" ]] || OUTPUT="$REPO/docs/benchmarks.md" ;;
  quick)
    FANOUT_SIZES=100,1000,10000; FANOUT_BIG_SET="10000 1000"; CHECK_SECONDS=2; CHECK_ROUNDS=1
    APPLY_SIZES="200"; APPLY_REPEATS=1; STORM_SIZES="10 50 200"; AGENT_REPEATS=10
    [[ -n "$OUTPUT" ]] || OUTPUT="$REPO/bench/results/benchmarks-quick.md" ;;
  smoke)
    FANOUT_SIZES=20; FANOUT_BIG_SET="20 5"; CHECK_SECONDS=0.3; CHECK_ROUNDS=1
    APPLY_SIZES="5"; APPLY_REPEATS=1; STORM_SIZES="3"; AGENT_REPEATS=2
    [[ -n "$OUTPUT" ]] || OUTPUT="" ;;
esac
STORM_MIGRATIONS=30
[[ "$MODE" == smoke ]] && STORM_MIGRATIONS=3

WORK="$(mktemp -d /tmp/schemagate-bench.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
PG_TMP=""
BG_PIDS=()

as_pg() {
  if ((EUID == 0)); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

cleanup() {
  local status=$?
  set +e
  local pid
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  if [[ -n "$PG_TMP" && -f "$PG_TMP/data/postmaster.pid" ]]; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_TMP/data" -m immediate -w -t 30 >/dev/null 2>&1
  fi
  [[ -n "$PG_TMP" ]] && rm -rf "$PG_TMP"
  if ((status == 0)) && [[ -z "${SCHEMAGATE_BENCH_KEEP_LOGS:-}" ]]; then
    rm -rf "$WORK"
  else
    echo "run.sh: logs kept in $WORK" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN {printf "%.3f", (b - a) / 1e9}'; }
result() { echo "RESULT $1" >>"$RESULTS"; }
free_port() { "$DEBIAN_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }

# --- Build -----------------------------------------------------------------------
if ((BUILD)); then
  log "building (cmake --build $BUILD_DIR)"
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
    cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >"$WORK/cmake.log"
  fi
  cmake --build "$BUILD_DIR" -j 2 --target schemagated schemagate-agent schemagatectl schemagate_bench \
    >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; exit 1; }
  # Only there with SCHEMAGATE_STATIC_AGENT=ON: the same agent linked dynamically.
  cmake --build "$BUILD_DIR" -j 2 --target schemagate-agent-dynamic >>"$WORK/build.log" 2>&1 || true
  # Only there when libbenchmark-dev is installed.
  cmake --build "$BUILD_DIR" -j 2 --target schemagate_readiness_bench >>"$WORK/build.log" 2>&1 || true
fi
SGD="$BUILD_DIR/schemagated"
AGENT="$BUILD_DIR/schemagate-agent"
AGENT_DYNAMIC="$BUILD_DIR/schemagate-agent-dynamic"
CTL="$BUILD_DIR/schemagatectl"
BENCH="$BUILD_DIR/bench/schemagate_bench"
for b in "$SGD" "$AGENT" "$CTL" "$BENCH"; do
  [[ -x "$b" ]] || { echo "run.sh: $b not built (drop --no-build?)" >&2; exit 1; }
done

# --- PostgreSQL --------------------------------------------------------------------
if [[ -n "${SCHEMAGATE_BENCH_DATABASE_URL:-}" ]]; then
  ADMIN_URL="$SCHEMAGATE_BENCH_DATABASE_URL"
  PG_NOTE="given by SCHEMAGATE_BENCH_DATABASE_URL"
else
  log "starting a private PostgreSQL 15"
  PG_TMP="$(mktemp -d /tmp/schemagate-bench-pg.XXXXXX)"
  ((EUID == 0)) && chown postgres:postgres "$PG_TMP"
  as_pg "$PG_BIN/initdb" -D "$PG_TMP/data" -U postgres -A trust -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; exit 1; }
  PG_PORT=""
  for ((port = 55600; port <= 55699; port++)); do
    [[ -z "$(ss -Htln "sport = :$port" 2>/dev/null)" ]] || continue
    if as_pg "$PG_BIN/pg_ctl" start -D "$PG_TMP/data" -l "$PG_TMP/postgresql.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $PG_TMP -c max_connections=600 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        >/dev/null; then
      PG_PORT=$port
      break
    fi
  done
  [[ -n "$PG_PORT" ]] || { tail -n 20 "$PG_TMP/postgresql.log" >&2; echo "run.sh: PostgreSQL did not start" >&2; exit 1; }
  ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  PG_NOTE="private cluster (fsync=off, synchronous_commit=off, full_page_writes=off, max_connections=600)"
fi
PG_VERSION="$(psql "$ADMIN_URL" -XAtqc 'show server_version')"
MAX_CONN="$(psql "$ADMIN_URL" -XAtqc 'show max_connections')"
export SCHEMAGATE_BENCH_DATABASE_URL="$ADMIN_URL"

DB_SEQ=0
new_db() {   # new_db PREFIX: creates a database, prints its URL
  DB_SEQ=$((DB_SEQ + 1))
  local name="sgbench_$1_$$_$DB_SEQ"
  psql "$ADMIN_URL" -XAtqc "CREATE DATABASE $name" >/dev/null
  echo "${ADMIN_URL%/*}/$name"
}
drop_db() { psql "$ADMIN_URL" -XAtqc "DROP DATABASE IF EXISTS ${1##*/} WITH (FORCE)" >/dev/null; }

# --- Peers ---------------------------------------------------------------------------
DBMATE=""
ALEMBIC_OK=0
if ((PEERS)); then
  DBMATE_PKG="$REPO/bench/.tools/node_modules/@dbmate/linux-x64/bin/dbmate"
  if [[ ! -x "$DBMATE_PKG" && "$MODE" != smoke ]] && command -v npm >/dev/null; then
    log "installing dbmate from npm into bench/.tools/"
    mkdir -p "$REPO/bench/.tools"
    npm install --silent --no-audit --no-fund --prefix "$REPO/bench/.tools" dbmate@2 >"$WORK/npm.log" 2>&1 ||
      log "npm install dbmate failed (see $WORK/npm.log); dbmate skipped"
  fi
  # The native binary itself, not the node wrapper, so dbmate is not charged for node's start.
  [[ -x "$DBMATE_PKG" ]] && DBMATE="$DBMATE_PKG"
  "$DEBIAN_PYTHON" -c 'import alembic, psycopg2' 2>/dev/null && ALEMBIC_OK=1
  [[ -n "$DBMATE" ]] || log "dbmate not available: skipped"
  ((ALEMBIC_OK)) || log "python3-alembic or python3-psycopg2 missing: Alembic skipped"
fi
DBMATE_VERSION="$([[ -n "$DBMATE" ]] && "$DBMATE" --version 2>/dev/null | awk '{print $3}' || echo -)"
ALEMBIC_VERSION="$( ((ALEMBIC_OK)) && "$DEBIAN_PYTHON" -c 'import alembic; print(alembic.__version__)' || echo -)"

# --- Migration sets: the same SQL for every tool ---------------------------------------
# write_sets DIR COUNT: DIR/sg (schemagate), DIR/dbmate, DIR/alembic, DIR/floor.sql
write_sets() {
  local dir="$1" count="$2" i v sql
  mkdir -p "$dir/sg" "$dir/dbmate" "$dir/alembic/versions"
  : >"$dir/floor.sql"
  local prev=None
  for ((i = 1; i <= count; i++)); do
    v=$(printf '%05d' "$i")
    sql="CREATE TABLE t$v (id bigint PRIMARY KEY, note text);"
    echo "$sql" >"$dir/sg/${v}_t$v.up.sql"
    printf -- '-- migrate:up\n%s\n\n-- migrate:down\n' "$sql" >"$dir/dbmate/${v}_t$v.sql"
    printf 'BEGIN;\n\\i %s\nCOMMIT;\n' "$dir/sg/${v}_t$v.up.sql" >>"$dir/floor.sql"
    cat >"$dir/alembic/versions/r$v.py" <<EOF
from alembic import op
revision = "r$v"
down_revision = $( [[ $prev == None ]] && echo None || echo "\"$prev\"" )
branch_labels = None
depends_on = None
def upgrade():
    op.execute("$sql")
def downgrade():
    pass
EOF
    prev="r$v"
  done
  cat >"$dir/alembic/alembic.ini" <<EOF
[alembic]
script_location = $dir/alembic
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)s %(message)s
EOF
  cat >"$dir/alembic/env.py" <<'EOF'
import os
from alembic import context
from sqlalchemy import create_engine
engine = create_engine(os.environ["ALEMBIC_URL"])
with engine.connect() as connection:
    # One transaction per migration, as the other tools do.
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
EOF
}

sqlalchemy_url() { echo "postgresql+psycopg2://${1#postgres://}"; }
dbmate_url() { echo "$1?sslmode=disable"; }
count_tables() { psql "$1" -XAtqc "select count(*) from pg_tables where schemaname='public' and tablename ~ '^t[0-9]+$'"; }

# Starts schemagated in the background: start_coordinator URL DIR MODE LOG; sets SG_PID, SG_ADDR.
start_coordinator() {
  SG_ADDR="127.0.0.1:$(free_port)"
  "$SGD" --database-url "$1" --migrations-dir "$2" --listen "$SG_ADDR" --apply "$3" >"$4" 2>&1 &
  SG_PID=$!
  BG_PIDS+=("$SG_PID")
}
wait_coordinator() {   # until it serves (health SERVING: it has seen its database)
  "$BENCH" wait-serving --address "$SG_ADDR" --timeout 30 ||
    { echo "run.sh: schemagated at $SG_ADDR did not serve" >&2; return 1; }
}
stop_coordinator() { kill "$SG_PID" 2>/dev/null || true; wait "$SG_PID" 2>/dev/null || true; }

# --- fan-out and check (schemagate_bench) ------------------------------------------------
log "fan-out: N = $FANOUT_SIZES Wait streams"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$BENCH" fanout --streams "$FANOUT_SIZES" --log-dir "$WORK" | tee -a "$RESULTS" | grep -v '^RESULT' >&2

log "fan-out floor: the same streams on a bare gRPC server (the echo server), released at once"
"$BENCH" fanout --bare --streams "$FANOUT_SIZES" --log-dir "$WORK" | tee -a "$RESULTS" | grep -v '^RESULT' >&2

read -r big_n big_set <<<"$FANOUT_BIG_SET"
log "fan-out: N = $big_n Wait streams over a set of $big_set applied migrations"
"$BENCH" fanout --streams "$big_n" --set-size "$big_set" --log-dir "$WORK" | tee -a "$RESULTS" | grep -v '^RESULT' >&2

GBENCH_JSON=""
if [[ -x "$BUILD_DIR/bench/schemagate_readiness_bench" ]]; then
  log "readiness: the per-stream answer (Google Benchmark)"
  GBENCH_JSON="$WORK/readiness.json"
  min_time=0.5; [[ "$MODE" == smoke ]] && min_time=0.01
  "$BUILD_DIR/bench/schemagate_readiness_bench" --benchmark_min_time="$min_time" \
    --benchmark_out="$GBENCH_JSON" --benchmark_out_format=json >&2
fi

log "check: closed-loop Check beside a bare echo"
"$BENCH" check --seconds "$CHECK_SECONDS" --rounds "$CHECK_ROUNDS" --log-dir "$WORK" \
  | tee -a "$RESULTS" | grep -v '^RESULT' >&2

# --- apply: schemagate vs the floor vs dbmate vs Alembic ------------------------------------
time_floor() {   # time_floor SETDIR -> seconds
  local url t0 s
  url="$(new_db floor)"
  t0=$(now_ns)
  psql "$url" -X -q -v ON_ERROR_STOP=1 -f "$1/floor.sql" >/dev/null
  s=$(secs_since "$t0")
  [[ "$(count_tables "$url")" == "$2" ]] || { echo "floor: wrong table count" >&2; exit 1; }
  drop_db "$url"
  echo "$s"
}
# with_cpu FILE CMD...: runs CMD; writes the user + system seconds of it
# (and of its children) to FILE.
with_cpu() {
  local out="$1"; shift
  "$DEBIAN_PYTHON" -c 'import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write("%.3f\n" % (u.ru_utime + u.ru_stime))
sys.exit(code)' "$out" "$@"
}
proc_cpu() {   # proc_cpu PID -> user + system seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}
time_schemagate() {   # -> "seconds cpu-seconds"
  local url t0 s c0 c1
  url="$(new_db sg)"
  start_coordinator "$url" "$1/sg" manual "$WORK/apply-sg.log"
  wait_coordinator
  c0=$(proc_cpu "$SG_PID")
  t0=$(now_ns)
  with_cpu "$WORK/apply-ctl.cpu" "$CTL" --coordinator "$SG_ADDR" apply --actor bench \
    >"$WORK/apply-ctl.log" 2>&1 || { tail "$WORK/apply-ctl.log" >&2; exit 1; }
  s=$(secs_since "$t0")
  c1=$(proc_cpu "$SG_PID")
  stop_coordinator
  [[ "$(count_tables "$url")" == "$2" ]] || { echo "schemagate: wrong table count" >&2; exit 1; }
  drop_db "$url"
  echo "$s $(awk -v a="$c0" -v b="$c1" -v c="$(cat "$WORK/apply-ctl.cpu")" 'BEGIN { printf "%.3f", b - a + c }')"
}
time_dbmate() {   # -> "seconds cpu-seconds"
  local url t0 s
  url="$(new_db dbmate)"
  t0=$(now_ns)
  DATABASE_URL="$(dbmate_url "$url")" with_cpu "$WORK/apply-dbmate.cpu" "$DBMATE" \
    --migrations-dir "$1/dbmate" --no-dump-schema up \
    >"$WORK/apply-dbmate.log" 2>&1 || { tail "$WORK/apply-dbmate.log" >&2; exit 1; }
  s=$(secs_since "$t0")
  [[ "$(count_tables "$url")" == "$2" ]] || { echo "dbmate: wrong table count" >&2; exit 1; }
  drop_db "$url"
  echo "$s $(cat "$WORK/apply-dbmate.cpu")"
}
time_alembic() {
  local url t0 s
  url="$(new_db alembic)"
  t0=$(now_ns)
  ALEMBIC_URL="$(sqlalchemy_url "$url")" "$DEBIAN_PYTHON" -m alembic -c "$1/alembic/alembic.ini" upgrade head \
    >"$WORK/apply-alembic.log" 2>&1 || { tail "$WORK/apply-alembic.log" >&2; exit 1; }
  s=$(secs_since "$t0")
  [[ "$(count_tables "$url")" == "$2" ]] || { echo "alembic: wrong table count" >&2; exit 1; }
  drop_db "$url"
  echo "$s"
}

for n in $APPLY_SIZES; do
  log "apply: $n trivial migrations, $APPLY_REPEATS round(s)"
  write_sets "$WORK/set-$n" "$n"
  floor=(); sg=(); dm=(); al=(); sg_cpu=(); dm_cpu=()
  # 10,000 files: the floor and schemagate only (how cost grows), 3 rounds.
  rounds=$APPLY_REPEATS; peers=1
  ((n >= 10000)) && { rounds=3; peers=0; }
  for ((r = 0; r < rounds; r++)); do
    floor+=("$(time_floor "$WORK/set-$n" "$n")")
    read -r t c <<<"$(time_schemagate "$WORK/set-$n" "$n")"; sg+=("$t"); sg_cpu+=("$c")
    if [[ -n "$DBMATE" ]] && ((peers)); then
      read -r t c <<<"$(time_dbmate "$WORK/set-$n" "$n")"; dm+=("$t"); dm_cpu+=("$c")
    fi
    ((ALEMBIC_OK && peers)) && al+=("$(time_alembic "$WORK/set-$n" "$n")")
  done
  f=$(printf '%s\n' "${floor[@]}" | median)
  s=$(printf '%s\n' "${sg[@]}" | median)
  sc=$(printf '%s\n' "${sg_cpu[@]}" | median)
  dc=$( ((${#dm_cpu[@]})) && printf '%s\n' "${dm_cpu[@]}" | median || echo null)
  d=$( ((${#dm[@]})) && printf '%s\n' "${dm[@]}" | median || echo null)
  a=$( ((${#al[@]})) && printf '%s\n' "${al[@]}" | median || echo null)
  log "apply $n: floor ${f}s, schemagate ${s}s, dbmate ${d}s, alembic ${a}s (all rounds: floor ${floor[*]}; schemagate ${sg[*]}; dbmate ${dm[*]:-}; alembic ${al[*]:-})"
  result "{\"bench\":\"apply\",\"n\":$n,\"floor_s\":$f,\"schemagate_s\":$s,\"dbmate_s\":$d,\"alembic_s\":$a,\"schemagate_cpu_s\":$sc,\"dbmate_cpu_s\":$dc,\"rounds\":$rounds,\"all\":{\"floor\":[$(IFS=,; echo "${floor[*]}")],\"schemagate\":[$(IFS=,; echo "${sg[*]}")],\"dbmate\":[$(IFS=,; echo "${dm[*]:-}")],\"alembic\":[$(IFS=,; echo "${al[*]:-}")]}}"
done

# agent_cost BINARY NAME: AGENT_REPEATS runs of `BINARY check` against $SG_ADDR,
# wall time and peak RSS, as RESULT bench NAME.
agent_cost() {
  local bin="$1" name="$2" walls=() rss=() i t1 linkage=dynamic
  ldd "$bin" >/dev/null 2>&1 || linkage=static
  for ((i = 0; i < AGENT_REPEATS; i++)); do
    t1=$(now_ns)
    /usr/bin/time -f '%M' -o "$WORK/agent-time" "$bin" check --coordinator "$SG_ADDR" \
      --known "$STORM_MIGRATIONS" --required "$STORM_MIGRATIONS" --app probe >/dev/null 2>&1 ||
      { echo "$name check failed" >&2; exit 1; }
    walls+=("$(awk -v a="$t1" -v b="$(now_ns)" 'BEGIN {printf "%.1f", (b - a) / 1e6}')")
    rss+=("$(tail -n 1 "$WORK/agent-time")")
  done
  local w50 wmax r50 rmax
  w50=$(printf '%s\n' "${walls[@]}" | median)
  wmax=$(printf '%s\n' "${walls[@]}" | sort -g | tail -n 1)
  r50=$(printf '%s\n' "${rss[@]}" | median)
  rmax=$(printf '%s\n' "${rss[@]}" | sort -g | tail -n 1)
  log "$name check ($linkage): wall median ${w50} ms, max ${wmax} ms; peak RSS median ${r50} KB, max ${rmax} KB"
  result "{\"bench\":\"$name\",\"linkage\":\"$linkage\",\"repeats\":$AGENT_REPEATS,\"wall_ms_p50\":$w50,\"wall_ms_max\":$wmax,\"rss_kb_p50\":$r50,\"rss_kb_max\":$rmax}"
}

# --- storm: M agents started together against pending migrations ------------------------
write_sets "$WORK/storm" "$STORM_MIGRATIONS"
storm_floor=$(time_floor "$WORK/storm" "$STORM_MIGRATIONS")
for m in $STORM_SIZES; do
  log "storm: $m agents and a coordinator started together, $STORM_MIGRATIONS pending migrations"
  url="$(new_db storm)"
  rm -rf "$WORK/storm-codes"; mkdir -p "$WORK/storm-codes"
  t0=$(now_ns)
  start_coordinator "$url" "$WORK/storm/sg" auto "$WORK/storm-sg-$m.log"
  agents=()
  for ((i = 0; i < m; i++)); do
    ( "$AGENT" wait --coordinator "$SG_ADDR" --known "$STORM_MIGRATIONS" --required "$STORM_MIGRATIONS" \
        --app storm --instance-id "storm-$i" --timeout 120s >"$WORK/storm-codes/$i.log" 2>&1
      echo $? >"$WORK/storm-codes/code-$i" ) &
    agents+=($!)
  done
  wait "${agents[@]}"
  sg_s=$(secs_since "$t0")
  sg_fail=$(cat "$WORK/storm-codes"/code-* | grep -vcx 0 || true)
  applied=$(psql "$url" -XAtqc "select count(*) from schemagate.migrations where state = 'applied'")
  tables=$(count_tables "$url")

  # Agent cost while the schema is current (this coordinator, all applied):
  # the agent as built (static by default) and, beside it, the same agent
  # linked against Debian's shared libraries.
  if [[ "$m" == "${STORM_SIZES%% *}" ]]; then
    agent_cost "$AGENT" agent
    [[ -x "$AGENT_DYNAMIC" ]] && agent_cost "$AGENT_DYNAMIC" agent_dynamic
  fi
  stop_coordinator
  drop_db "$url"

  dm_s=null; dm_fail=null; dm_tables=null
  if [[ -n "$DBMATE" ]]; then
    url="$(new_db stormdm)"
    rm -rf "$WORK/storm-dm"; mkdir -p "$WORK/storm-dm"
    t0=$(now_ns)
    loops=()
    for ((i = 0; i < m; i++)); do
      ( tries=0
        until DATABASE_URL="$(dbmate_url "$url")" "$DBMATE" --migrations-dir "$WORK/storm/dbmate" \
                --no-dump-schema up >>"$WORK/storm-dm/$i.log" 2>&1; do
          tries=$((tries + 1))
          ((tries < 200)) || break
          sleep 0.1
        done
        echo "$tries" >"$WORK/storm-dm/tries-$i" ) &
      loops+=($!)
    done
    wait "${loops[@]}"
    dm_s=$(secs_since "$t0")
    dm_fail=$(cat "$WORK/storm-dm"/tries-* | awk '{s += $1} END {print s + 0}')
    dm_crashed=$(cat "$WORK/storm-dm"/tries-* | awk '$1 > 0' | wc -l)
    dm_tables=$(count_tables "$url")
    # The most frequent dbmate errors, for the log.
    grep -h -o 'Error: .*' "$WORK/storm-dm"/*.log 2>/dev/null | cut -c1-100 | sort | uniq -c | sort -rn | head -n 3 |
      sed 's/^/    dbmate: /' >&2 || true
    drop_db "$url"
  fi
  log "storm $m: schemagate ${sg_s}s ($sg_fail failed agents, $applied rows, $tables tables); dbmate ${dm_s}s ($dm_fail failed runs in ${dm_crashed:-0} containers, $dm_tables tables); floor ${storm_floor}s"
  result "{\"bench\":\"storm\",\"m\":$m,\"migrations\":$STORM_MIGRATIONS,\"floor_s\":$storm_floor,\"schemagate_s\":$sg_s,\"schemagate_failures\":$sg_fail,\"schemagate_rows\":$applied,\"schemagate_tables\":$tables,\"dbmate_s\":$dm_s,\"dbmate_failures\":$dm_fail,\"dbmate_failed_containers\":${dm_crashed:-null},\"dbmate_tables\":$dm_tables}"
done

# --- The table -----------------------------------------------------------------------------
COMMIT="$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- . ':!docs/benchmarks.md' 2>/dev/null || echo '+dirty')"
"$DEBIAN_PYTHON" "$REPO/bench/render.py" --results "$RESULTS" --mode "$MODE" --commit "$COMMIT" \
  --postgres "$PG_VERSION ($PG_NOTE)" --dbmate "$DBMATE_VERSION" --alembic "$ALEMBIC_VERSION" \
  --notes "$REPO/bench/NOTES.md" ${GBENCH_JSON:+--gbench "$GBENCH_JSON"} >"$WORK/table.md"
cat "$WORK/table.md"
if [[ -n "$OUTPUT" ]]; then
  mkdir -p "$(dirname "$OUTPUT")"
  cp "$WORK/table.md" "$OUTPUT"
  log "wrote $OUTPUT"
fi
