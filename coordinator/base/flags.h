// Helpers shared by the command lines: durations, environment fallbacks.
#ifndef SCHEMAGATE_COORDINATOR_BASE_FLAGS_H_
#define SCHEMAGATE_COORDINATOR_BASE_FLAGS_H_

#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace schemagate {

// Parses "500ms", "5s", "10m", "1h30m" (and "0").
inline absl::StatusOr<absl::Duration> ParseFlagDuration(const std::string& flag,
                                                        const std::string& text) {
  absl::Duration d;
  if (text == "0") return absl::ZeroDuration();
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": '", text, "' is not a duration; write it like 500ms, 5s, 10m or 1h30m"));
  }
  return d;
}

// The value of environment variable `name`, or "" if unset.
inline std::string EnvOr(const char* name, const std::string& fallback = "") {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_BASE_FLAGS_H_
