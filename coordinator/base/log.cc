#include "coordinator/base/log.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/base/conninfo.h"

namespace schemagate {
namespace {

struct LogConfig {
  std::string component = "schemagate";
  LogFormat format = LogFormat::kText;
  LogLevel min_level = LogLevel::kInfo;
};

LogConfig& Config() {
  static LogConfig* config = new LogConfig();
  return *config;
}

absl::Mutex& OutputMutex() {
  static absl::Mutex* mu = new absl::Mutex();
  return *mu;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "INFO";
}

std::string JsonEscape(absl::string_view in) {
  std::string out;
  out.reserve(in.size() + 2);
  for (char c : in) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace

void ConfigureLog(absl::string_view component, LogFormat format,
                  LogLevel min_level) {
  Config().component = std::string(component);
  Config().format = format;
  Config().min_level = min_level;
}

void LogLine(LogLevel level, absl::string_view message) {
  const LogConfig& config = Config();
  if (level < config.min_level) return;
  const std::string clean = RedactSecrets(message);
  const std::string now =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (config.format == LogFormat::kJson) {
    line = absl::StrCat("{\"ts\":\"", now, "\",\"level\":\"", LevelName(level),
                        "\",\"component\":\"", config.component,
                        "\",\"msg\":\"", JsonEscape(clean), "\"}\n");
  } else {
    line = absl::StrCat(now, " ", LevelName(level), " ", config.component,
                        ": ", clean, "\n");
  }
  absl::MutexLock lock(&OutputMutex());
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace schemagate
