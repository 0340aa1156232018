// End-to-end tests of the three real binaries against a real PostgreSQL.
// Counts are small by default; SCHEMAGATE_E2E_AGENTS, SCHEMAGATE_E2E_WAITERS
// and SCHEMAGATE_E2E_MIGRATIONS raise them.
#include <signal.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/channel.h"
#include "coordinator/base/flags.h"
#include "coordinator/postgres/pg_store.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "schemagate/v1/schemagate.grpc.pb.h"
#include "tests/support/tcp_proxy.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::EnvInt;
using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::ChildProcess;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Agent(const std::string& coordinators, std::vector<std::string> args) {
  std::vector<std::string> argv = {BinaryPath("schemagate-agent")};
  argv.insert(argv.end(), args.begin(), args.end());
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "@coordinators") argv[i] = coordinators;
  }
  return argv;
}

std::vector<std::string> Ctl(const std::string& coordinator, std::vector<std::string> args) {
  std::vector<std::string> argv = {BinaryPath("schemagatectl")};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--coordinator");
  argv.push_back(coordinator);
  return argv;
}

class EndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
  }
  int Count(const std::string& sql) { return std::stoi(db_->Query(sql)); }

  std::unique_ptr<TestDatabase> db_;
  TempDir dir_;
};

// The acceptance storm: coordinators and agents started at the same moment
// against an empty database and pending migrations.
TEST_F(EndToEndTest, CoordinatorsAndAgentsStartedTogetherApplyEachMigrationOnce) {
  const int kCoordinators = 3;
  const int kAgents = EnvInt("SCHEMAGATE_E2E_AGENTS", 50);
  const int kMigrations = EnvInt("SCHEMAGATE_E2E_MIGRATIONS", 30);
  testing::WriteTrivialMigrations(dir_, 1, kMigrations);
  // The coordinators listen on port 0, so the agents get the addresses only
  // once every coordinator serves. Until then the test holds the run lock:
  // nothing is applied before the agents start, and the coordinators race
  // for the lock when it is let go.
  pqxx::connection holder(db_->url());
  const std::string key = absl::StrCat(DeriveLockKey(db_->name(), "schemagate"));
  pqxx::nontransaction(holder).exec(absl::StrCat("SELECT pg_advisory_lock(", key, ")"));
  std::vector<std::unique_ptr<CoordinatorProcess>> coordinators;
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (int i = 0; i < kCoordinators; ++i) {
    coordinators.push_back(std::make_unique<CoordinatorProcess>(
        db_->url(), dir_.path(), std::vector<std::string>{"--id", absl::StrCat("c", i)},
        "127.0.0.1:0", /*wait_until_serving=*/false));
  }
  std::vector<std::string> addresses;
  for (auto& c : coordinators) addresses.push_back(c->address());
  const std::string list = absl::StrJoin(addresses, ",");
  for (int i = 0; i < kAgents; ++i) {
    std::vector<std::string> args = {"wait", "--coordinator", "@coordinators", "--timeout", "120s",
                                     "--instance-id", absl::StrCat("agent-", i)};
    if (i % 2 == 0) {
      args.push_back("--migrations-dir");
      args.push_back(dir_.path());
    }
    args.insert(args.end(), {"--", "true"});
    agents.push_back(std::make_unique<ChildProcess>(Agent(list, args)));
  }
  pqxx::nontransaction(holder).exec(absl::StrCat("SELECT pg_advisory_unlock(", key, ")"));
  int ready = 0;
  for (auto& agent : agents) {
    const int code = agent->Wait(absl::Seconds(150));
    EXPECT_EQ(code, 0) << agent->Log();
    ready += code == 0;
  }
  EXPECT_EQ(ready, kAgents);
  EXPECT_EQ(Count("SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"),
            kMigrations);
  EXPECT_EQ(Count("SELECT count(*) FROM schemagate.events WHERE kind = 'apply'"), kMigrations);
  EXPECT_EQ(Count("SELECT count(DISTINCT version) FROM schemagate.events WHERE kind = 'apply'"),
            kMigrations);
  for (auto& c : coordinators) {
    EXPECT_TRUE(c->process().running()) << c->process().Log();
    EXPECT_THAT(c->process().Log(), Not(HasSubstr(" ERROR "))) << c->process().Log();
  }
}

TEST_F(EndToEndTest, FailedMigrationIsRecordedAgentsExit5AndTheCoordinatorKeepsServing) {
  dir_.Write("0001_users.up.sql", "CREATE TABLE users (id bigint PRIMARY KEY);\n");
  dir_.Write("0002_broken.up.sql",
             "ALTER TABLE users ADD COLUMN score int;\nSELECT 1 / 0;\n");
  CoordinatorProcess failing(db_->url(), dir_.path());
  std::string out;
  EXPECT_EQ(RunBinary(Agent(failing.address(), {"wait", "--coordinator", "@coordinators",
                                                "--timeout", "60s", "--", "true"}),
                      &out),
            5)
      << out;
  EXPECT_THAT(out, HasSubstr("FAILED"));
  EXPECT_THAT(out, HasSubstr("22012"));

  EXPECT_EQ(RunBinary(Ctl(failing.address(), {"history"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("failure"));
  EXPECT_THAT(out, HasSubstr("[SQLSTATE 22012] division by zero (statement 2, line 2)"));
  EXPECT_EQ(RunBinary(Ctl(failing.address(), {"status"}), &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("state:        FAILED"));
  // Rolled back: the first statement of the failed migration left nothing.
  EXPECT_EQ(Count("SELECT count(*) FROM information_schema.columns WHERE column_name = 'score'"),
            0);
  // Still serving: an app that needs only version 1 is ready.
  EXPECT_EQ(RunBinary(Agent(failing.address(),
                            {"check", "--coordinator", "@coordinators", "--known", "1"}),
                      &out),
            0)
      << out;
  EXPECT_TRUE(failing.process().running());

  // Fixed in place and retried by an operator: history keeps both runs.
  dir_.Write("0002_broken.up.sql", "ALTER TABLE users ADD COLUMN score int;\n");
  CoordinatorProcess fixed(db_->url(), dir_.path(), {"--apply", "manual"});
  EXPECT_EQ(RunBinary(Ctl(fixed.address(), {"apply"}), &out), 0) << out;
  EXPECT_EQ(RunBinary(Ctl(fixed.address(), {"status"}), &out), 0) << out;
  EXPECT_EQ(Count("SELECT count(*) FROM schemagate.events WHERE kind = 'run_start'"), 2);
}

TEST_F(EndToEndTest, MalformedMigrationDirectoriesAreRefusedAtStartup) {
  struct Case {
    std::string file, content, expected;
  };
  const std::vector<Case> cases = {
      {"0001_dup.up.sql", "SELECT 1;\n", "duplicate version 1"},
      {"0002_bad.up.sql", "SELECT 1;\nCREATE TABLE (x int);\n", "0002_bad.up.sql:2: syntax error"},
      {"0003_idx.up.sql", "CREATE INDEX CONCURRENTLY i ON t (x);\n",
       "0003_idx.up.sql:1: CREATE INDEX CONCURRENTLY cannot run inside a transaction"},
  };
  for (const Case& c : cases) {
    TempDir dir;
    dir.Write("1_first.up.sql", "SELECT 1;\n");
    dir.Write(c.file, c.content);
    std::string out;
    const int code = RunBinary({BinaryPath("schemagated"), "--database-url", db_->url(),
                                "--migrations-dir", dir.path(), "--listen", "127.0.0.1:0"},
                               &out, absl::Seconds(20));
    EXPECT_EQ(code, 2) << out;
    EXPECT_THAT(out, HasSubstr(c.expected));
    EXPECT_THAT(out, HasSubstr("refusing to start"));
  }
  EXPECT_EQ(db_->Query("SELECT to_regclass('schemagate.migrations')"), "");
}

// A waiting agent costs no thread: many streams, one small thread pool.
class WaitStreamClient : public grpc::ClientReadReactor<v1::Readiness> {
 public:
  WaitStreamClient(v1::AgentService::Stub* stub) {
    SetDeadline(&context_, absl::Seconds(120));
    stub->async()->Wait(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      absl::MutexLock lock(&mu_);
      ++messages_;
      last_ = response_.state();
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
    status_ = status;
  }
  int messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  v1::ReadinessState last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  grpc::ClientContext context_;
  v1::WaitRequest request_;
  v1::Readiness response_;
  absl::Mutex mu_;
  int messages_ ABSL_GUARDED_BY(mu_) = 0;
  v1::ReadinessState last_ ABSL_GUARDED_BY(mu_) = v1::READINESS_STATE_UNSPECIFIED;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

TEST_F(EndToEndTest, FiveHundredWaitStreamsSeeReadyWithFewCoordinatorThreads) {
  const int kWaiters = EnvInt("SCHEMAGATE_E2E_WAITERS", 500);
  testing::WriteTrivialMigrations(dir_, 1, 3);
  CoordinatorProcess coordinator(db_->url(), dir_.path(), {"--apply", "manual"});
  constexpr int kChannels = 8;
  std::vector<std::unique_ptr<v1::AgentService::Stub>> stubs;
  for (int i = 0; i < kChannels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("schemagate.test.channel", i);  // Distinct connections.
    stubs.push_back(v1::AgentService::NewStub(grpc::CreateCustomChannel(
        coordinator.address(), grpc::InsecureChannelCredentials(), args)));
  }
  std::vector<std::unique_ptr<WaitStreamClient>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(std::make_unique<WaitStreamClient>(stubs[i % kChannels].get()));
  }
  auto all = [&](auto predicate) {
    for (int i = 0; i < 600; ++i) {
      bool ok = true;
      for (auto& w : waiters) ok = ok && predicate(*w);
      if (ok) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  };
  ASSERT_TRUE(all([](WaitStreamClient& w) { return w.last() == v1::PENDING; }));
  int peak_threads = coordinator.ThreadCount();
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      peak_threads = std::max(peak_threads, coordinator.ThreadCount());
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  std::string out;
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply"}), &out), 0) << out;
  const bool all_ready = all([](WaitStreamClient& w) { return w.done(); });
  sampling = false;
  sampler.join();
  ASSERT_TRUE(all_ready);
  int ready = 0;
  for (auto& w : waiters) {
    ready += w->last() == v1::READY && w->status().ok();
  }
  EXPECT_EQ(ready, kWaiters);
  EXPECT_GT(peak_threads, 0);
  EXPECT_LT(peak_threads, 64) << "coordinator threads with " << kWaiters << " waiting streams";
  std::fprintf(stderr, "%d Wait streams: coordinator peak threads %d\n", kWaiters, peak_threads);
}

TEST_F(EndToEndTest, AgentSupervisesTheAppForwardingSignalsAndItsExitCode) {
  testing::WriteTrivialMigrations(dir_, 1, 2);
  CoordinatorProcess coordinator(db_->url(), dir_.path());
  ChildProcess agent(Agent(coordinator.address(),
                           {"wait", "--coordinator", "@coordinators", "--timeout", "30s", "--",
                            "sh", "-c",
                            "trap 'echo got-term; exit 42' TERM; echo app-started; "
                            "while true; do sleep 0.05; done"}));
  ASSERT_TRUE(agent.WaitForLog("app-started", absl::Seconds(30))) << agent.Log();
  EXPECT_THAT(agent.Log(), HasSubstr("READY"));
  agent.Signal(SIGTERM);
  EXPECT_EQ(agent.Wait(absl::Seconds(10)), 42) << agent.Log();
  EXPECT_THAT(agent.Log(), HasSubstr("got-term"));

  std::string out;
  EXPECT_EQ(RunBinary(Agent(coordinator.address(),
                            {"wait", "--coordinator", "@coordinators", "--", "sh", "-c", "exit 9"}),
                      &out),
            9);
  EXPECT_EQ(RunBinary(Agent(coordinator.address(), {"wait", "--coordinator", "@coordinators",
                                                    "--exec", "--", "sh", "-c", "exit 11"}),
                      &out),
            11);
  EXPECT_EQ(RunBinary(Agent(coordinator.address(), {"wait", "--coordinator", "@coordinators",
                                                    "--", "/nonexistent/app"}),
                      &out),
            127);
  EXPECT_THAT(out, HasSubstr("cannot start /nonexistent/app"));
}

// A database blip while the app runs: the attached agent logs the state it
// is told (UNAVAILABLE) and, once, that it is READY again.
TEST_F(EndToEndTest, AnAttachedAgentLogsTheReturnToReady) {
  testing::WriteTrivialMigrations(dir_, 1, 2);
  testing::TcpProxy proxy("127.0.0.1", testing::PortOf(db_->url()));
  ASSERT_GT(proxy.port(), 0);
  CoordinatorProcess coordinator(testing::WithHostPort(db_->url(), "127.0.0.1", proxy.port()),
                                 dir_.path());
  ChildProcess agent(Agent(coordinator.address(),
                           {"wait", "--coordinator", "@coordinators", "--timeout", "30s",
                            "--instance-id", "blip", "--", "sh", "-c",
                            "echo app-started; while true; do sleep 0.05; done"}));
  ASSERT_TRUE(agent.WaitForLog("app-started", absl::Seconds(30))) << agent.Log();
  proxy.Cut();
  ASSERT_TRUE(agent.WaitForLog("attached instance is now UNAVAILABLE", absl::Seconds(60)))
      << agent.Log() << coordinator.process().Log();
  EXPECT_THAT(agent.Log(), Not(HasSubstr("READY again")));
  proxy.Resume();
  ASSERT_TRUE(agent.WaitForLog("attached instance is READY again (was UNAVAILABLE)",
                               absl::Seconds(60)))
      << agent.Log() << coordinator.process().Log();
  agent.Signal(SIGTERM);
  agent.Wait(absl::Seconds(10));
}

TEST_F(EndToEndTest, AgentExitCodesFollowTheContract) {
  testing::WriteTrivialMigrations(dir_, 1, 2);
  CoordinatorProcess coordinator(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  // 7: nobody answers.
  EXPECT_EQ(RunBinary(Agent("", {"wait", "--coordinator", "127.0.0.1:1", "--timeout", "2s"}),
                      &out),
            7)
      << out;
  // 3: pending under manual apply until the timeout.
  EXPECT_EQ(RunBinary(Agent(coordinator.address(),
                            {"wait", "--coordinator", "@coordinators", "--timeout", "2s"}),
                      &out),
            3)
      << out;
  EXPECT_THAT(out, HasSubstr("PENDING"));
  // 3 for a probe that is not ready; UNKNOWN_VERSION is not final.
  EXPECT_EQ(RunBinary(Agent(coordinator.address(),
                            {"check", "--coordinator", "@coordinators", "--known", "9"}),
                      &out),
            3);
  EXPECT_THAT(out, HasSubstr("UNKNOWN_VERSION"));
  // 2: usage.
  EXPECT_EQ(RunBinary(Agent("", {"wait", "--no-such-flag"}), &out), 2);
  EXPECT_EQ(RunBinary(Agent("", {"wait", "--known", "2", "--required", "5"}), &out), 2);
  EXPECT_THAT(out, HasSubstr("above --known"));
  // 4: the app's file differs from the applied one.
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply"}), &out), 0) << out;
  TempDir edited;
  testing::WriteTrivialMigrations(edited, 1, 2);
  edited.Write("0002_table_2.up.sql", "CREATE TABLE t2 (id bigint, changed int);\n");
  EXPECT_EQ(RunBinary(Agent(coordinator.address(), {"wait", "--coordinator", "@coordinators",
                                                    "--migrations-dir", edited.path(),
                                                    "--timeout", "10s"}),
                      &out),
            4)
      << out;
  EXPECT_THAT(out, HasSubstr("MISMATCH"));
  // A dead coordinator first in the list: the agent moves on to the next.
  EXPECT_EQ(RunBinary(Agent(absl::StrCat("127.0.0.1:1,", coordinator.address()),
                            {"wait", "--coordinator", "@coordinators", "--timeout", "20s"}),
                      &out),
            0)
      << out;
}

TEST_F(EndToEndTest, CtlStatusPlanApplyAndNew) {
  testing::WriteTrivialMigrations(dir_, 1, 3);
  CoordinatorProcess coordinator(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"status"}), &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("BEHIND"));
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"plan"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("CREATE TABLE t3"));
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply", "--target", "2"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("applied  2_table_2"));
  EXPECT_THAT(out, HasSubstr("statement 1/1"));
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply", "--target", "42"}), &out), 2) << out;
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"apply", "--output", "json"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"kind\":\"MIGRATION_FINISHED\""));
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"status", "--output", "json"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"state\": \"CURRENT\""));
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"migrations"}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("3        table_3"));
  EXPECT_EQ(RunBinary(Ctl("127.0.0.1:1", {"status", "--timeout", "2s"}), &out), 7) << out;
  EXPECT_THAT(out, HasSubstr("is schemagated running"));

  TempDir fresh;
  EXPECT_EQ(RunBinary(Ctl("unused", {"new", "Add Users Index", "--no-transaction",
                                     "--migrations-dir", fresh.path()}),
                      &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("_add_users_index.up.sql"));
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "--help"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("Exit codes"));
}

TEST_F(EndToEndTest, NewCreatesTheDirectoryAndTakesTheNextFreeVersion) {
  TempDir project;
  const std::string dir = project.path() + "/db/migrations";
  std::string out;
  EXPECT_EQ(RunBinary(Ctl("unused", {"new", "first", "--migrations-dir", dir}), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("created directory " + dir + "\n"));
  EXPECT_THAT(out, HasSubstr("_first.up.sql"));
  // Every second from now on for two minutes is taken (as by `new` calls
  // made in the same seconds): the next one is free.
  const absl::Time now = absl::Now();
  std::set<std::string> taken;
  for (int i = -1; i < 120; ++i) {
    taken.insert(absl::FormatTime("%Y%m%d%H%M%S", now + absl::Seconds(i), absl::UTCTimeZone()));
    project.Write(absl::StrCat("db/migrations/", *taken.rbegin(), "_taken.up.sql"), "SELECT 1;\n");
  }
  EXPECT_EQ(RunBinary(Ctl("unused", {"new", "second", "--migrations-dir", dir, "--output", "json"}),
                      &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("\"created_directory\": false"));
  const size_t at = out.find("\"version\": \"");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string version = out.substr(at + 12, 14);
  EXPECT_EQ(taken.count(version), 0u) << version;
  EXPECT_GT(version, *taken.rbegin());
  EXPECT_THAT(out, HasSubstr(absl::StrCat(dir, "/", version, "_second.up.sql")));
}

TEST_F(EndToEndTest, CredentialsNeverReachTheLog) {
  testing::WriteTrivialMigrations(dir_, 1, 1);
  db_->Exec("DO $$ BEGIN CREATE ROLE sg_secret_user LOGIN PASSWORD 'hunter2-very-secret'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$");
  db_->Exec(absl::StrCat("GRANT ALL ON DATABASE ", db_->name(), " TO sg_secret_user"));
  db_->Exec("GRANT ALL ON SCHEMA public TO sg_secret_user");
  std::string url = db_->url();
  url.replace(url.find("://") + 3, url.find('@') - url.find("://") - 3,
              "sg_secret_user:hunter2-very-secret");
  CoordinatorProcess coordinator(url, dir_.path());
  std::string out;
  EXPECT_EQ(RunBinary(Agent(coordinator.address(),
                            {"wait", "--coordinator", "@coordinators", "--timeout", "30s"}),
                      &out),
            0)
      << out;
  EXPECT_EQ(RunBinary(Ctl(coordinator.address(), {"status"}), &out), 0) << out;
  EXPECT_THAT(out, Not(HasSubstr("hunter2")));
  EXPECT_THAT(out, HasSubstr("sg_secret_user:***@"));
  coordinator.process().Signal(SIGTERM);
  EXPECT_EQ(coordinator.process().Wait(absl::Seconds(10)), 0);
  EXPECT_THAT(coordinator.process().Log(), Not(HasSubstr("hunter2")));
  EXPECT_THAT(coordinator.process().Log(), HasSubstr("sg_secret_user:***@"));
}

}  // namespace
}  // namespace schemagate

namespace schemagate {
namespace {

TEST_F(EndToEndTest, LintFlagsUnsafeMigrationsAndTheCoordinatorRefusesToStartOnLintErrors) {
  dir_.Write("0001_users.up.sql", "CREATE TABLE users (id bigint, nickname text);\n");
  dir_.Write("0002_drop_nickname.up.sql",
             "-- a contract change nobody marked\nALTER TABLE users DROP COLUMN nickname;\n");
  dir_.Write("0003_index.up.sql", "CREATE INDEX users_id ON users (id);\n");
  std::string out;
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "lint", "--migrations-dir", dir_.path()}, &out),
            1)
      << out;
  EXPECT_THAT(out, HasSubstr("0002_drop_nickname.up.sql:2: error:"));
  EXPECT_THAT(out, HasSubstr("[drop-column-not-breaking]"));
  EXPECT_THAT(out, HasSubstr("0003_index.up.sql:1: warning:"));
  EXPECT_THAT(out, HasSubstr("[index-not-concurrent]"));
  EXPECT_THAT(out, HasSubstr("1 error(s), 1 warning(s)"));

  // Refused at load, before anything is applied (tests/e2e/lint_load_test.cc
  // has the waivers).
  {
    CoordinatorProcess strict(db_->url(), dir_.path(), {}, "127.0.0.1:0",
                              /*wait_until_serving=*/false);
    EXPECT_EQ(strict.process().Wait(absl::Seconds(30)), 2) << strict.process().Log();
    EXPECT_THAT(strict.process().Log(), HasSubstr("0002_drop_nickname.up.sql:2: error:"));
    EXPECT_EQ(Count("SELECT count(*) FROM pg_namespace WHERE nspname = 'schemagate'"), 0);
  }
  // The operator accepts the risk: --lint=warn starts and applies it.
  CoordinatorProcess lenient(db_->url(), dir_.path(), {"--lint", "warn", "--apply", "manual"});
  EXPECT_THAT(lenient.process().Log(), HasSubstr("0002_drop_nickname.up.sql:2: error:"));
  EXPECT_EQ(RunBinary(Ctl(lenient.address(), {"apply"}), &out), 0) << out;
  EXPECT_EQ(db_->Query("SELECT string_agg(version::text, ',') FROM schemagate.migrations"),
            "1,2,3");
}

TEST_F(EndToEndTest, MetricsShowPendingHeadAndWaitingAgentsDuringARun) {
  dir_.Write("0001_a.up.sql", "CREATE TABLE a (id int);\n");
  dir_.Write("0002_slow.up.sql", "SELECT pg_sleep(3);\n");
  dir_.Write("0003_c.up.sql", "CREATE TABLE c (id int);\n");
  CoordinatorProcess coordinator(db_->url(), dir_.path(),
                                 {"--apply", "manual", "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(coordinator.process().WaitForLog("/metrics", absl::Seconds(10)));
  const std::string log = coordinator.process().Log();
  const size_t at = log.find("metrics on http://");
  const std::string url = log.substr(at + 18, log.find('\n', at) - at - 18);
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (int i = 0; i < 3; ++i) {
    agents.push_back(std::make_unique<ChildProcess>(
        Agent(coordinator.address(), {"wait", "--coordinator", "@coordinators", "--app", "web",
                                      "--app-version", "7.1", "--timeout", "60s"})));
  }
  for (auto& agent : agents) ASSERT_TRUE(agent->WaitForLog("PENDING", absl::Seconds(20)));
  ChildProcess apply(Ctl(coordinator.address(), {"apply"}));
  ASSERT_TRUE(apply.WaitForLog("applying 2_slow", absl::Seconds(20))) << apply.Log();
  // The run has applied 1_a; the coordinator's snapshot (and so the metrics)
  // follows by NOTIFY a moment later, which a loaded machine can delay: read
  // again until it shows, within 2_slow's 3 s.
  std::string metrics;
  // The snapshot follows migration 1's commit by its notification: wait for
  // it (well within the 3 s of the slow migration).
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(RunBinary({"/usr/bin/curl", "-sf", url}, &metrics), 0) << url;
    if (absl::StrContains(metrics, "schemagate_applied_version 1\n") &&
        absl::StrContains(metrics, "state=\"MIGRATING\",app=\"web\",app_version=\"7.1\"} 3\n")) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_THAT(metrics, HasSubstr("schemagate_migrations_pending 2\n"));
  EXPECT_THAT(metrics, HasSubstr("schemagate_applied_version 1\n"));
  EXPECT_THAT(metrics, HasSubstr("schemagate_head_version 3\n"));
  EXPECT_THAT(metrics, HasSubstr("schemagate_run_in_progress 1\n"));
  EXPECT_THAT(metrics, HasSubstr("schemagate_lock_held 1\n"));
  EXPECT_THAT(metrics, HasSubstr("schemagate_agents{stream=\"waiting\",state=\"MIGRATING\","
                                 "app=\"web\",app_version=\"7.1\"} 3\n"));
  EXPECT_EQ(apply.Wait(absl::Seconds(30)), 0) << apply.Log();
  for (auto& agent : agents) EXPECT_EQ(agent->Wait(absl::Seconds(20)), 0);
  ASSERT_EQ(RunBinary({"/usr/bin/curl", "-sf", url}, &metrics), 0);
  EXPECT_THAT(metrics, HasSubstr("schemagate_migrations_pending 0\n"));
  EXPECT_THAT(metrics, HasSubstr("schemagate_runs_total{result=\"ok\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("schemagate_run_duration_seconds_count 1\n"));
  // Each agent cancels its Wait as soon as it reads READY (agent/wait_client.cc),
  // so the coordinator counts that Wait as OK or, when the cancel arrives
  // before its own end of the stream, as CANCELLED (code 1); both are a Wait
  // that answered READY. 1 of 6 runs on a loaded machine saw a CANCELLED one.
  auto wait_count = [&metrics](int code) {
    const std::string key = absl::StrCat(
        "schemagate_rpc_requests_total{method=\"/schemagate.v1.AgentService/Wait\",code=\"", code,
        "\"} ");
    const size_t at = metrics.find(key);
    int n = 0;
    if (at != std::string::npos) {
      EXPECT_TRUE(absl::SimpleAtoi(
          metrics.substr(at + key.size(), metrics.find('\n', at) - at - key.size()), &n));
    }
    return n;
  };
  EXPECT_EQ(wait_count(0) + wait_count(1), 3) << metrics;
}

}  // namespace
}  // namespace schemagate
