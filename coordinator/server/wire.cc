#include "coordinator/server/wire.h"

#include "coordinator/base/conninfo.h"
#include "coordinator/server/request_limits.h"

namespace schemagate {

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return;
  const int64_t micros = absl::ToUnixMicros(t);
  out->set_seconds(micros / 1000000);
  out->set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

v1::ReadinessState ToProto(ReadinessState state) {
  switch (state) {
    case ReadinessState::kReady: return v1::READY;
    case ReadinessState::kPending: return v1::PENDING;
    case ReadinessState::kMigrating: return v1::MIGRATING;
    case ReadinessState::kBlocked: return v1::BLOCKED;
    case ReadinessState::kUnknownVersion: return v1::UNKNOWN_VERSION;
    case ReadinessState::kIncompatible: return v1::INCOMPATIBLE;
    case ReadinessState::kMismatch: return v1::MISMATCH;
    case ReadinessState::kFailed: return v1::FAILED;
    case ReadinessState::kUnavailable: return v1::UNAVAILABLE;
  }
  return v1::READINESS_STATE_UNSPECIFIED;
}

ReadinessState FromProto(v1::ReadinessState state) {
  switch (state) {
    case v1::READY: return ReadinessState::kReady;
    case v1::PENDING: return ReadinessState::kPending;
    case v1::MIGRATING: return ReadinessState::kMigrating;
    case v1::BLOCKED: return ReadinessState::kBlocked;
    case v1::UNKNOWN_VERSION: return ReadinessState::kUnknownVersion;
    case v1::INCOMPATIBLE: return ReadinessState::kIncompatible;
    case v1::MISMATCH: return ReadinessState::kMismatch;
    case v1::FAILED: return ReadinessState::kFailed;
    default: return ReadinessState::kUnavailable;
  }
}

absl::Status FromProto(const v1::AppTarget& in, AppTarget* out) {
  if (absl::Status valid = ValidateAppTarget(in); !valid.ok()) return valid;
  out->app = in.app();
  out->app_version = in.app_version();
  out->known_version = in.known_version();
  out->required_version = in.required_version();
  out->checksums.clear();
  for (const auto& [version, checksum] : in.checksums()) out->checksums[version] = checksum;
  out->repeatable_checksums.clear();
  for (const auto& [name, checksum] : in.repeatable_checksums()) {
    out->repeatable_checksums[name] = checksum;
  }
  return absl::OkStatus();
}

void ToProto(const AppTarget& in, v1::AppTarget* out) {
  out->set_app(in.app);
  out->set_app_version(in.app_version);
  out->set_known_version(in.known_version);
  out->set_required_version(in.required_version);
  for (const auto& [version, checksum] : in.checksums) (*out->mutable_checksums())[version] = checksum;
  for (const auto& [name, checksum] : in.repeatable_checksums) {
    (*out->mutable_repeatable_checksums())[name] = checksum;
  }
}

void ToProto(const ReadinessAnswer& answer, const std::string& coordinator_id,
             v1::Readiness* out) {
  out->set_state(ToProto(answer.state));
  out->set_message(answer.message);
  out->set_applied_version(answer.applied_version);
  out->set_required_version(answer.required_version);
  out->set_known_version(answer.known_version);
  out->set_blocking_version(answer.blocking_version);
  out->set_coordinator_id(coordinator_id);
}

ReadinessAnswer FromProto(const v1::Readiness& in) {
  ReadinessAnswer answer;
  answer.state = FromProto(in.state());
  answer.message = in.message();
  answer.applied_version = in.applied_version();
  answer.required_version = in.required_version();
  answer.known_version = in.known_version();
  answer.blocking_version = in.blocking_version();
  return answer;
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // Errors may quote a connection string (libpq, pg_dump): never a password.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      RedactSecrets(status.message()));
}

}  // namespace schemagate
