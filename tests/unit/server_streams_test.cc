// The coordinator's gRPC streams in-process, on the in-memory FakeStore (no
// database): run progress delivered whole and in order, the event feed,
// Wait's end after READY, and Attach streams cancelled while their
// heartbeats are being read, from several threads at once (the reactor's
// Detach from OnCancel against its read reactions; the ThreadSanitizer
// build runs this test).
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/channel.h"
#include "coordinator/engine/fake_store.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/fleet/coordinator.h"
#include "coordinator/server/server.h"
#include "gtest/gtest.h"
#include "schemagate/v1/schemagate.grpc.pb.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::WaitUntil;

#if defined(__SANITIZE_THREAD__)
#define SG_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SG_UNDER_TSAN 1
#endif
#endif

// Under ThreadSanitizer a burst of writes started off the reaction threads
// (the runner's progress) is reported inside gRPC's own write bookkeeping
// (CallOpSet::FillOps against FinalizeResult, the message's serialisation
// against the next move into it): libgrpc, not instrumented, orders a
// write's start before its completion where TSan cannot see it (before
// StreamWriter the runner started these writes too). These bulk tests run in
// the normal and ASan builds; the Attach and Wait tests below run under TSan.
#ifdef SG_UNDER_TSAN
#define SG_SKIP_BULK_WRITES_UNDER_TSAN() \
  GTEST_SKIP() << "gRPC write completions are invisible to TSan (uninstrumented libgrpc)"
#else
#define SG_SKIP_BULK_WRITES_UNDER_TSAN() (void)0
#endif

// Generous: only a hang reaches it.
constexpr absl::Duration kCallDeadline = absl::Seconds(60);

MigrationSet TrivialSet(int count) {
  std::map<std::string, std::string> files;
  for (int v = 1; v <= count; ++v) {
    files[absl::StrFormat("%04d_t%d.up.sql", v, v)] =
        absl::StrCat("CREATE TABLE t", v, " (id int);\n");
  }
  std::vector<std::string> warnings;
  absl::StatusOr<MigrationSet> set = MigrationSet::LoadFiles("migrations", files, &warnings);
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? std::move(*set) : MigrationSet();
}

// A manual coordinator on a FakeDatabase, its server on a free port.
class ServerStreamsTest : public ::testing::Test {
 protected:
  void StartServer(int migrations) {
    CoordinatorOptions options;
    options.coordinator_id = "unit";
    options.manual = true;
    options.runner.coordinator_id = "unit";
    FakeStore feed_store(&db_, FakeStoreOptions{});
    coordinator_ = std::make_unique<Coordinator>(
        options, TrivialSet(migrations),
        std::make_unique<FakeStore>(&db_, FakeStoreOptions{"unit"}), feed_store.NewChangeFeed());
    ServerOptions server_options;
    server_options.listen = "127.0.0.1:0";
    server_options.max_streams_per_client = 0;  // the threads below open many at once
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> started =
        CoordinatorServer::Start(coordinator_.get(), OperatorServiceOptions(), server_options);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    coordinator_->Start();
    channel_ = NewCoordinatorChannel(absl::StrCat("127.0.0.1:", server_->port()));
    agent_ = v1::AgentService::NewStub(channel_);
    operator_ = v1::OperatorService::NewStub(channel_);
  }

  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(5));
  }

  // Applies everything; returns the progress messages.
  std::vector<v1::RunProgress> Apply(grpc::Status* status) {
    grpc::ClientContext context;
    SetDeadline(&context, kCallDeadline);
    v1::ApplyRequest request;
    request.set_actor("tester");
    std::unique_ptr<grpc::ClientReader<v1::RunProgress>> reader =
        operator_->Apply(&context, request);
    std::vector<v1::RunProgress> out;
    v1::RunProgress p;
    while (reader->Read(&p)) out.push_back(p);
    *status = reader->Finish();
    return out;
  }

  FakeDatabase db_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentService::Stub> agent_;
  std::unique_ptr<v1::OperatorService::Stub> operator_;
};

TEST_F(ServerStreamsTest, ApplyDeliversEveryProgressMessageInOrderThenTheStatus) {
  SG_SKIP_BULK_WRITES_UNDER_TSAN();
  constexpr int kMigrations = 300;
  StartServer(kMigrations);
  grpc::Status status;
  const std::vector<v1::RunProgress> progress = Apply(&status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<int64_t> finished;
  for (const v1::RunProgress& p : progress) {
    if (p.kind() == v1::MIGRATION_FINISHED) finished.push_back(p.version());
  }
  ASSERT_EQ(finished.size(), static_cast<size_t>(kMigrations));
  for (int i = 0; i < kMigrations; ++i) EXPECT_EQ(finished[i], i + 1);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().kind(), v1::RUN_FINISHED);
}

TEST_F(ServerStreamsTest, WatchEventsFromTheStartDeliversEveryEventOnce) {
  SG_SKIP_BULK_WRITES_UNDER_TSAN();
  constexpr int kMigrations = 700;  // more events than one read batch
  StartServer(kMigrations);
  grpc::Status applied;
  Apply(&applied);
  ASSERT_TRUE(applied.ok()) << applied.error_message();
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->snapshot()->view.db.last_event_id > 0; },
                        absl::Seconds(20)));
  const int64_t last = coordinator_->snapshot()->view.db.last_event_id;

  grpc::ClientContext context;
  SetDeadline(&context, kCallDeadline);
  v1::WatchEventsRequest request;
  request.set_after_event_id(1);
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader = operator_->WatchEvents(&context, request);
  std::vector<int64_t> ids;
  v1::Event event;
  while (ids.size() < static_cast<size_t>(last - 1) && reader->Read(&event)) {
    ids.push_back(event.id());
  }
  context.TryCancel();
  reader->Finish();
  ASSERT_EQ(ids.size(), static_cast<size_t>(last - 1));
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], static_cast<int64_t>(i) + 2);
}

TEST_F(ServerStreamsTest, WaitEndsWithReadyOnceAnOperatorApplies) {
  StartServer(3);
  grpc::ClientContext context;
  SetDeadline(&context, kCallDeadline);
  v1::WaitRequest request;
  request.set_instance_id("pod-1");
  request.mutable_target()->set_known_version(3);
  request.mutable_target()->set_required_version(3);
  std::unique_ptr<grpc::ClientReader<v1::Readiness>> reader = agent_->Wait(&context, request);
  v1::Readiness r;
  // The first answer may come before the coordinator's first read of the
  // database (it starts after the server): wait for PENDING.
  bool read = false;
  while ((read = reader->Read(&r)) && r.state() != v1::PENDING) {
  }
  ASSERT_TRUE(read);
  EXPECT_EQ(r.state(), v1::PENDING);
  grpc::Status applied;
  Apply(&applied);
  ASSERT_TRUE(applied.ok()) << applied.error_message();
  std::vector<v1::ReadinessState> seen;
  while (reader->Read(&r)) seen.push_back(r.state());
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), v1::READY);
}

// Attaches as `id` with `token`, sends `heartbeats` heartbeats and cancels
// while the server may still be reading them.
void AttachAndCancel(v1::AgentService::Stub* agent, const std::string& id, const std::string& token,
                     int heartbeats) {
  grpc::ClientContext context;
  SetDeadline(&context, kCallDeadline);
  std::unique_ptr<grpc::ClientReaderWriter<v1::AttachRequest, v1::Readiness>> stream =
      agent->Attach(&context);
  v1::AttachRequest hello;
  hello.set_instance_id(id);
  hello.set_attach_token(token);
  hello.mutable_target()->set_app("shop");
  hello.mutable_target()->set_known_version(2);
  hello.mutable_target()->set_required_version(2);
  if (!stream->Write(hello)) return;
  v1::AttachRequest heartbeat;
  for (int i = 0; i < heartbeats; ++i) {
    if (!stream->Write(heartbeat)) break;
  }
  context.TryCancel();
  stream->Finish();
}

TEST_F(ServerStreamsTest, AttachStreamsCancelledDuringHeartbeatsLeaveNoInstanceBehind) {
  StartServer(2);
  constexpr int kThreads = 4;
  constexpr int kRounds = 60;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      for (int round = 0; round < kRounds; ++round) {
        // One agent process per thread: the same id and token each round.
        AttachAndCancel(agent_.get(), absl::StrCat("web-", t), absl::StrCat("token-", t),
                        round % 8);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  // Every cancelled stream detached: no agent stream is left open, and each
  // id is free for another agent process on this replica (a stream left
  // registered would have it refused as taken).
  ASSERT_TRUE(WaitUntil([&] { return coordinator_->AgentStreams().empty(); }, absl::Seconds(20)));
  for (int t = 0; t < kThreads; ++t) {
    InstanceRecord other = testing::LiveInstance(absl::StrCat("web-", t), 2);
    other.attach_token = "another-process";
    const int stream = 0;
    // A cancelled stream leaves AgentStreams() as it starts ending and frees
    // its id in OnDone, a moment later (under a sanitizer, many moments).
    EXPECT_TRUE(WaitUntil(
        [&] { return coordinator_->InstanceAttached(other, &stream, nullptr).ok(); },
        absl::Seconds(20)))
        << "web-" << t;
    coordinator_->InstanceDetached(other.instance_id, &stream, /*clean=*/true);
  }

  // The server still answers an attach after all that.
  grpc::ClientContext context;
  SetDeadline(&context, kCallDeadline);
  auto stream = agent_->Attach(&context);
  v1::AttachRequest hello;
  hello.set_instance_id("web-last");
  hello.set_attach_token("token-last");
  hello.mutable_target()->set_known_version(2);
  hello.mutable_target()->set_required_version(2);
  ASSERT_TRUE(stream->Write(hello));
  v1::Readiness r;
  ASSERT_TRUE(stream->Read(&r));
  EXPECT_EQ(r.state(), v1::PENDING);
  v1::AttachRequest goodbye;
  goodbye.set_goodbye(true);
  ASSERT_TRUE(stream->Write(goodbye));
  stream->WritesDone();
  while (stream->Read(&r)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace schemagate
