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

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::Status* response) override;
  grpc::ServerUnaryReactor* ListMigrations(grpc::CallbackServerContext* context,
                                           const v1::ListMigrationsRequest* request,
                                           v1::ListMigrationsResponse* response) override;
  grpc::ServerUnaryReactor* Plan(grpc::CallbackServerContext* context,
                                 const v1::PlanRequest* request,
                                 v1::PlanResponse* response) override;
  grpc::ServerWriteReactor<v1::RunProgress>* Apply(grpc::CallbackServerContext* context,
                                                   const v1::ApplyRequest* request) override;
  grpc::ServerUnaryReactor* History(grpc::CallbackServerContext* context,
                                    const v1::HistoryRequest* request,
                                    v1::HistoryResponse* response) override;
  grpc::ServerWriteReactor<v1::RunProgress>* Rollback(grpc::CallbackServerContext* context,
                                                      const v1::RollbackRequest* request) override;
  grpc::ServerUnaryReactor* Repair(grpc::CallbackServerContext* context,
                                   const v1::RepairRequest* request,
                                   v1::RepairResponse* response) override;
  grpc::ServerUnaryReactor* Baseline(grpc::CallbackServerContext* context,
                                     const v1::BaselineRequest* request,
                                     v1::BaselineResponse* response) override;
  grpc::ServerUnaryReactor* Validate(grpc::CallbackServerContext* context,
                                     const v1::ValidateRequest* request,
                                     v1::ValidateResponse* response) override;
  grpc::ServerUnaryReactor* ListInstances(grpc::CallbackServerContext* context,
                                          const v1::ListInstancesRequest* request,
                                          v1::ListInstancesResponse* response) override;
  grpc::ServerWriteReactor<v1::Event>* WatchEvents(grpc::CallbackServerContext* context,
                                                   const v1::WatchEventsRequest* request) override;

 private:
  Coordinator* const coordinator_;
  const OperatorServiceOptions options_;
  const CallGuards guards_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_OPERATOR_SERVICE_H_
