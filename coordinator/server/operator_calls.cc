#include "coordinator/server/operator_calls.h"

#include "absl/strings/str_cat.h"

namespace schemagate {

grpc::ServerUnaryReactor* Refused(grpc::CallbackServerContext* context, const CallGuards& guards,
                                  const absl::Status& valid) {
  const grpc::Status admitted = guards.Admit(*context, AccessRole::kOperator, valid);
  if (admitted.ok()) return nullptr;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(admitted);
  return reactor;
}

std::string Actor(const grpc::CallbackServerContext* context, const std::string& given) {
  if (!given.empty()) return given;  // ValidateActor bounded it.
  return absl::StrCat("operator@", context->peer());
}

}  // namespace schemagate
