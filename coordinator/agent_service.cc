#include "coordinator/agent_service.h"

#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/proto_convert.h"
#include "coordinator/reactors.h"

namespace schemagate {
namespace {

absl::Status ValidateInstanceId(const std::string& id) {
  if (id.size() > kMaxInstanceIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("instance_id is longer than ", kMaxInstanceIdLength, " bytes"));
  }
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return absl::InvalidArgumentError("instance_id must be printable with no spaces");
    }
  }
  return absl::OkStatus();
}

// One Wait stream. Keeps only the latest answer: while a write is in flight
// new states replace each other in `pending_`, so a slow client costs one
// message, not a queue. gRPC calls are made outside `mu_`, because the
// library may run OnDone inline.
class WaitStream : public grpc::ServerWriteReactor<v1::Readiness>, public StateObserver {
 public:
  WaitStream(Coordinator* coordinator, AppTarget target, bool follow)
      : coordinator_(coordinator), target_(std::move(target)), follow_(follow) {}

  // REQUIRES: `self` owns this stream. Registers and sends the first state.
  void Start(std::shared_ptr<WaitStream> self) {
    self_ = self;
    coordinator_->AddObserver(self);
    OnStateChanged(coordinator_->snapshot());
  }

  void OnStateChanged(const std::shared_ptr<const Snapshot>& snapshot) override {
    const ReadinessAnswer answer = EvaluateReadiness(target_, snapshot->view);
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || (last_ && *last_ == answer)) return;
      last_ = answer;
      pending_.emplace();
      ToProto(answer, coordinator_->options().coordinator_id, &*pending_);
      write = TakePendingLocked();
    }
    if (write) StartWrite(&in_flight_);
  }

  void OnShutdown() override {
    EndStream(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           "the coordinator is shutting down; resubscribe to another one"));
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) {
        finishing_ = true;
        finish = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      } else if (deferred_finish_) {
        finish = *deferred_finish_;
      } else if (!follow_ && (in_flight_.state() == v1::READY ||
                              IsFinal(FromProto(in_flight_.state())))) {
        finishing_ = true;
        finish = grpc::Status::OK;
      } else {
        write = TakePendingLocked();
      }
    }
    if (finish) {
      Finish(*finish);
    } else if (write) {
      StartWrite(&in_flight_);
    }
  }

  void OnCancel() override {
    EndStream(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override {
    coordinator_->RemoveObserver(this);
    std::shared_ptr<WaitStream> keep = std::move(self_);  // May delete this on return.
  }

 private:
  // Moves the pending answer into the in-flight slot if no write is under way.
  bool TakePendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || !pending_ || finishing_) return false;
    in_flight_ = std::move(*pending_);
    pending_.reset();
    write_in_flight_ = true;
    return true;
  }

  // Finishes now, or after the write in flight completes.
  void EndStream(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      finishing_ = true;
      if (write_in_flight_) {
        deferred_finish_ = status;
        return;
      }
    }
    Finish(status);
  }

  Coordinator* const coordinator_;
  const AppTarget target_;
  const bool follow_;
  std::shared_ptr<WaitStream> self_;

  absl::Mutex mu_;
  std::optional<ReadinessAnswer> last_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Readiness> pending_ ABSL_GUARDED_BY(mu_);
  // Owned by gRPC between StartWrite and OnWriteDone.
  v1::Readiness in_flight_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerUnaryReactor* AgentServiceImpl::Check(grpc::CallbackServerContext* context,
                                                  const v1::CheckRequest* request,
                                                  v1::Readiness* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  AppTarget target;
  absl::Status valid = FromProto(request->target(), &target);
  if (valid.ok()) valid = ValidateInstanceId(request->instance_id());
  if (!valid.ok()) {
    reactor->Finish(ToGrpc(valid));
    return reactor;
  }
  ToProto(coordinator_->Evaluate(target), coordinator_->options().coordinator_id, response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::Readiness>* AgentServiceImpl::Wait(
    grpc::CallbackServerContext* context, const v1::WaitRequest* request) {
  AppTarget target;
  absl::Status valid = FromProto(request->target(), &target);
  if (valid.ok()) valid = ValidateInstanceId(request->instance_id());
  if (!valid.ok()) return new FinishedWriter<v1::Readiness>(ToGrpc(valid));
  auto stream = std::make_shared<WaitStream>(coordinator_, std::move(target), request->follow());
  stream->Start(stream);
  return stream.get();
}

}  // namespace schemagate
