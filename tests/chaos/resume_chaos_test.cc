// kill -9 of the coordinator while CONCURRENTLY index migrations run on a
// table big enough to take a while (issue 11 item 6): every cut migration
// is finished by `schemagatectl repair --resume` (or, where nothing was
// cut, by the standby), each transactional migration is applied exactly
// once, and every index ends valid.
//
// The kill lands, by round: at a random moment of the run; inside a random
// CONCURRENTLY statement; or while a CREATE INDEX CONCURRENTLY waits for an
// older snapshot (a side transaction holds one, as a long report query does
// in production) — the window in which the backend completes the index
// after its client died, so the statement's completion is never recorded.
// SCHEMAGATE_CHAOS_ROUNDS sets the rounds (default 3), SCHEMAGATE_CHAOS_SEED
// replays the kill points of an earlier run (every run prints its seed).
#include <signal.h>

#include <cstdint>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::EnvInt;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;

// ~0.5 s per CREATE INDEX CONCURRENTLY on an idle machine.
constexpr int kBigRows = 1000000;
constexpr int kTransactional[] = {1, 3, 5, 7};
// The CONCURRENTLY statements of the set: their start as pg_stat_activity
// shows it, and where they are in the set.
struct ConcurrentlyStatement {
  const char* start;
  int version;
  int index;  // 0-based within the migration
};
constexpr ConcurrentlyStatement kConcurrently[] = {
    {"CREATE INDEX CONCURRENTLY big_v ON", 2, 0},
    {"CREATE INDEX CONCURRENTLY big_v_id ON", 4, 0},
    {"DROP INDEX CONCURRENTLY big_v", 4, 1},
    {"CREATE INDEX CONCURRENTLY IF NOT EXISTS big_id ON", 6, 0},
    {"CREATE INDEX CONCURRENTLY big_w ON", 6, 1}};

// Transactional migrations write one audit row each (a rolled back one
// none); the no-transaction ones build and drop indexes on `big`.
void WriteSet(const TempDir& dir) {
  for (int k : kTransactional) {
    dir.Write(absl::StrFormat("%04d_tx_%d.up.sql", k, k),
              absl::StrFormat("INSERT INTO resume_audit (version) VALUES (%d);\n"
                              "CREATE TABLE tx_%d (id bigint PRIMARY KEY);\n",
                              k, k));
  }
  dir.Write("0002_big_v.up.sql",
            "-- schemagate:no-transaction\nCREATE INDEX CONCURRENTLY big_v ON big (v);\n");
  dir.Write("0004_swap.up.sql",
            "-- schemagate:no-transaction\n"
            "CREATE INDEX CONCURRENTLY big_v_id ON big (v, id);\n"
            "DROP INDEX CONCURRENTLY big_v;\n");
  dir.Write("0006_more.up.sql",
            "-- schemagate:no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS big_id ON big (id);\n"
            "CREATE INDEX CONCURRENTLY big_w ON big (v DESC);\n"
            "DROP INDEX CONCURRENTLY IF EXISTS big_never_there;\n");
}

enum class KillPoint { kAnyTime, kInConcurrently, kInSnapshotWait };

struct Tally {
  int rounds = 0;
  int finished_by_standby = 0;
  int resumed = 0;
  int resumed_completed = 0;  // the cut statement had completed
  int resumed_invalid = 0;    // an invalid index was dropped and rebuilt
  int resume_failed = 0;
  int dirty_while_running = 0;  // the agent exited 5 while a run was applying the dirty row
};

// No session holds an advisory lock in this database: no run is under way.
constexpr char kNoRunSql[] =
    "SELECT count(*) = 0 FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE "
    "l.locktype = 'advisory' AND l.granted AND d.datname = current_database()";

std::string Q(testing::QueryConnection& conn, const std::string& sql) {
  return conn.Query(sql).value_or("<error>");
}

// Polls every 5 ms until `sql` returns a non-empty, non-"0" value.
bool Await(testing::QueryConnection& conn, const std::string& sql, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    const std::string v = conn.Query(sql).value_or("");
    if (!v.empty() && v != "0" && v != "f") return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

// True once `s` runs, or has already run (a short one can end between
// two polls).
std::string RunsOrRan(const ConcurrentlyStatement& s) {
  return absl::StrFormat(
      "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
      "'%s%%' AND datname = current_database() AND pid <> pg_backend_pid()) OR EXISTS (SELECT 1 "
      "FROM schemagate.migrations WHERE version = %d AND (state = 'applied' OR statements_done "
      "> %d))",
      s.start, s.version, s.index);
}

void RunRound(int round, std::mt19937_64& rng, Tally* tally) {
  const KillPoint point = static_cast<KillPoint>(round % 3);
  TestDatabase db;
  db.Exec("CREATE TABLE resume_audit (version int NOT NULL)");
  db.Exec(absl::StrCat("CREATE TABLE big AS SELECT g AS id, (g::bigint * 7919) % 1000003 AS v"
                       " FROM generate_series(1, ",
                       kBigRows, ") g"));
  TempDir dir;
  WriteSet(dir);
  const std::string url = db.url();
  std::map<std::string, std::unique_ptr<CoordinatorProcess>> replicas;
  for (const char* id : {"a", "b"}) {
    replicas[id] = std::make_unique<CoordinatorProcess>(
        url, dir.path(), std::vector<std::string>{"--id", id, "--resync-interval", "1s"},
        "127.0.0.1:0", /*wait_until_serving=*/false);
  }
  testing::QueryConnection watch(url);
  const std::string runner_sql =
      "SELECT actor FROM schemagate.events WHERE kind = 'run_start' ORDER BY id DESC LIMIT 1";
  std::unique_ptr<pqxx::connection> holder_conn;
  std::unique_ptr<pqxx::work> snapshot;
  std::string plan;
  switch (point) {
    case KillPoint::kAnyTime: {
      ASSERT_TRUE(Await(watch,
                        "SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                        "'schemagate' AND table_name = 'events'",
                        absl::Seconds(60)));
      ASSERT_TRUE(Await(watch, absl::StrCat("SELECT count(*) FROM (", runner_sql, ") r"),
                        absl::Seconds(60)));
      const int delay = std::uniform_int_distribution<int>(0, 3000)(rng);
      plan = absl::StrFormat("%dms into the run", delay);
      absl::SleepFor(absl::Milliseconds(delay));
      break;
    }
    case KillPoint::kInConcurrently: {
      const int which = std::uniform_int_distribution<int>(0, 4)(rng);
      const int delay = std::uniform_int_distribution<int>(0, 600)(rng);
      plan = absl::StrFormat("%dms into \"%s…\"", delay, kConcurrently[which].start);
      ASSERT_TRUE(Await(watch, RunsOrRan(kConcurrently[which]), absl::Seconds(60))) << plan;
      absl::SleepFor(absl::Milliseconds(delay));
      break;
    }
    case KillPoint::kInSnapshotWait: {
      const int which = std::uniform_int_distribution<int>(0, 1)(rng);
      const ConcurrentlyStatement& statement = kConcurrently[which];
      const int delay = std::uniform_int_distribution<int>(0, 100)(rng);
      plan = absl::StrFormat("%dms into \"%s…\"'s wait for an older snapshot", delay,
                             statement.start);
      ASSERT_TRUE(Await(watch, RunsOrRan(statement), absl::Seconds(60))) << plan;
      // A snapshot taken while the index builds is older than the one the
      // build validates against: the CREATE waits for it before it ends.
      holder_conn = std::make_unique<pqxx::connection>(url);
      snapshot = std::make_unique<pqxx::work>(*holder_conn);
      snapshot->exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
      snapshot->exec("SELECT count(*) FROM resume_audit");
      if (!Await(watch,
                 "SELECT count(*) FROM pg_stat_progress_create_index WHERE phase = 'waiting for "
                 "old snapshots'",
                 absl::Seconds(30))) {
        plan += " (the wait was not seen)";
      }
      absl::SleepFor(absl::Milliseconds(delay));
      break;
    }
  }
  const std::string victim = Q(watch, runner_sql);
  ASSERT_TRUE(victim == "a" || victim == "b") << victim << " " << plan;
  const std::string survivor_id = victim == "a" ? "b" : "a";
  replicas[victim]->process().Signal(SIGKILL);
  ASSERT_EQ(replicas[victim]->process().Wait(absl::Seconds(10)), 128 + SIGKILL);
  if (snapshot) {
    absl::SleepFor(absl::Milliseconds(50));  // the backend is past the kill
    snapshot->commit();
    snapshot.reset();
  }
  CoordinatorProcess& survivor = *replicas[survivor_id];
  std::string out, outcome = "the standby finished";
  for (int attempt = 0;; ++attempt) {
    const int rc =
        RunBinary({BinaryPath("schemagate-agent"), "wait", "--coordinator", survivor.address(),
                   "--migrations-dir", dir.path(), "--timeout", "60s"},
                  &out, absl::Seconds(90));
    if (rc == 0) break;
    ASSERT_EQ(rc, 5) << plan << ": " << out << "\n" << survivor.process().Log();
    ASSERT_LT(attempt, 4) << plan << ": still dirty after a resume: " << out;
    // As an operator would, resume only a row no run is working on: the
    // row of a no-transaction migration is dirty while it runs, and
    // readiness reports it FAILED then too (counted, see the summary).
    if (!Await(watch, kNoRunSql, absl::Seconds(60))) FAIL() << plan << ": the run never ended";
    const std::string dirty =
        Q(watch, "SELECT coalesce(string_agg(version || ':' || statements_done, ','), '') FROM "
                 "schemagate.migrations WHERE state = 'dirty'");
    if (dirty.empty()) {
      ++tally->dirty_while_running;
      continue;
    }
    const std::string version = dirty.substr(0, dirty.find(':'));
    std::string resumed;
    const int ctl = RunBinary({BinaryPath("schemagatectl"), "repair", "--resume", version,
                               "--coordinator", survivor.address()},
                              &resumed);
    ++tally->resumed;
    outcome = absl::StrCat("dirty ", dirty, "; resume: ", resumed);
    if (ctl != 0) ++tally->resume_failed;
    ASSERT_EQ(ctl, 0) << plan << ": " << resumed << "\nagent: " << out;
    if (absl::StrContains(resumed, "had completed")) ++tally->resumed_completed;
    if (absl::StrContains(resumed, "dropped invalid index")) ++tally->resumed_invalid;
  }
  if (outcome == "the standby finished") ++tally->finished_by_standby;
  std::fprintf(stderr, "round %d: killed %s %s; %s\n", round + 1, victim.c_str(), plan.c_str(),
               outcome.c_str());

  EXPECT_EQ(Q(watch, "SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"), "7");
  EXPECT_EQ(Q(watch, "SELECT count(*) FROM schemagate.migrations WHERE state <> 'applied'"), "0");
  EXPECT_EQ(Q(watch, "SELECT count(*) || '/' || count(DISTINCT version) FROM resume_audit"),
            "4/4");
  EXPECT_EQ(Q(watch, "SELECT count(*) || '/' || count(DISTINCT version) FROM schemagate.events"
                     " WHERE kind = 'apply' AND version IN (1, 3, 5, 7)"),
            "4/4");
  EXPECT_EQ(Q(watch, "SELECT string_agg(c.relname || ':' || i.indisvalid, ',' ORDER BY "
                     "c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE "
                     "i.indrelid = 'big'::regclass"),
            "big_id:true,big_v_id:true,big_w:true");
  ++tally->rounds;
}

TEST(ResumeChaosTest, KillNineInConcurrentlyMigrationsEveryCutOneIsResumedEachTxOneAppliedOnce) {
  SG_REQUIRE_DATABASE();
  // Each round's tables `resume_audit` and `big` are made before any
  // migration: the coordinators run beside them.
  setenv("SCHEMAGATE_ALLOW_NON_EMPTY", "true", 1);
  const int rounds = EnvInt("SCHEMAGATE_CHAOS_ROUNDS", 3);
  const uint64_t seed = static_cast<uint64_t>(
      EnvInt("SCHEMAGATE_CHAOS_SEED", static_cast<int>(std::random_device{}() & 0x7FFFFFFF)));
  std::fprintf(stderr, "resume chaos: %d round(s), SCHEMAGATE_CHAOS_SEED=%llu\n", rounds,
               static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  Tally tally;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round + 1, " (seed ", seed, ")"));
    RunRound(round, rng, &tally);  // each round has its own database: go on after a failure
  }
  std::fprintf(stderr,
               "resume chaos summary: %d/%d round(s) passed (seed %llu); %d finished by the "
               "standby; %d resumed (%d whose cut statement had completed, %d with an invalid "
               "index rebuilt); %d resume(s) failed; the agent exited 5 (DIRTY) %d time(s) while a run "
               "was applying that row\n",
               tally.rounds, rounds, static_cast<unsigned long long>(seed),
               tally.finished_by_standby, tally.resumed, tally.resumed_completed,
               tally.resumed_invalid, tally.resume_failed, tally.dirty_while_running);
  EXPECT_EQ(tally.rounds, rounds);
}

}  // namespace
}  // namespace schemagate
