// What the files of the operator service (operator_queries.cc,
// operator_runs.cc, operator_repair.cc, operator_events.cc) share: how a
// unary call is refused or answered, and who asked. Internal to sg_server.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_OPERATOR_CALLS_H_
#define SCHEMAGATE_COORDINATOR_SERVER_OPERATOR_CALLS_H_

#include <string>

#include "absl/status/status.h"
#include "coordinator/server/call_guards.h"
#include "coordinator/server/reactors.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace schemagate {

// Finishes a unary operator call its guards refuse (the operator token,
// then `valid`, the request's validation); nullptr when it may go on.
grpc::ServerUnaryReactor* Refused(grpc::CallbackServerContext* context, const CallGuards& guards,
                                  const absl::Status& valid = absl::OkStatus());

// The same for a server-streaming operator call: a reactor that ends the
// stream refused, or nullptr.
template <typename Message>
grpc::ServerWriteReactor<Message>* RefusedStream(grpc::CallbackServerContext* context,
                                                 const CallGuards& guards,
                                                 const absl::Status& valid) {
  const grpc::Status admitted = guards.Admit(*context, AccessRole::kOperator, valid);
  return admitted.ok() ? nullptr : new FinishedWriter<Message>(admitted);
}

// Finishes a unary call answered at once: with `admitted` when its guards
// refused it, else with OK after `fill` has filled in the response.
template <typename Fill>
grpc::ServerUnaryReactor* AnswerNow(grpc::CallbackServerContext* context,
                                    const grpc::Status& admitted, Fill fill) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (admitted.ok()) fill();
  reactor->Finish(admitted);
  return reactor;
}

// The actor a run or repair records: the one the operator gave, or
// operator@PEER.
std::string Actor(const grpc::CallbackServerContext* context, const std::string& given);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_OPERATOR_CALLS_H_
