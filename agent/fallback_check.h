// Graceful degradation when no coordinator answers: a read-only look at the
// bookkeeping table itself (--fallback-database-url, off by default). It can
// say READY, MISMATCH or FAILED; it never applies anything, and it cannot
// see breaking flags or runs under way, so it never says INCOMPATIBLE or
// MIGRATING.
#ifndef SCHEMAGATE_AGENT_FALLBACK_CHECK_H_
#define SCHEMAGATE_AGENT_FALLBACK_CHECK_H_

#include <string>

#include "absl/status/statusor.h"
#include "coordinator/engine/readiness.h"
#include "coordinator/engine/store.h"

namespace schemagate {

// The answer for `target` from `state` alone. With the app's checksums (from
// its --migrations-dir) every version of the app up to R must be applied;
// with only --known/--required, the applied head must reach R.
ReadinessAnswer FallbackReadiness(const AppTarget& target, const DatabaseState& state);

// Reads the bookkeeping of `schema` at `database_url` and applies the above.
absl::StatusOr<ReadinessAnswer> CheckDatabaseDirectly(const std::string& database_url,
                                                      const std::string& schema,
                                                      const AppTarget& target);

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_FALLBACK_CHECK_H_
