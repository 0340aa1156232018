// PgStore's RunSession (coordinator/engine/store.h): internal to
// coordinator/postgres/.
#ifndef SCHEMAGATE_COORDINATOR_POSTGRES_PG_RUN_SESSION_H_
#define SCHEMAGATE_COORDINATOR_POSTGRES_PG_RUN_SESSION_H_

#include <cstdint>
#include <memory>
#include <pqxx/connection>

#include "coordinator/engine/store.h"
#include "coordinator/postgres/pg_store.h"

namespace schemagate {

// The session of a run on `conn`, which already holds the advisory lock
// `lock_key` (PgStore::BeginRun took it); the session releases it.
std::unique_ptr<RunSession> MakePgRunSession(std::unique_ptr<pqxx::connection> conn,
                                             const PgStoreOptions& options, int64_t lock_key);

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_POSTGRES_PG_RUN_SESSION_H_
