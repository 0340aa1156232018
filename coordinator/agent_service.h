// The agent-facing gRPC service (Check, Wait, Attach), answered from the
// coordinator's memory: no database round trip per call, no thread per
// waiting agent (callback API).
#ifndef SCHEMAGATE_COORDINATOR_AGENT_SERVICE_H_
#define SCHEMAGATE_COORDINATOR_AGENT_SERVICE_H_

#include "coordinator/coordinator.h"
#include "schemagate/v1/schemagate.grpc.pb.h"

namespace schemagate {

// Thread-safe; every reaction returns without blocking.
class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  explicit AgentServiceImpl(Coordinator* coordinator) : coordinator_(coordinator) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const v1::CheckRequest* request,
                                  v1::Readiness* response) override;
  grpc::ServerWriteReactor<v1::Readiness>* Wait(grpc::CallbackServerContext* context,
                                                const v1::WaitRequest* request) override;
  grpc::ServerBidiReactor<v1::AttachRequest, v1::Readiness>* Attach(
      grpc::CallbackServerContext* context) override;

 private:
  Coordinator* const coordinator_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_AGENT_SERVICE_H_
