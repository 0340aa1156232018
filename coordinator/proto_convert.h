// Translation between the engine's types and the v1 protobuf messages.
// Nothing here touches the network or the database.
#ifndef SCHEMAGATE_COORDINATOR_PROTO_CONVERT_H_
#define SCHEMAGATE_COORDINATOR_PROTO_CONVERT_H_

#include <string>

#include "absl/status/status.h"
#include "coordinator/coordinator.h"
#include "coordinator/readiness.h"
#include "coordinator/request_limits.h"
#include "coordinator/runner.h"
#include "coordinator/store.h"
#include "grpcpp/support/status.h"
#include "schemagate/v1/schemagate.pb.h"

namespace schemagate {

// Leaves `out` unset for an infinite time.
void SetTime(absl::Time t, google::protobuf::Timestamp* out);

v1::ReadinessState ToProto(ReadinessState state);
ReadinessState FromProto(v1::ReadinessState state);

// Validates (ValidateAppTarget) and converts an agent's target.
// INVALID_ARGUMENT says what is wrong.
absl::Status FromProto(const v1::AppTarget& in, AppTarget* out);
void ToProto(const AppTarget& in, v1::AppTarget* out);

void ToProto(const ReadinessAnswer& answer, const std::string& coordinator_id,
             v1::Readiness* out);
ReadinessAnswer FromProto(const v1::Readiness& in);

void ToProto(const SqlFailure& failure, v1::Failure* out);
void ToProto(const EventRecord& event, v1::Event* out);
void ToProto(const RunEvent& event, v1::RunProgress* out);
void ToProto(const InstanceRecord& instance, v1::Instance* out);

// GetStatus / ListMigrations / Plan from a snapshot.
void BuildStatus(const Snapshot& snapshot, const CoordinatorOptions& options,
                 const std::string& schema, const std::string& database, v1::Status* out);
void BuildMigrations(const Snapshot& snapshot, v1::ListMigrationsResponse* out);
// What an operator's `apply` up to `target_version` (0: head) would do now.
RunPlan OperatorApplyPlan(const Snapshot& snapshot, const RunnerOptions& runner,
                          int64_t target_version);
absl::Status BuildPlan(const Snapshot& snapshot, const RunnerOptions& runner,
                       const v1::PlanRequest& request, v1::PlanResponse* out);

// ListInstances from a snapshot: every live instance with the state the
// fleet rules give it now, and counts per app version.
void BuildInstances(const Snapshot& snapshot, v1::ListInstancesResponse* out);

// The status for a client, with every password redacted (RedactSecrets).
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_PROTO_CONVERT_H_
