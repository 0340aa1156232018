#include "coordinator/server/operator_service.h"

#include <deque>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/base/log.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/server/proto_convert.h"
#include "coordinator/server/reactors.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/sql/sql_split.h"

namespace schemagate {
namespace {

constexpr int kDefaultHistoryLimit = 100;

// Finishes a unary call refused by its guards; nullptr when it may go on.
grpc::ServerUnaryReactor* Refused(grpc::CallbackServerContext* context,
                                  const grpc::Status& admitted) {
  if (admitted.ok()) return nullptr;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(admitted);
  return reactor;
}

// Streams a run's progress. Every progress message matters, so they queue
// (a run produces a handful per migration); one write is in flight at a
// time. The run goes on if the client leaves.
class RunStream : public grpc::ServerWriteReactor<v1::RunProgress> {
 public:
  void Start(std::shared_ptr<RunStream> self) { self_ = std::move(self); }

  void Push(const RunEvent& event) {
    bool write = false;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      queue_.emplace_back();
      ToProto(event, &queue_.back());
      write = TakeNextLocked();
    }
    if (write) StartWrite(&in_flight_);
  }

  void Complete(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      final_ = status;
      if (write_in_flight_ || !queue_.empty()) return;
      finishing_ = true;
    }
    Finish(status);
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
      } else if (!queue_.empty()) {
        write = TakeNextLocked();
      } else if (final_) {
        finishing_ = true;
        finish = *final_;
      }
    }
    if (finish) {
      Finish(*finish);
    } else if (write) {
      StartWrite(&in_flight_);
    }
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || write_in_flight_) return;  // OnWriteDone(false) finishes.
      finishing_ = true;
    }
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override { std::shared_ptr<RunStream> keep = std::move(self_); }

 private:
  bool TakeNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || queue_.empty()) return false;
    in_flight_ = std::move(queue_.front());
    queue_.pop_front();
    write_in_flight_ = true;
    return true;
  }

  std::shared_ptr<RunStream> self_;
  absl::Mutex mu_;
  std::deque<v1::RunProgress> queue_ ABSL_GUARDED_BY(mu_);
  v1::RunProgress in_flight_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(mu_);
};

// A live feed of events, oldest first, from `after_event_id` on. Events are
// read from the database on the worker thread when a snapshot shows new
// ones; every event is delivered (no coalescing), one write at a time. A
// client that falls too far behind is cut off with RESOURCE_EXHAUSTED and
// resumes from the last id it saw.
class EventStream : public grpc::ServerWriteReactor<v1::Event>, public StateObserver {
 public:
  static constexpr size_t kMaxQueued = 10000;
  static constexpr int kBatch = 500;

  EventStream(Coordinator* coordinator, int64_t after, std::unique_ptr<StreamQuota::Slot> slot)
      : coordinator_(coordinator), slot_(std::move(slot)), cursor_(after) {}

  void Start(std::shared_ptr<EventStream> self) {
    self_ = self;
    coordinator_->AddObserver(self);
    OnStateChanged(coordinator_->snapshot());
  }

  void OnStateChanged(const std::shared_ptr<const Snapshot>& snapshot) override {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || fetching_ || snapshot->view.db.last_event_id <= cursor_) return;
      fetching_ = true;
    }
    Fetch();
  }

  void OnShutdown() override {
    EndStream(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           "the coordinator is shutting down; resume on another one with "
                           "after_event_id"));
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
      } else {
        write = TakeNextLocked();
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
    slot_.reset();
    std::shared_ptr<EventStream> keep = std::move(self_);
  }

 private:
  // Reads the next batch on the worker thread. REQUIRES: fetching_ was set.
  void Fetch() {
    std::shared_ptr<EventStream> self = self_;
    if (!self) return;
    int64_t from;
    {
      absl::MutexLock lock(&mu_);
      from = cursor_;
    }
    coordinator_->RunOffThread([self, from] {
      absl::StatusOr<std::vector<EventRecord>> events =
          self->coordinator_->store()->ReadEventsAfter(from, kBatch);
      bool write = false, again = false, overflow = false;
      {
        absl::MutexLock lock(&self->mu_);
        self->fetching_ = false;
        if (self->finishing_) return;
        if (events.ok()) {
          for (const EventRecord& e : *events) {
            self->queue_.emplace_back();
            ToProto(e, &self->queue_.back());
            self->cursor_ = e.id;
          }
          overflow = self->queue_.size() > kMaxQueued;
          again = !overflow && static_cast<int>(events->size()) == kBatch;
          if (again) self->fetching_ = true;
          write = !overflow && self->TakeNextLocked();
        }
      }
      if (overflow) {
        self->EndStream(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                     "the client reads too slowly; resume with after_event_id"));
        return;
      }
      if (write) self->StartWrite(&self->in_flight_);
      if (again) self->Fetch();
    });
  }

  bool TakeNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || queue_.empty() || finishing_) return false;
    in_flight_ = std::move(queue_.front());
    queue_.pop_front();
    write_in_flight_ = true;
    return true;
  }

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
  // Counts this stream against its client's cap; released in OnDone.
  std::unique_ptr<StreamQuota::Slot> slot_;
  std::shared_ptr<EventStream> self_;
  absl::Mutex mu_;
  int64_t cursor_ ABSL_GUARDED_BY(mu_);
  bool fetching_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::Event> queue_ ABSL_GUARDED_BY(mu_);
  v1::Event in_flight_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
};

std::string Actor(const grpc::CallbackServerContext* context, const std::string& given) {
  if (!given.empty()) return given;  // ValidateActor bounded it.
  return absl::StrCat("operator@", context->peer());
}

// The CREATE/DROP INDEX statements a dirty row's migration has run: the
// finished ones and the one it was cut in, of its up file and of its down
// (the row does not say whether an apply or a rollback was cut).
std::vector<IndexStatement> CutIndexStatements(const Migration& m, int statements_done) {
  std::vector<IndexStatement> out;
  auto add = [&](const MigrationScript& script) {
    for (size_t i = 0; i < script.statements.size() && i <= static_cast<size_t>(statements_done);
         ++i) {
      IndexStatement s = DescribeIndexStatement(script.statements[i].text);
      if (s.kind != IndexStatement::Kind::kOther) out.push_back(std::move(s));
    }
  };
  add(m.up);
  if (m.down) add(*m.down);
  return out;
}

// The live schema against the one recorded after the last run. Reads the
// database: call on the worker thread.
void CheckSchemaDrift(Store* store, const MigrationSet& set,
                      const std::function<absl::StatusOr<SchemaDescription>()>& describe,
                      v1::SchemaDriftCheck* out) {
  constexpr int kMaxLines = 200;
  absl::StatusOr<std::optional<SchemaRecord>> before = store->ReadSchemaRecord();
  if (!before.ok()) {
    out->set_note(absl::StrCat("could not read the recorded schema: ", before.status().message()));
    return;
  }
  if (!before->has_value()) {
    out->set_note(
        "no schema recorded yet: one is recorded after the next run that changes the schema");
    return;
  }
  const SchemaRecord& recorded = **before;
  out->set_recorded_fingerprint(recorded.fingerprint);
  out->set_recorded_run_id(recorded.run_id);
  SetTime(recorded.recorded_at, out->mutable_recorded_at());
  if (recorded.fingerprint.empty()) {
    out->set_note(absl::StrCat("run ", recorded.run_id,
                               " could not describe the schema; the next run records it"));
    return;
  }
  absl::StatusOr<SchemaDescription> live = describe();
  if (!live.ok()) {
    out->set_note(absl::StrCat("could not describe the live schema: ", live.status().message()));
    return;
  }
  // A run that changed the schema meanwhile would show as drift: skip.
  absl::StatusOr<std::optional<SchemaRecord>> after = store->ReadSchemaRecord();
  absl::StatusOr<DatabaseState> state = store->ReadState();
  if (!after.ok() || !after->has_value() || (*after)->run_id != recorded.run_id ||
      (*after)->fingerprint != recorded.fingerprint || !state.ok() || state->run_in_progress) {
    out->set_note("a run is in progress; validate again once it is done");
    return;
  }
  out->set_checked(true);
  out->set_live_fingerprint(live->fingerprint);
  if (live->fingerprint == recorded.fingerprint) return;
  SchemaDiff diff = DiffSchemas(ParseSchemaDescription(recorded.description), *live);
  // A cut no-transaction migration changed the schema after the last record:
  // its own indexes are not drift.
  for (const AppliedMigration& row : state->applied) {
    const Migration* m = row.dirty ? set.Find(row.version) : nullptr;
    if (m == nullptr) continue;
    const SchemaDiff taken = TakeIndexChanges(&diff, CutIndexStatements(*m, row.statements_done));
    if (!taken.empty()) {
      v1::DirtyMigrationChanges* dirty = out->mutable_dirty_migration();
      dirty->set_version(row.version);
      dirty->set_name(row.name);
      for (const std::string& line : taken.removed) dirty->add_removed(line);
      for (const std::string& line : taken.added) dirty->add_added(line);
    }
    break;  // A dirty row blocks every later run: there is at most one.
  }
  if (diff.empty()) return;
  out->set_drifted(true);
  for (int i = 0; i < static_cast<int>(diff.removed.size()) && i < kMaxLines; ++i) {
    out->add_removed(diff.removed[i]);
  }
  for (int i = 0; i < static_cast<int>(diff.added.size()) && i < kMaxLines; ++i) {
    out->add_added(diff.added[i]);
  }
}

}  // namespace

grpc::ServerUnaryReactor* OperatorServiceImpl::GetStatus(grpc::CallbackServerContext* context,
                                                         const v1::GetStatusRequest*,
                                                         v1::Status* response) {
  if (auto* refused = Refused(context, guards_.Admit(*context, AccessRole::kOperator))) {
    return refused;
  }
  BuildStatus(*coordinator_->snapshot(), coordinator_->options(), options_.schema,
              options_.database, response);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListMigrations(
    grpc::CallbackServerContext* context, const v1::ListMigrationsRequest*,
    v1::ListMigrationsResponse* response) {
  if (auto* refused = Refused(context, guards_.Admit(*context, AccessRole::kOperator))) {
    return refused;
  }
  BuildMigrations(*coordinator_->snapshot(), response);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::Plan(grpc::CallbackServerContext* context,
                                                    const v1::PlanRequest* request,
                                                    v1::PlanResponse* response) {
  if (auto* refused = Refused(context, guards_.Admit(*context, AccessRole::kOperator,
                                                     ValidatePlanRequest(*request)))) {
    return refused;
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The plan of the set on disk now: re-read it first (file I/O, off the
  // reaction thread).
  Coordinator* coordinator = coordinator_;
  coordinator_->RunOffThread([coordinator, reactor, request, response] {
    coordinator->ReloadSetIfChanged();
    reactor->Finish(ToGrpc(
        BuildPlan(*coordinator->snapshot(), coordinator->options().runner, *request, response)));
  });
  return reactor;
}

grpc::ServerWriteReactor<v1::RunProgress>* OperatorServiceImpl::Apply(
    grpc::CallbackServerContext* context, const v1::ApplyRequest* request) {
  grpc::Status admitted =
      guards_.Admit(*context, AccessRole::kOperator, ValidateApplyRequest(*request));
  if (!admitted.ok()) return new FinishedWriter<v1::RunProgress>(admitted);
  // The target is checked by the run, against the set re-read from disk.
  if (request->dry_run()) {
    // The plan, as progress messages; nothing is executed.
    v1::PlanRequest plan_request;
    plan_request.set_target_version(request->target_version());
    v1::PlanResponse plan;
    absl::Status planned = BuildPlan(*coordinator_->snapshot(), coordinator_->options().runner,
                                     plan_request, &plan);
    if (!planned.ok()) return new FinishedWriter<v1::RunProgress>(ToGrpc(planned));
    // Exits as the real apply would: refused (FAILED_PRECONDITION) when the
    // plan is blocked, "not done" (held_back) when breaking steps would wait.
    const RunPlan decided = OperatorApplyPlan(*coordinator_->snapshot(),
                                              coordinator_->options().runner,
                                              request->target_version());
    auto stream = std::make_shared<RunStream>();
    stream->Start(stream);
    for (const v1::PlanStep& step : plan.steps()) {
      RunEvent event;
      event.kind = RunEvent::Kind::kMigrationStarted;
      event.version = step.version();
      event.name = step.name();
      event.statement_count = step.statements_size();
      // The blocker's own step says only "held back": the summary says why, once.
      event.message =
          step.held_back()
              ? (step.version() == decided.blocker.version
                     ? std::string("dry run: held back")
                     : absl::StrCat("dry run: held back: ", step.held_back_reason()))
              : absl::StrCat("dry run: would apply (",
                             step.transactional() ? "transaction" : "no-transaction",
                             step.breaking() ? ", breaking" : "", ")");
      stream->Push(event);
    }
    RunEvent end;
    end.kind = RunEvent::Kind::kRunFinished;
    end.held_back = static_cast<int>(decided.pending.size() - decided.steps.size());
    // The plan's note already says how many would apply when some are held back.
    const bool counted = decided.blocker.kind == BlockerKind::kBreakingHeld;
    end.message = counted ? absl::StrCat("dry run: ", plan.note(), "; nothing was executed")
                          : absl::StrCat("dry run: ", decided.steps.size(),
                                         " migration(s) would apply; nothing was executed",
                                         plan.note().empty() ? "" : "; ", plan.note());
    stream->Push(end);
    const bool refused = decided.stopped() && decided.blocker.kind != BlockerKind::kBreakingHeld;
    stream->Complete(refused ? ToGrpc(absl::FailedPreconditionError(
                                   absl::StrCat("dry run: the apply would refuse: ",
                                                decided.blocker.message)))
                             : grpc::Status::OK);
    return stream.get();
  }
  if (request->rehearse()) {
    RunRequest run;
    run.target_version = request->target_version();
    auto stream = std::make_shared<RunStream>();
    stream->Start(stream);
    coordinator_->SubmitWork(
        [run](Runner& runner, const ProgressSink& progress,
              const std::atomic<bool>*) -> absl::StatusOr<RunOutcome> {
          absl::StatusOr<RehearsalReport> report = runner.Rehearse(run, progress);
          if (!report.ok()) return report.status();
          return RunOutcome();
        },
        [stream](const RunEvent& event) { stream->Push(event); },
        [stream](const absl::StatusOr<RunOutcome>& outcome) {
          stream->Complete(outcome.ok() ? grpc::Status::OK : ToGrpc(outcome.status()));
        });
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
  auto stream = std::make_shared<RunStream>();
  stream->Start(stream);
  coordinator_->SubmitRun(
      std::move(run), [stream](const RunEvent& event) { stream->Push(event); },
      [stream](const absl::StatusOr<RunOutcome>& outcome) {
        stream->Complete(outcome.ok() ? grpc::Status::OK : ToGrpc(outcome.status()));
      });
  return stream.get();
}

grpc::ServerUnaryReactor* OperatorServiceImpl::History(grpc::CallbackServerContext* context,
                                                       const v1::HistoryRequest* request,
                                                       v1::HistoryResponse* response) {
  if (auto* refused = Refused(context, guards_.Admit(*context, AccessRole::kOperator,
                                                     ValidateHistoryRequest(*request)))) {
    return refused;
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const int limit = request->limit() == 0 ? kDefaultHistoryLimit : request->limit();
  const int64_t version = request->version();
  Coordinator* coordinator = coordinator_;
  coordinator_->RunOffThread([coordinator, reactor, response, limit, version] {
    absl::StatusOr<std::vector<EventRecord>> events =
        coordinator->store()->ReadHistory(limit, version);
    if (!events.ok()) {
      reactor->Finish(ToGrpc(events.status()));
      return;
    }
    for (const EventRecord& event : *events) ToProto(event, response->add_events());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerWriteReactor<v1::RunProgress>* OperatorServiceImpl::Rollback(
    grpc::CallbackServerContext* context, const v1::RollbackRequest* request) {
  grpc::Status admitted =
      guards_.Admit(*context, AccessRole::kOperator, ValidateRollbackRequest(*request));
  if (!admitted.ok()) return new FinishedWriter<v1::RunProgress>(admitted);
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
    auto stream = std::make_shared<RunStream>();
    stream->Start(stream);
    for (const PlanStep& step : plan.steps) {
      RunEvent event;
      event.kind = RunEvent::Kind::kMigrationStarted;
      event.version = step.migration->version;
      event.name = step.migration->name;
      event.statement_count = static_cast<int>(step.script->statements.size());
      event.message = "dry run: would roll back";
      stream->Push(event);
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
                      " live instance(s) that need a version above ", rollback.target_version,
                      ": ", DescribeInstances(stranded, 5, InstanceDetail::kRequired));
    }
    stream->Push(end);
    stream->Complete(plan.blocked() ? ToGrpc(absl::FailedPreconditionError(end.message))
                                    : grpc::Status::OK);
    return stream.get();
  }
  LogInfo("rollback to %d requested by %s%s", rollback.target_version, rollback.actor,
          rollback.force ? " (--force)" : "");
  auto stream = std::make_shared<RunStream>();
  stream->Start(stream);
  coordinator_->SubmitWork(
      [rollback](Runner& runner, const ProgressSink& progress,
                 const std::atomic<bool>* cancelled) {
        return runner.Rollback(rollback, progress, cancelled);
      },
      [stream](const RunEvent& event) { stream->Push(event); },
      [stream](const absl::StatusOr<RunOutcome>& outcome) {
        stream->Complete(outcome.ok() ? grpc::Status::OK : ToGrpc(outcome.status()));
      });
  return stream.get();
}

grpc::ServerUnaryReactor* OperatorServiceImpl::Repair(grpc::CallbackServerContext* context,
                                                      const v1::RepairRequest* request,
                                                      v1::RepairResponse* response) {
  if (auto* refused = Refused(context, guards_.Admit(*context, AccessRole::kOperator,
                                                     ValidateRepairRequest(*request)))) {
    return refused;
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  RepairRequest repair;
  repair.version = request->version();
  repair.actor = Actor(context, request->actor());
  switch (request->action()) {
    case v1::RepairRequest::CLEAR_DIRTY: repair.action = RepairRequest::Action::kClearDirty; break;
    case v1::RepairRequest::MARK_APPLIED: repair.action = RepairRequest::Action::kMarkApplied; break;
    case v1::RepairRequest::MARK_NOT_APPLIED:
      repair.action = RepairRequest::Action::kMarkNotApplied;
      break;
    case v1::RepairRequest::RESUME: repair.action = RepairRequest::Action::kResume; break;
    case v1::RepairRequest::CLEAR_FAILURE:
      repair.action = RepairRequest::Action::kClearFailure;
      break;
    default:
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "action must be CLEAR_DIRTY, MARK_APPLIED, MARK_NOT_APPLIED, "
                                   "RESUME or CLEAR_FAILURE"));
      return reactor;
  }
  LogInfo("repair requested by %s: action %d version %d", repair.actor,
          static_cast<int>(repair.action), repair.version);
  auto message = std::make_shared<std::string>();
  coordinator_->SubmitWork(
      [repair, message](Runner& runner, const ProgressSink& progress,
                        const std::atomic<bool>*) -> absl::StatusOr<RunOutcome> {
        absl::StatusOr<std::string> done = runner.Repair(repair, progress);
        if (!done.ok()) return done.status();
        *message = *done;
        return RunOutcome();
      },
      nullptr,
      [reactor, response, message](const absl::StatusOr<RunOutcome>& outcome) {
        if (outcome.ok()) response->set_message(*message);
        reactor->Finish(outcome.ok() ? grpc::Status::OK : ToGrpc(outcome.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::Baseline(grpc::CallbackServerContext* context,
                                                        const v1::BaselineRequest* request,
                                                        v1::BaselineResponse* response) {
  if (auto* refused = Refused(context, guards_.Admit(*context, AccessRole::kOperator,
                                                     ValidateBaselineRequest(*request)))) {
    return refused;
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const int64_t version = request->version();
  const std::string actor = Actor(context, request->actor());
  auto message = std::make_shared<std::string>();
  coordinator_->SubmitWork(
      [version, actor, message](Runner& runner, const ProgressSink&,
                                const std::atomic<bool>*) -> absl::StatusOr<RunOutcome> {
        absl::StatusOr<std::string> done = runner.Baseline(version, actor);
        if (!done.ok()) return done.status();
        *message = *done;
        return RunOutcome();
      },
      nullptr,
      [reactor, response, message](const absl::StatusOr<RunOutcome>& outcome) {
        if (outcome.ok()) response->set_message(*message);
        reactor->Finish(outcome.ok() ? grpc::Status::OK : ToGrpc(outcome.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::Validate(grpc::CallbackServerContext* context,
                                                        const v1::ValidateRequest*,
                                                        v1::ValidateResponse* response) {
  if (auto* refused = Refused(context, guards_.Admit(*context, AccessRole::kOperator))) {
    return refused;
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Re-reading the set and describing the schema touch files and the
  // catalogs: on the worker thread.
  Coordinator* coordinator = coordinator_;
  auto describe = options_.describe_schema;
  coordinator_->RunOffThread([coordinator, describe, reactor, response] {
    coordinator->ReloadSetIfChanged();
    const std::shared_ptr<const Snapshot> snap = coordinator->snapshot();
    if (!snap->view.database_available) {
      reactor->Finish(ToGrpc(absl::UnavailableError(
          absl::StrCat("cannot reach the database: ", snap->view.database_error))));
      return;
    }
    if (!snap->view.set_error.empty()) response->add_problems(snap->view.set_error);
    for (const std::string& problem :
         ValidateState(*snap->view.set, snap->view.db, snap->view.permissions)) {
      response->add_problems(problem);
    }
    if (!describe) {
      response->mutable_schema()->set_note("the live-schema check is off in this coordinator");
      response->set_ok(response->problems_size() == 0);
      reactor->Finish(grpc::Status::OK);
      return;
    }
    CheckSchemaDrift(coordinator->store(), *snap->view.set, describe, response->mutable_schema());
    if (response->schema().drifted()) {
      SchemaDiff diff;
      diff.removed.assign(response->schema().removed().begin(),
                          response->schema().removed().end());
      diff.added.assign(response->schema().added().begin(), response->schema().added().end());
      response->add_problems(DescribeDrift(diff, response->schema().recorded_run_id()));
    }
    response->set_ok(response->problems_size() == 0);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListInstances(
    grpc::CallbackServerContext* context, const v1::ListInstancesRequest*,
    v1::ListInstancesResponse* response) {
  if (auto* refused = Refused(context, guards_.Admit(*context, AccessRole::kOperator))) {
    return refused;
  }
  BuildInstances(*coordinator_->snapshot(), response);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::Event>* OperatorServiceImpl::WatchEvents(
    grpc::CallbackServerContext* context, const v1::WatchEventsRequest* request) {
  grpc::Status admitted =
      guards_.Admit(*context, AccessRole::kOperator, ValidateWatchEventsRequest(*request));
  if (!admitted.ok()) return new FinishedWriter<v1::Event>(admitted);
  absl::StatusOr<std::unique_ptr<StreamQuota::Slot>> slot = guards_.AcquireStream(*context);
  if (!slot.ok()) return new FinishedWriter<v1::Event>(ToGrpc(slot.status()));
  // 0 means "from now on".
  const int64_t after = request->after_event_id() > 0
                            ? request->after_event_id()
                            : coordinator_->snapshot()->view.db.last_event_id;
  auto stream = std::make_shared<EventStream>(coordinator_, after, std::move(*slot));
  stream->Start(stream);
  return stream.get();
}

}  // namespace schemagate
