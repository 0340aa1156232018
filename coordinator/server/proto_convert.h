// Translation between the engine's types and the v1 protobuf messages.
// Nothing here touches the network or the database.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_PROTO_CONVERT_H_
#define SCHEMAGATE_COORDINATOR_SERVER_PROTO_CONVERT_H_

#include <string>

#include "absl/status/status.h"
#include "coordinator/fleet/coordinator.h"
#include "coordinator/engine/readiness.h"
#include "coordinator/server/request_limits.h"
#include "coordinator/engine/runner.h"
#include "coordinator/engine/store.h"
#include "coordinator/server/wire.h"
#include "coordinator/sql/lint.h"
#include "grpcpp/support/status.h"
#include "schemagate/v1/schemagate.pb.h"

namespace schemagate {

void ToProto(const SqlFailure& failure, v1::Failure* out);
void ToProto(const EventRecord& event, v1::Event* out);
void ToProto(const RunEvent& event, v1::RunProgress* out);
void ToProto(const InstanceRecord& instance, v1::Instance* out);
// The same, with the readiness its own targets have against the view (status, instances).
void ToProto(const InstanceRecord& instance, const SchemaView& view, v1::Instance* out);

// GetStatus / ListMigrations / Plan from a snapshot.
void BuildStatus(const Snapshot& snapshot, const CoordinatorOptions& options,
                 const std::string& schema, const std::string& database, v1::Status* out);
void BuildMigrations(const Snapshot& snapshot, v1::ListMigrationsResponse* out);
// What an operator's `apply` up to `target_version` (0: head) would do now.
RunPlan OperatorApplyPlan(const Snapshot& snapshot, const RunnerOptions& runner,
                          int64_t target_version);
absl::Status BuildPlan(const Snapshot& snapshot, const RunnerOptions& runner,
                       const v1::PlanRequest& request, v1::PlanResponse* out);

// The repeatables of the view into `out` (proto_repeatables.cc): each with
// its state, notes for older files, pending_repeatables; returns that count.
int AddRepeatables(const SchemaView& view, v1::Status* out);
// ", 2 repeatable(s) to apply"; "" for none.
std::string RepeatablesPending(int n);
// "migration 3" or "repeatable views": what `failure` is of.
std::string FailedSubject(const SqlFailure& failure);
// A plan step's lint findings ("file:line: severity: text [rule] fix: …").
void AddLintFindings(const MigrationScript& script, const LintOptions& lint, v1::PlanStep* step);
// The plan's repeatable steps, after the versioned ones: name, reason
// (new/changed), statements, lint findings.
void AddRepeatableSteps(const RunPlan& plan, const LintOptions& lint, v1::PlanResponse* out);

// ListInstances from a snapshot: every live instance with the state the
// fleet rules give it now, and counts per app version.
void BuildInstances(const Snapshot& snapshot, v1::ListInstancesResponse* out);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_PROTO_CONVERT_H_
