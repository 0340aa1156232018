#include "coordinator/server/agent_service.h"

#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/base/log.h"
#include "coordinator/server/proto_convert.h"
#include "coordinator/server/reactors.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/server/stream_writer.h"

namespace schemagate {
namespace {

// Streams an app's readiness and keeps only the latest answer (StreamWriter
// coalesces snapshot states): a slow client costs one message, not a
// queue. gRPC calls are made outside `mu_`, because the library may run
// OnDone inline.
//
// `Base` is the reactor type (server-streaming Wait or bidi Attach).
template <typename Base>
class ReadinessStream : public Base, public StateObserver {
 public:
  ReadinessStream(Coordinator* coordinator, bool end_on_answer, bool attached)
      : coordinator_(coordinator), end_on_answer_(end_on_answer), attached_(attached) {}

  void OnStateChanged(const std::shared_ptr<const Snapshot>& snapshot) override {
    {
      // Held across the offer so that `last_` follows the generations the
      // writer accepts (Publish may tell observers from two threads).
      absl::MutexLock lock(&mu_);
      if (!target_) return;
      ReadinessAnswer answer = coordinator_->SharedAnswer(*snapshot, target_key_, *target_);
      if (last_ && *last_ == answer) {
        writer_.Offer(snapshot->generation, std::nullopt);  // newer, but nothing to say
        return;
      }
      std::optional<v1::Readiness> message(std::in_place);
      ToProto(answer, coordinator_->options().coordinator_id, &*message);
      // An answer that ends the stream goes out with the status in one batch.
      const bool last = end_on_answer_ && (answer.state == ReadinessState::kReady ||
                                           IsFinal(answer.state));
      if (!writer_.Offer(snapshot->generation, std::move(message), last)) return;
      last_ = std::move(answer);
    }
    writer_.Flush();
  }

  void OnShutdown() override {
    EndStream(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           "the coordinator is shutting down; resubscribe to another one"));
  }

  std::optional<AgentStreamInfo> agent_info() override {
    if (writer_.ending()) return std::nullopt;
    absl::MutexLock lock(&mu_);
    if (!target_) return std::nullopt;
    AgentStreamInfo info;
    info.app = target_->app;
    info.app_version = target_->app_version;
    info.attached = attached_;
    info.known_version = last_ ? last_->known_version : target_->known_version;
    if (last_) info.state = last_->state;
    return info;
  }

  void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }

 protected:
  // Sets what to evaluate and sends the first answer.
  void Begin(AppTarget target) {
    std::string key = Coordinator::TargetKey(target);
    {
      absl::MutexLock lock(&mu_);
      target_ = std::move(target);
      target_key_ = std::move(key);
    }
    OnStateChanged(coordinator_->snapshot());
  }

  // Finishes now, or after the write in flight completes. Idempotent.
  void EndStream(const grpc::Status& status) { writer_.End(status); }

  // Keeps the stream counted against its client's cap while it is open.
  void HoldSlot(std::unique_ptr<StreamQuota::Slot> slot) { slot_ = std::move(slot); }
  // REQUIRES: called from OnDone (no reaction runs after it).
  void ReleaseSlot() { slot_.reset(); }

  Coordinator* const coordinator_;

 private:
  std::unique_ptr<StreamQuota::Slot> slot_;
  const bool end_on_answer_;
  const bool attached_;
  StreamWriter<Base, v1::Readiness> writer_{this};
  absl::Mutex mu_;
  std::optional<AppTarget> target_ ABSL_GUARDED_BY(mu_);
  std::string target_key_ ABSL_GUARDED_BY(mu_);  // Coordinator::TargetKey(*target_)
  // The answer last accepted by the writer.
  std::optional<ReadinessAnswer> last_ ABSL_GUARDED_BY(mu_);
};

// Wait: the current answer, every change, and the end after READY or a
// final state unless the client follows.
class WaitStream : public ReadinessStream<grpc::ServerWriteReactor<v1::Readiness>> {
 public:
  WaitStream(Coordinator* coordinator, bool follow)
      : ReadinessStream(coordinator, /*end_on_answer=*/!follow, /*attached=*/false) {}

  void Start(std::shared_ptr<WaitStream> self, AppTarget target,
             std::unique_ptr<StreamQuota::Slot> slot) {
    self_ = self;
    HoldSlot(std::move(slot));
    coordinator_->AddObserver(self);
    Begin(std::move(target));
  }

  void OnCancel() override {
    EndStream(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override {
    coordinator_->RemoveObserver(this);
    ReleaseSlot();
    std::shared_ptr<WaitStream> keep = std::move(self_);  // May delete this on return.
  }

 private:
  std::shared_ptr<WaitStream> self_;
};

// Attach: registers the instance while the stream is open. The first
// message names it; later ones are heartbeats; a goodbye message is a clean
// exit (the instance leaves at once). Any other end leaves the lease to
// expire, so an agent re-attaching elsewhere keeps its instance live. An id
// held by another agent process ends the stream with ALREADY_EXISTS.
class AttachStream
    : public ReadinessStream<grpc::ServerBidiReactor<v1::AttachRequest, v1::Readiness>> {
 public:
  explicit AttachStream(Coordinator* coordinator)
      : ReadinessStream(coordinator, /*end_on_answer=*/false, /*attached=*/true) {}

  void Start(std::shared_ptr<AttachStream> self, std::unique_ptr<StreamQuota::Slot> slot) {
    self_ = self;
    HoldSlot(std::move(slot));
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side. Only an explicit goodbye removes the
      // instance; otherwise its lease keeps it live while it re-attaches.
      Detach(/*clean=*/false);
      EndStream(grpc::Status::OK);
      return;
    }
    bool registered;
    {
      absl::MutexLock lock(&registration_mu_);
      registered = registered_;
    }
    if (registered && request_.goodbye()) {
      Detach(/*clean=*/true);
      EndStream(grpc::Status::OK);
      return;
    }
    if (!registered) {
      std::optional<AppTarget> target = Register();
      if (!target) return;  // Refused; the stream is ending.
      coordinator_->AddObserver(self_);
      Begin(std::move(*target));
    }
    StartRead(&request_);
  }

  void OnCancel() override {
    Detach(/*clean=*/false);
    EndStream(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override {
    Detach(/*clean=*/false);
    coordinator_->RemoveObserver(this);
    ReleaseSlot();
    std::shared_ptr<AttachStream> keep = std::move(self_);  // May delete this on return.
  }

 private:
  // Registers the instance the first message names; nullopt (and the
  // stream ending) when the message is invalid or the id is taken.
  std::optional<AppTarget> Register() {
    AppTarget target;
    absl::Status valid = ValidateAttachRequest(request_);
    if (valid.ok()) valid = FromProto(request_.target(), &target);
    if (!valid.ok()) {
      EndStream(ToGrpc(valid));
      return std::nullopt;
    }
    target = ResolveTarget(target, *coordinator_->set());
    InstanceRecord instance;
    instance.instance_id = request_.instance_id();
    instance.app = target.app;
    instance.app_version = target.app_version;
    instance.known_version = target.known_version;
    instance.required_version = target.required_version;
    instance.coordinator_id = coordinator_->options().coordinator_id;
    instance.attach_token = request_.attach_token();
    // Called on the fleet thread when another replica's agent holds the id.
    std::weak_ptr<AttachStream> weak = self_;
    auto on_refused = [weak](const absl::Status& why) {
      if (std::shared_ptr<AttachStream> stream = weak.lock()) stream->EndStream(ToGrpc(why));
    };
    absl::Status attached;
    {
      // Held across the call so that a Detach from OnCancel (another
      // thread) sees the registration whole or not at all.
      absl::MutexLock lock(&registration_mu_);
      attached = coordinator_->InstanceAttached(instance, this, std::move(on_refused));
      if (attached.ok()) {
        registered_ = true;
        instance_id_ = instance.instance_id;
      }
    }
    if (!attached.ok()) {
      EndStream(ToGrpc(attached));
      return std::nullopt;
    }
    return target;
  }

  void Detach(bool clean) {
    absl::MutexLock lock(&registration_mu_);
    if (!registered_ || detached_) return;
    detached_ = true;
    coordinator_->InstanceDetached(instance_id_, this, clean);
  }

  std::shared_ptr<AttachStream> self_;
  // Touched only by the read reactions, which never overlap.
  v1::AttachRequest request_;
  // Written by a read reaction, read by Detach from OnCancel too.
  absl::Mutex registration_mu_;
  bool registered_ ABSL_GUARDED_BY(registration_mu_) = false;
  std::string instance_id_ ABSL_GUARDED_BY(registration_mu_);
  bool detached_ ABSL_GUARDED_BY(registration_mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* AgentServiceImpl::Check(grpc::CallbackServerContext* context,
                                                  const v1::CheckRequest* request,
                                                  v1::Readiness* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status admitted =
      guards_.Admit(*context, AccessRole::kAgent, ValidateCheckRequest(*request));
  AppTarget target;
  if (admitted.ok()) admitted = ToGrpc(FromProto(request->target(), &target));
  if (!admitted.ok()) {
    reactor->Finish(admitted);
    return reactor;
  }
  ToProto(coordinator_->Evaluate(target), coordinator_->options().coordinator_id, response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::Readiness>* AgentServiceImpl::Wait(
    grpc::CallbackServerContext* context, const v1::WaitRequest* request) {
  grpc::Status admitted =
      guards_.Admit(*context, AccessRole::kAgent, ValidateWaitRequest(*request));
  AppTarget target;
  if (admitted.ok()) admitted = ToGrpc(FromProto(request->target(), &target));
  if (!admitted.ok()) return new FinishedWriter<v1::Readiness>(admitted);
  absl::StatusOr<std::unique_ptr<StreamQuota::Slot>> slot = guards_.AcquireStream(*context);
  if (!slot.ok()) return new FinishedWriter<v1::Readiness>(ToGrpc(slot.status()));
  auto stream = std::make_shared<WaitStream>(coordinator_, request->follow());
  stream->Start(stream, std::move(target), std::move(*slot));
  return stream.get();
}

grpc::ServerBidiReactor<v1::AttachRequest, v1::Readiness>* AgentServiceImpl::Attach(
    grpc::CallbackServerContext* context) {
  // The first message is validated when it arrives (ValidateAttachRequest).
  grpc::Status admitted = guards_.Admit(*context, AccessRole::kAgent);
  if (!admitted.ok()) return new FinishedBidi<v1::AttachRequest, v1::Readiness>(admitted);
  absl::StatusOr<std::unique_ptr<StreamQuota::Slot>> slot = guards_.AcquireStream(*context);
  if (!slot.ok()) {
    return new FinishedBidi<v1::AttachRequest, v1::Readiness>(ToGrpc(slot.status()));
  }
  auto stream = std::make_shared<AttachStream>(coordinator_);
  stream->Start(stream, std::move(*slot));
  return stream.get();
}

}  // namespace schemagate
