// The fleet end to end: live instances, expand/contract gating across two
// releases, replicas standing in for each other, the event feed.
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "coordinator/base/flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

std::vector<std::string> Args(const std::string& binary, std::vector<std::string> args) {
  args.insert(args.begin(), BinaryPath(binary));
  return args;
}

// Short leases so that the test runs in seconds; the rules are the same.
const std::vector<std::string> kFleetFlags = {"--lease-ttl", "2s", "--breaking-grace", "2s",
                                              "--resync-interval", "1s"};

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    testing::WriteTwoReleases(release1_, release2_);
  }

  bool Applied(int64_t version) { return testing::IsApplied(*db_, version); }

  std::unique_ptr<TestDatabase> db_;
  TempDir release1_, release2_;
};

TEST_F(FleetTest, ContractMigrationWaitsForTheLastOldInstanceAcrossACoordinatorUpgrade) {
  auto flags = kFleetFlags;
  auto coordinator = std::make_unique<CoordinatorProcess>(db_->url(), release1_.path(), flags);
  // The agent holds this address; release 2 is started on it below.
  const std::string address = coordinator->address();
  // Release 1: one app instance behind the agent.
  ChildProcess old_app(Args("schemagate-agent",
                            {"wait", "--coordinator", address, "--migrations-dir",
                             release1_.path(), "--app", "shop", "--app-version", "1.0",
                             "--instance-id", "shop-v1", "--timeout", "30s", "--", "sh", "-c",
                             "echo old-app-up; while true; do sleep 0.05; done"}));
  ASSERT_TRUE(old_app.WaitForLog("old-app-up", absl::Seconds(30))) << old_app.Log();
  std::string out;
  for (int i = 0; i < 100; ++i) {
    RunBinary(Args("schemagatectl", {"instances", "--coordinator", address}), &out);
    if (out.find("shop-v1") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_THAT(out, HasSubstr("shop-v1"));

  // The coordinator is replaced by release 2 (same address, as a Service).
  coordinator->process().Signal(SIGTERM);
  ASSERT_EQ(coordinator->process().Wait(absl::Seconds(10)), 0);
  coordinator = std::make_unique<CoordinatorProcess>(db_->url(), release2_.path(), flags, address);

  // A release-2 instance needs only 3: it starts at once.
  const absl::Time start = absl::Now();
  EXPECT_EQ(RunBinary(Args("schemagate-agent",
                           {"wait", "--coordinator", address, "--migrations-dir",
                            release2_.path(), "--app", "shop", "--app-version", "2.0",
                            "--timeout", "20s", "--", "true"}),
                      &out),
            0)
      << out;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  // While the release-1 instance lives, 4 waits (well past grace + resync).
  absl::SleepFor(absl::Seconds(6));
  EXPECT_FALSE(Applied(4));
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"instances", "--coordinator", address}), &out), 0);
  EXPECT_THAT(out, HasSubstr("shop-v1"));
  EXPECT_THAT(out, HasSubstr("1.0"));
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"status", "--coordinator", address}), &out), 1);
  // An app that needs the contract step is BLOCKED, not failed.
  EXPECT_EQ(RunBinary(Args("schemagate-agent",
                           {"check", "--coordinator", address, "--known", "4", "--required", "4"}),
                      &out),
            3);
  EXPECT_THAT(out, HasSubstr("BLOCKED"));

  // The release-1 instance exits: 4 is applied within the grace period + 10 s.
  old_app.Signal(SIGTERM);
  ASSERT_EQ(old_app.Wait(absl::Seconds(10)), 143) << old_app.Log();
  const absl::Time exited = absl::Now();
  while (!Applied(4) && absl::Now() - exited < absl::Seconds(12)) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(Applied(4)) << coordinator->process().Log();
  std::fprintf(stderr, "contract migration applied %.1fs after the last old instance exited\n",
               absl::ToDoubleSeconds(absl::Now() - exited));

  // A release-1 agent started afterwards is told it is too old.
  EXPECT_EQ(RunBinary(Args("schemagate-agent",
                           {"wait", "--coordinator", address, "--migrations-dir",
                            release1_.path(), "--timeout", "10s", "--", "true"}),
                      &out),
            4)
      << out;
  EXPECT_THAT(out, HasSubstr("INCOMPATIBLE"));
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"history", "--coordinator", address}), &out), 0);
  EXPECT_THAT(out, HasSubstr("instance_leave"));
  EXPECT_THAT(out, HasSubstr("4 drop_t1"));
}

TEST_F(FleetTest, OperatorCanForceABreakingMigrationAndItIsAudited) {
  // Manual mode: the old app's schema (up to 3) is applied first, then it
  // attaches (on a fresh database with no instance, a breaking migration
  // would not wait: nothing could need the old schema).
  std::vector<std::string> flags = kFleetFlags;
  flags.insert(flags.end(), {"--apply", "manual"});
  auto coordinator = std::make_unique<CoordinatorProcess>(db_->url(), release2_.path(), flags);
  std::string out;
  ASSERT_EQ(RunBinary(Args("schemagatectl", {"apply", "--target", "3", "--coordinator",
                                             coordinator->address()}),
                      &out),
            0)
      << out;
  ChildProcess old_app(Args("schemagate-agent",
                            {"wait", "--coordinator", coordinator->address(), "--known", "3",
                             "--instance-id", "legacy", "--", "sh", "-c",
                             "echo up; while true; do sleep 0.05; done"}));
  ASSERT_TRUE(old_app.WaitForLog("up", absl::Seconds(30))) << old_app.Log();
  absl::SleepFor(absl::Seconds(1));
  // Held back: not everything asked for ran, so not done (exit 1), naming
  // the instance in the way.
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"apply", "--coordinator", coordinator->address()}),
                      &out),
            1);
  EXPECT_THAT(out, HasSubstr("held back"));
  EXPECT_THAT(out, HasSubstr("legacy"));
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"status", "--coordinator", coordinator->address()}),
                      &out),
            1);
  EXPECT_THAT(out, HasSubstr("BLOCKED"));
  EXPECT_THAT(out, HasSubstr("legacy"));
  EXPECT_EQ(RunBinary(Args("schemagatectl",
                           {"apply", "--dry-run", "--coordinator", coordinator->address()}),
                      &out),
            1);
  EXPECT_THAT(out, HasSubstr("held back"));
  EXPECT_FALSE(Applied(4));
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"apply", "--allow-breaking", "--actor", "alice",
                                             "--coordinator", coordinator->address()}),
                      &out),
            0)
      << out;
  EXPECT_TRUE(Applied(4));
  EXPECT_EQ(db_->Query("SELECT actor FROM schemagate.events WHERE kind = 'breaking_forced'"),
            "alice");
  // The running old instance learns it is now incompatible (it keeps running).
  EXPECT_TRUE(old_app.WaitForLog("INCOMPATIBLE", absl::Seconds(10))) << old_app.Log();
}

TEST_F(FleetTest, AgentsReachReadyThroughTheOtherReplicaWhenOneIsKilled) {
  const int kAgents = EnvInt("SCHEMAGATE_E2E_HA_AGENTS", 100);
  CoordinatorProcess first(db_->url(), release1_.path(), {"--apply", "manual"});
  CoordinatorProcess second(db_->url(), release1_.path(), {"--apply", "manual"});
  const std::string a = first.address(), b = second.address();
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (int i = 0; i < kAgents; ++i) {
    agents.push_back(std::make_unique<ChildProcess>(
        Args("schemagate-agent", {"wait", "--coordinator", absl::StrCat(a, ",", b), "--timeout",
                                  "60s", "--instance-id", absl::StrCat("w", i)})));
  }
  // Every agent is waiting (PENDING) somewhere; then one replica dies hard.
  for (auto& agent : agents) ASSERT_TRUE(agent->WaitForLog("PENDING", absl::Seconds(30)));
  first.process().Signal(SIGKILL);
  ASSERT_EQ(first.process().Wait(absl::Seconds(10)), 128 + SIGKILL);
  std::string out;
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"apply", "--coordinator", b}), &out), 0) << out;
  int ready = 0;
  for (auto& agent : agents) {
    const int code = agent->Wait(absl::Seconds(60));
    EXPECT_EQ(code, 0) << agent->Log();
    ready += code == 0;
  }
  EXPECT_EQ(ready, kAgents);
}

TEST_F(FleetTest, EveryReplicaShowsTheSameFleetAndTheEventFeedFollowsIt) {
  CoordinatorProcess first(db_->url(), release1_.path(), kFleetFlags);
  CoordinatorProcess second(db_->url(), release1_.path(), kFleetFlags);
  const std::string a = first.address(), b = second.address();
  ChildProcess watch(Args("schemagatectl", {"watch", "--coordinator", b, "--for", "30s"}));
  absl::SleepFor(absl::Milliseconds(300));
  std::vector<std::unique_ptr<ChildProcess>> apps;
  for (int i = 0; i < 3; ++i) {
    apps.push_back(std::make_unique<ChildProcess>(Args(
        "schemagate-agent",
        {"wait", "--coordinator", i % 2 == 0 ? a : b, "--app", "api", "--app-version",
         i == 2 ? "2.1" : "2.0", "--instance-id", absl::StrCat("api-", i), "--", "sh", "-c",
         "echo running; while true; do sleep 0.05; done"})));
  }
  for (auto& app : apps) ASSERT_TRUE(app->WaitForLog("running", absl::Seconds(30)));
  std::string on_a, on_b;
  for (int i = 0; i < 100; ++i) {
    RunBinary(Args("schemagatectl", {"instances", "--coordinator", a, "-o", "json"}), &on_a);
    RunBinary(Args("schemagatectl", {"instances", "--coordinator", b, "-o", "json"}), &on_b);
    if (on_a.find("api-2") != std::string::npos && on_b.find("api-2") != std::string::npos &&
        on_a.find("api-0") != std::string::npos && on_b.find("api-0") != std::string::npos) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  std::string text_a, text_b;
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"instances", "--coordinator", a}), &text_a), 0);
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"instances", "--coordinator", b}), &text_b), 0);
  EXPECT_THAT(text_a, HasSubstr("3 live instance(s)"));
  // Same fleet, whichever replica answers (ignoring last-seen times).
  auto fleet = [](const std::string& text) {
    std::vector<std::string> ids;
    for (const char* id : {"api-0", "api-1", "api-2"}) {
      if (text.find(id) != std::string::npos) ids.push_back(id);
    }
    return ids;
  };
  EXPECT_EQ(fleet(text_a), fleet(text_b));
  EXPECT_EQ(fleet(text_a).size(), 3u);
  EXPECT_THAT(text_b, HasSubstr("api  2.0      2"));
  EXPECT_THAT(text_b, HasSubstr("api  2.1      1"));

  apps[0]->Signal(SIGTERM);
  EXPECT_EQ(apps[0]->Wait(absl::Seconds(10)), 143);
  EXPECT_TRUE(watch.WaitForLog("instance_leave", absl::Seconds(10))) << watch.Log();
  EXPECT_THAT(watch.Log(), HasSubstr("instance_join"));
  EXPECT_THAT(watch.Log(), HasSubstr("api-0"));
}

TEST_F(FleetTest, ACrashedInstanceStopsCountingWhenItsLeaseExpires) {
  CoordinatorProcess coordinator(db_->url(), release1_.path(), kFleetFlags);
  ChildProcess app(Args("schemagate-agent",
                        {"wait", "--coordinator", coordinator.address(), "--instance-id",
                         "crashy", "--", "sh", "-c", "echo up; while true; do sleep 0.05; done"}));
  ASSERT_TRUE(app.WaitForLog("up", absl::Seconds(30)));
  // The instances table appears with the first attach: until then, none.
  auto live = [&]() -> std::string {
    if (db_->Query("SELECT to_regclass('schemagate.instances') IS NULL") == "t") return "none";
    return db_->Query("SELECT count(*) FROM schemagate.instances WHERE lease_expires > now()");
  };
  ASSERT_TRUE(testing::WaitUntil([&] { return live() == "1"; }, absl::Seconds(10)));
  app.Signal(SIGKILL);  // The agent dies without saying goodbye.
  app.Wait(absl::Seconds(5));
  EXPECT_EQ(live(), "1") << "a crash is not a goodbye: the lease runs on";
  // The 2 s lease, in another process: real time has to pass.
  EXPECT_TRUE(testing::WaitUntil([&] { return live() == "0"; }, absl::Seconds(20)));
}

}  // namespace
}  // namespace schemagate

namespace schemagate {
namespace {

bool HealthIs(const std::string& address, const std::string& want) {
  // The standard health protocol through the generated client.
  std::string out;
  RunBinary({BinaryPath("schemagatectl"), "health", "--coordinator", address}, &out,
            absl::Seconds(10));
  return out.find(want) != std::string::npos;
}

TEST(DatabaseOutageTest, CoordinatorsRideOutAStoppedDatabaseAndFinishTheRollout) {
  if (testing::AdminUrl().empty() && std::getenv("CI") == nullptr) GTEST_SKIP();
  testing::PrivatePostgres pg;
  ASSERT_TRUE(pg.ok());
  const int outage_seconds = EnvInt("SCHEMAGATE_E2E_OUTAGE_SECONDS", 20);
  TempDir dir;
  testing::WriteTrivialMigrations(dir, 1, 5);
  CoordinatorProcess a(pg.Url(), dir.path(), {"--apply", "manual", "--resync-interval", "1s"});
  CoordinatorProcess b(pg.Url(), dir.path(), {"--apply", "manual", "--resync-interval", "1s"});
  std::vector<std::unique_ptr<ChildProcess>> agents;
  for (int i = 0; i < 10; ++i) {
    agents.push_back(std::make_unique<ChildProcess>(Args(
        "schemagate-agent",
        {"wait", "--coordinator", absl::StrCat(a.address(), ",", b.address()), "--timeout",
         "120s"})));
  }
  for (auto& agent : agents) ASSERT_TRUE(agent->WaitForLog("PENDING", absl::Seconds(30)));
  EXPECT_TRUE(HealthIs(a.address(), ": SERVING"));

  ASSERT_TRUE(pg.Stop());
  bool not_serving = false;
  for (int i = 0; i < 100 && !not_serving; ++i) {
    not_serving = HealthIs(a.address(), ": NOT_SERVING") && HealthIs(b.address(), ": NOT_SERVING");
    if (!not_serving) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(not_serving);
  for (auto& agent : agents) EXPECT_TRUE(agent->WaitForLog("UNAVAILABLE", absl::Seconds(10)));
  absl::SleepFor(absl::Seconds(outage_seconds));
  EXPECT_TRUE(a.process().running());
  EXPECT_TRUE(b.process().running());

  ASSERT_TRUE(pg.Start());
  bool serving = false;
  for (int i = 0; i < 200 && !serving; ++i) {
    serving = HealthIs(a.address(), ": SERVING") && HealthIs(b.address(), ": SERVING");
    if (!serving) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(serving);
  std::string out;
  EXPECT_EQ(RunBinary(Args("schemagatectl", {"apply", "--coordinator", b.address()}), &out), 0)
      << out;
  for (auto& agent : agents) EXPECT_EQ(agent->Wait(absl::Seconds(30)), 0) << agent->Log();
  EXPECT_THAT(a.process().Log(), HasSubstr("database unavailable"));
  EXPECT_THAT(a.process().Log(), HasSubstr("database reachable"));
}

}  // namespace
}  // namespace schemagate

namespace schemagate {
namespace {

TEST_F(FleetTest, AnEmbeddedWaitWorksLikeTheAgent) {
  CoordinatorProcess coordinator(db_->url(), release1_.path(), kFleetFlags);
  std::string out;
  EXPECT_EQ(RunBinary({BinaryPath("schemagate_embed_example"), coordinator.address(),
                       release1_.path()},
                      &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("serving with schema version 3"));
  EXPECT_THAT(out, HasSubstr("READY"));
  // It left the fleet cleanly (the coordinator records it within moments).
  std::string left;
  for (int i = 0; i < 100; ++i) {
    left = db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'instance_leave'");
    if (left == "1") break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(left, "1");
}

TEST_F(FleetTest, FallbackReadsTheDatabaseWhenNoCoordinatorAnswers) {
  {
    CoordinatorProcess coordinator(db_->url(), release1_.path(), kFleetFlags);
    std::string out;
    ASSERT_EQ(RunBinary(Args("schemagate-agent", {"wait", "--coordinator", coordinator.address(),
                                                  "--timeout", "20s"}),
                        &out),
              0)
        << out;
  }  // The coordinator is gone now.
  std::string out;
  // Off by default: unreachable.
  EXPECT_EQ(RunBinary(Args("schemagate-agent", {"check", "--coordinator", "127.0.0.1:1",
                                                "--migrations-dir", release1_.path()}),
                      &out),
            7);
  EXPECT_EQ(RunBinary(Args("schemagate-agent",
                           {"check", "--coordinator", "127.0.0.1:1", "--migrations-dir",
                            release1_.path(), "--fallback-database-url", db_->url()}),
                      &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("read from the database directly"));
  // A version that is not applied: not ready, and the wait times out.
  EXPECT_EQ(RunBinary(Args("schemagate-agent",
                           {"wait", "--coordinator", "127.0.0.1:1", "--known", "4", "--timeout",
                            "2s", "--fallback-database-url", db_->url()}),
                      &out),
            7)
      << out;
  // An edited file is caught even without a coordinator.
  TempDir edited;
  edited.Write("0001_t1.up.sql", "CREATE TABLE t1 (id bigint);\n");
  EXPECT_EQ(RunBinary(Args("schemagate-agent",
                           {"wait", "--coordinator", "127.0.0.1:1", "--migrations-dir",
                            edited.path(), "--timeout", "5s", "--fallback-database-url",
                            db_->url()}),
                      &out),
            4)
      << out;
}

}  // namespace
}  // namespace schemagate
