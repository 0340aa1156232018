// The operator service's read-only calls: status, migrations, plan,
// history, validate (with the live-schema drift check) and instances.
// Answered from the coordinator's memory, or read on its worker thread.
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/server/operator_calls.h"
#include "coordinator/server/operator_service.h"
#include "coordinator/server/proto_convert.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/sql/sql_split.h"

namespace schemagate {
namespace {

constexpr int kDefaultHistoryLimit = 100;

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
  return AnswerNow(context, guards_.Admit(*context, AccessRole::kOperator), [&] {
    BuildStatus(*coordinator_->snapshot(), coordinator_->options(), options_.schema,
                options_.database, response);
  });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListMigrations(
    grpc::CallbackServerContext* context, const v1::ListMigrationsRequest*,
    v1::ListMigrationsResponse* response) {
  return AnswerNow(context, guards_.Admit(*context, AccessRole::kOperator),
                   [&] { BuildMigrations(*coordinator_->snapshot(), response); });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::Plan(grpc::CallbackServerContext* context,
                                                    const v1::PlanRequest* request,
                                                    v1::PlanResponse* response) {
  if (auto* refused = Refused(context, guards_, ValidatePlanRequest(*request))) return refused;
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

grpc::ServerUnaryReactor* OperatorServiceImpl::History(grpc::CallbackServerContext* context,
                                                       const v1::HistoryRequest* request,
                                                       v1::HistoryResponse* response) {
  if (auto* refused = Refused(context, guards_, ValidateHistoryRequest(*request))) return refused;
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

grpc::ServerUnaryReactor* OperatorServiceImpl::Validate(grpc::CallbackServerContext* context,
                                                        const v1::ValidateRequest*,
                                                        v1::ValidateResponse* response) {
  if (auto* refused = Refused(context, guards_)) return refused;
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
      diff.removed.assign(response->schema().removed().begin(), response->schema().removed().end());
      diff.added.assign(response->schema().added().begin(), response->schema().added().end());
      response->add_problems(DescribeDrift(diff, response->schema().recorded_run_id()));
    }
    response->set_ok(response->problems_size() == 0);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListInstances(grpc::CallbackServerContext* context,
                                                             const v1::ListInstancesRequest*,
                                                             v1::ListInstancesResponse* response) {
  return AnswerNow(context, guards_.Admit(*context, AccessRole::kOperator),
                   [&] { BuildInstances(*coordinator_->snapshot(), response); });
}

}  // namespace schemagate
