// The agent-facing gRPC service (Check, Wait, Attach), answered from the
// coordinator's memory: no database round trip per call, no thread per
// waiting agent (callback API).
#ifndef SCHEMAGATE_COORDINATOR_SERVER_AGENT_SERVICE_H_
#define SCHEMAGATE_COORDINATOR_SERVER_AGENT_SERVICE_H_

#include "coordinator/server/call_guards.h"
#include "coordinator/fleet/coordinator.h"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate {

// Thread-safe; every reaction returns without blocking.
class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  // Every call passes `guards` (token, request limits, streams per client).
  explicit AgentServiceImpl(Coordinator* coordinator, CallGuards guards = {})
      : coordinator_(coordinator), guards_(guards) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const v1::CheckRequest* request,
                                  v1::Readiness* response) override;
  grpc::ServerWriteReactor<v1::Readiness>* Wait(grpc::CallbackServerContext* context,
                                                const v1::WaitRequest* request) override;
  grpc::ServerBidiReactor<v1::AttachRequest, v1::Readiness>* Attach(
      grpc::CallbackServerContext* context) override;

 private:
  Coordinator* const coordinator_;
  const CallGuards guards_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_AGENT_SERVICE_H_
