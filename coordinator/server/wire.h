// The v1 messages an agent and a coordinator exchange, to and from the
// engine's readiness words (coordinator/engine/readiness_answer.h), and
// errors as gRPC statuses. What the agent library needs of the server layer:
// it links this, the request checks and the access helpers, never the
// engine, PostgreSQL or the SQL parser.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_WIRE_H_
#define SCHEMAGATE_COORDINATOR_SERVER_WIRE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "coordinator/engine/readiness_answer.h"
#include "grpcpp/support/status.h"
#include "schemagate/v1/schemagate.pb.h"

namespace schemagate {

// Leaves `out` unset for an infinite time.
void SetTime(absl::Time t, google::protobuf::Timestamp* out);
void SetDuration(absl::Duration d, google::protobuf::Duration* out);

v1::ReadinessState ToProto(ReadinessState state);
ReadinessState FromProto(v1::ReadinessState state);

// Validates (ValidateAppTarget) and converts an agent's target.
// INVALID_ARGUMENT says what is wrong.
absl::Status FromProto(const v1::AppTarget& in, AppTarget* out);
void ToProto(const AppTarget& in, v1::AppTarget* out);

void ToProto(const ReadinessAnswer& answer, const std::string& coordinator_id,
             v1::Readiness* out);
ReadinessAnswer FromProto(const v1::Readiness& in);

// The status for a client, with every password redacted (RedactSecrets).
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_WIRE_H_
