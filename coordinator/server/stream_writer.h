// The write side of a server-streaming (or bidi) reactor, shared by the
// agent's Wait and Attach streams, an operator's Run progress and the event
// feed. gRPC allows one write in flight per stream; StreamWriter owns that
// flag, the messages waiting behind it and the stream's end, under one
// mutex, and makes every gRPC call outside it (the library may run a
// reaction inline, and reactions take the caller's locks).
//
// Two kinds of messages:
//  - Write: every message is delivered, in order (progress, events).
//  - Offer: a snapshot's state. Only the newest matters: a queued one not
//    yet written is replaced, so a slow client costs one message, not a
//    queue; and one from an older snapshot generation than a message
//    already offered is dropped, so a stream never goes back in time
//    (snapshots are published to observers from more than one thread).
//
// The stream is finished exactly once: End finishes after the write in
// flight (queued messages are dropped), Close once every queued message is
// written, an offered message marked `last` goes out with OK in one batch
// (StartWriteAndFinish), and a failed write (the client went away) finishes
// at once with CANCELLED.
//
// A write with more messages queued behind it carries the buffer hint
// (grpc::WriteOptions::set_buffer_hint), so a backlog goes out in fewer
// packets; the message that empties the queue does not, so it flushes.
//
// Thread-safe. `Reactor` is the gRPC reactor (or, in tests, anything with
// its StartWrite, StartWriteAndFinish and Finish); it must outlive the
// writer's calls, and its OnWriteDone must call the writer's.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_STREAM_WRITER_H_
#define SCHEMAGATE_COORDINATOR_SERVER_STREAM_WRITER_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "grpcpp/impl/call_op_set.h"  // grpc::WriteOptions
#include "grpcpp/support/status.h"

namespace schemagate {

template <typename Reactor, typename Message>
class StreamWriter {
 public:
  explicit StreamWriter(Reactor* reactor) : reactor_(reactor) {}
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  // Queues `message` to be delivered after every one before it and starts
  // it if no write is in flight. False (dropped) when the stream is ending.
  bool Write(Message message) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (ending_ || closing_) return false;
      queue_.push_back(Entry{std::move(message), /*snapshot=*/false, /*last=*/false});
      action = NextLocked();
    }
    Perform(action);
    return true;
  }

  // Offers the state of snapshot `generation`: false (dropped) when a
  // message of a newer generation was offered before or the stream is
  // ending. Otherwise the generation is recorded and `message` (nullopt:
  // the state is unchanged, nothing to send) replaces a queued snapshot
  // message not yet written. `last`: the stream ends with OK once it is
  // written (unless a newer one replaces it first).
  //
  // Starts nothing: the caller may hold its own lock to keep what it
  // compares against in step with the generations; call Flush() once that
  // lock is released.
  bool Offer(uint64_t generation, std::optional<Message> message, bool last = false) {
    absl::MutexLock lock(&mu_);
    if (ending_ || closing_ || generation < generation_) return false;
    generation_ = generation;
    if (!message) return true;
    Entry entry{std::move(*message), /*snapshot=*/true, last};
    if (!queue_.empty() && queue_.back().snapshot) {
      queue_.back() = std::move(entry);
    } else {
      queue_.push_back(std::move(entry));
    }
    return true;
  }

  // Starts the next queued message if no write is in flight.
  void Flush() {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      action = NextLocked();
    }
    Perform(action);
  }

  // Ends the stream with `status`: queued messages are dropped and the
  // stream finishes after the write in flight. The first End wins; it
  // overrides a Close whose messages are still queued.
  void End(const grpc::Status& status) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (ending_ || finished_) return;
      ending_ = true;
      queue_.clear();
      status_ = status;
      action = NextLocked();
    }
    Perform(action);
  }

  // Finishes with `status` once every queued message is written. Later
  // messages are refused. Idempotent.
  void Close(const grpc::Status& status) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (ending_ || closing_ || finished_) return;
      closing_ = true;
      status_ = status;
      action = NextLocked();
    }
    Perform(action);
  }

  // To be called from the reactor's OnWriteDone (not called after a
  // write-and-finish).
  void OnWriteDone(bool ok) {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok && !finished_) {
        ending_ = true;
        queue_.clear();
        status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
      action = NextLocked();
    }
    Perform(action);
  }

  // True once End or Close was called or a write failed: no message is
  // accepted any more.
  bool ending() const {
    absl::MutexLock lock(&mu_);
    return ending_ || closing_ || finished_;
  }

  // Messages waiting behind the write in flight.
  size_t queued() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

 private:
  struct Entry {
    Message message;
    bool snapshot;  // replaced by a newer snapshot while queued
    bool last;      // finishes the stream with OK when written
  };

  struct Action {
    enum class Kind { kNone, kWrite, kWriteAndFinish, kFinish };
    Kind kind = Kind::kNone;
    grpc::WriteOptions options;
    grpc::Status status;
  };

  // What to do next: write the front of the queue, or finish an ending
  // stream whose writes are done.
  Action NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Action action;
    if (finished_ || write_in_flight_) return action;
    if (!queue_.empty()) {
      Entry entry = std::move(queue_.front());
      queue_.pop_front();
      in_flight_ = std::move(entry.message);
      // More behind it: gRPC may hold this one back to send them together.
      // Never on the first message, which goes out with the initial
      // metadata: a buffered first write can stall the call
      // (grpc/grpc#12975, #34231).
      if (started_ && !queue_.empty()) action.options.set_buffer_hint();
      started_ = true;
      if (entry.last) {
        // One batch for the answer and the status: fan-out to thousands
        // of waiters costs half the completions.
        finished_ = true;
        ending_ = true;
        queue_.clear();
        action.kind = Action::Kind::kWriteAndFinish;
        action.status = grpc::Status::OK;
        return action;
      }
      write_in_flight_ = true;
      action.kind = Action::Kind::kWrite;
      return action;
    }
    if (ending_ || closing_) {
      finished_ = true;
      action.kind = Action::Kind::kFinish;
      action.status = status_;
    }
    return action;
  }

  // Outside `mu_`. `in_flight_` is not touched again until OnWriteDone (or,
  // after a write-and-finish, ever), so reading it here is safe.
  void Perform(const Action& action) {
    switch (action.kind) {
      case Action::Kind::kNone:
        return;
      case Action::Kind::kWrite:
        reactor_->StartWrite(&in_flight_, action.options);
        return;
      case Action::Kind::kWriteAndFinish:
        reactor_->StartWriteAndFinish(&in_flight_, action.options, action.status);
        return;
      case Action::Kind::kFinish:
        reactor_->Finish(action.status);
        return;
    }
  }

  Reactor* const reactor_;
  mutable absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  // Owned by gRPC between StartWrite and OnWriteDone (or OnDone after a
  // write-and-finish).
  Message in_flight_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // a first write was started
  // Generation of the newest snapshot offered.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;    // End, or a failed write
  bool closing_ ABSL_GUARDED_BY(mu_) = false;   // Close: finish once drained
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish (or write-and-finish) started
  grpc::Status status_ ABSL_GUARDED_BY(mu_);    // the status to finish with
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_STREAM_WRITER_H_
