// The bookkeeping store: what schemagate records in PostgreSQL, behind an
// interface so the runner and the coordinator can be tested against it.
//
// A Store reads state without the lock; a RunSession is one dedicated
// connection holding the run lock, and every write of a run goes through it.
#ifndef SCHEMAGATE_COORDINATOR_ENGINE_STORE_H_
#define SCHEMAGATE_COORDINATOR_ENGINE_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/base/clock.h"
#include "coordinator/engine/foreign_bookkeeping.h"
#include "coordinator/sql/sql_split.h"

namespace schemagate {

// A row of the `migrations` table.
struct AppliedMigration {
  int64_t version = 0;
  std::string name;
  std::string checksum;
  bool dirty = false;
  absl::Time applied_at;
  absl::Duration duration;
  std::string applied_by;
  // For a no-transaction migration: statements finished so far.
  int statements_done = 0;
  // A dirty row left by a no-transaction down file (a rollback under way or
  // cut part-way): statements_done counts the down's statements, not the up's.
  bool rolling_back = false;
};

// A row of the `repeatables` table: the text of a repeatable migration
// last applied.
struct AppliedRepeatable {
  std::string name;
  std::string checksum;
  absl::Time applied_at;
  absl::Duration duration;
  std::string applied_by;
  std::string run_id;
};

// The error of a failed statement, as PostgreSQL reported it.
struct SqlFailure {
  // 0 for a repeatable migration (`name` is its name; of_repeatable()).
  int64_t version = 0;
  std::string name;
  std::string checksum;
  std::string sqlstate;
  std::string message;
  // 1-based statement index within the file, and the line it starts on.
  int statement_index = 0;
  int line = 0;
  absl::Time at;
  std::string coordinator_id;
  // The statement could not take its locks within lock_timeout (PostgreSQL's
  // lock_not_available): the migration is not broken, a retry may succeed.
  bool lock_timeout = false;

  bool of_repeatable() const { return version == 0; }
};

// A row of the `instances` table: one live instance of the fleet.
struct InstanceRecord {
  std::string instance_id;
  std::string app;
  std::string app_version;
  int64_t known_version = 0;
  int64_t required_version = 0;
  // The coordinator the instance is attached to.
  std::string coordinator_id;
  // The agent process's random token (AttachRequest.attach_token): tells
  // two processes under one id apart. Empty from agents that send none.
  std::string attach_token;
  absl::Time first_seen;
  absl::Time last_seen;
  absl::Time lease_expires;
};

// How many of the unrecorded tables DatabaseState names.
inline constexpr size_t kUnrecordedTablesNamed = 5;

// Everything the coordinator needs to know about the database's side.
struct DatabaseState {
  // False until the bookkeeping schema has been created.
  bool initialized = false;
  // Rows of `migrations`, ordered by version.
  std::vector<AppliedMigration> applied;
  // Rows of `repeatables`, ordered by name.
  std::vector<AppliedRepeatable> repeatables;
  // The last run's failure, until a later run succeeds or an operator clears it.
  std::optional<SqlFailure> failure;
  int64_t run_epoch = 0;
  // Some session (any coordinator) holds the run lock right now.
  bool run_in_progress = false;
  // Highest event id, for resuming event feeds.
  int64_t last_event_id = 0;
  // Instances whose lease has not expired, by instance id.
  std::vector<InstanceRecord> live_instances;
  // Instances whose lease ran out within the last hour without a goodbye
  // (crashed, or cut off): the breaking gate's grace period counts from them.
  std::vector<InstanceRecord> lapsed_instances;
  // Set by a rollback: automatic runs apply nothing above this version
  // until an operator applies again.
  std::optional<int64_t> hold_above;
  // Checksums of up files that failed, by version (from the failure events
  // of history): texts that ran and were rolled back, so a coordinator or
  // an app that still has one holds an older text, not an edited one.
  std::map<int64_t, std::vector<std::string>> failed_texts;
  // Checksums of every text of a repeatable applied so far, by name (from
  // the repeatable events of history): a file whose text was applied and
  // since replaced is an older file (a coordinator not yet redeployed), not
  // one to re-apply by itself.
  std::map<std::string, std::vector<std::string>> repeatable_texts;
  // Tables outside schemagate's bookkeeping schema, the system schemas and
  // extensions, read only while no migration is recorded (`applied` is
  // empty): how many, and the first few names ("public.users"). A schema
  // that another tool made is adopted with `schemagatectl baseline`.
  int64_t unrecorded_table_count = 0;
  std::vector<std::string> unrecorded_tables;
  // Another migration tool's bookkeeping tables (foreign_bookkeeping.h),
  // read only while no migration is recorded: what `schemagatectl adopt`
  // (or schemagated --adopt) would adopt.
  std::vector<ForeignBookkeeping> foreign;

  const AppliedMigration* Find(int64_t version) const;
  // nullptr when no text of repeatable `name` was applied.
  const AppliedRepeatable* FindRepeatable(const std::string& name) const;
  // Highest version whose row is applied (not dirty); 0 if none.
  int64_t AppliedHead() const;
  // Whether the up file of `version` with `checksum` failed before.
  bool TextFailed(int64_t version, const std::string& checksum) const;
  // Whether `checksum` of repeatable `name` was applied at some time.
  bool RepeatableTextApplied(const std::string& name, const std::string& checksum) const;
};

// A row of the append-only `events` table.
struct EventRecord {
  int64_t id = 0;
  absl::Time at;
  std::string kind;
  int64_t version = 0;
  std::string name;
  std::string run_id;
  std::string actor;
  std::optional<absl::Duration> duration;
  std::string sqlstate;
  std::string message;
  int statement_index = 0;
  int line = 0;
  // A failure of an up file: that file's checksum (DatabaseState::failed_texts).
  std::string checksum;
};

// The user schema as a run left it (schemagate_fingerprint.h describes
// it): what `schemagatectl validate` compares the live schema with, to find
// changes made outside schemagate.
struct SchemaRecord {
  // Lower-case hex SHA-256 of `description`; "" when the description could
  // not be taken (drift is then not checked until the next run).
  std::string fingerprint;
  // The readable description, one object a line.
  std::string description;
  absl::Time recorded_at;
  std::string run_id;
};

// Per-statement settings of a migration.
struct StatementLimits {
  absl::Duration lock_timeout;
  // Zero means no limit.
  absl::Duration statement_timeout;
};

// The bookkeeping a transactional step commits together with its SQL.
struct StepRecord {
  int64_t version = 0;
  std::string name;
  std::string checksum;
  std::string run_id;
  std::string actor;
  // true: insert the `migrations` row (up); false: delete it (down).
  bool up = true;
  // A repeatable migration (version 0, `name` its name): upserts its
  // `repeatables` row and records a "repeatable" event saying `message`.
  bool repeatable = false;
  std::string message;
};

// A row an adoption writes (RunSession::RecordAdoption).
struct AdoptedRow {
  StepRecord record;
  // Recorded dirty (the other tool left it unfinished) instead of applied.
  bool dirty = false;
};

// One migration of a rehearsal (apply --rehearse).
struct RehearsalStep {
  int64_t version = 0;
  std::string name;
  const std::vector<SqlStatement>* statements = nullptr;
  StatementLimits limits;
};

struct RehearsalResult {
  int64_t version = 0;
  bool ok = false;
  absl::Duration duration;
  // Set when !ok.
  SqlFailure failure;
};

// Called before each statement with its 0-based index.
using StatementObserver = std::function<void(int index)>;

// What LookUpIndex found.
struct IndexLookup {
  enum class State { kAbsent, kInvalid, kValid };
  State state = State::kAbsent;
  // Schema-qualified and quoted, when found.
  std::string qualified_name;
};

// One dedicated connection holding the session-level advisory lock.
// Destroying it releases the lock (and closes the connection).
//
// Not thread-safe: used by the one thread running the run.
//
// Errors: ABORTED when the connection is lost or the epoch fence shows that
// another run took over (the run must stop; never continue on another
// connection); FAILED_PRECONDITION when a migration's SQL fails (`failure`
// filled in); UNAVAILABLE for other database trouble.
class RunSession {
 public:
  virtual ~RunSession() = default;

  // Creates the bookkeeping schema and tables if missing (idempotent).
  virtual absl::Status EnsureSchema() = 0;
  // Reads the state on this connection (never from a cache).
  virtual absl::StatusOr<DatabaseState> ReadState() = 0;
  // Increments and returns the run epoch. Later steps check it as a fence.
  virtual absl::StatusOr<int64_t> BumpEpoch() = 0;

  // Runs `statements` and the bookkeeping of `record` in one transaction
  // with SET LOCAL lock_timeout/statement_timeout, checks the epoch fence,
  // and notifies listeners on commit. On an SQL error the transaction is
  // rolled back and `failure` describes it.
  virtual absl::Status RunTransactional(const std::vector<SqlStatement>& statements,
                                        const StatementLimits& limits, const StepRecord& record,
                                        const StatementObserver& observer,
                                        SqlFailure* failure) = 0;

  // One step of RunTransactionalBatch.
  struct BatchStep {
    const std::vector<SqlStatement>* statements = nullptr;
    StatementLimits limits;
    StepRecord record;
  };
  // Runs `steps` in order, each as RunTransactional would (its own
  // transaction, limits, fence and bookkeeping), sent together where the
  // store can. `on_step(i)` is called as step i begins, once every step
  // before it has committed. `committed` is how many committed; on
  // FAILED_PRECONDITION `failure` is that of step *committed, rolled back,
  // and no later step ran. This default runs them one at a time.
  virtual absl::Status RunTransactionalBatch(const std::vector<BatchStep>& steps,
                                             const std::function<void(size_t)>& on_step,
                                             size_t* committed, SqlFailure* failure);

  // Runs `statements` outside a transaction block, starting at index
  // `first`, recording progress in the (dirty) `migrations` row after each.
  virtual absl::Status RunNonTransactional(const std::vector<SqlStatement>& statements,
                                           int first, const StatementLimits& limits,
                                           const StepRecord& record,
                                           const StatementObserver& observer,
                                           SqlFailure* failure) = 0;

  // Inserts (or resets) the `migrations` row as dirty before a no-transaction migration.
  virtual absl::Status MarkDirty(const StepRecord& record) = 0;
  // Marks a dirty row applied (up) or deletes it (down), with its duration.
  virtual absl::Status FinishDirty(const StepRecord& record, absl::Duration duration) = 0;

  // Records (or clears, with nullopt) the set's failure.
  virtual absl::Status SetFailure(const std::optional<SqlFailure>& failure) = 0;
  // Appends an event and notifies listeners.
  virtual absl::Status RecordEvent(const EventRecord& event) = 0;

  // Replaces the recorded schema (fingerprint and description).
  virtual absl::Status RecordSchema(const SchemaRecord& record) = 0;

  // Sets (or clears) the hold that keeps automatic runs below a version.
  virtual absl::Status SetHold(std::optional<int64_t> hold_above) = 0;
  // Inserts or updates the row of `record` as applied (with its checksum)
  // and appends `event`, in one transaction.
  virtual absl::Status MarkApplied(const StepRecord& record, const EventRecord& event) = 0;
  // Inserts the rows of an adoption (`migrations` must be empty) and appends
  // `event`, in one transaction: all of them or none.
  virtual absl::Status RecordAdoption(const std::vector<AdoptedRow>& rows,
                                      const EventRecord& event) = 0;
  // Deletes the row of `version` and appends `event`, in one transaction.
  virtual absl::Status DeleteRow(int64_t version, const EventRecord& event) = 0;
  // The state of index `index` as this session's search_path resolves
  // `schema` ("" = search_path). With a `table`, only an index of that name
  // on that table counts (an index lives in its table's schema); with "" any
  // index of that name. For a resume to tell a cut CREATE/DROP INDEX
  // CONCURRENTLY that had completed from one that had not.
  virtual absl::StatusOr<IndexLookup> LookUpIndex(const std::string& schema,
                                                  const std::string& table,
                                                  const std::string& index) = 0;
  // DROP INDEX CONCURRENTLY IF EXISTS of `found` (as LookUpIndex found it).
  virtual absl::Status DropIndexConcurrently(const IndexLookup& found) = 0;
  // Runs `steps` in ONE transaction and rolls it back; stops at the first
  // failure. Nothing is recorded.
  virtual absl::Status Rehearse(const std::vector<RehearsalStep>& steps,
                                std::vector<RehearsalResult>* results) = 0;
};

struct LockWaitOptions {
  // Give up after this long (ABORTED is not used; DEADLINE_EXCEEDED).
  absl::Duration max_wait = absl::InfiniteDuration();
  // Called now and then while another session holds the lock.
  std::function<void(absl::Duration waited)> on_wait;
  // Set to stop waiting (returns CANCELLED).
  const std::atomic<bool>* cancelled = nullptr;
};

// How every store waits for the run lock: calls `try_lock` (true once the
// lock is taken; an error ends the wait with it) with a jittered exponential
// backoff from 20 ms to 500 ms on `clock`, reporting to options.on_wait now
// and then, until options.max_wait (DEADLINE_EXCEEDED) or options.cancelled
// (CANCELLED).
absl::Status WaitForRunLock(const LockWaitOptions& options, Clock* clock,
                            const std::function<absl::StatusOr<bool>()>& try_lock);

// Reads bookkeeping and opens run sessions. Thread-safe.
class Store {
 public:
  virtual ~Store() = default;

  // Reads the state. UNAVAILABLE if the database cannot be reached.
  virtual absl::StatusOr<DatabaseState> ReadState() = 0;
  // Newest first; `version` 0 means every version.
  virtual absl::StatusOr<std::vector<EventRecord>> ReadHistory(int limit, int64_t version) = 0;
  // Oldest first: the events with id > `after_id`, at most `limit`.
  virtual absl::StatusOr<std::vector<EventRecord>> ReadEventsAfter(int64_t after_id,
                                                                   int limit) = 0;

  // The schema recorded after the last run that changed it; nullopt when
  // none was recorded (or the bookkeeping does not exist yet).
  virtual absl::StatusOr<std::optional<SchemaRecord>> ReadSchemaRecord() = 0;

  // Creates the bookkeeping schema if missing, under the run lock.
  // Every store does it the same way: a run session's EnsureSchema.
  absl::Status EnsureBookkeeping();

  // The fleet. Each call is one transaction and notifies listeners.
  // Inserts or updates instances with a lease of `ttl`; records an
  // instance_join event for each one that was not live. An instance whose
  // row has a live lease under another non-empty attach_token (another
  // agent process holds the id), while its own token is non-empty, is left
  // alone and returned: the refused ones, as given. An expired lease, an
  // equal token or an empty token on either side is taken over.
  virtual absl::StatusOr<std::vector<InstanceRecord>> UpsertInstances(
      const std::vector<InstanceRecord>& instances, absl::Duration ttl) = 0;
  // Extends the leases of `ids` (no notification).
  virtual absl::Status RefreshLeases(const std::vector<std::string>& ids, absl::Duration ttl) = 0;
  // Removes instances that exited cleanly; records instance_leave events.
  virtual absl::Status RemoveInstances(const std::vector<std::string>& ids,
                                       const std::string& actor) = 0;
  // Opens a dedicated connection and polls pg_try_advisory_lock with backoff.
  virtual absl::StatusOr<std::unique_ptr<RunSession>> BeginRun(const LockWaitOptions& options) = 0;
};

// Wakes a coordinator when any replica changes the bookkeeping
// (LISTEN/NOTIFY). Not thread-safe: owned by one watcher thread.
class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;
  // Connects and subscribes. UNAVAILABLE on failure.
  virtual absl::Status Connect() = 0;
  virtual bool connected() const = 0;
  // Waits up to `timeout`; returns how many notifications arrived.
  // UNAVAILABLE (and disconnected) if the connection broke.
  virtual absl::StatusOr<int> Wait(absl::Duration timeout) = 0;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_ENGINE_STORE_H_
