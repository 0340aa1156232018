// What a request to the coordinator may carry, checked in one place.
//
// Every handler of the agent and operator services calls the matching
// Validate function before it does anything else; each returns OK or an
// INVALID_ARGUMENT status whose message names the field and the limit. The
// functions are pure (no gRPC server, no coordinator), so unit tests and
// fuzzers can call them directly. Checks that need the coordinator's state
// (is the target version in the set?) stay in the handlers.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_REQUEST_LIMITS_H_
#define SCHEMAGATE_COORDINATOR_SERVER_REQUEST_LIMITS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "schemagate/v1/schemagate.pb.h"

namespace schemagate {

// App names, app versions and actors.
inline constexpr size_t kMaxNameLength = 128;
// A DNS name (a pod name fits).
inline constexpr size_t kMaxInstanceIdLength = 253;
// An Attach's per-process token (the agent sends 32 hex digits).
inline constexpr size_t kMaxAttachTokenLength = 64;
// One per migration file of the app; with SHA-256 hex digests 10,000 of them
// stay under the default request size limit.
inline constexpr int kMaxChecksums = 10000;
// HistoryRequest.limit.
inline constexpr int kMaxHistoryLimit = 10000;
// Default of schemagated --max-request-bytes: the largest request message
// accepted (gRPC answers RESOURCE_EXHAUSTED above it).
inline constexpr int kDefaultMaxRequestBytes = 1 << 20;

// The pieces, for callers that hold a field rather than a request.
absl::Status ValidateAppTarget(const v1::AppTarget& target);
absl::Status ValidateInstanceId(absl::string_view id, bool required);
// Who asked, recorded in history; empty is allowed (the peer is used).
absl::Status ValidateActor(absl::string_view actor);

// Agent service.
absl::Status ValidateCheckRequest(const v1::CheckRequest& request);
absl::Status ValidateWaitRequest(const v1::WaitRequest& request);
// The first message of an Attach stream (later ones are heartbeats).
absl::Status ValidateAttachRequest(const v1::AttachRequest& first);

// Operator service.
absl::Status ValidatePlanRequest(const v1::PlanRequest& request);
absl::Status ValidateApplyRequest(const v1::ApplyRequest& request);
absl::Status ValidateRollbackRequest(const v1::RollbackRequest& request);
absl::Status ValidateRepairRequest(const v1::RepairRequest& request);
absl::Status ValidateBaselineRequest(const v1::BaselineRequest& request);
absl::Status ValidateHistoryRequest(const v1::HistoryRequest& request);
absl::Status ValidateWatchEventsRequest(const v1::WatchEventsRequest& request);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_REQUEST_LIMITS_H_
