// The operator-facing gRPC service. Status, migrations and plans are
// answered from memory; runs go to the coordinator's runner thread and
// history reads to its worker thread, so no reaction ever blocks.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_OPERATOR_SERVICE_H_
#define SCHEMAGATE_COORDINATOR_SERVER_OPERATOR_SERVICE_H_

#include <functional>
#include <string>

#include "coordinator/server/call_guards.h"
#include "coordinator/fleet/coordinator.h"
#include "coordinator/engine/schema_description.h"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate {

struct OperatorServiceOptions {
  // Shown in GetStatus.
  std::string schema;
  // The database URL with its password redacted.
  std::string database;
  // Describes the live user schema for validate's drift check (run on the
  // worker thread). Unset: drift is not checked.
  std::function<absl::StatusOr<SchemaDescription>()> describe_schema;
};

// Thread-safe.
class OperatorServiceImpl final : public v1::OperatorService::CallbackService {
 public:
  // Every call passes `guards`: the operator token, request limits, and for
  // WatchEvents the streams-per-client cap.
  OperatorServiceImpl(Coordinator* coordinator, OperatorServiceOptions options,
                      CallGuards guards = {})
      : coordinator_(coordinator), options_(std::move(options)), guards_(guards) {}

  using Context = grpc::CallbackServerContext;
  using Unary = grpc::ServerUnaryReactor;
  template <typename Message>
  using Stream = grpc::ServerWriteReactor<Message>;

  // Read-only (operator_queries.cc): answered from memory, or read on the
  // worker thread (plan re-reads the set; history and validate read the
  // database).
  Unary* GetStatus(Context*, const v1::GetStatusRequest*, v1::Status*) override;
  Unary* ListMigrations(Context*, const v1::ListMigrationsRequest*,
                        v1::ListMigrationsResponse*) override;
  Unary* Plan(Context*, const v1::PlanRequest*, v1::PlanResponse*) override;
  Unary* History(Context*, const v1::HistoryRequest*, v1::HistoryResponse*) override;
  Unary* Validate(Context*, const v1::ValidateRequest*, v1::ValidateResponse*) override;
  Unary* ListInstances(Context*, const v1::ListInstancesRequest*,
                       v1::ListInstancesResponse*) override;

  // Runs as progress streams (operator_runs.cc), on the runner thread.
  Stream<v1::RunProgress>* Apply(Context*, const v1::ApplyRequest*) override;
  Stream<v1::RunProgress>* Rollback(Context*, const v1::RollbackRequest*) override;

  // Bookkeeping repairs (operator_repair.cc), on the runner thread so that
  // they never overlap a run.
  Unary* Repair(Context*, const v1::RepairRequest*, v1::RepairResponse*) override;
  Unary* Baseline(Context*, const v1::BaselineRequest*, v1::BaselineResponse*) override;

  // The live event feed (operator_events.cc).
  Stream<v1::Event>* WatchEvents(Context*, const v1::WatchEventsRequest*) override;

 private:
  Coordinator* const coordinator_;
  const OperatorServiceOptions options_;
  const CallGuards guards_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_OPERATOR_SERVICE_H_
