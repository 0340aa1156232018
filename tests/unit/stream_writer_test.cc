// StreamWriter against a recording reactor: one write in flight, queued
// messages in order, snapshot messages coalesced and never older than one
// offered before, and the stream finished exactly once, after its last
// write.
#include "coordinator/server/stream_writer.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "schemagate/v1/schemagate.pb.h"

namespace schemagate {
namespace {

// Records what the writer asks of gRPC.
class RecordingReactor {
 public:
  void StartWrite(const v1::Readiness* message, grpc::WriteOptions options) {
    absl::MutexLock lock(&mu_);
    written_.push_back(message->message());
    hints_.push_back(options.get_buffer_hint());
    ++writes_started_;
  }
  void StartWriteAndFinish(const v1::Readiness* message, grpc::WriteOptions options,
                           grpc::Status status) {
    absl::MutexLock lock(&mu_);
    written_.push_back(message->message());
    hints_.push_back(options.get_buffer_hint());
    finishes_.push_back(status);
    write_and_finish_ = true;
  }
  void Finish(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    finishes_.push_back(status);
  }

  std::vector<std::string> written() const {
    absl::MutexLock lock(&mu_);
    return written_;
  }
  std::vector<grpc::Status> finishes() const {
    absl::MutexLock lock(&mu_);
    return finishes_;
  }
  bool write_and_finish() const {
    absl::MutexLock lock(&mu_);
    return write_and_finish_;
  }
  std::vector<bool> hints() const {
    absl::MutexLock lock(&mu_);
    return hints_;
  }
  int writes_started() const {
    absl::MutexLock lock(&mu_);
    return writes_started_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> written_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> hints_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::Status> finishes_ ABSL_GUARDED_BY(mu_);
  bool write_and_finish_ ABSL_GUARDED_BY(mu_) = false;
  int writes_started_ ABSL_GUARDED_BY(mu_) = 0;
};

using Strings = std::vector<std::string>;

v1::Readiness Message(const std::string& text) {
  v1::Readiness m;
  m.set_message(text);
  return m;
}

class StreamWriterTest : public ::testing::Test {
 protected:
  // Queues one message per text.
  void WriteAll(const Strings& texts) {
    for (const std::string& text : texts) ASSERT_TRUE(writer_.Write(Message(text))) << text;
  }

  RecordingReactor reactor_;
  StreamWriter<RecordingReactor, v1::Readiness> writer_{&reactor_};
};

TEST_F(StreamWriterTest, WritesOneAtATimeAndDeliversEveryQueuedMessageInOrder) {
  WriteAll({"a", "b", "c"});
  EXPECT_EQ(reactor_.written(), Strings({"a"}));
  EXPECT_EQ(writer_.queued(), 2u);
  writer_.OnWriteDone(true);
  EXPECT_EQ(reactor_.written(), Strings({"a", "b"}));
  writer_.OnWriteDone(true);
  writer_.OnWriteDone(true);
  EXPECT_EQ(reactor_.written(), Strings({"a", "b", "c"}));
  EXPECT_TRUE(reactor_.finishes().empty());
}

TEST_F(StreamWriterTest, AWriteWithMoreQueuedBehindItCarriesTheBufferHintButNeverTheFirst) {
  writer_.Write(Message("a"));  // the first: goes with the initial metadata
  WriteAll({"b", "c", "d"});
  for (int i = 0; i < 4; ++i) writer_.OnWriteDone(true);
  writer_.Write(Message("e"));  // nothing behind it
  EXPECT_EQ(reactor_.written(), Strings({"a", "b", "c", "d", "e"}));
  EXPECT_EQ(reactor_.hints(), std::vector<bool>({false, true, true, false, false}));
}

TEST_F(StreamWriterTest, ANewerSnapshotReplacesTheOneQueuedBehindTheWriteInFlight) {
  ASSERT_TRUE(writer_.Offer(1, Message("g1")));
  writer_.Flush();
  ASSERT_TRUE(writer_.Offer(2, Message("g2")));
  ASSERT_TRUE(writer_.Offer(3, Message("g3")));
  writer_.Flush();  // g1 is still in flight
  EXPECT_EQ(reactor_.written(), Strings({"g1"}));
  writer_.OnWriteDone(true);
  writer_.OnWriteDone(true);
  EXPECT_EQ(reactor_.written(), Strings({"g1", "g3"}));
}

TEST_F(StreamWriterTest, ASnapshotOlderThanOneOfferedBeforeIsDropped) {
  ASSERT_TRUE(writer_.Offer(5, Message("g5")));
  writer_.Flush();
  writer_.OnWriteDone(true);
  EXPECT_FALSE(writer_.Offer(4, Message("g4")));
  // A newer generation with nothing new to say still counts.
  EXPECT_TRUE(writer_.Offer(7, std::nullopt));
  EXPECT_FALSE(writer_.Offer(6, Message("g6")));
  writer_.Flush();
  EXPECT_EQ(reactor_.written(), Strings({"g5"}));
  EXPECT_TRUE(writer_.Offer(7, Message("g7")));
  writer_.Flush();
  EXPECT_EQ(reactor_.written(), Strings({"g5", "g7"}));
}

TEST_F(StreamWriterTest, CloseFinishesOnlyAfterTheLastQueuedWriteCompletes) {
  WriteAll({"a", "b"});
  writer_.Close(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "refused"));
  EXPECT_FALSE(writer_.Write(Message("late")));
  // Each completed write starts the next; none finishes the stream early.
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(reactor_.finishes().empty()) << i;
    writer_.OnWriteDone(true);
  }
  ASSERT_EQ(reactor_.finishes().size(), 1u);
  EXPECT_EQ(reactor_.finishes()[0].error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(reactor_.written(), Strings({"a", "b"}));
  writer_.Close(grpc::Status::OK);
  writer_.End(grpc::Status::OK);
  EXPECT_EQ(reactor_.finishes().size(), 1u);
}

TEST_F(StreamWriterTest, CloseWithNothingQueuedFinishesAtOnce) {
  writer_.Close(grpc::Status::OK);
  ASSERT_EQ(reactor_.finishes().size(), 1u);
  EXPECT_TRUE(reactor_.finishes()[0].ok());
}

TEST_F(StreamWriterTest, EndDropsQueuedMessagesAndFinishesAfterTheWriteInFlight) {
  WriteAll({"a", "b"});
  writer_.End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
  EXPECT_TRUE(reactor_.finishes().empty());
  EXPECT_TRUE(writer_.ending());
  EXPECT_FALSE(writer_.Offer(9, Message("late")));
  writer_.OnWriteDone(true);
  ASSERT_EQ(reactor_.finishes().size(), 1u);
  EXPECT_EQ(reactor_.finishes()[0].error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(reactor_.written(), Strings({"a"}));
  writer_.End(grpc::Status::OK);
  EXPECT_EQ(reactor_.finishes().size(), 1u);
}

TEST_F(StreamWriterTest, EndOverridesACloseWhoseMessagesAreStillQueued) {
  WriteAll({"a", "b"});
  writer_.Close(grpc::Status::OK);
  writer_.End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  writer_.OnWriteDone(true);
  ASSERT_EQ(reactor_.finishes().size(), 1u);
  EXPECT_EQ(reactor_.finishes()[0].error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(reactor_.written(), Strings({"a"}));
}

TEST_F(StreamWriterTest, AFailedWriteFinishesWithCancelled) {
  WriteAll({"a", "b"});
  writer_.OnWriteDone(false);
  ASSERT_EQ(reactor_.finishes().size(), 1u);
  EXPECT_EQ(reactor_.finishes()[0].error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(reactor_.written(), Strings({"a"}));
  EXPECT_FALSE(writer_.Write(Message("c")));
}

TEST_F(StreamWriterTest, ALastSnapshotGoesOutWithTheStatusInOneBatch) {
  ASSERT_TRUE(writer_.Offer(1, Message("pending")));
  writer_.Flush();
  // Queued as last, then replaced by a newer state that does not end it.
  ASSERT_TRUE(writer_.Offer(2, Message("ready"), /*last=*/true));
  ASSERT_TRUE(writer_.Offer(3, Message("migrating")));
  writer_.OnWriteDone(true);
  EXPECT_FALSE(reactor_.write_and_finish());
  ASSERT_TRUE(writer_.Offer(4, Message("ready again"), /*last=*/true));
  writer_.OnWriteDone(true);
  EXPECT_TRUE(reactor_.write_and_finish());
  ASSERT_EQ(reactor_.finishes().size(), 1u);
  EXPECT_TRUE(reactor_.finishes()[0].ok());
  EXPECT_EQ(reactor_.written(), Strings({"pending", "migrating", "ready again"}));
  // Nothing after it, and no second finish.
  EXPECT_FALSE(writer_.Offer(5, Message("later")));
  writer_.End(grpc::Status::OK);
  EXPECT_EQ(reactor_.finishes().size(), 1u);
}

// Several threads offer snapshots of increasing generations, as Publish
// tells observers from more than one thread, while a "client" completes
// writes: what goes out never goes back in time, and the newest is the
// last one written.
TEST_F(StreamWriterTest, ConcurrentOffersNeverDeliverAnOlderGenerationAfterANewerOne) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::atomic<uint64_t> next_generation{1};
  std::atomic<int> offering{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t g = next_generation.fetch_add(1);
        writer_.Offer(g, Message(absl::StrCat(g)));
        writer_.Flush();
      }
      offering.fetch_sub(1);
    });
  }
  // The client: completes each write it sees started.
  int completed = 0;
  while (offering.load() > 0 || completed < reactor_.writes_started()) {
    if (completed < reactor_.writes_started()) {
      ++completed;
      writer_.OnWriteDone(true);
    } else {
      std::this_thread::yield();
    }
  }
  for (std::thread& thread : threads) thread.join();
  writer_.Flush();
  while (completed < reactor_.writes_started()) {
    ++completed;
    writer_.OnWriteDone(true);
  }
  writer_.End(grpc::Status::OK);

  const Strings written = reactor_.written();
  ASSERT_FALSE(written.empty());
  uint64_t previous = 0;
  for (const std::string& text : written) {
    const uint64_t g = std::stoull(text);
    EXPECT_GT(g, previous);
    previous = g;
  }
  EXPECT_EQ(reactor_.finishes().size(), 1u);
}

}  // namespace
}  // namespace schemagate
