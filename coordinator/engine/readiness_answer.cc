#include "coordinator/engine/readiness_answer.h"

namespace schemagate {

const char* ReadinessStateName(ReadinessState state) {
  switch (state) {
    case ReadinessState::kReady: return "READY";
    case ReadinessState::kPending: return "PENDING";
    case ReadinessState::kMigrating: return "MIGRATING";
    case ReadinessState::kBlocked: return "BLOCKED";
    case ReadinessState::kUnknownVersion: return "UNKNOWN_VERSION";
    case ReadinessState::kIncompatible: return "INCOMPATIBLE";
    case ReadinessState::kMismatch: return "MISMATCH";
    case ReadinessState::kFailed: return "FAILED";
    case ReadinessState::kUnavailable: return "UNAVAILABLE";
  }
  return "UNAVAILABLE";
}

bool IsFinal(ReadinessState state) {
  return state == ReadinessState::kFailed || state == ReadinessState::kIncompatible ||
         state == ReadinessState::kMismatch;
}

}  // namespace schemagate
