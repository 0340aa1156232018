// The operator service's runs, streamed as progress: apply (with its dry
// run and rehearsal) and rollback (with its dry run). Runs go to the
// coordinator's runner thread; a dry run is the plan the real run makes,
// told as progress, with the exit the real run would have.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/base/log.h"
#include "coordinator/server/operator_calls.h"
#include "coordinator/server/operator_service.h"
#include "coordinator/server/proto_convert.h"
#include "coordinator/server/reactors.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/server/stream_writer.h"

namespace schemagate {
namespace {

// Streams a run's progress. Every progress message matters, so they queue
// (a run produces a handful per migration); the stream finishes once the
// last is written. The run goes on if the client leaves.
class RunStream : public grpc::ServerWriteReactor<v1::RunProgress>,
                  public std::enable_shared_from_this<RunStream> {
 public:
  // A stream that lives until gRPC is done with it (OnDone).
  static std::shared_ptr<RunStream> Open() {
    auto stream = std::make_shared<RunStream>();
    stream->self_ = stream;
    return stream;
  }

  void Push(const RunEvent& event) {
    v1::RunProgress progress;
    ToProto(event, &progress);
    writer_.Write(std::move(progress));
  }

  // Ends the stream with `status` once every message pushed is written.
  void Complete(const absl::Status& status) { writer_.Close(ToGrpc(status)); }

  // What feeds the stream from a run: its progress, then its outcome.
  ProgressSink Progress() {
    return [self = shared_from_this()](const RunEvent& event) { self->Push(event); };
  }
  Coordinator::RunDone Done() {
    return [self = shared_from_this()](const absl::StatusOr<RunOutcome>& outcome) {
      self->Complete(outcome.status());
    };
  }

  void OnWriteDone(bool ok) override { writer_.OnWriteDone(ok); }

  void OnCancel() override {
    writer_.End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override { std::shared_ptr<RunStream> keep = std::move(self_); }

 private:
  std::shared_ptr<RunStream> self_;  // Set by Open, dropped by OnDone.
  StreamWriter<grpc::ServerWriteReactor<v1::RunProgress>, v1::RunProgress> writer_{this};
};

// A dry run's line for one step it would run.
RunEvent DryRunStep(int64_t version, const std::string& name, int statements, std::string message) {
  RunEvent event;
  event.kind = RunEvent::Kind::kMigrationStarted;
  event.version = version;
  event.name = name;
  event.statement_count = statements;
  event.message = std::move(message);
  return event;
}

}  // namespace

grpc::ServerWriteReactor<v1::RunProgress>* OperatorServiceImpl::Apply(
    grpc::CallbackServerContext* context, const v1::ApplyRequest* request) {
  if (auto* refused =
          RefusedStream<v1::RunProgress>(context, guards_, ValidateApplyRequest(*request))) {
    return refused;
  }
  // The target is checked by the run, against the set re-read from disk.
  if (request->dry_run()) {
    // The plan, as progress messages; nothing is executed.
    v1::PlanRequest plan_request;
    plan_request.set_target_version(request->target_version());
    v1::PlanResponse plan;
    absl::Status planned =
        BuildPlan(*coordinator_->snapshot(), coordinator_->options().runner, plan_request, &plan);
    if (!planned.ok()) return new FinishedWriter<v1::RunProgress>(ToGrpc(planned));
    // Exits as the real apply would: refused (FAILED_PRECONDITION) when the
    // plan is blocked, "not done" (held_back) when breaking steps would wait.
    const RunPlan decided = OperatorApplyPlan(
        *coordinator_->snapshot(), coordinator_->options().runner, request->target_version());
    std::shared_ptr<RunStream> stream = RunStream::Open();
    for (const v1::PlanStep& step : plan.steps()) {
      std::string message;
      if (!step.repeatable().empty()) {
        message = absl::StrCat("dry run: would apply (", step.reason(), ")");
      } else if (!step.held_back()) {
        message = absl::StrCat("dry run: would apply (",
                               step.transactional() ? "transaction" : "no-transaction",
                               step.breaking() ? ", breaking" : "", ")");
      } else if (step.version() == decided.blocker.version) {
        // The blocker's own step says only "held back": the summary says why, once.
        message = "dry run: held back";
      } else {
        message = absl::StrCat("dry run: held back: ", step.held_back_reason());
      }
      stream->Push(
          DryRunStep(step.version(), step.name(), step.statements_size(), std::move(message)));
    }
    RunEvent end;
    end.kind = RunEvent::Kind::kRunFinished;
    end.held_back = static_cast<int>(decided.pending.size() - decided.steps.size());
    // The plan's note already says how many would apply when some are held back.
    const bool counted = decided.blocker.kind == BlockerKind::kBreakingHeld;
    end.message = counted ? absl::StrCat("dry run: ", plan.note(), "; nothing was executed")
                          : absl::StrCat("dry run: ", decided.steps.size(), " migration(s)",
                                         decided.repeatables.empty() ? "" : absl::StrCat(
                                             " and ", decided.repeatables.size(),
                                             " repeatable(s)"),
                                         " would apply; nothing was executed",
                                         plan.note().empty() ? "" : "; ", plan.note());
    stream->Push(end);
    const bool refused = decided.stopped() && decided.blocker.kind != BlockerKind::kBreakingHeld;
    stream->Complete(refused ? absl::FailedPreconditionError(absl::StrCat(
                                   "dry run: the apply would refuse: ", decided.blocker.message))
                             : absl::OkStatus());
    return stream.get();
  }
  if (request->rehearse()) {
    RunRequest run;
    run.target_version = request->target_version();
    std::shared_ptr<RunStream> stream = RunStream::Open();
    coordinator_->SubmitWork(
        [run](Runner& runner, const ProgressSink& progress,
              const std::atomic<bool>*) -> absl::StatusOr<RunOutcome> {
          absl::StatusOr<RehearsalReport> report = runner.Rehearse(run, progress);
          if (!report.ok()) return report.status();
          return RunOutcome();
        },
        stream->Progress(), stream->Done());
    return stream.get();
  }
  RunRequest run;
  run.target_version = request->target_version();
  run.allow_breaking = request->allow_breaking();
  run.retry_failed = true;
  run.actor = Actor(context, request->actor());
  // An operator need not wait out the grace period, but live instances that
  // predate a breaking migration still hold it back unless --allow-breaking.
  Coordinator* coordinator = coordinator_;
  run.breaking_gate = [coordinator](const Migration& m, const DatabaseState& state) {
    return coordinator->BreakingGate(m, state, absl::ZeroDuration());
  };
  LogInfo("apply requested by %s (target %d%s)", run.actor, run.target_version,
          run.allow_breaking ? ", breaking allowed" : "");
  std::shared_ptr<RunStream> stream = RunStream::Open();
  coordinator_->SubmitRun(std::move(run), stream->Progress(), stream->Done());
  return stream.get();
}

grpc::ServerWriteReactor<v1::RunProgress>* OperatorServiceImpl::Rollback(
    grpc::CallbackServerContext* context, const v1::RollbackRequest* request) {
  if (auto* refused =
          RefusedStream<v1::RunProgress>(context, guards_, ValidateRollbackRequest(*request))) {
    return refused;
  }
  RollbackRequest rollback;
  rollback.target_version = request->target_version();
  rollback.actor = Actor(context, request->actor());
  rollback.force = request->force();
  if (request->dry_run()) {
    // The plan the real rollback makes, with its refusals and exit code.
    const std::shared_ptr<const Snapshot> snap = coordinator_->snapshot();
    PlanRequest plan_request;
    plan_request.direction = PlanRequest::Direction::kDown;
    plan_request.target_version = rollback.target_version;
    plan_request.force = rollback.force;
    StepDefaults defaults;
    defaults.lock_timeout = coordinator_->options().runner.lock_timeout;
    defaults.statement_timeout = coordinator_->options().runner.statement_timeout;
    const RunPlan plan = PlanRun(*snap->view.set, snap->view.db, plan_request, defaults);
    std::shared_ptr<RunStream> stream = RunStream::Open();
    for (const PlanStep& step : plan.steps) {
      stream->Push(DryRunStep(step.migration->version, step.migration->name,
                              static_cast<int>(step.script->statements.size()),
                              "dry run: would roll back"));
    }
    RunEvent end;
    end.kind = RunEvent::Kind::kRunFinished;
    end.message = plan.blocked()
                      ? absl::StrCat("dry run: the rollback would refuse: ", plan.blocker.message)
                      : absl::StrCat("dry run: ", plan.steps.size(),
                                     " migration(s) would be rolled back; nothing was executed");
    if (const std::vector<InstanceRecord> stranded =
            InstancesRequiringAbove(snap->view.db, rollback.target_version);
        !plan.blocked() && !plan.steps.empty() && !stranded.empty()) {
      absl::StrAppend(&end.message, "; with --force it strands ", stranded.size(),
                      " live instance(s) that need a version above ", rollback.target_version, ": ",
                      DescribeInstances(stranded, 5, InstanceDetail::kRequired));
    }
    stream->Push(end);
    stream->Complete(plan.blocked() ? absl::FailedPreconditionError(end.message)
                                    : absl::OkStatus());
    return stream.get();
  }
  LogInfo("rollback to %d requested by %s%s", rollback.target_version, rollback.actor,
          rollback.force ? " (--force)" : "");
  std::shared_ptr<RunStream> stream = RunStream::Open();
  coordinator_->SubmitWork(
      [rollback](Runner& runner, const ProgressSink& progress, const std::atomic<bool>* cancelled) {
        return runner.Rollback(rollback, progress, cancelled);
      },
      stream->Progress(), stream->Done());
  return stream.get();
}

}  // namespace schemagate
