#include "agent/attach_session.h"

#include <optional>
#include <random>

#include "absl/synchronization/notification.h"

#include "absl/strings/str_cat.h"
#include "agent/channel.h"
#include "coordinator/server/wire.h"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate {

namespace {

std::string RandomToken() {
  std::random_device device;
  std::string token;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&token, absl::Hex(device(), absl::kZeroPad8));
  return token;
}

}  // namespace

AttachSession::AttachSession(WaitOptions options, absl::Duration heartbeat)
    : options_(std::move(options)), heartbeat_(heartbeat), attach_token_(RandomToken()) {}

AttachSession::~AttachSession() { Stop(); }

void AttachSession::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void AttachSession::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void AttachSession::Loop() {
  auto say = [this](const std::string& line) {
    if (options_.log) options_.log(line);
  };
  v1::AttachRequest first;
  ToProto(options_.target, first.mutable_target());
  first.set_instance_id(options_.instance_id);
  first.set_attach_token(attach_token_);
  std::mt19937 rng(std::random_device{}());
  size_t index = options_.coordinators.empty()
                     ? 0
                     : std::uniform_int_distribution<size_t>(0, options_.coordinators.size() - 1)(rng);
  absl::Duration backoff = absl::Milliseconds(200);
  std::optional<v1::ReadinessState> last_state;
  while (!options_.coordinators.empty()) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    const std::string& address = options_.coordinators[index];
    auto stub = v1::AgentService::NewStub(NewCoordinatorChannel(address, options_.security));
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      active_ = &context;
    }
    auto stream = stub->Attach(&context);
    bool healthy = stream->Write(first);
    absl::Notification reader_done;
    bool reader_ended = false;
    // Reads run beside the heartbeats; they report state changes (an
    // operator forcing a breaking migration makes the running app INCOMPATIBLE).
    std::thread reader([&] {
      v1::Readiness r;
      while (stream->Read(&r)) {
        if (!last_state || *last_state != r.state()) {
          // READY is what the app started on: not news, unless the instance
          // was told something else since.
          if (r.state() != v1::READY) {
            say(absl::StrCat("attached instance is now ", v1::ReadinessState_Name(r.state()),
                             ": ", r.message()));
          } else if (last_state) {
            say(absl::StrCat("attached instance is READY again (was ",
                             v1::ReadinessState_Name(*last_state), "): ", r.message()));
          }
          last_state = r.state();
        }
      }
      absl::MutexLock lock(&mu_);
      reader_ended = true;
      reader_done.Notify();
    });
    bool said_goodbye = false;
    while (healthy) {
      bool stop = false;
      {
        absl::MutexLock lock(&mu_);
        auto wake = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || reader_ended; };
        mu_.AwaitWithTimeout(absl::Condition(&wake), heartbeat_);
        stop = stopping_;
        if (reader_ended && !stopping_) break;
      }
      if (stop) {
        said_goodbye = true;
        break;
      }
      healthy = stream->Write(v1::AttachRequest());
    }
    if (said_goodbye) {
      v1::AttachRequest goodbye;
      goodbye.set_goodbye(true);
      stream->Write(goodbye);
      stream->WritesDone();
      // Give the coordinator a moment to confirm, then leave anyway.
      if (!reader_done.WaitForNotificationWithTimeout(absl::Seconds(2))) context.TryCancel();
    } else {
      // A stream the coordinator ended keeps its status (a cancel now would
      // turn ALREADY_EXISTS into CANCELLED); a broken write cancels.
      bool ended;
      {
        absl::MutexLock lock(&mu_);
        ended = reader_ended;
      }
      if (!ended) context.TryCancel();
    }
    reader.join();
    grpc::Status status = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      active_ = nullptr;
      if (stopping_) return;
    }
    if (status.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
      // Another process holds the id: re-attaching would not help.
      say(absl::StrCat("attach refused by ", address, ": ", status.error_message()));
      if (on_refused_) on_refused_(status.error_message());
      return;
    }
    say(absl::StrCat("attach stream to ", address, " ended (", status.error_message(),
                     "); re-attaching", options_.coordinators.size() > 1 ? " elsewhere" : ""));
    index = (index + 1) % options_.coordinators.size();
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

}  // namespace schemagate
