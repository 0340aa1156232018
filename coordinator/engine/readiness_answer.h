// What an app asks of the schema and what it is told: the words agents and
// coordinators share (DESIGN.md "Fleet rules"). Types only, no rules: the
// rules are readiness.h's. The agent links these and the migration set, and
// nothing else of the engine.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_READINESS_ANSWER_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_READINESS_ANSWER_H_

#include <cstdint>
#include <map>
#include <string>

namespace schemagate {

enum class ReadinessState {
  kReady,
  kPending,
  kMigrating,
  kBlocked,
  kUnknownVersion,
  kIncompatible,
  kMismatch,
  kFailed,
  kUnavailable,
};

// "READY", "PENDING", …
const char* ReadinessStateName(ReadinessState state);

// FAILED, INCOMPATIBLE and MISMATCH end an agent's wait at once.
bool IsFinal(ReadinessState state);

// What an app needs, as its agent reported it.
struct AppTarget {
  std::string app;
  std::string app_version;
  // K and R; 0 when not given.
  int64_t known_version = 0;
  int64_t required_version = 0;
  // Checksums of the app's own up files, by version.
  std::map<int64_t, std::string> checksums;
  // Checksums of the app's repeatable migrations, by name.
  std::map<std::string, std::string> repeatable_checksums;
};

struct ReadinessAnswer {
  ReadinessState state = ReadinessState::kUnavailable;
  std::string message;
  int64_t applied_version = 0;
  int64_t required_version = 0;
  int64_t known_version = 0;
  // The version that keeps the app from READY, 0 if none.
  int64_t blocking_version = 0;

  bool operator==(const ReadinessAnswer& other) const {
    return state == other.state && message == other.message &&
           applied_version == other.applied_version &&
           required_version == other.required_version &&
           known_version == other.known_version && blocking_version == other.blocking_version;
  }
  bool operator!=(const ReadinessAnswer& other) const { return !(*this == other); }
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_READINESS_ANSWER_H_
