// The coordinator and its gRPC services in-process against a real
// PostgreSQL: answers from memory, pushed updates, health, shutdown.
#include <memory>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/channel.h"
#include "coordinator/base/clock.h"
#include "coordinator/fleet/coordinator.h"
#include "coordinator/postgres/pg_store.h"
#include "coordinator/server/server.h"
#include "gmock/gmock.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "schemagate/v1/schemagate.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;

// A coordinator with its server on a free port.
struct Harness {
  Harness(const std::string& url, const std::string& dir, bool manual,
          Clock* clock = RealClock::Get()) {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> set = MigrationSet::LoadDirectory(dir, &warnings);
    EXPECT_TRUE(set.ok()) << set.status();
    CoordinatorOptions options;
    options.coordinator_id = "it";
    options.manual = manual;
    options.resync_interval = absl::Seconds(2);
    options.reconnect_max = absl::Milliseconds(500);
    options.clock = clock;
    options.runner.coordinator_id = "it";
    PgStoreOptions store;
    store.conninfo = url;
    store.coordinator_id = "it";
    coordinator = std::make_unique<Coordinator>(options, std::move(*set),
                                                std::make_unique<PgStore>(store),
                                                std::make_unique<PgListener>(url));
    ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> started =
        CoordinatorServer::Start(coordinator.get(), OperatorServiceOptions(), server_options);
    EXPECT_TRUE(started.ok()) << started.status();
    server = std::move(*started);
    coordinator->Start();
    address = absl::StrCat("127.0.0.1:", server->port());
    channel = NewCoordinatorChannel(address);
    agent = v1::AgentService::NewStub(channel);
    operator_stub = v1::OperatorService::NewStub(channel);
  }
  ~Harness() { server->Shutdown(absl::Seconds(2)); }

  v1::Readiness Check(int64_t known, int64_t required, grpc::Status* status = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::CheckRequest request;
    request.mutable_target()->set_known_version(known);
    request.mutable_target()->set_required_version(required);
    v1::Readiness response;
    grpc::Status s = agent->Check(&context, request, &response);
    if (status != nullptr) *status = s;
    return response;
  }

  // Waits until Check answers `state` (pushed state reaches memory quickly).
  bool CheckEventually(int64_t required, v1::ReadinessState state) {
    for (int i = 0; i < 200; ++i) {
      if (Check(required, required).state() == state) return true;
      absl::SleepFor(absl::Milliseconds(25));
    }
    return false;
  }

  std::unique_ptr<Coordinator> coordinator;
  std::unique_ptr<CoordinatorServer> server;
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::AgentService::Stub> agent;
  std::unique_ptr<v1::OperatorService::Stub> operator_stub;
};

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    testing::WriteTrivialMigrations(dir_, 1, 3);
  }
  std::unique_ptr<TestDatabase> db_;
  TempDir dir_;
};

TEST_F(CoordinatorTest, AutoModeAppliesAndAnswersReady) {
  Harness h(db_->url(), dir_.path(), /*manual=*/false);
  ASSERT_TRUE(h.CheckEventually(3, v1::READY));
  v1::Readiness r = h.Check(3, 3);
  EXPECT_EQ(r.applied_version(), 3);
  EXPECT_EQ(r.coordinator_id(), "it");
  EXPECT_EQ(h.Check(7, 7).state(), v1::UNKNOWN_VERSION);
}

TEST_F(CoordinatorTest, WaitStreamGoesFromPendingToReadyWhenAnOperatorApplies) {
  Harness h(db_->url(), dir_.path(), /*manual=*/true);
  ASSERT_TRUE(h.CheckEventually(3, v1::PENDING));
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(30));
  v1::WaitRequest request;
  request.set_instance_id("pod-1");
  auto reader = h.agent->Wait(&context, request);
  v1::Readiness r;
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.state(), v1::PENDING);
  EXPECT_THAT(r.message(), HasSubstr("--apply=manual"));

  grpc::ClientContext apply_context;
  SetDeadline(&apply_context, absl::Seconds(30));
  v1::ApplyRequest apply;
  apply.set_actor("tester");
  auto progress = h.operator_stub->Apply(&apply_context, apply);
  v1::RunProgress p;
  int finished = 0;
  while (progress->Read(&p)) finished += p.kind() == v1::MIGRATION_FINISHED;
  ASSERT_TRUE(progress->Finish().ok());
  EXPECT_EQ(finished, 3);

  std::vector<v1::ReadinessState> seen;
  while (reader->Read(&r)) seen.push_back(r.state());
  EXPECT_TRUE(reader->Finish().ok());  // The server ends the stream after READY.
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), v1::READY);
}

TEST_F(CoordinatorTest, RequestsAreValidated) {
  Harness h(db_->url(), dir_.path(), /*manual=*/true);
  grpc::Status status;
  h.Check(2, 3, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("R can never exceed K"));

  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(5));
  v1::CheckRequest request;
  (*request.mutable_target()->mutable_checksums())[1] = "not-a-checksum";
  v1::Readiness response;
  status = h.agent->Check(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext wait_context;
  SetDeadline(&wait_context, absl::Seconds(5));
  v1::WaitRequest wait;
  wait.set_instance_id(std::string(300, 'x'));
  auto reader = h.agent->Wait(&wait_context, wait);
  v1::Readiness r;
  EXPECT_FALSE(reader->Read(&r));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CoordinatorTest, OperatorCallsAnswerFromMemoryAndHistoryFromTheDatabase) {
  Harness h(db_->url(), dir_.path(), /*manual=*/false);
  ASSERT_TRUE(h.CheckEventually(3, v1::READY));
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::Status status;
    ASSERT_TRUE(h.operator_stub->GetStatus(&context, v1::GetStatusRequest(), &status).ok());
    EXPECT_EQ(status.state(), v1::CURRENT);
    EXPECT_EQ(status.applied_count(), 3);
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::ListMigrationsResponse response;
    ASSERT_TRUE(
        h.operator_stub->ListMigrations(&context, v1::ListMigrationsRequest(), &response).ok());
    ASSERT_EQ(response.migrations_size(), 3);
    EXPECT_EQ(response.migrations(2).state(), v1::MIGRATION_APPLIED);
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::HistoryResponse response;
    ASSERT_TRUE(h.operator_stub->History(&context, v1::HistoryRequest(), &response).ok());
    EXPECT_EQ(response.events_size(), 5);
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::PlanResponse response;
    ASSERT_TRUE(h.operator_stub->Plan(&context, v1::PlanRequest(), &response).ok());
    EXPECT_EQ(response.steps_size(), 0);
    EXPECT_THAT(response.note(), HasSubstr("nothing to apply"));
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::RepairResponse response;
    EXPECT_EQ(h.operator_stub->Repair(&context, v1::RepairRequest(), &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(CoordinatorTest, PlanListsPendingStepsWithTheirSql) {
  Harness h(db_->url(), dir_.path(), /*manual=*/true);
  ASSERT_TRUE(h.CheckEventually(3, v1::PENDING));
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(5));
  v1::PlanRequest request;
  request.set_target_version(2);
  v1::PlanResponse response;
  ASSERT_TRUE(h.operator_stub->Plan(&context, request, &response).ok());
  ASSERT_EQ(response.steps_size(), 2);
  EXPECT_EQ(response.steps(0).statements(0), "CREATE TABLE t1 (id bigint PRIMARY KEY, note text)");
  EXPECT_TRUE(response.steps(0).transactional());
  EXPECT_EQ(response.steps(0).lock_timeout().seconds(), 5);
}

TEST_F(CoordinatorTest, HealthFollowsTheDatabaseAndShutdownEndsStreamsWithUnavailable) {
  Harness h(db_->url(), dir_.path(), /*manual=*/true);
  ASSERT_TRUE(h.CheckEventually(3, v1::PENDING));
  auto health = grpc::health::v1::Health::NewStub(h.channel);
  grpc::ClientContext hc;
  SetDeadline(&hc, absl::Seconds(5));
  grpc::health::v1::HealthCheckRequest hr;
  grpc::health::v1::HealthCheckResponse hresp;
  ASSERT_TRUE(health->Check(&hc, hr, &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(30));
  auto reader = h.agent->Wait(&context, v1::WaitRequest());
  v1::Readiness r;
  ASSERT_TRUE(reader->Read(&r));
  std::thread stopper([&] { h.server->Shutdown(absl::Seconds(2)); });
  while (reader->Read(&r)) {
  }
  grpc::Status status = reader->Finish();
  stopper.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
}

TEST_F(CoordinatorTest, UnreachableDatabaseMakesAgentsUnavailableAndHealthNotServing) {
  const std::string bad = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1";
  Harness h(bad, dir_.path(), /*manual=*/false);
  ASSERT_TRUE(h.CheckEventually(3, v1::UNAVAILABLE));
  auto health = grpc::health::v1::Health::NewStub(h.channel);
  grpc::ClientContext hc;
  SetDeadline(&hc, absl::Seconds(5));
  grpc::health::v1::HealthCheckResponse hresp;
  ASSERT_TRUE(health->Check(&hc, grpc::health::v1::HealthCheckRequest(), &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

TEST_F(CoordinatorTest, ASecondReplicaLearnsOfAnotherReplicasRunByNotify) {
  Harness manual(db_->url(), dir_.path(), /*manual=*/true);
  // Time stands still for this replica: its resync never comes due, so only
  // a notification can tell it about the other's run.
  ManualClock frozen;
  Harness other(db_->url(), dir_.path(), /*manual=*/true, &frozen);
  ASSERT_TRUE(other.CheckEventually(3, v1::PENDING));
  grpc::ClientContext context;
  SetDeadline(&context, absl::Seconds(30));
  auto reader = other.agent->Wait(&context, v1::WaitRequest());
  v1::Readiness r;
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.state(), v1::PENDING);
  grpc::ClientContext apply_context;
  SetDeadline(&apply_context, absl::Seconds(30));
  auto progress = manual.operator_stub->Apply(&apply_context, v1::ApplyRequest());
  v1::RunProgress p;
  while (progress->Read(&p)) {
  }
  ASSERT_TRUE(progress->Finish().ok());
  while (reader->Read(&r) && r.state() != v1::READY) {
  }
  EXPECT_EQ(r.state(), v1::READY);
}


// Attach streams ending every way at once, on the server's threads: a
// goodbye removes the instance, a cancel leaves it to its lease, and a
// cancel while the first message is being registered (the Attach reactor's
// Detach from OnCancel against the read reaction's registration, a data
// race before) ends the stream with the instance either registered and
// detached or never registered. Run under ThreadSanitizer by .ci/run.
TEST_F(CoordinatorTest, AttachStreamsEndingAtOnceLeaveOnlyTheInstancesThatSaidNoGoodbye) {
  Harness h(db_->url(), dir_.path(), /*manual=*/false);
  ASSERT_TRUE(h.CheckEventually(3, v1::READY));
  constexpr int kStreams = 6;
  auto first_message = [](const std::string& id) {
    v1::AttachRequest first;
    first.mutable_target()->set_known_version(3);
    first.mutable_target()->set_required_version(3);
    first.set_instance_id(id);
    return first;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    // pod-N: attached, then a goodbye (even N) or a cancel (odd N).
    threads.emplace_back([&, i] {
      grpc::ClientContext context;
      SetDeadline(&context, absl::Seconds(30));
      auto stream = h.agent->Attach(&context);
      ASSERT_TRUE(stream->Write(first_message(absl::StrCat("pod-", i))));
      v1::Readiness r;
      ASSERT_TRUE(stream->Read(&r));
      EXPECT_EQ(r.state(), v1::READY);
      if (i % 2 == 0) {
        v1::AttachRequest goodbye;
        goodbye.set_goodbye(true);
        EXPECT_TRUE(stream->Write(goodbye));
        stream->WritesDone();
        while (stream->Read(&r)) {
        }
        EXPECT_TRUE(stream->Finish().ok());
      } else {
        context.TryCancel();
        EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
      }
    });
    // racer-N: cancelled as soon as its first message is sent.
    threads.emplace_back([&, i] {
      grpc::ClientContext context;
      SetDeadline(&context, absl::Seconds(30));
      auto stream = h.agent->Attach(&context);
      stream->Write(first_message(absl::StrCat("racer-", i)));
      context.TryCancel();
      EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
    });
  }
  for (std::thread& t : threads) t.join();

  // The instances table follows on the fleet thread.
  std::set<std::string> pods;
  for (int attempt = 0; attempt < 200; ++attempt) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(5));
    v1::ListInstancesResponse listed;
    ASSERT_TRUE(h.operator_stub->ListInstances(&context, v1::ListInstancesRequest(), &listed).ok());
    pods.clear();
    for (const v1::Instance& instance : listed.instances()) {
      if (absl::StartsWith(instance.instance_id(), "pod-")) pods.insert(instance.instance_id());
    }
    if (pods == std::set<std::string>{"pod-1", "pod-3", "pod-5"}) break;
    absl::SleepFor(absl::Milliseconds(25));
  }
  EXPECT_EQ(pods, (std::set<std::string>{"pod-1", "pod-3", "pod-5"}));
}

}  // namespace
}  // namespace schemagate
