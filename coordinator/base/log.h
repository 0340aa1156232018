// Process-wide log output: one line per event, text or JSON, with every
// database credential redacted before it is written.
//
// Thread-safe: lines from concurrent threads never interleave.
#ifndef SCHEMAGATE_COORDINATOR_BASE_LOG_H_
#define SCHEMAGATE_COORDINATOR_BASE_LOG_H_

#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace schemagate {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

enum class LogFormat { kText, kJson };

// Configures the sink. Call once at start-up, before other threads log.
void ConfigureLog(absl::string_view component, LogFormat format,
                  LogLevel min_level);

// Writes one line to stderr. `message` is redacted (RedactSecrets).
void LogLine(LogLevel level, absl::string_view message);

template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kInfo, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kWarning, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kError, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogDebug(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogLine(LogLevel::kDebug, absl::StrFormat(format, args...));
}

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_BASE_LOG_H_
