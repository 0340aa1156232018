// The PostgreSQL implementation of Store and RunSession (libpqxx 6.4).
//
// Every connection gets TCP keepalives and tcp_user_timeout, so a half-open
// connection is noticed in seconds. libpqxx exceptions never leave this file:
// they become statuses keeping SQLSTATE and message.
#ifndef SCHEMAGATE_COORDINATOR_POSTGRES_PG_STORE_H_
#define SCHEMAGATE_COORDINATOR_POSTGRES_PG_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <pqxx/connection>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/engine/store.h"


namespace schemagate {

// The LISTEN/NOTIFY channel every coordinator listens on.
inline constexpr char kEventsChannel[] = "schemagate_events";

struct PgStoreOptions {
  std::string conninfo;
  // Schema holding the bookkeeping tables.
  std::string schema = "schemagate";
  // Advisory lock key; derived from the database and schema names if unset.
  std::optional<int64_t> lock_key;
  // Recorded as applied_by / actor.
  std::string coordinator_id;
};

// Derives the advisory lock key from the database and schema names, or
// from an explicit `--lock-key` text (a number is used as it is).
int64_t DeriveLockKey(const std::string& database, const std::string& schema);
absl::StatusOr<int64_t> ParseLockKey(const std::string& text);

// Connects once to `conninfo` and checks that the session is PostgreSQL's
// own, not one handed out by a connection pooler such as PgBouncer (which a
// session-level run lock needs). FAILED_PRECONDITION names the pooler;
// UNAVAILABLE if the database cannot be reached (nothing is known then).
absl::Status CheckDirectSession(const std::string& conninfo);

// Thread-safe: reads go through one mutex-guarded connection that is
// reopened after a failure; each run opens its own dedicated connection.
class PgStore : public Store {
 public:
  explicit PgStore(PgStoreOptions options);
  ~PgStore() override;

  absl::StatusOr<DatabaseState> ReadState() override;
  absl::StatusOr<std::vector<EventRecord>> ReadHistory(int limit, int64_t version) override;
  absl::StatusOr<std::vector<EventRecord>> ReadEventsAfter(int64_t after_id, int limit) override;
  absl::StatusOr<std::optional<SchemaRecord>> ReadSchemaRecord() override;
  absl::StatusOr<std::unique_ptr<RunSession>> BeginRun(const LockWaitOptions& options) override;
  absl::StatusOr<std::vector<InstanceRecord>> UpsertInstances(
      const std::vector<InstanceRecord>& instances, absl::Duration ttl) override;
  absl::Status RefreshLeases(const std::vector<std::string>& ids, absl::Duration ttl) override;
  absl::Status RemoveInstances(const std::vector<std::string>& ids,
                               const std::string& actor) override;

  const PgStoreOptions& options() const { return options_; }

 private:
  // Returns the open read connection, (re)connecting if needed.
  absl::StatusOr<pqxx::connection*> ReadConnection() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `fn(connection)` on the read connection, turning libpqxx
  // exceptions into UNAVAILABLE and dropping a broken connection.
  absl::Status WithConnection(const std::function<absl::Status(pqxx::connection&)>& fn);
  // The history rows `where` ("WHERE ... ORDER BY ... LIMIT ...", with
  // `params` as $1...) selects; none before the table exists.
  template <typename... Params>
  absl::StatusOr<std::vector<EventRecord>> SelectEvents(absl::string_view where,
                                                        const Params&... params);

  const PgStoreOptions options_;
  absl::Mutex mu_;
  std::unique_ptr<pqxx::connection> read_conn_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> lock_key_ ABSL_GUARDED_BY(mu_);
};

// A LISTEN connection: wakes the coordinator when any replica changes state.
// Not thread-safe: owned by the coordinator's watcher thread.
class PgListener : public ChangeFeed {
 public:
  explicit PgListener(std::string conninfo);
  ~PgListener() override;

  absl::Status Connect() override;
  bool connected() const override { return conn_ != nullptr; }
  absl::StatusOr<int> Wait(absl::Duration timeout) override;

 private:
  class Receiver;
  const std::string conninfo_;
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<Receiver> receiver_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_POSTGRES_PG_STORE_H_
