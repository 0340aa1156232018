// The checks every RPC of the agent and operator services passes before
// its handler does any work: the caller's token (AccessPolicy), the request
// (request_limits.h), and for long-lived streams the per-client cap
// (StreamQuota).
#ifndef SCHEMAGATE_COORDINATOR_SERVER_CALL_GUARDS_H_
#define SCHEMAGATE_COORDINATOR_SERVER_CALL_GUARDS_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/server/access.h"
#include "coordinator/server/stream_quota.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace schemagate {

// Copyable; the pointees are owned by the server and outlive the services.
struct CallGuards {
  // nullptr: every call allowed.
  const AccessPolicy* access = nullptr;
  // nullptr: streams are not limited.
  StreamQuota* streams = nullptr;

  // The token check, then `valid` (the request's validation): the first
  // failure as a gRPC status, or OK.
  grpc::Status Admit(const grpc::ServerContextBase& context, AccessRole role,
                     const absl::Status& valid = absl::OkStatus()) const {
    if (access != nullptr) {
      grpc::Status denied = access->Authorize(context, role);
      if (!denied.ok()) return denied;
    }
    if (valid.ok()) return grpc::Status::OK;
    return grpc::Status(static_cast<grpc::StatusCode>(valid.code()), std::string(valid.message()));
  }

  // A slot for one more stream of the caller (nullptr when unlimited), or
  // RESOURCE_EXHAUSTED.
  absl::StatusOr<std::unique_ptr<StreamQuota::Slot>> AcquireStream(
      const grpc::CallbackServerContext& context) const {
    if (streams == nullptr) return std::unique_ptr<StreamQuota::Slot>();
    return streams->Acquire(context.peer());
  }
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_CALL_GUARDS_H_
