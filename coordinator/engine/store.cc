#include "coordinator/engine/store.h"

#include <algorithm>

#include "coordinator/base/status_macros.h"

namespace schemagate {

const AppliedMigration* DatabaseState::Find(int64_t version) const {
  auto it = std::lower_bound(
      applied.begin(), applied.end(), version,
      [](const AppliedMigration& m, int64_t v) { return m.version < v; });
  if (it == applied.end() || it->version != version) return nullptr;
  return &*it;
}

int64_t DatabaseState::AppliedHead() const {
  for (auto it = applied.rbegin(); it != applied.rend(); ++it) {
    if (!it->dirty) return it->version;
  }
  return 0;
}

absl::Status Store::EnsureBookkeeping() {
  LockWaitOptions wait;
  wait.max_wait = absl::Seconds(30);
  ASSIGN_OR_RETURN(std::unique_ptr<RunSession> session, BeginRun(wait));
  return session->EnsureSchema();
}

}  // namespace schemagate
