// Faults end to end: the real binaries against a real PostgreSQL while the
// running coordinator is killed with SIGKILL, PostgreSQL restarts, the run
// connection is cut, a long transaction holds a table lock, or PgBouncer
// sits in between.
//
// Counts are small by default (CI). Soak: SCHEMAGATE_CHAOS_ROUNDS sets the
// kill -9 rounds (e.g. 100), SCHEMAGATE_CHAOS_FAULT_ROUNDS the rounds of the
// connection cut and the PostgreSQL restart, SCHEMAGATE_CHAOS_SEED replays
// the kill points of an earlier run (every run prints its seed).
//
// Every migration of the audited sets writes a 'begin' and an 'end' row with
// pg_backend_pid() and clock_timestamp() into chaos_audit, so PostgreSQL
// itself shows which session ran what, when, and that it committed once.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/tcp_proxy.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::AdminUrl;
using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::ChildProcess;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::EnvInt;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::schemagate::testing::TryQuery;
using ::schemagate::testing::WaitUntil;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kCreateAudit[] =
    "CREATE TABLE chaos_audit (version int NOT NULL, step text NOT NULL, pid int NOT NULL,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp())";

// Migration k: an audit row, a pause (the window a fault hits), a table of
// its own, and a closing audit row.
void WriteAuditedMigrations(const TempDir& dir, int count, int pause_ms) {
  for (int k = 1; k <= count; ++k) {
    dir.Write(absl::StrFormat("%04d_chaos_%d.up.sql", k, k),
              absl::StrFormat("INSERT INTO chaos_audit (version, step, pid) VALUES (%d, 'begin', "
                              "pg_backend_pid());\n"
                              "SELECT pg_sleep(%.3f), 'chaos %d';\n"
                              "CREATE TABLE chaos_%d (id bigint PRIMARY KEY);\n"
                              "INSERT INTO chaos_audit (version, step, pid) VALUES (%d, 'end', "
                              "pg_backend_pid());\n",
                              k, pause_ms / 1000.0, k, k, k));
  }
}

std::string Query(const std::string& url, const std::string& sql) {
  return TryQuery(url, sql).value_or("<error>");
}

int QueryInt(const std::string& url, const std::string& sql) {
  int n = -1;
  return absl::SimpleAtoi(Query(url, sql), &n) ? n : -1;
}

// What a wait for migration k's pause found.
enum class Pause {
  kRunning,    // the pause runs now
  kCommitted,  // k committed before a poll saw its pause (a loaded machine)
  kTimedOut,
};

// Polls, on one kept-open connection, until migration k's pause runs
// (filling `pid` with its session's pid and `runner` with the id of the
// coordinator whose run it is) or k has committed.
Pause AwaitPause(const std::string& url, int k, std::string* pid = nullptr,
                 std::string* runner = nullptr) {
  testing::QueryConnection conn(url);
  const std::string running = absl::StrFormat(
      "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%%''chaos %d''%%'"
      " AND pid <> pg_backend_pid() AND datname = current_database()",
      k);
  // 'applied': a no-transaction migration's row exists (dirty) before it runs.
  const std::string committed = absl::StrCat(
      "SELECT count(*) FROM schemagate.migrations WHERE state = 'applied' AND version = ", k);
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    const std::string found = conn.Query(running).value_or("");
    if (!found.empty()) {
      if (pid != nullptr) *pid = found;
      if (runner != nullptr) {
        *runner = conn.Query(
                          "SELECT actor FROM schemagate.events WHERE kind = 'run_start' "
                          "ORDER BY id DESC LIMIT 1")
                      .value_or("");
      }
      return Pause::kRunning;
    }
    if (conn.Query(committed).value_or("0") == "1") return Pause::kCommitted;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return Pause::kTimedOut;
}

bool WaitForPause(const std::string& url, int k, std::string* pid = nullptr) {
  return AwaitPause(url, k, pid) == Pause::kRunning;
}

// The id of the coordinator whose run is under way (the last run_start).
std::string RunningCoordinator(const std::string& url) {
  return TryQuery(url,
                  "SELECT actor FROM schemagate.events WHERE kind = 'run_start' "
                  "ORDER BY id DESC LIMIT 1")
      .value_or("");
}

// Every migration applied once and clean; its work committed exactly once,
// by one session.
void ExpectEachAppliedExactlyOnce(const std::string& url, int count) {
  const std::string n = absl::StrCat(count);
  EXPECT_EQ(Query(url, "SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"), n);
  EXPECT_EQ(Query(url, "SELECT count(*) FROM schemagate.migrations WHERE state <> 'applied'"), "0");
  EXPECT_EQ(Query(url, "SELECT count(*) FROM chaos_audit"), absl::StrCat(2 * count));
  EXPECT_EQ(Query(url,
                  "SELECT count(*) FROM (SELECT version FROM chaos_audit GROUP BY version"
                  " HAVING count(*) FILTER (WHERE step = 'begin') = 1"
                  " AND count(*) FILTER (WHERE step = 'end') = 1"
                  " AND count(DISTINCT pid) = 1) once"),
            n);
  EXPECT_EQ(Query(url, "SELECT count(*) FROM schemagate.events WHERE kind = 'apply'"), n);
  EXPECT_EQ(
      Query(url, "SELECT count(DISTINCT version) FROM schemagate.events WHERE kind = 'apply'"), n);
}

std::vector<std::string> Ctl(const std::string& coordinator, std::vector<std::string> args) {
  args.insert(args.begin(), BinaryPath("schemagatectl"));
  args.insert(args.end(), {"--coordinator", coordinator});
  return args;
}

// `schemagate-agent wait` for the whole set; 0 once the schema is READY.
int AgentWait(const std::string& coordinator, const std::string& dir, std::string* out,
              const std::string& timeout = "90s") {
  return RunBinary({BinaryPath("schemagate-agent"), "wait", "--coordinator", coordinator,
                    "--migrations-dir", dir, "--timeout", timeout},
                   out, absl::Seconds(120));
}

class ChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    // The tests keep their audit and control tables beside the set (made
    // before any migration): every coordinator they start runs beside them.
    setenv("SCHEMAGATE_ALLOW_NON_EMPTY", "true", 1);
  }
  void TearDown() override { unsetenv("SCHEMAGATE_ALLOW_NON_EMPTY"); }
};

// Where in a run the coordinator holding the lock is killed.
enum class KillPoint {
  kAtStart,      // as soon as it serves: before, while or just after it takes the lock
  kInStatement,  // inside migration k's pause, `delay` into it
  kAfterCommit,  // `delay` after migration k committed (between migrations)
  kAnyTime,      // `delay` after the run started
};

struct KillPlan {
  KillPoint point;
  int version = 0;
  absl::Duration delay;
};

std::string Describe(const KillPlan& plan) {
  switch (plan.point) {
    case KillPoint::kAtStart:
      return "at start";
    case KillPoint::kInStatement:
      return absl::StrFormat("in migration %d, %dms into its pause", plan.version,
                             absl::ToInt64Milliseconds(plan.delay));
    case KillPoint::kAfterCommit:
      return absl::StrFormat("%dms after migration %d committed",
                             absl::ToInt64Milliseconds(plan.delay), plan.version);
    case KillPoint::kAnyTime:
      return absl::StrFormat("%dms into the run", absl::ToInt64Milliseconds(plan.delay));
  }
  return "?";
}

constexpr int kKillMigrations = 5;
constexpr int kKillPauseMs = 200;

// Kill points of round `round`: the kind cycles so that even the five CI
// rounds cover every kind; version and delay come from the seeded rng.
KillPlan PlanRound(int round, std::mt19937_64& rng) {
  KillPlan plan;
  plan.point = static_cast<KillPoint>(round % 4);
  std::uniform_int_distribution<int> version(1, kKillMigrations);
  std::uniform_int_distribution<int> between(1, kKillMigrations - 1);
  switch (plan.point) {
    case KillPoint::kAtStart:
      break;
    case KillPoint::kInStatement:
      plan.version = version(rng);
      plan.delay =
          absl::Milliseconds(std::uniform_int_distribution<int>(0, kKillPauseMs - 20)(rng));
      break;
    case KillPoint::kAfterCommit:
      plan.version = between(rng);
      plan.delay = absl::Milliseconds(std::uniform_int_distribution<int>(0, 20)(rng));
      break;
    case KillPoint::kAnyTime:
      plan.delay = absl::Milliseconds(
          std::uniform_int_distribution<int>(0, kKillMigrations * kKillPauseMs)(rng));
      break;
  }
  return plan;
}

struct KillRoundResult {
  bool killed_mid_run = false;  // the victim had started a run
  bool missed_pause = false;    // kInStatement, but the pause ended before it was seen
  int applied_by_victim = 0;
  absl::Duration standby_finished;  // from the kill to the standby's READY
};

KillRoundResult RunKillRound(const KillPlan& plan) {
  KillRoundResult result;
  TestDatabase db;
  db.Exec(kCreateAudit);
  TempDir dir;
  WriteAuditedMigrations(dir, kKillMigrations, kKillPauseMs);
  // Two replicas started together, as a rollout starts them.
  std::map<std::string, std::unique_ptr<CoordinatorProcess>> replicas;
  for (const char* id : {"a", "b"}) {
    replicas[id] = std::make_unique<CoordinatorProcess>(
        db.url(), dir.path(), std::vector<std::string>{"--id", id, "--resync-interval", "1s"},
        "127.0.0.1:0", /*wait_until_serving=*/false);
  }
  const std::string url = db.url();
  testing::QueryConnection watch(url);
  const std::string runner_sql =
      "SELECT actor FROM schemagate.events WHERE kind = 'run_start' ORDER BY id DESC LIMIT 1";
  auto runner = [&] { return watch.Query(runner_sql).value_or(""); };
  // Polls on the kept-open connection every 5 ms: the windows are short.
  auto await = [&](const std::function<bool()>& condition) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (!condition()) {
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  };
  auto committed = [&](int version) {
    return watch
               .Query(absl::StrCat("SELECT count(*) FROM schemagate.migrations WHERE version = ",
                                   version))
               .value_or("0") == "1";
  };
  // The victim is named before the delay, so the delay is the only wait.
  std::string victim;
  switch (plan.point) {
    case KillPoint::kAtStart:
      EXPECT_TRUE(replicas["a"]->process().WaitForLog("serving on", absl::Seconds(30)));
      victim = runner();
      if (victim.empty()) victim = "a";
      break;
    case KillPoint::kInStatement: {
      const Pause pause = AwaitPause(url, plan.version, nullptr, &victim);
      EXPECT_NE(pause, Pause::kTimedOut) << Describe(plan);
      if (pause == Pause::kCommitted) {
        // The loaded machine let the pause pass unseen: this round kills
        // between migrations instead (counted apart in the summary).
        result.missed_pause = true;
        victim = runner();
      }
      absl::SleepFor(plan.delay);  // The fault's timing, not a synchronisation.
      break;
    }
    case KillPoint::kAfterCommit:
      EXPECT_TRUE(await([&] { return committed(plan.version); })) << Describe(plan);
      victim = runner();
      absl::SleepFor(plan.delay);
      break;
    case KillPoint::kAnyTime:
      EXPECT_TRUE(await([&] { return !runner().empty(); })) << Describe(plan);
      victim = runner();
      absl::SleepFor(plan.delay);
      break;
  }
  if (victim != "a" && victim != "b") {
    ADD_FAILURE() << "no running coordinator found (" << victim << ") " << Describe(plan);
    return result;
  }
  const std::string survivor = victim == "a" ? "b" : "a";
  ChildProcess& killed = replicas[victim]->process();
  killed.Signal(SIGKILL);
  EXPECT_EQ(killed.Wait(absl::Seconds(10)), 128 + SIGKILL);
  const absl::Time kill_time = absl::Now();
  result.killed_mid_run = !RunningCoordinator(url).empty();
  std::string out;
  EXPECT_EQ(AgentWait(replicas[survivor]->address(), dir.path(), &out), 0)
      << Describe(plan) << ": " << out << "\nsurvivor log:\n"
      << replicas[survivor]->process().Log();
  result.standby_finished = absl::Now() - kill_time;
  ExpectEachAppliedExactlyOnce(url, kKillMigrations);
  int applied = 0;
  (void)absl::SimpleAtoi(
      Query(url, absl::StrCat("SELECT count(*) FROM schemagate.migrations WHERE applied_by = '",
                              victim, "'")),
      &applied);
  result.applied_by_victim = applied;
  EXPECT_TRUE(replicas[survivor]->process().running());
  EXPECT_THAT(replicas[survivor]->process().Log(), Not(HasSubstr(" ERROR ")));
  return result;
}

// Acceptance: kill -9 of the coordinator running the migrations, at
// different points of a run; the standby finishes every time, each
// migration is applied once, nothing is dirty.
TEST_F(ChaosTest, KillNineOfTheRunningCoordinatorAtRandomPointsTheStandbyFinishes) {
  const int rounds = EnvInt("SCHEMAGATE_CHAOS_ROUNDS", 5);
  const uint64_t seed = static_cast<uint64_t>(
      EnvInt("SCHEMAGATE_CHAOS_SEED", static_cast<int>(std::random_device{}() & 0x7FFFFFFF)));
  std::fprintf(stderr, "kill -9 chaos: %d round(s), SCHEMAGATE_CHAOS_SEED=%llu\n", rounds,
               static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  int passed = 0, mid_run = 0, missed = 0;
  std::map<int, int> by_victim_progress;
  absl::Duration slowest, total;
  for (int round = 0; round < rounds; ++round) {
    const KillPlan plan = PlanRound(round, rng);
    SCOPED_TRACE(absl::StrCat("round ", round + 1, ": killed ", Describe(plan)));
    const KillRoundResult r = RunKillRound(plan);
    if (HasFailure()) break;
    ++passed;
    mid_run += r.killed_mid_run;
    missed += r.missed_pause;
    ++by_victim_progress[r.applied_by_victim];
    slowest = std::max(slowest, r.standby_finished);
    total += r.standby_finished;
    std::fprintf(stderr,
                 "round %d: killed %s%s; %d of %d applied before the kill; the standby finished "
                 "%lldms after it\n",
                 round + 1, Describe(plan).c_str(),
                 r.missed_pause ? " (pause missed: after its commit instead)" : "",
                 r.applied_by_victim, kKillMigrations,
                 static_cast<long long>(absl::ToInt64Milliseconds(r.standby_finished)));
  }
  std::string progress;
  for (const auto& [applied, n] : by_victim_progress) {
    absl::StrAppend(&progress, progress.empty() ? "" : ", ", applied, " applied: ", n);
  }
  std::fprintf(stderr,
               "kill -9 chaos summary: %d/%d round(s) passed (seed %llu); %d killed mid-run; "
               "%d in-statement kill(s) missed their pause; migrations the victim had applied "
               "{%s}; standby finished in mean %lldms, max %lldms\n",
               passed, rounds, static_cast<unsigned long long>(seed), mid_run, missed,
               progress.c_str(),
               static_cast<long long>(passed ? absl::ToInt64Milliseconds(total / passed) : 0),
               static_cast<long long>(absl::ToInt64Milliseconds(slowest)));
  EXPECT_EQ(passed, rounds);
}

// A cut no-transaction migration is not silently dirty: the standby reports
// it (agents exit 5, status DIRTY) and an operator's resume finishes it.
TEST_F(ChaosTest, KillNineInsideANoTransactionMigrationIsReportedDirtyAndResumable) {
  const int rounds = EnvInt("SCHEMAGATE_CHAOS_FAULT_ROUNDS", 1);
  for (int round = 0; round < rounds && !HasFailure(); ++round) {
    SCOPED_TRACE(absl::StrCat("no-transaction round ", round + 1));
    TestDatabase db;
    TempDir dir;
    dir.Write("0001_accounts.up.sql", "CREATE TABLE accounts (id bigint PRIMARY KEY);\n");
    dir.Write("0002_accounts_index.up.sql",
              "-- schemagate:no-transaction\n"
              "SELECT pg_sleep(1), 'chaos 2';\n"
              "CREATE INDEX CONCURRENTLY accounts_id_desc ON accounts (id DESC);\n");
    CoordinatorProcess a(db.url(), dir.path(), {"--id", "a"});
    CoordinatorProcess b(db.url(), dir.path(), {"--id", "b"});
    ASSERT_TRUE(WaitForPause(db.url(), 2));
    const std::string victim = RunningCoordinator(db.url());
    ASSERT_TRUE(victim == "a" || victim == "b") << victim;
    CoordinatorProcess& killed = victim == "a" ? a : b;
    CoordinatorProcess& survivor = victim == "a" ? b : a;
    killed.process().Signal(SIGKILL);
    ASSERT_EQ(killed.process().Wait(absl::Seconds(10)), 128 + SIGKILL);

    std::string out;
    EXPECT_EQ(AgentWait(survivor.address(), dir.path(), &out, "30s"), 5) << out;
    EXPECT_THAT(out, HasSubstr("dirty"));
    EXPECT_EQ(db.Query("SELECT state || ':' || statements_done FROM schemagate.migrations "
                       "WHERE version = 2"),
              "dirty:0");
    EXPECT_EQ(RunBinary(Ctl(survivor.address(), {"status"}), &out), 5) << out;
    EXPECT_THAT(out, HasSubstr("DIRTY"));
    EXPECT_EQ(RunBinary(Ctl(survivor.address(), {"repair", "--resume", "2"}), &out), 0) << out;
    EXPECT_EQ(AgentWait(survivor.address(), dir.path(), &out, "30s"), 0) << out;
    EXPECT_EQ(db.Query("SELECT count(*) FROM pg_indexes WHERE indexname = 'accounts_id_desc'"),
              "1");
  }
}

// kill -9 while a long statement runs: PostgreSQL notices the closed
// client socket during the statement (client_connection_check_interval),
// cancels it and frees the lock, so the standby takes over in seconds
// instead of after the statement would have ended (60 s here).
TEST_F(ChaosTest, KillNineDuringALongStatementFreesTheLockWithoutWaitingForItsEnd) {
  TestDatabase db;
  db.Exec(kCreateAudit);
  db.Exec("CREATE TABLE chaos_release (released boolean)");
  TempDir dir;
  WriteAuditedMigrations(dir, 1, 10);
  // Long for the first try only: the test releases it once it has killed.
  dir.Write("0002_chaos_long.up.sql",
            "INSERT INTO chaos_audit (version, step, pid) VALUES (2, 'begin', pg_backend_pid());\n"
            "SELECT pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM chaos_release) THEN 0 ELSE 60 END),"
            " 'chaos 2';\n"
            "INSERT INTO chaos_audit (version, step, pid) VALUES (2, 'end', pg_backend_pid());\n");
  CoordinatorProcess a(db.url(), dir.path(), {"--id", "a"});
  CoordinatorProcess b(db.url(), dir.path(), {"--id", "b"});
  std::string run_pid;
  ASSERT_TRUE(WaitForPause(db.url(), 2, &run_pid));
  const std::string victim = RunningCoordinator(db.url());
  ASSERT_TRUE(victim == "a" || victim == "b") << victim;
  CoordinatorProcess& killed = victim == "a" ? a : b;
  CoordinatorProcess& survivor = victim == "a" ? b : a;
  db.Exec("INSERT INTO chaos_release VALUES (true)");
  killed.process().Signal(SIGKILL);
  ASSERT_EQ(killed.process().Wait(absl::Seconds(10)), 128 + SIGKILL);
  const absl::Time kill_time = absl::Now();
  EXPECT_TRUE(WaitUntil(
      [&] {
        return Query(db.url(), absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ",
                                            run_pid)) == "0";
      },
      absl::Seconds(20)))
      << "the killed coordinator's statement kept running, and its session the lock";
  const absl::Duration freed = absl::Now() - kill_time;
  std::string out;
  EXPECT_EQ(AgentWait(survivor.address(), dir.path(), &out, "50s"), 0) << out;
  ExpectEachAppliedExactlyOnce(db.url(), 2);
  std::fprintf(stderr,
               "kill -9 in a 60 s statement: PostgreSQL freed the lock after %lldms, "
               "the standby was done after %lldms\n",
               static_cast<long long>(absl::ToInt64Milliseconds(freed)),
               static_cast<long long>(absl::ToInt64Milliseconds(absl::Now() - kill_time)));
}

// The run connection is cut mid-migration (a TCP proxy closes both sides):
// PostgreSQL ends that session, rolls back its transaction and frees the
// lock; the run stops with ABORTED and no statement of it runs afterwards,
// neither on that connection nor on another. An operator's next run applies
// the rest, each migration once.
TEST_F(ChaosTest, CutRunConnectionAbortsTheRunAndNoStatementRunsAfterTheLockIsLost) {
  const int rounds = EnvInt("SCHEMAGATE_CHAOS_FAULT_ROUNDS", 1);
  constexpr int kMigrations = 4;
  for (int round = 0; round < rounds && !HasFailure(); ++round) {
    SCOPED_TRACE(absl::StrCat("cut round ", round + 1));
    TestDatabase db;
    db.Exec(kCreateAudit);
    TempDir dir;
    WriteAuditedMigrations(dir, kMigrations, 500);
    const int cut_in = 2 + round % (kMigrations - 1);  // the migration the cut hits
    testing::TcpProxy proxy("127.0.0.1", testing::PortOf(AdminUrl()));
    ASSERT_GT(proxy.port(), 0);
    CoordinatorProcess coordinator(testing::WithHostPort(db.url(), "127.0.0.1", proxy.port()),
                                   dir.path(), {"--apply", "manual", "--id", "cut"});
    ChildProcess apply(Ctl(coordinator.address(), {"apply"}));
    std::string run_pid;
    ASSERT_TRUE(WaitForPause(db.url(), cut_in, &run_pid)) << apply.Log();
    const std::string lock_holders =
        "SELECT string_agg(pid::text, ',') FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    ASSERT_EQ(db.Query(lock_holders), run_pid);

    proxy.Cut();
    const absl::Time cut = absl::Now();
    // PostgreSQL's side: the session ends (after its pause), and the lock with it.
    ASSERT_TRUE(WaitUntil(
        [&] {
          return Query(db.url(), absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ",
                                              run_pid)) == "0";
        },
        absl::Seconds(30)));
    const std::string lock_lost_at = db.Query("SELECT clock_timestamp()::text");
    const absl::Duration session_ended = absl::Now() - cut;
    EXPECT_EQ(db.Query(lock_holders), "");
    EXPECT_EQ(apply.Wait(absl::Seconds(30)), 1) << apply.Log();
    std::fprintf(stderr,
                 "cut round %d: cut in migration %d; PostgreSQL ended the session after %lldms, "
                 "apply had exited with ABORTED after %lldms\n",
                 round + 1, cut_in,
                 static_cast<long long>(absl::ToInt64Milliseconds(session_ended)),
                 static_cast<long long>(absl::ToInt64Milliseconds(absl::Now() - cut)));
    EXPECT_THAT(apply.Log(), HasSubstr("the run was cut off (lock or connection lost)"));
    EXPECT_THAT(apply.Log(), HasSubstr("lost the run connection"));

    // Back online; the coordinator reconnects its reads but, with the
    // lock lost, never resumes that run on a new connection.
    proxy.Resume();
    ASSERT_TRUE(WaitUntil(
        [&] {
          std::string out;
          return RunBinary(Ctl(coordinator.address(), {"status"}), &out) == 1 &&
                 out.find("BEHIND") != std::string::npos;
        },
        absl::Seconds(30)));
    const std::string after_cut =
        absl::StrCat("SELECT count(*) FROM chaos_audit WHERE at >= '", lock_lost_at, "'");
    EXPECT_EQ(db.Query(after_cut), "0");
    // Only the migrations before the cut committed, all by the lost session;
    // the one it was in left nothing.
    EXPECT_EQ(db.Query("SELECT count(*) FROM schemagate.migrations"), absl::StrCat(cut_in - 1));
    EXPECT_EQ(db.Query(absl::StrCat("SELECT count(*) FROM chaos_audit WHERE pid <> ", run_pid)),
              "0");
    EXPECT_EQ(db.Query(absl::StrCat("SELECT count(*) FROM chaos_audit WHERE version >= ", cut_in)),
              "0");

    // The operator retries: a new run, a new session and lock, the rest once.
    std::string out;
    EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply"}), &out), 0) << out;
    ExpectEachAppliedExactlyOnce(db.url(), kMigrations);
    EXPECT_EQ(db.Query(absl::StrCat("SELECT count(*) FROM chaos_audit WHERE pid = ", run_pid,
                                    " AND at >= '", lock_lost_at, "'")),
              "0");
    EXPECT_EQ(db.Query(absl::StrCat("SELECT count(DISTINCT version) FROM chaos_audit WHERE pid <> ",
                                    run_pid, " AND at > '", lock_lost_at, "'")),
              absl::StrCat(kMigrations - cut_in + 1));
    EXPECT_EQ(db.Query("SELECT count(*) FROM schemagate.events WHERE kind = 'run_start'"), "2");
    EXPECT_GE(proxy.relayed(), 3);
  }
}

// The running coordinator's host drops off the network (the link of its
// network namespace goes down: no FIN, no RST, packets just vanish). With
// keepalives and tcp_user_timeout on both ends of the run session,
// PostgreSQL ends that session within seconds, which rolls back the
// migration in flight and frees the lock; the standby finishes the run; the
// cut-off coordinator's own end gives up (ABORTED) and, back online, does
// not resume the run.
TEST_F(ChaosTest, PartitionedCoordinatorLosesTheLockWithinSecondsAndTheStandbyFinishes) {
  testing::NetworkNamespace ns;
  if (!ns.ok()) GTEST_SKIP() << "needs root for a network namespace (ip netns)";
  testing::PrivatePostgres pg(ns.host_address());
  ASSERT_TRUE(pg.ok());
  constexpr int kMigrations = 4;
  const int rounds = EnvInt("SCHEMAGATE_CHAOS_FAULT_ROUNDS", 1);
  for (int round = 0; round < rounds && !HasFailure(); ++round) {
    SCOPED_TRACE(absl::StrCat("partition round ", round + 1));
    const std::string name = absl::StrCat("chaos_partition_", round);
    ASSERT_TRUE(TryQuery(pg.Url(), absl::StrCat("CREATE DATABASE ", name)).has_value());
    const std::string url = pg.Url(name);
    ASSERT_TRUE(TryQuery(url, kCreateAudit).has_value());
    TempDir dir;
    WriteAuditedMigrations(dir, kMigrations, 1000);
    // The coordinator that runs first reaches PostgreSQL over the veth link.
    std::vector<std::string> argv = {
        BinaryPath("schemagated"),
        "--database-url",
        testing::WithHostPort(url, ns.host_address(), testing::PortOf(url)),
        "--migrations-dir",
        dir.path(),
        "--listen",
        "127.0.0.1:0",
        "--id",
        "a",
        "--resync-interval",
        "1s"};
    ChildProcess a(ns.Inside(argv));
    std::string run_pid;
    ASSERT_TRUE(WaitForPause(url, 2, &run_pid)) << a.Log();
    ASSERT_EQ(RunningCoordinator(url), "a");
    CoordinatorProcess b(url, dir.path(), {"--id", "b"});

    ASSERT_TRUE(ns.SetLinkUp(false));
    const absl::Time cut = absl::Now();
    // PostgreSQL's side: the session of the vanished coordinator ends.
    EXPECT_TRUE(WaitUntil(
        [&] {
          return Query(url, absl::StrCat("SELECT count(*) FROM pg_stat_activity WHERE pid = ",
                                         run_pid)) == "0";
        },
        absl::Seconds(60)))
        << "PostgreSQL kept the partitioned session (and its lock)";
    const absl::Duration server_noticed = absl::Now() - cut;
    std::string out;
    EXPECT_EQ(AgentWait(b.address(), dir.path(), &out), 0) << out << b.process().Log();
    const absl::Duration standby_done = absl::Now() - cut;
    ExpectEachAppliedExactlyOnce(url, kMigrations);
    // The cut hit a run in progress (on a loaded machine, possibly a later migration than 2).
    const int by_a =
        QueryInt(url, "SELECT count(*) FROM schemagate.migrations WHERE applied_by = 'a'");
    EXPECT_GE(by_a, 1);
    EXPECT_LT(by_a, kMigrations);
    // The cut-off coordinator's end: its run stops with ABORTED.
    EXPECT_TRUE(a.WaitForLog("lost the run connection", absl::Seconds(60))) << a.Log();
    const absl::Duration client_noticed = absl::Now() - cut;

    // Back online: it reconnects and finds nothing left to do.
    ASSERT_TRUE(ns.SetLinkUp(true));
    EXPECT_TRUE(WaitUntil(
        [&] {
          const std::string log = a.Log();
          size_t n = 0;
          for (size_t at = log.find("database reachable"); at != std::string::npos;
               at = log.find("database reachable", at + 1)) {
            ++n;
          }
          return n >= 2;
        },
        absl::Seconds(60)))
        << a.Log();
    ExpectEachAppliedExactlyOnce(url, kMigrations);
    EXPECT_EQ(Query(url,
                    "SELECT count(*) FROM schemagate.events WHERE kind = 'run_start' AND "
                    "actor = 'a'"),
              "1");
    std::fprintf(stderr,
                 "partition: PostgreSQL ended the cut-off session after %lldms, the standby was "
                 "done after %lldms, the cut-off coordinator gave up after %lldms\n",
                 static_cast<long long>(absl::ToInt64Milliseconds(server_noticed)),
                 static_cast<long long>(absl::ToInt64Milliseconds(standby_done)),
                 static_cast<long long>(absl::ToInt64Milliseconds(client_noticed)));
  }
}

// PostgreSQL restarted (fast shutdown) while a migration runs: the run is
// cut, the coordinator reconnects and retries on its own, and every
// migration ends up applied once.
TEST_F(ChaosTest, PostgresRestartedMidRunTheCoordinatorRetriesAndAppliesEachMigrationOnce) {
  const int rounds = EnvInt("SCHEMAGATE_CHAOS_FAULT_ROUNDS", 1);
  testing::PrivatePostgres pg;
  ASSERT_TRUE(pg.ok());
  constexpr int kMigrations = 4;
  for (int round = 0; round < rounds && !HasFailure(); ++round) {
    SCOPED_TRACE(absl::StrCat("restart round ", round + 1));
    const std::string name = absl::StrCat("chaos_restart_", round);
    ASSERT_TRUE(TryQuery(pg.Url(), absl::StrCat("CREATE DATABASE ", name)).has_value());
    const std::string url = pg.Url(name);
    ASSERT_TRUE(TryQuery(url, kCreateAudit).has_value());
    TempDir dir;
    WriteAuditedMigrations(dir, kMigrations, 500);
    CoordinatorProcess coordinator(url, dir.path(), {"--resync-interval", "1s"});
    const int restart_in = 1 + round % kMigrations;
    ASSERT_TRUE(WaitForPause(url, restart_in)) << coordinator.process().Log();
    const absl::Time restart = absl::Now();
    ASSERT_TRUE(pg.Stop());
    ASSERT_TRUE(pg.Start());
    const absl::Duration down = absl::Now() - restart;
    std::string out;
    EXPECT_EQ(AgentWait(coordinator.address(), dir.path(), &out), 0)
        << out << coordinator.process().Log();
    std::fprintf(stderr,
                 "restart round %d: restarted in migration %d; PostgreSQL back after %lldms, "
                 "every migration applied %lldms after the restart began\n",
                 round + 1, restart_in, static_cast<long long>(absl::ToInt64Milliseconds(down)),
                 static_cast<long long>(absl::ToInt64Milliseconds(absl::Now() - restart)));
    ExpectEachAppliedExactlyOnce(url, kMigrations);
    EXPECT_THAT(coordinator.process().Log(), HasSubstr("automatic run stopped"));
    EXPECT_TRUE(coordinator.process().running());
  }
}

// A long transaction holds a lock the migration needs: the migration's
// lock_timeout trips and it retries with backoff, so the application's
// queries on that table wait at most about lock_timeout instead of the
// whole long transaction; once it ends the migration applies, and history
// shows the retries.
TEST_F(ChaosTest, LockContentionTripsLockTimeoutRetriesAndAppQueriesNeverWaitLonger) {
  TestDatabase db;
  db.Exec("CREATE TABLE accounts (id bigint PRIMARY KEY, email text)");
  db.Exec("INSERT INTO accounts SELECT g, 'user' || g FROM generate_series(1, 100) g");
  TempDir dir;
  dir.Write("0001_accounts_note.up.sql",
            "-- schemagate:lock-timeout=200ms\nALTER TABLE accounts ADD COLUMN note text;\n");
  const absl::Duration kLockTimeout = absl::Milliseconds(200);

  // A reporting query left open: ACCESS SHARE on accounts, which the
  // migration's ACCESS EXCLUSIVE must wait for.
  pqxx::connection holder(db.url());
  pqxx::work long_tx(holder);
  long_tx.exec("SELECT count(*) FROM accounts");

  // The application: one short query after another, each timed.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> slowest_us{0}, queries{0}, blocked{0};
  std::thread app([&] {
    pqxx::connection conn(db.url());
    while (!stop) {
      const absl::Time start = absl::Now();
      pqxx::nontransaction tx(conn);
      tx.exec("SELECT email FROM accounts WHERE id = 42");
      const int64_t us = absl::ToInt64Microseconds(absl::Now() - start);
      slowest_us = std::max<int64_t>(slowest_us, us);
      ++queries;
      if (us > 50000) ++blocked;
      absl::SleepFor(absl::Milliseconds(10));
    }
  });

  CoordinatorProcess coordinator(db.url(), dir.path(), {"--lock-retries", "10"});
  const std::string retries =
      "SELECT count(*) FROM schemagate.events WHERE kind = 'lock_timeout' AND version = 1"
      " AND sqlstate = '55P03'";
  EXPECT_TRUE(WaitUntil([&] { return QueryInt(db.url(), retries) >= 2; }, absl::Seconds(60)))
      << coordinator.process().Log();
  EXPECT_EQ(db.Query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"),
            "0");
  long_tx.commit();

  std::string out;
  EXPECT_EQ(AgentWait(coordinator.address(), dir.path(), &out, "60s"), 0) << out;
  stop = true;
  app.join();
  EXPECT_EQ(db.Query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"),
            "1");
  // The app really queued behind the migration (it is not a vacuous bound),
  // but never for much longer than the lock_timeout.
  EXPECT_GE(blocked.load(), 1) << queries << " queries";
  EXPECT_LT(absl::Microseconds(slowest_us.load()), kLockTimeout + absl::Seconds(1))
      << "slowest application query while the migration waited for its lock";
  std::fprintf(stderr,
               "lock contention: %lld app queries, %lld queued behind the migration, slowest "
               "%lldms (lock_timeout 200ms); %s lock_timeout retries\n",
               static_cast<long long>(queries.load()), static_cast<long long>(blocked.load()),
               static_cast<long long>(slowest_us.load() / 1000), db.Query(retries).c_str());
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"history"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("lock_timeout"));
  EXPECT_EQ(db.Query("SELECT count(*) FROM schemagate.events WHERE kind = 'apply'"), "1");
}

// PgBouncer in transaction pooling mode in front of PostgreSQL: the session
// lock would not protect the run, so schemagated refuses it, saying why:
// at start-up, and before every run (for a database that only became
// reachable through the pooler later). Pointed at PostgreSQL directly the
// same set applies.
TEST_F(ChaosTest, PgBouncerTransactionPoolingIsDetectedAndRefused) {
  testing::PgBouncer bouncer("127.0.0.1", testing::PortOf(AdminUrl()), "transaction");
  if (!bouncer.ok()) {
    if (std::getenv("CI") != nullptr) FAIL() << "pgbouncer missing: run deploy/install-deps.sh";
    GTEST_SKIP() << "pgbouncer not installed";
  }
  TestDatabase db;
  TempDir dir;
  testing::WriteTrivialMigrations(dir, 1, 2);
  const std::string pooled_url = testing::WithHostPort(db.url(), "127.0.0.1", bouncer.port());
  const std::string refusal =
      "--database-url goes through a connection pooler such as PgBouncer (the session's "
      "backend pid";
  std::string out;
  EXPECT_EQ(RunBinary({BinaryPath("schemagated"), "--database-url", pooled_url, "--migrations-dir",
                       dir.path(), "--listen", "127.0.0.1:0"},
                      &out, absl::Seconds(30)),
            2)
      << out;
  EXPECT_THAT(out, HasSubstr(absl::StrCat("refusing to start: ", refusal)));
  EXPECT_THAT(out, HasSubstr("pool_mode=transaction"));
  EXPECT_EQ(db.Query("SELECT to_regclass('schemagate.migrations')"), "");

  // PgBouncer unreachable at start-up (a proxy in front of it is cut), then
  // back: the coordinator serves, and each run refuses before the lock.
  testing::TcpProxy proxy("127.0.0.1", bouncer.port());
  proxy.Cut();
  CoordinatorProcess coordinator(testing::WithHostPort(db.url(), "127.0.0.1", proxy.port()),
                                 dir.path(), {"--apply", "manual"}, "127.0.0.1:0",
                                 /*wait_until_serving=*/false);
  ASSERT_TRUE(coordinator.process().WaitForLog("serving on", absl::Seconds(30)))
      << coordinator.process().Log();
  proxy.Resume();
  ASSERT_TRUE(coordinator.process().WaitForLog("database reachable", absl::Seconds(60)))
      << coordinator.process().Log();
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply"}), &out), 5) << out;
  EXPECT_THAT(out, HasSubstr(absl::StrCat("refusing to run: ", refusal)));
  EXPECT_EQ(db.Query("SELECT to_regclass('schemagate.migrations')"), "");

  CoordinatorProcess direct(db.url(), dir.path());
  EXPECT_EQ(AgentWait(direct.address(), dir.path(), &out, "30s"), 0) << out;
}

}  // namespace
}  // namespace schemagate
