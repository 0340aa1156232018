// The operator service's repairs of the bookkeeping: repair (clear dirty,
// mark applied or not, resume, clear a failure) and baseline. Both run on
// the coordinator's runner thread, so they never overlap a run.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "coordinator/base/log.h"
#include "coordinator/server/operator_calls.h"
#include "coordinator/server/operator_service.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/server/wire.h"

namespace schemagate {
namespace {

// A repair that answers with a message for the operator.
using MessageWork =
    std::function<absl::StatusOr<std::string>(Runner& runner, const ProgressSink& progress)>;

// Queues `work` on the runner thread; the call finishes with its message
// (response->set_message) or its error.
template <typename Response>
grpc::ServerUnaryReactor* SubmitRepair(Coordinator* coordinator,
                                       grpc::CallbackServerContext* context, Response* response,
                                       MessageWork work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto message = std::make_shared<std::string>();
  coordinator->SubmitWork(
      [work = std::move(work), message](Runner& runner, const ProgressSink& progress,
                                        const std::atomic<bool>*) -> absl::StatusOr<RunOutcome> {
        absl::StatusOr<std::string> done = work(runner, progress);
        if (!done.ok()) return done.status();
        *message = *std::move(done);
        return RunOutcome();
      },
      nullptr,
      [reactor, response, message](const absl::StatusOr<RunOutcome>& outcome) {
        if (outcome.ok()) response->set_message(*message);
        reactor->Finish(ToGrpc(outcome.status()));
      });
  return reactor;
}

// The engine's repair action for the wire's; nullopt for one it does not know.
std::optional<RepairRequest::Action> RepairAction(v1::RepairRequest::Action action) {
  using Engine = RepairRequest::Action;
  static constexpr std::pair<v1::RepairRequest::Action, Engine> kActions[] = {
      {v1::RepairRequest::CLEAR_DIRTY, Engine::kClearDirty},
      {v1::RepairRequest::MARK_APPLIED, Engine::kMarkApplied},
      {v1::RepairRequest::MARK_NOT_APPLIED, Engine::kMarkNotApplied},
      {v1::RepairRequest::RESUME, Engine::kResume},
      {v1::RepairRequest::CLEAR_FAILURE, Engine::kClearFailure},
  };
  for (const auto& [wire, engine] : kActions) {
    if (wire == action) return engine;
  }
  return std::nullopt;
}

}  // namespace

grpc::ServerUnaryReactor* OperatorServiceImpl::Repair(grpc::CallbackServerContext* context,
                                                      const v1::RepairRequest* request,
                                                      v1::RepairResponse* response) {
  if (auto* refused = Refused(context, guards_, ValidateRepairRequest(*request))) return refused;
  RepairRequest repair;
  repair.version = request->version();
  repair.actor = Actor(context, request->actor());
  const std::optional<RepairRequest::Action> action = RepairAction(request->action());
  if (!action) {
    return AnswerNow(context,
                     grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "action must be CLEAR_DIRTY, MARK_APPLIED, MARK_NOT_APPLIED, "
                                  "RESUME or CLEAR_FAILURE"),
                     [] {});
  }
  repair.action = *action;
  LogInfo("repair requested by %s: action %d version %d", repair.actor,
          static_cast<int>(repair.action), repair.version);
  return SubmitRepair(coordinator_, context, response,
                      [repair](Runner& runner, const ProgressSink& progress) {
                        return runner.Repair(repair, progress);
                      });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::Baseline(grpc::CallbackServerContext* context,
                                                        const v1::BaselineRequest* request,
                                                        v1::BaselineResponse* response) {
  if (auto* refused = Refused(context, guards_, ValidateBaselineRequest(*request))) return refused;
  const int64_t version = request->version();
  const std::string actor = Actor(context, request->actor());
  return SubmitRepair(coordinator_, context, response,
                      [version, actor](Runner& runner, const ProgressSink&) {
                        return runner.Baseline(version, actor);
                      });
}

}  // namespace schemagate
