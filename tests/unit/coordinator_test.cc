// The coordinator's time decisions on the in-memory FakeStore with a
// ManualClock shared by the coordinator and the fake database: leases,
// the breaking grace and resyncs move only when a test advances the clock,
// so no test sleeps out a lease or a grace period. Waits here are for the
// coordinator's threads to act on a moved clock, never for time to pass.
#include "coordinator/fleet/coordinator.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/base/clock.h"
#include "coordinator/engine/fake_store.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/engine/runner.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::WaitUntil;

// Long enough that the real time a test takes never refreshes a lease.
constexpr absl::Duration kLeaseTtl = absl::Minutes(10);
constexpr absl::Duration kGrace = absl::Seconds(60);
constexpr absl::Duration kResync = absl::Seconds(10);
// Real time allowed for the coordinator's threads to notice a moved clock.
constexpr absl::Duration kReact = absl::Seconds(20);

// A FakeStore whose next ReadState, once armed, reads and then waits until
// released: a database read that is slow while other things happen.
class GatedStore : public Store {
 public:
  explicit GatedStore(FakeDatabase* db) : inner_(db, FakeStoreOptions{"replica-a"}) {}
  void Arm() {
    absl::MutexLock lock(&mu_);
    armed_ = true;
  }
  bool Waiting() {
    absl::MutexLock lock(&mu_);
    return waiting_;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  absl::StatusOr<DatabaseState> ReadState() override {
    absl::StatusOr<DatabaseState> state = inner_.ReadState();
    absl::MutexLock lock(&mu_);
    if (!armed_) return state;
    armed_ = false;
    waiting_ = true;
    mu_.Await(absl::Condition(&released_));
    waiting_ = false;
    return state;
  }
  absl::StatusOr<std::vector<EventRecord>> ReadHistory(int limit, int64_t version) override {
    return inner_.ReadHistory(limit, version);
  }
  absl::StatusOr<std::vector<EventRecord>> ReadEventsAfter(int64_t after_id, int limit) override {
    return inner_.ReadEventsAfter(after_id, limit);
  }
  absl::StatusOr<std::optional<SchemaRecord>> ReadSchemaRecord() override {
    return inner_.ReadSchemaRecord();
  }
  absl::StatusOr<std::vector<InstanceRecord>> UpsertInstances(
      const std::vector<InstanceRecord>& instances, absl::Duration ttl) override {
    return inner_.UpsertInstances(instances, ttl);
  }
  absl::Status RefreshLeases(const std::vector<std::string>& ids, absl::Duration ttl) override {
    return inner_.RefreshLeases(ids, ttl);
  }
  absl::Status RemoveInstances(const std::vector<std::string>& ids,
                               const std::string& actor) override {
    return inner_.RemoveInstances(ids, actor);
  }
  // The next BeginRun waits until ReleaseRun.
  void ArmRun() {
    absl::MutexLock lock(&mu_);
    run_armed_ = true;
  }
  bool RunWaiting() {
    absl::MutexLock lock(&mu_);
    return run_waiting_;
  }
  void ReleaseRun() {
    absl::MutexLock lock(&mu_);
    run_released_ = true;
  }
  absl::StatusOr<std::unique_ptr<RunSession>> BeginRun(const LockWaitOptions& options) override {
    {
      absl::MutexLock lock(&mu_);
      if (run_armed_) {
        run_armed_ = false;
        run_waiting_ = true;
        mu_.Await(absl::Condition(&run_released_));
        run_waiting_ = false;
      }
    }
    return inner_.BeginRun(options);
  }

 private:
  FakeStore inner_;
  absl::Mutex mu_;
  bool run_armed_ ABSL_GUARDED_BY(mu_) = false;
  bool run_waiting_ ABSL_GUARDED_BY(mu_) = false;
  bool run_released_ ABSL_GUARDED_BY(mu_) = false;
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// The applied head of every snapshot published while it records.
class HeadRecorder : public StateObserver {
 public:
  void OnStateChanged(const std::shared_ptr<const Snapshot>& snapshot) override {
    absl::MutexLock lock(&mu_);
    heads_.push_back(snapshot->view.db.AppliedHead());
  }
  void OnShutdown() override {}
  std::vector<int64_t> heads() {
    absl::MutexLock lock(&mu_);
    return heads_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int64_t> heads_ ABSL_GUARDED_BY(mu_);
};

// Each snapshot observers were told of: (run in progress, applied head).
class RunRecorder : public StateObserver {
 public:
  void OnStateChanged(const std::shared_ptr<const Snapshot>& snapshot) override {
    absl::MutexLock lock(&mu_);
    told_.emplace_back(snapshot->view.run_in_progress, snapshot->view.db.AppliedHead());
  }
  void OnShutdown() override {}
  std::vector<std::pair<bool, int64_t>> told() {
    absl::MutexLock lock(&mu_);
    return told_;
  }
  bool Told(bool running, int64_t head) {
    for (const auto& t : told()) {
      if (t == std::make_pair(running, head)) return true;
    }
    return false;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<bool, int64_t>> told_ ABSL_GUARDED_BY(mu_);
};

// Submits an apply up to `target` to `c`; the result says whether it has
// ended (successfully: a failure fails the test).
std::function<bool()> SubmitApply(Coordinator* c, int64_t target) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  RunRequest request;
  request.target_version = target;
  c->SubmitRun(request, nullptr, [done](const absl::StatusOr<RunOutcome>& outcome) {
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    done->store(true);
  });
  return [done] { return done->load(); };
}

class CoordinatorClockTest : public ::testing::Test {
 protected:
  CoordinatorClockTest()
      : db_(&clock_),
        fleet_store_(&db_, FakeStoreOptions{"replica-b"}),
        set_(Load({{"0001_t1.up.sql", "CREATE TABLE t1 (id int);\n"},
                   {"0002_drop_t1.up.sql", "-- schemagate:breaking\nDROP TABLE t1;\n"}})) {}

  static MigrationSet Load(const std::map<std::string, std::string>& files) {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadFiles("migrations", files, &warnings);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? std::move(*set) : MigrationSet();
  }

  // Applies the set up to `version` outside any coordinator (the schema an
  // older release left).
  void ApplyUpTo(int64_t version) {
    FakeStore store(&db_, FakeStoreOptions{"setup"});
    Runner runner(&store, &set_, RunnerOptions());
    RunRequest request;
    request.target_version = version;
    absl::StatusOr<RunOutcome> outcome = runner.Apply(request, nullptr, nullptr);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
  }

  // An instance that knows versions up to `known`, attached to another
  // replica (its lease is that replica's business).
  void JoinElsewhere(const std::string& id, int64_t known, absl::Duration ttl = kLeaseTtl) {
    absl::StatusOr<std::vector<InstanceRecord>> refused =
        fleet_store_.UpsertInstances({testing::LiveInstance(id, known)}, ttl);
    ASSERT_TRUE(refused.ok()) << refused.status();
    ASSERT_TRUE(refused->empty());
  }

  std::unique_ptr<Coordinator> NewCoordinator(bool manual = false,
                                              std::unique_ptr<Store> store = nullptr) {
    CoordinatorOptions options;
    options.coordinator_id = "replica-a";
    options.manual = manual;
    options.clock = &clock_;
    options.lease_ttl = kLeaseTtl;
    options.breaking_grace = kGrace;
    options.resync_interval = kResync;
    options.runner.coordinator_id = "replica-a";
    options.runner.sleep = [this](absl::Duration d) { clock_.SleepFor(d); };
    FakeStore feed_store(&db_, FakeStoreOptions{});
    if (store == nullptr) store = std::make_unique<FakeStore>(&db_, FakeStoreOptions{"replica-a"});
    return std::make_unique<Coordinator>(options, set_, std::move(store),
                                         feed_store.NewChangeFeed());
  }

  DatabaseState State() {
    absl::StatusOr<DatabaseState> state = fleet_store_.ReadState();
    EXPECT_TRUE(state.ok()) << state.status();
    return state.ok() ? *state : DatabaseState();
  }

  bool Applied(int64_t version) { return State().Find(version) != nullptr; }

  const Migration& Breaking() { return *set_.Find(2); }

  ManualClock clock_;
  FakeDatabase db_;
  FakeStore fleet_store_;
  MigrationSet set_;
};

TEST_F(CoordinatorClockTest, BreakingGateOpensAtOnceWhenNoInstanceWasEverSeen) {
  ApplyUpTo(1);
  std::unique_ptr<Coordinator> c = NewCoordinator();
  EXPECT_TRUE(c->BreakingGate(Breaking(), State(), kGrace));
}

TEST_F(CoordinatorClockTest, BreakingGateStaysShutWhileAnOlderInstanceIsLiveHoweverLong) {
  ApplyUpTo(1);
  JoinElsewhere("old-1", 1);
  std::unique_ptr<Coordinator> c = NewCoordinator();
  for (int minute = 0; minute < 10; ++minute) {
    EXPECT_FALSE(c->BreakingGate(Breaking(), State(), kGrace)) << "after " << minute << " min";
    clock_.Advance(absl::Seconds(20));
    ASSERT_TRUE(fleet_store_.RefreshLeases({"old-1"}, kLeaseTtl).ok());
    clock_.Advance(absl::Seconds(20));
    ASSERT_TRUE(fleet_store_.RefreshLeases({"old-1"}, kLeaseTtl).ok());
    clock_.Advance(absl::Seconds(20));
    ASSERT_TRUE(fleet_store_.RefreshLeases({"old-1"}, kLeaseTtl).ok());
  }
  EXPECT_FALSE(c->BreakingGate(Breaking(), State(), kGrace));
}

TEST_F(CoordinatorClockTest, BreakingGateOpensAGraceAfterTheLastOlderInstanceLapsed) {
  ApplyUpTo(1);
  JoinElsewhere("old-1", 1);
  std::unique_ptr<Coordinator> c = NewCoordinator();
  EXPECT_FALSE(c->BreakingGate(Breaking(), State(), kGrace));
  clock_.Advance(kLeaseTtl);  // The lease lapses; the grace starts now.
  ASSERT_EQ(State().lapsed_instances.size(), 1u);
  EXPECT_FALSE(c->BreakingGate(Breaking(), State(), kGrace));
  clock_.Advance(kGrace - absl::Seconds(1));
  EXPECT_FALSE(c->BreakingGate(Breaking(), State(), kGrace));
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(c->BreakingGate(Breaking(), State(), kGrace));
}

TEST_F(CoordinatorClockTest, BreakingGateCountsTheGraceFromTheLapseNotFromWhenItLooked) {
  ApplyUpTo(1);
  JoinElsewhere("old-1", 1);
  std::unique_ptr<Coordinator> c = NewCoordinator();
  // First look long after the lapse: the grace has already passed.
  clock_.Advance(kLeaseTtl + kGrace + absl::Seconds(1));
  EXPECT_TRUE(c->BreakingGate(Breaking(), State(), kGrace));
}

TEST_F(CoordinatorClockTest, BreakingGateIgnoresInstancesThatKnowTheMigration) {
  ApplyUpTo(1);
  JoinElsewhere("new-1", 2);
  std::unique_ptr<Coordinator> c = NewCoordinator();
  EXPECT_TRUE(c->BreakingGate(Breaking(), State(), kGrace));
}

TEST_F(CoordinatorClockTest,
       AutomaticRunAppliesTheBreakingMigrationOnceTheLeaseLapsedAndGracePassed) {
  ApplyUpTo(1);
  JoinElsewhere("old-1", 1);
  std::unique_ptr<Coordinator> c = NewCoordinator();
  c->Start();
  // While old-1's lease is refreshed, time goes by well past the grace; the
  // coordinator keeps measuring how long the migration has been held back.
  ASSERT_TRUE(WaitUntil(
      [&] {
        if (c->BlockedBreakingFor() > 2 * kGrace) return true;
        clock_.Advance(absl::Seconds(10));
        EXPECT_TRUE(fleet_store_.RefreshLeases({"old-1"}, kLeaseTtl).ok());
        return false;
      },
      kReact));
  EXPECT_FALSE(Applied(2));

  // The lease lapses (and a resync is due). Once the coordinator has seen
  // that (it stops counting the migration as held back), the grace starts:
  // the clock has not moved since, so nothing may run yet.
  clock_.Advance(kLeaseTtl);
  ASSERT_TRUE(WaitUntil([&] { return c->BlockedBreakingFor() == absl::ZeroDuration(); }, kReact));
  EXPECT_FALSE(Applied(2));

  clock_.Advance(kGrace);
  EXPECT_TRUE(WaitUntil([&] { return Applied(2); }, kReact));
  c->Shutdown();
}

TEST_F(CoordinatorClockTest, AnAttachedInstanceKeepsItsLeaseAsTheClockMovesUntilItDetaches) {
  std::unique_ptr<Coordinator> c = NewCoordinator(/*manual=*/true);
  c->Start();
  const int stream = 0;
  InstanceRecord instance = testing::LiveInstance("web-1", 0);
  instance.attach_token = "token-1";
  ASSERT_TRUE(c->InstanceAttached(instance, &stream, nullptr).ok());
  ASSERT_TRUE(WaitUntil([&] { return State().live_instances.size() == 1; }, kReact));

  // Three half-leases: each time the coordinator refreshes the lease (every
  // third of it) at the clock's time, so it outlives its first lease.
  auto refreshed_now = [&] {
    const DatabaseState state = State();
    return state.live_instances.size() == 1 &&
           state.live_instances[0].lease_expires == clock_.Now() + kLeaseTtl;
  };
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(kLeaseTtl / 2);
    ASSERT_TRUE(WaitUntil(refreshed_now, kReact)) << "refresh " << i;
  }
  ASSERT_EQ(State().live_instances.size(), 1u);

  // Lost without a goodbye: no longer refreshed, it lapses with its lease.
  // (No refresh is due before the clock moves again: one just happened.)
  c->InstanceDetached("web-1", &stream, /*clean=*/false);
  clock_.Advance(kLeaseTtl);
  const DatabaseState state = State();
  EXPECT_TRUE(state.live_instances.empty());
  ASSERT_EQ(state.lapsed_instances.size(), 1u);
  EXPECT_EQ(state.lapsed_instances[0].instance_id, "web-1");
  c->Shutdown();
}

TEST_F(CoordinatorClockTest, ALapseThatNobodyAnnouncesShowsAfterTheResyncInterval) {
  ApplyUpTo(1);
  JoinElsewhere("old-1", 1);
  std::unique_ptr<Coordinator> c = NewCoordinator(/*manual=*/true);
  c->Start();
  ASSERT_TRUE(WaitUntil([&] { return c->snapshot()->view.db.live_instances.size() == 1; }, kReact));
  // A lease runs out without a notification: only a resync shows it.
  clock_.Advance(kLeaseTtl + kResync);
  ASSERT_TRUE(WaitUntil(
      [&] {
        const std::shared_ptr<const Snapshot> snapshot = c->snapshot();
        return snapshot->view.db.live_instances.empty() &&
               snapshot->view.db.lapsed_instances.size() == 1;
      },
      kReact));
  EXPECT_EQ(c->snapshot()->refreshed_at, clock_.Now()) << "stamped with the injected clock";
  c->Shutdown();
}

// A database read that began before this coordinator's run committed and is
// published after the run ended must not take the run's commits back: a
// client that saw READY then saw the schema behind (found by CI, when a run
// became faster than one read).
TEST_F(CoordinatorClockTest, AReadThatBeganBeforeARunEndedDoesNotHideItsCommits) {
  auto gated = std::make_unique<GatedStore>(&db_);
  GatedStore* gate = gated.get();
  std::unique_ptr<Coordinator> c = NewCoordinator(/*manual=*/true, std::move(gated));
  c->Start();
  ASSERT_TRUE(WaitUntil([&] { return c->snapshot()->view.database_available; }, kReact));
  gate->Arm();
  clock_.Advance(kResync);  // the watcher's resync read begins, and waits
  ASSERT_TRUE(WaitUntil([&] { return gate->Waiting(); }, kReact));

  const std::function<bool()> done = SubmitApply(c.get(), 1);
  ASSERT_TRUE(WaitUntil(done, kReact));
  ASSERT_TRUE(WaitUntil([&] { return c->snapshot()->view.db.AppliedHead() == 1; }, kReact));

  auto recorder = std::make_shared<HeadRecorder>();
  c->AddObserver(recorder);
  gate->Release();  // the read from before the run is published now
  ASSERT_TRUE(WaitUntil([&] { return !recorder->heads().empty(); }, kReact));
  for (int64_t head : recorder->heads()) EXPECT_EQ(head, 1);
  c->RemoveObserver(recorder.get());
  c->Shutdown();
}

// A run shorter than kRunNoticeDelay: streams hear of its commit and its
// end, never of a start with nothing new ("migrating" then "ready" would be
// two writes per waiting agent instead of one).
TEST_F(CoordinatorClockTest, ARunShorterThanTheNoticeDelayReachesStreamsOnlyAsItsResult) {
  std::unique_ptr<Coordinator> c = NewCoordinator(/*manual=*/true);
  c->Start();
  ASSERT_TRUE(WaitUntil([&] { return c->snapshot()->view.database_available; }, kReact));
  auto recorder = std::make_shared<RunRecorder>();
  c->AddObserver(recorder);
  const std::function<bool()> done = SubmitApply(c.get(), 1);
  ASSERT_TRUE(WaitUntil(done, kReact));
  ASSERT_TRUE(WaitUntil([&] { return recorder->Told(false, 1); }, kReact));
  EXPECT_FALSE(recorder->Told(true, 0));
  c->RemoveObserver(recorder.get());
  c->Shutdown();
}

// A longer run: its start reaches streams once kRunNoticeDelay has passed,
// and not before (a watcher read meanwhile waits too).
TEST_F(CoordinatorClockTest, TheStartOfARunReachesStreamsOnceTheNoticeDelayHasPassed) {
  auto gated = std::make_unique<GatedStore>(&db_);
  GatedStore* gate = gated.get();
  std::unique_ptr<Coordinator> c = NewCoordinator(/*manual=*/true, std::move(gated));
  c->Start();
  ASSERT_TRUE(WaitUntil([&] { return c->snapshot()->view.database_available; }, kReact));
  auto recorder = std::make_shared<RunRecorder>();
  c->AddObserver(recorder);
  gate->ArmRun();
  const std::function<bool()> done = SubmitApply(c.get(), 1);
  ASSERT_TRUE(WaitUntil([&] { return gate->RunWaiting(); }, kReact));
  EXPECT_TRUE(c->snapshot()->view.run_in_progress);  // what a new stream reads at once
  c->RequestRefresh();                               // a watcher read, held back too
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(recorder->Told(true, 0));
  clock_.Advance(Coordinator::kRunNoticeDelay);
  EXPECT_TRUE(WaitUntil([&] { return recorder->Told(true, 0); }, kReact));
  gate->ReleaseRun();
  ASSERT_TRUE(WaitUntil(done, kReact));
  EXPECT_TRUE(WaitUntil([&] { return recorder->Told(false, 1); }, kReact));
  c->RemoveObserver(recorder.get());
  c->Shutdown();
}

}  // namespace
}  // namespace schemagate
