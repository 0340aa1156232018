// Keeps this instance registered with the fleet while the app runs: an
// Attach stream to one coordinator of the list, heartbeats, and a new
// stream to the next coordinator whenever one breaks, without touching the
// app. Stop() says goodbye (half-close), so the instance leaves at once.
//
// Every stream of a session carries one random attach token, so the
// coordinators tell this process's re-attaches from another process under
// the same instance id; such an id is refused (ALREADY_EXISTS), and the
// session then ends and tells `on_refused`.
#ifndef SCHEMAGATE_AGENT_ATTACH_SESSION_H_
#define SCHEMAGATE_AGENT_ATTACH_SESSION_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/wait_client.h"
#include "grpcpp/client_context.h"

namespace schemagate {

// Thread-safe. Owns one thread while started.
class AttachSession {
 public:
  // `options` as for ReadinessClient::Wait (coordinators, target, instance id,
  // log). Heartbeats every `heartbeat`.
  AttachSession(WaitOptions options, absl::Duration heartbeat = absl::Seconds(10));
  ~AttachSession();

  // Called once, on the session's thread, with the coordinator's message
  // when the instance id is held by another live agent process; the
  // session stops re-attaching. REQUIRES: before Start().
  void set_on_refused(std::function<void(const std::string& message)> on_refused) {
    on_refused_ = std::move(on_refused);
  }
  // 32 random hex digits, drawn once per session.
  const std::string& attach_token() const { return attach_token_; }

  void Start();
  // Half-closes the stream (the instance leaves the fleet) and joins.
  void Stop();

 private:
  void Loop();

  const WaitOptions options_;
  const absl::Duration heartbeat_;
  const std::string attach_token_;
  std::function<void(const std::string&)> on_refused_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_ATTACH_SESSION_H_
