#include "agent/wait_client.h"

#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/channel.h"
#include "agent/exit_codes.h"
#include "coordinator/server/wire.h"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate {
namespace {

// Check calls get at most this long each.
constexpr absl::Duration kCheckCallTimeout = absl::Seconds(5);

bool IsAuthError(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAUTHENTICATED ||
         code == grpc::StatusCode::PERMISSION_DENIED;
}

void Say(const WaitOptions& options, const std::string& line) {
  if (options.log) options.log(line);
}

std::string Describe(const ReadinessAnswer& answer, const std::string& coordinator) {
  return absl::StrCat(ReadinessStateName(answer.state), ": ", answer.message, " (coordinator ",
                      coordinator, ")");
}

size_t RandomStart(size_t n) {
  static thread_local std::mt19937 rng(std::random_device{}());
  return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng);
}

}  // namespace

// Asks the database directly. Returns an outcome to end with (READY or a
// final state); otherwise records the answer in `outcome` and returns nothing.
std::optional<WaitOutcome> TryFallback(const WaitOptions& options, WaitOutcome* outcome) {
  absl::StatusOr<ReadinessAnswer> answer = options.fallback(options.target);
  if (!answer.ok()) {
    Say(options, absl::StrCat("fallback database check failed: ", answer.status().message()));
    return std::nullopt;
  }
  const bool changed = !outcome->answered || outcome->last.state != answer->state;
  outcome->last = *answer;
  outcome->coordinator = "(database, fallback)";
  if (changed) Say(options, Describe(*answer, outcome->coordinator));
  if (answer->state == ReadinessState::kReady || IsFinal(answer->state)) {
    WaitOutcome done = *outcome;
    done.answered = true;
    done.exit_code = ExitCodeFor(answer->state);
    done.message = answer->message;
    return done;
  }
  return std::nullopt;
}

int ExitCodeFor(ReadinessState state) {
  switch (state) {
    case ReadinessState::kReady: return kExitReady;
    case ReadinessState::kIncompatible:
    case ReadinessState::kMismatch: return kExitIncompatible;
    case ReadinessState::kFailed: return kExitFailed;
    default: return kExitTimedOut;
  }
}

void ReadinessClient::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (active_ != nullptr) active_->TryCancel();
}

WaitOutcome ReadinessClient::Wait(const WaitOptions& options) {
  WaitOutcome outcome;
  if (options.coordinators.empty()) {
    outcome.exit_code = kExitUsage;
    outcome.message = "no coordinator address given (--coordinator host:port[,host:port...])";
    return outcome;
  }
  v1::WaitRequest request;
  ToProto(options.target, request.mutable_target());
  request.set_instance_id(options.instance_id);
  request.set_follow(options.keep_waiting);
  const absl::Time deadline = absl::Now() + options.timeout;
  size_t index = RandomStart(options.coordinators.size());
  absl::Duration backoff = absl::Milliseconds(100);
  std::string last_error;
  bool have_state = false;
  while (absl::Now() < deadline) {
    const std::string& address = options.coordinators[index];
    auto stub = v1::AgentService::NewStub(NewCoordinatorChannel(address, options.security));
    grpc::ClientContext context;
    SetDeadline(&context, deadline - absl::Now());
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) break;
      active_ = &context;
    }
    std::unique_ptr<grpc::ClientReader<v1::Readiness>> reader = stub->Wait(&context, request);
    v1::Readiness message;
    bool done = false;
    while (reader->Read(&message)) {
      const ReadinessAnswer answer = FromProto(message);
      const bool changed = !have_state || answer.state != outcome.last.state ||
                           answer.blocking_version != outcome.last.blocking_version ||
                           answer.applied_version != outcome.last.applied_version;
      outcome.answered = have_state = true;
      outcome.last = answer;
      outcome.coordinator = address;
      last_error.clear();
      backoff = absl::Milliseconds(100);
      if (changed) Say(options, Describe(answer, address));
      if (answer.state == ReadinessState::kReady ||
          (IsFinal(answer.state) && !options.keep_waiting)) {
        done = true;
        context.TryCancel();
        break;
      }
    }
    grpc::Status status = reader->Finish();
    {
      absl::MutexLock lock(&mu_);
      active_ = nullptr;
      if (cancelled_ && !done) {
        outcome.exit_code = kExitTimedOut;
        outcome.message = "cancelled";
        return outcome;
      }
    }
    if (done) {
      outcome.exit_code = ExitCodeFor(outcome.last.state);
      if (outcome.exit_code != kExitReady) outcome.message = outcome.last.message;
      return outcome;
    }
    if (IsAuthError(status.error_code())) {
      outcome.exit_code = kExitUnauthorised;
      outcome.message = absl::StrCat("coordinator ", address, " refused: ",
                                     status.error_message());
      return outcome;
    }
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      outcome.exit_code = kExitUsage;
      outcome.message = absl::StrCat("coordinator ", address, " rejected the request: ",
                                     status.error_message());
      return outcome;
    }
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) break;
    const std::string error = absl::StrCat("coordinator ", address, ": ",
                                           status.error_message(), " (",
                                           static_cast<int>(status.error_code()), ")");
    if (error != last_error) {
      Say(options, absl::StrCat(error, options.coordinators.size() > 1 ? "; trying the next one"
                                                                       : "; retrying"));
      last_error = error;
    }
    index = (index + 1) % options.coordinators.size();
    if (!outcome.answered && index == 0 && options.fallback != nullptr) {
      std::optional<WaitOutcome> fallback = TryFallback(options, &outcome);
      if (fallback) return *fallback;
    }
    const absl::Duration pause = std::min(backoff, deadline - absl::Now());
    if (pause > absl::ZeroDuration()) absl::SleepFor(pause);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
  if (outcome.answered) {
    outcome.exit_code = kExitTimedOut;
    outcome.message = absl::StrCat("timed out after ", absl::FormatDuration(options.timeout),
                                   " while ", ReadinessStateName(outcome.last.state), ": ",
                                   outcome.last.message);
  } else {
    outcome.exit_code = kExitUnreachable;
    outcome.message = absl::StrCat("no coordinator answered within ",
                                   absl::FormatDuration(options.timeout),
                                   last_error.empty() ? "" : ": ", last_error);
  }
  return outcome;
}

WaitOutcome ReadinessClient::Check(const WaitOptions& options) {
  WaitOutcome outcome;
  if (options.coordinators.empty()) {
    outcome.exit_code = kExitUsage;
    outcome.message = "no coordinator address given (--coordinator host:port[,host:port...])";
    return outcome;
  }
  v1::CheckRequest request;
  ToProto(options.target, request.mutable_target());
  request.set_instance_id(options.instance_id);
  const absl::Time deadline = absl::Now() + options.timeout;
  std::string last_error;
  const size_t start = RandomStart(options.coordinators.size());
  for (size_t i = 0; i < options.coordinators.size() && absl::Now() < deadline; ++i) {
    const std::string& address = options.coordinators[(start + i) % options.coordinators.size()];
    auto stub = v1::AgentService::NewStub(NewCoordinatorChannel(address, options.security));
    grpc::ClientContext context;
    SetDeadline(&context, std::min(kCheckCallTimeout, deadline - absl::Now()));
    v1::Readiness response;
    grpc::Status status = stub->Check(&context, request, &response);
    if (status.ok()) {
      outcome.answered = true;
      outcome.last = FromProto(response);
      outcome.coordinator = address;
      outcome.exit_code = ExitCodeFor(outcome.last.state);
      outcome.message = Describe(outcome.last, address);
      return outcome;
    }
    if (IsAuthError(status.error_code())) {
      outcome.exit_code = kExitUnauthorised;
      outcome.message = absl::StrCat("coordinator ", address, " refused: ", status.error_message());
      return outcome;
    }
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      outcome.exit_code = kExitUsage;
      outcome.message = absl::StrCat("coordinator ", address, " rejected the request: ",
                                     status.error_message());
      return outcome;
    }
    last_error = absl::StrCat("coordinator ", address, ": ", status.error_message());
  }
  if (options.fallback != nullptr) {
    std::optional<WaitOutcome> fallback = TryFallback(options, &outcome);
    if (fallback) return *fallback;
    if (outcome.answered) {
      outcome.exit_code = ExitCodeFor(outcome.last.state);
      outcome.message = outcome.last.message;
      return outcome;
    }
  }
  outcome.exit_code = kExitUnreachable;
  outcome.message = absl::StrCat("no coordinator answered", last_error.empty() ? "" : ": ",
                                 last_error);
  return outcome;
}

}  // namespace schemagate
