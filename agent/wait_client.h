// The agent's conversation with coordinators, as a library a C++ app can
// embed: ask once (Check) or wait for READY (Wait), trying every coordinator
// of the list in turn until the timeout.
#ifndef SCHEMAGATE_AGENT_WAIT_CLIENT_H_
#define SCHEMAGATE_AGENT_WAIT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/channel.h"
#include "coordinator/engine/readiness_answer.h"
#include "grpcpp/client_context.h"

namespace schemagate {

struct WaitOptions {
  // Coordinator addresses, tried in turn.
  std::vector<std::string> coordinators;
  AppTarget target;
  std::string instance_id;
  // TLS and token for every call (also the Attach stream).
  ClientSecurity security;
  absl::Duration timeout = absl::Minutes(5);
  // Treat FAILED, INCOMPATIBLE and MISMATCH like any other state: keep
  // waiting until the timeout (an operator may fix the set meanwhile).
  bool keep_waiting = false;
  // When no coordinator answers, ask this instead (the agent binary's
  // --fallback-database-url reads the bookkeeping table directly; see
  // fallback_check.h). It is kept out of this library, so an application that
  // embeds the wait links no PostgreSQL client. Empty: off.
  std::function<absl::StatusOr<ReadinessAnswer>(const AppTarget& target)> fallback;
  // Told one human line per state change or connection problem.
  std::function<void(const std::string& line)> log;
};

struct WaitOutcome {
  // kExitReady, kExitTimedOut, kExitIncompatible, kExitFailed,
  // kExitUnauthorised, kExitUnreachable or kExitUsage.
  int exit_code = 0;
  // The last answer received (if `answered`).
  bool answered = false;
  ReadinessAnswer last;
  std::string coordinator;
  // Why, in one line, when exit_code is not kExitReady.
  std::string message;
};

// The exit code an agent uses for a final or current answer.
int ExitCodeFor(ReadinessState state);

// Thread-safe: Cancel() may be called from any thread while Wait runs.
class ReadinessClient {
 public:
  ReadinessClient() = default;

  // Streams readiness until READY, a final state, or the timeout.
  WaitOutcome Wait(const WaitOptions& options);
  // Asks once; answers from the first coordinator that replies.
  WaitOutcome Check(const WaitOptions& options);
  // Ends a running Wait (it returns kExitTimedOut with message "cancelled").
  void Cancel();

 private:
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_WAIT_CLIENT_H_
