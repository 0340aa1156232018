#include "coordinator/server/request_limits.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace schemagate {
namespace {

// No control characters (a log line or a terminal must show the value as is).
bool IsPrintable(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
  });
}

bool IsHexChecksum(absl::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

absl::Status ValidateName(absl::string_view field, absl::string_view value) {
  if (value.size() > kMaxNameLength || !IsPrintable(value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " must be printable text of at most ", kMaxNameLength, " bytes (got ",
        value.size(), " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateVersion(absl::string_view field, int64_t version) {
  if (version < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must not be negative (got ", version, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateAppTarget(const v1::AppTarget& in) {
  if (absl::Status s = ValidateName("target.app", in.app()); !s.ok()) return s;
  if (absl::Status s = ValidateName("target.app_version", in.app_version()); !s.ok()) return s;
  if (in.known_version() < 0 || in.required_version() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "versions must not be negative (known_version ", in.known_version(),
        ", required_version ", in.required_version(), ")"));
  }
  if (in.known_version() != 0 && in.required_version() > in.known_version()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "required_version ", in.required_version(), " is above known_version ",
        in.known_version(), "; R can never exceed K"));
  }
  if (in.checksums_size() > kMaxChecksums) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxChecksums,
                                                   " checksums per request (got ",
                                                   in.checksums_size(), ")"));
  }
  if (in.repeatable_checksums_size() > kMaxChecksums) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxChecksums,
                                                   " repeatable checksums per request (got ",
                                                   in.repeatable_checksums_size(), ")"));
  }
  for (const auto& [name, checksum] : in.repeatable_checksums()) {
    if (absl::Status s = ValidateName("repeatable name", name); !s.ok()) return s;
    if (name.empty() || !IsHexChecksum(checksum)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checksum for repeatable '", name,
          "' must have a name and 64 lower-case hex digits (SHA-256)"));
    }
  }
  for (const auto& [version, checksum] : in.checksums()) {
    if (version <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("checksum for version ", version, ": versions are positive"));
    }
    if (!IsHexChecksum(checksum)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checksum for version ", version, " must be 64 lower-case hex digits (SHA-256)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateInstanceId(absl::string_view id, bool required) {
  if (required && id.empty()) {
    return absl::InvalidArgumentError("instance_id is required (the pod or host name)");
  }
  if (id.size() > kMaxInstanceIdLength) {
    return absl::InvalidArgumentError(absl::StrCat("instance_id is longer than ",
                                                   kMaxInstanceIdLength, " bytes (got ",
                                                   id.size(), ")"));
  }
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return absl::InvalidArgumentError("instance_id must be printable with no spaces");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateActor(absl::string_view actor) { return ValidateName("actor", actor); }

absl::Status ValidateCheckRequest(const v1::CheckRequest& request) {
  if (absl::Status s = ValidateAppTarget(request.target()); !s.ok()) return s;
  return ValidateInstanceId(request.instance_id(), /*required=*/false);
}

absl::Status ValidateWaitRequest(const v1::WaitRequest& request) {
  if (absl::Status s = ValidateAppTarget(request.target()); !s.ok()) return s;
  return ValidateInstanceId(request.instance_id(), /*required=*/false);
}

absl::Status ValidateAttachRequest(const v1::AttachRequest& first) {
  if (first.goodbye()) {
    return absl::InvalidArgumentError(
        "the first Attach message must name the instance (target, instance_id), not say "
        "goodbye");
  }
  if (absl::Status s = ValidateAppTarget(first.target()); !s.ok()) return s;
  if (absl::Status s = ValidateInstanceId(first.instance_id(), /*required=*/true); !s.ok()) {
    return s;
  }
  if (first.attach_token().size() > kMaxAttachTokenLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attach_token is longer than ", kMaxAttachTokenLength, " bytes (got ",
        first.attach_token().size(), ")"));
  }
  for (char c : first.attach_token()) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return absl::InvalidArgumentError("attach_token must be printable with no spaces");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePlanRequest(const v1::PlanRequest& request) {
  return ValidateVersion("target_version", request.target_version());
}

absl::Status ValidateApplyRequest(const v1::ApplyRequest& request) {
  if (absl::Status s = ValidateVersion("target_version", request.target_version()); !s.ok()) {
    return s;
  }
  return ValidateActor(request.actor());
}

absl::Status ValidateRollbackRequest(const v1::RollbackRequest& request) {
  if (absl::Status s = ValidateVersion("target_version", request.target_version()); !s.ok()) {
    return s;
  }
  return ValidateActor(request.actor());
}

absl::Status ValidateRepairRequest(const v1::RepairRequest& request) {
  switch (request.action()) {
    case v1::RepairRequest::CLEAR_DIRTY:
    case v1::RepairRequest::MARK_APPLIED:
    case v1::RepairRequest::MARK_NOT_APPLIED:
    case v1::RepairRequest::RESUME:
      if (request.version() <= 0) {
        return absl::InvalidArgumentError("version must be a positive version");
      }
      break;
    case v1::RepairRequest::CLEAR_FAILURE:
      if (absl::Status s = ValidateVersion("version", request.version()); !s.ok()) return s;
      break;
    default:
      return absl::InvalidArgumentError(
          "action must be CLEAR_DIRTY, MARK_APPLIED, MARK_NOT_APPLIED, RESUME or CLEAR_FAILURE");
  }
  return ValidateActor(request.actor());
}

absl::Status ValidateBaselineRequest(const v1::BaselineRequest& request) {
  if (request.version() <= 0) {
    return absl::InvalidArgumentError("version must be a positive version of the set");
  }
  return ValidateActor(request.actor());
}

absl::Status ValidateHistoryRequest(const v1::HistoryRequest& request) {
  if (request.limit() < 0 || request.limit() > kMaxHistoryLimit) {
    return absl::InvalidArgumentError(absl::StrCat("limit must be 0..", kMaxHistoryLimit,
                                                   " (0: the default); got ", request.limit()));
  }
  return ValidateVersion("version", request.version());
}

absl::Status ValidateWatchEventsRequest(const v1::WatchEventsRequest& request) {
  return ValidateVersion("after_event_id", request.after_event_id());
}

}  // namespace schemagate
