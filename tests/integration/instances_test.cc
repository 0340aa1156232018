// The fleet's `instances` rows against a real PostgreSQL, through two
// PgStores standing for two coordinator replicas: one instance id belongs
// to one agent process (its attach token) while its lease is live.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/postgres/pg_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TestDatabase;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class InstancesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    replica_a_ = NewStore("replica-a");
    replica_b_ = NewStore("replica-b");
    ASSERT_TRUE(replica_a_->EnsureBookkeeping().ok());
  }

  std::unique_ptr<PgStore> NewStore(const std::string& id) {
    PgStoreOptions options;
    options.conninfo = db_->url();
    options.coordinator_id = id;
    return std::make_unique<PgStore>(options);
  }

  static InstanceRecord Instance(const std::string& id, const std::string& token,
                                 const std::string& coordinator, const std::string& version) {
    InstanceRecord i;
    i.instance_id = id;
    i.app = "shop";
    i.app_version = version;
    i.known_version = 3;
    i.required_version = 3;
    i.coordinator_id = coordinator;
    i.attach_token = token;
    return i;
  }

  std::string Column(const std::string& column, const std::string& id) {
    return db_->Query(absl::StrCat("SELECT ", column, " FROM schemagate.instances WHERE "
                                   "instance_id = '", id, "'"));
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<PgStore> replica_a_, replica_b_;
};

TEST_F(InstancesTest, AnIdWithALiveLeaseIsRefusedToAnotherProcessOnAnotherReplica) {
  auto joined = replica_a_->UpsertInstances({Instance("web-1", "aaaa", "replica-a", "1.0")},
                                            absl::Seconds(30));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_THAT(*joined, IsEmpty());

  auto second = replica_b_->UpsertInstances({Instance("web-1", "bbbb", "replica-b", "2.0")},
                                            absl::Seconds(30));
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_THAT(*second, SizeIs(1));
  EXPECT_EQ((*second)[0].instance_id, "web-1");
  EXPECT_EQ((*second)[0].attach_token, "bbbb");
  // The holder's row is untouched.
  EXPECT_EQ(Column("app_version", "web-1"), "1.0");
  EXPECT_EQ(Column("attach_token", "web-1"), "aaaa");
  EXPECT_EQ(Column("coordinator_id", "web-1"), "replica-a");

  // The holder itself re-attaching to the other replica (a failover) is
  // not a duplicate: same token.
  auto moved = replica_b_->UpsertInstances({Instance("web-1", "aaaa", "replica-b", "1.0")},
                                           absl::Seconds(30));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_THAT(*moved, IsEmpty());
  EXPECT_EQ(Column("coordinator_id", "web-1"), "replica-b");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'instance_join'"),
            "1");

  absl::StatusOr<DatabaseState> state = replica_b_->ReadState();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_THAT(state->live_instances, SizeIs(1));
  EXPECT_EQ(state->live_instances[0].attach_token, "aaaa");
}

TEST_F(InstancesTest, AnExpiredLeaseIsTakenOverByAnotherProcess) {
  ASSERT_TRUE(replica_a_
                  ->UpsertInstances({Instance("web-1", "aaaa", "replica-a", "1.0")},
                                    absl::Seconds(30))
                  .ok());
  // The holder's lease runs out: its stamps move 31 s back (PostgreSQL's
  // now() cannot be moved forward).
  db_->Exec("UPDATE schemagate.instances SET first_seen = first_seen - interval '31 s', "
            "last_seen = last_seen - interval '31 s', "
            "lease_expires = lease_expires - interval '31 s'");
  ASSERT_EQ(db_->Query("SELECT count(*) FROM schemagate.instances WHERE lease_expires > now()"),
            "0");
  auto taken = replica_b_->UpsertInstances({Instance("web-1", "bbbb", "replica-b", "2.0")},
                                           absl::Seconds(30));
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_THAT(*taken, IsEmpty());
  EXPECT_EQ(Column("attach_token", "web-1"), "bbbb");
  EXPECT_EQ(Column("app_version", "web-1"), "2.0");
  // A revived lease is a join again.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'instance_join'"),
            "2");
}

TEST_F(InstancesTest, AgentsWithoutATokenKeepTheOldOverwrite) {
  ASSERT_TRUE(replica_a_
                  ->UpsertInstances({Instance("web-1", "", "replica-a", "1.0")}, absl::Seconds(30))
                  .ok());
  auto tokened = replica_b_->UpsertInstances({Instance("web-1", "bbbb", "replica-b", "2.0")},
                                             absl::Seconds(30));
  ASSERT_TRUE(tokened.ok());
  EXPECT_THAT(*tokened, IsEmpty());
  auto untokened = replica_a_->UpsertInstances({Instance("web-1", "", "replica-a", "1.0")},
                                               absl::Seconds(30));
  ASSERT_TRUE(untokened.ok());
  EXPECT_THAT(*untokened, IsEmpty());
  EXPECT_EQ(Column("app_version", "web-1"), "1.0");
}

TEST_F(InstancesTest, OfTwoProcessesJoiningAtOnceOnTwoReplicasExactlyOneGetsTheId) {
  // Both connections open first, so that the joins meet in the database.
  ASSERT_TRUE(replica_a_->ReadState().ok());
  ASSERT_TRUE(replica_b_->ReadState().ok());
  for (int round = 0; round < 20; ++round) {
    const std::string id = absl::StrCat("race-", round);
    std::atomic<int> go{0};
    absl::StatusOr<std::vector<InstanceRecord>> a, b;
    std::thread ta([&] {
      ++go;
      while (go < 2) {
      }
      a = replica_a_->UpsertInstances({Instance(id, "aaaa", "replica-a", "1.0")},
                                      absl::Seconds(30));
    });
    std::thread tb([&] {
      ++go;
      while (go < 2) {
      }
      b = replica_b_->UpsertInstances({Instance(id, "bbbb", "replica-b", "2.0")},
                                      absl::Seconds(30));
    });
    ta.join();
    tb.join();
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->size() + b->size(), 1u) << id;
    const std::string holder = Column("attach_token", id);
    EXPECT_EQ(holder, a->empty() ? "aaaa" : "bbbb") << id;
  }
}

TEST_F(InstancesTest, ALayoutFromAnOlderCoordinatorIsUpgradedOnTheFirstJoin) {
  // Layout 3: no attach_token column, and no run has upgraded it since.
  db_->Exec("ALTER TABLE schemagate.instances DROP COLUMN attach_token; "
            "UPDATE schemagate.meta SET meta_version = 3");
  db_->Exec("INSERT INTO schemagate.instances (instance_id, lease_expires) "
            "VALUES ('old-agent', now() + interval '1 minute')");
  absl::StatusOr<DatabaseState> state = replica_a_->ReadState();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_THAT(state->live_instances, SizeIs(1));
  EXPECT_EQ(state->live_instances[0].attach_token, "");

  auto joined = replica_a_->UpsertInstances({Instance("web-1", "aaaa", "replica-a", "1.0")},
                                            absl::Seconds(30));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_THAT(*joined, IsEmpty());
  EXPECT_EQ(Column("attach_token", "web-1"), "aaaa");
  auto refused = replica_b_->UpsertInstances({Instance("web-1", "bbbb", "replica-b", "2.0")},
                                             absl::Seconds(30));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_THAT(*refused, SizeIs(1));
  // A run's EnsureSchema records the current layout (6).
  absl::StatusOr<std::unique_ptr<RunSession>> session = replica_a_->BeginRun(LockWaitOptions());
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->EnsureSchema().ok());
  EXPECT_EQ(db_->Query("SELECT meta_version FROM schemagate.meta"), "6");
}

}  // namespace
}  // namespace schemagate
