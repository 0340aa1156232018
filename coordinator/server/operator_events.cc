// The operator service's live event feed (WatchEvents).
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "coordinator/server/operator_calls.h"
#include "coordinator/server/operator_service.h"
#include "coordinator/server/proto_convert.h"
#include "coordinator/server/reactors.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/server/stream_writer.h"

namespace schemagate {
namespace {

// A live feed of events, oldest first, from `after_event_id` on. Events are
// read from the database on the worker thread when a snapshot shows new
// ones, one batch at a time; every event is delivered (no coalescing). A
// client that falls too far behind is cut off with RESOURCE_EXHAUSTED and
// resumes from the last id it saw.
class EventStream : public grpc::ServerWriteReactor<v1::Event>,
                    public StateObserver,
                    public std::enable_shared_from_this<EventStream> {
 public:
  static constexpr size_t kMaxQueued = 10000;
  static constexpr int kBatch = 500;

  EventStream(Coordinator* coordinator, int64_t after, std::unique_ptr<StreamQuota::Slot> slot)
      : coordinator_(coordinator), slot_(std::move(slot)), cursor_(after) {}

  void Start() {
    self_ = shared_from_this();
    coordinator_->AddObserver(self_);
    OnStateChanged(coordinator_->snapshot());
  }

  void OnStateChanged(const std::shared_ptr<const Snapshot>& snapshot) override {
    {
      absl::MutexLock lock(&mu_);
      if (fetching_ || snapshot->view.db.last_event_id <= cursor_ || writer_.ending()) return;
      fetching_ = true;
    }
    Fetch();
  }

  void OnShutdown() override {
    writer_.End(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                             "the coordinator is shutting down; resume on another one with "
                             "after_event_id"));
  }

  void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }

  void OnCancel() override {
    writer_.End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override {
    coordinator_->RemoveObserver(this);
    slot_.reset();
    std::shared_ptr<EventStream> keep = std::move(self_);  // May delete this on return.
  }

 private:
  // Reads the next batch on the worker thread and queues it.
  // REQUIRES: fetching_ was set; only one fetch runs at a time, and the
  // next starts after this one's events are queued, so they stay in order.
  void Fetch() {
    // Whoever calls holds a reference (an observer list, the worker's
    // closure), so this never races OnDone dropping `self_`.
    std::shared_ptr<EventStream> self = shared_from_this();
    int64_t from;
    {
      absl::MutexLock lock(&mu_);
      from = cursor_;
    }
    coordinator_->RunOffThread([self, from] { self->Fetched(self->ReadAfter(from)); });
  }

  absl::StatusOr<std::vector<EventRecord>> ReadAfter(int64_t from) {
    return coordinator_->store()->ReadEventsAfter(from, kBatch);
  }

  void Fetched(const absl::StatusOr<std::vector<EventRecord>>& events) {
    if (!events.ok() || events->empty() || writer_.ending()) {
      // A failed read is retried on the next snapshot that shows new events.
      absl::MutexLock lock(&mu_);
      fetching_ = false;
      return;
    }
    for (const EventRecord& e : *events) {
      v1::Event event;
      ToProto(e, &event);
      writer_.Write(std::move(event));
    }
    if (writer_.queued() > kMaxQueued) {
      writer_.End(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               "the client reads too slowly; resume with after_event_id"));
      return;
    }
    bool full;
    {
      absl::MutexLock lock(&mu_);
      cursor_ = events->back().id;
      full = static_cast<int>(events->size()) == kBatch;
      fetching_ = full;
    }
    if (full) {
      Fetch();
    } else {
      // Events that came while this batch was read found the fetch busy.
      OnStateChanged(coordinator_->snapshot());
    }
  }

  Coordinator* const coordinator_;
  // Counts this stream against its client's cap; released in OnDone.
  std::unique_ptr<StreamQuota::Slot> slot_;
  std::shared_ptr<EventStream> self_;  // Set by Start, dropped by OnDone.
  StreamWriter<grpc::ServerWriteReactor<v1::Event>, v1::Event> writer_{this};
  absl::Mutex mu_;
  int64_t cursor_ ABSL_GUARDED_BY(mu_);  // the id of the last event queued
  bool fetching_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::Event>* OperatorServiceImpl::WatchEvents(
    grpc::CallbackServerContext* context, const v1::WatchEventsRequest* request) {
  if (auto* refused =
          RefusedStream<v1::Event>(context, guards_, ValidateWatchEventsRequest(*request))) {
    return refused;
  }
  absl::StatusOr<std::unique_ptr<StreamQuota::Slot>> slot = guards_.AcquireStream(*context);
  if (!slot.ok()) return new FinishedWriter<v1::Event>(ToGrpc(slot.status()));
  // 0 means "from now on".
  const int64_t after = request->after_event_id() > 0
                            ? request->after_event_id()
                            : coordinator_->snapshot()->view.db.last_event_id;
  auto stream = std::make_shared<EventStream>(coordinator_, after, std::move(*slot));
  stream->Start();
  return stream.get();
}

}  // namespace schemagate
