// Instance ids end to end with the real binaries: one instance per agent
// process by default, even with several agents on one host, and a second
// agent under an id that a live agent holds is refused, on the same
// coordinator or another replica; a re-attach after a failover is not.
#include <signal.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::ChildProcess;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::schemagate::testing::WaitUntil;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

std::vector<std::string> Args(const std::string& binary, std::vector<std::string> args) {
  args.insert(args.begin(), BinaryPath(binary));
  return args;
}

constexpr absl::Duration kLeaseTtl = absl::Seconds(2);
constexpr absl::Duration kGrace = absl::Seconds(2);
const std::vector<std::string> kFlags = {"--lease-ttl", "2s", "--breaking-grace", "2s",
                                         "--resync-interval", "1s"};

class InstancesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    testing::WriteTwoReleases(release1_, release2_);
  }

  bool Applied(int64_t version) { return testing::IsApplied(*db_, version); }

  // `schemagatectl instances` once `want` appears in it (or its last output).
  static std::string InstancesOnceItShows(const std::string& address, const std::string& want) {
    std::string out;
    WaitUntil(
        [&] {
          RunBinary(Args("schemagatectl", {"instances", "--coordinator", address}), &out);
          return out.find(want) != std::string::npos;
        },
        absl::Seconds(20));
    return out;
  }

  // An agent that waits, then supervises `sleep 600` after printing `banner`.
  static std::unique_ptr<ChildProcess> Agent(const std::string& coordinators,
                                             std::vector<std::string> flags,
                                             const std::string& banner,
                                             const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> args = {"wait", "--coordinator", coordinators, "--timeout", "60s"};
    args.insert(args.end(), flags.begin(), flags.end());
    for (const char* a : {"--", "sh", "-c"}) args.push_back(a);
    args.push_back(absl::StrCat("echo ", banner, "; exec sleep 600"));
    return std::make_unique<ChildProcess>(Args("schemagate-agent", args), env);
  }

  std::unique_ptr<TestDatabase> db_;
  TempDir release1_, release2_;
};

TEST_F(InstancesTest, TwoAgentsOnOneHostAreTwoInstancesAndTheContractFollowsTheOldOnesExit) {
  // Release 1's coordinator brings the schema to 3 and serves the old app;
  // release 2's starts once the old app runs (on a fresh database with no
  // instance, the contract migration would not wait: nothing could need the
  // old schema).
  CoordinatorProcess release1(db_->url(), release1_.path(), kFlags);
  // One host: the same $HOSTNAME for both, no --instance-id.
  const std::map<std::string, std::string> host = {{"HOSTNAME", "vm-1"}};
  auto old_app = Agent(release1.address(),
                       {"--migrations-dir", release1_.path(), "--app", "shop", "--app-version",
                        "1.0"},
                       "old-up", host);
  ASSERT_TRUE(old_app->WaitForLog("old-up", absl::Seconds(30))) << old_app->Log();
  CoordinatorProcess coordinator(db_->url(), release2_.path(), kFlags);
  auto new_app = Agent(coordinator.address(),
                       {"--migrations-dir", release2_.path(), "--app", "shop", "--app-version",
                        "2.0"},
                       "new-up", host);
  ASSERT_TRUE(new_app->WaitForLog("new-up", absl::Seconds(30))) << new_app->Log();

  const std::string out = InstancesOnceItShows(coordinator.address(), "2 live instance(s)");
  EXPECT_THAT(out, HasSubstr("2 live instance(s)"));
  // Each row: vm-1-PID-XXXX with its own version.
  EXPECT_THAT(out, MatchesRegex(".*vm-1-[0-9]+-[0-9a-f]{4} +shop +1\\.0 .*"));
  EXPECT_THAT(out, MatchesRegex(".*vm-1-[0-9]+-[0-9a-f]{4} +shop +2\\.0 .*"));
  // The old instance holds the contract migration back.
  absl::SleepFor(kLeaseTtl + kGrace + absl::Seconds(1));
  EXPECT_FALSE(Applied(4));

  old_app->Signal(SIGTERM);
  EXPECT_EQ(old_app->Wait(absl::Seconds(10)), 128 + SIGTERM) << old_app->Log();
  const absl::Time exited = absl::Now();
  ASSERT_TRUE(WaitUntil([&] { return Applied(4); }, kLeaseTtl + kGrace + absl::Seconds(10)))
      << "the contract migration did not follow the old instance's exit";
  EXPECT_LE(absl::Now() - exited, kLeaseTtl + kGrace + absl::Seconds(10));
  EXPECT_TRUE(new_app->running()) << new_app->Log();
}

TEST_F(InstancesTest, ASecondAgentUnderAHeldIdIsRefusedOnAnyReplicaAndStopsItsApp) {
  std::vector<std::string> flags_a = kFlags, flags_b = kFlags;
  for (const char* f : {"--id", "replica-a"}) flags_a.push_back(f);
  for (const char* f : {"--id", "replica-b"}) flags_b.push_back(f);
  CoordinatorProcess replica_a(db_->url(), release1_.path(), flags_a);
  CoordinatorProcess replica_b(db_->url(), release1_.path(), flags_b);
  const std::string a = replica_a.address(), b = replica_b.address();

  auto first = Agent(a, {"--known", "3", "--app-version", "1.0", "--instance-id", "web-1"},
                     "first-up");
  ASSERT_TRUE(first->WaitForLog("first-up", absl::Seconds(30))) << first->Log();
  InstancesOnceItShows(b, "web-1");

  // Through the other replica: refused by the store's row.
  auto other = Agent(b, {"--known", "3", "--app-version", "2.0", "--instance-id", "web-1"},
                     "other-up");
  EXPECT_EQ(other->Wait(absl::Seconds(20)), 2) << other->Log();
  EXPECT_THAT(other->Log(), HasSubstr("instance id \"web-1\" is in use by another live agent"));
  EXPECT_THAT(other->Log(), HasSubstr("--instance-id"));
  // Through the same replica: refused at once.
  auto same = Agent(a, {"--known", "3", "--app-version", "2.0", "--instance-id", "web-1"},
                    "same-up");
  EXPECT_EQ(same->Wait(absl::Seconds(20)), 2) << same->Log();
  EXPECT_THAT(same->Log(), HasSubstr("instance id \"web-1\" is in use by another live agent"));

  // The holder is untouched and keeps its row.
  EXPECT_TRUE(first->running()) << first->Log();
  EXPECT_EQ(db_->Query("SELECT app_version FROM schemagate.instances WHERE "
                       "instance_id = 'web-1' AND lease_expires > now()"),
            "1.0");
}

TEST_F(InstancesTest, ReattachingToAnotherReplicaAfterAFailoverIsNotADuplicate) {
  std::vector<std::string> flags_a = kFlags, flags_b = kFlags;
  for (const char* f : {"--id", "replica-a"}) flags_a.push_back(f);
  for (const char* f : {"--id", "replica-b"}) flags_b.push_back(f);
  auto replica_a = std::make_unique<CoordinatorProcess>(db_->url(), release1_.path(), flags_a);
  CoordinatorProcess replica_b(db_->url(), release1_.path(), flags_b);
  const std::string a = replica_a->address(), b = replica_b.address();

  // The agent attaches to a or b (its pick); the test kills the one it chose.
  auto app = Agent(absl::StrCat(a, ",", b), {"--known", "3", "--instance-id", "web-1"}, "up");
  ASSERT_TRUE(app->WaitForLog("up", absl::Seconds(30))) << app->Log();
  std::string held;
  ASSERT_TRUE(WaitUntil(
      [&] {
        // The instances table may not exist yet on a loaded machine: poll without failing.
        held = testing::TryQuery(db_->url(), "SELECT coordinator_id FROM schemagate.instances "
                                             "WHERE instance_id = 'web-1'")
                   .value_or("");
        return !held.empty();
      },
      absl::Seconds(10)));
  const std::string survivor = held == "replica-a" ? "replica-b" : "replica-a";
  if (held == "replica-a") {
    replica_a->process().Signal(SIGTERM);
    ASSERT_EQ(replica_a->process().Wait(absl::Seconds(10)), 0);
  } else {
    replica_b.process().Signal(SIGTERM);
    ASSERT_EQ(replica_b.process().Wait(absl::Seconds(10)), 0);
  }
  ASSERT_TRUE(WaitUntil(
      [&] {
        return db_->Query("SELECT coordinator_id FROM schemagate.instances WHERE "
                          "instance_id = 'web-1' AND lease_expires > now()") == survivor;
      },
      absl::Seconds(15)))
      << app->Log();
  // Re-attached, not refused: the agent and its app keep running.
  absl::SleepFor(absl::Seconds(1));
  EXPECT_TRUE(app->running()) << app->Log();
  EXPECT_THAT(app->Log(), ::testing::Not(HasSubstr("refused")));
}

}  // namespace
}  // namespace schemagate
