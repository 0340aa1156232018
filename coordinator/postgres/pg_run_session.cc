// The run session of PgStore: one dedicated connection holding the run's
// advisory lock, through which every bookkeeping write of a run goes.
#include "coordinator/postgres/pg_run_session.h"

#include <chrono>
#include <cstring>
#include <pqxx/pqxx>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/base/status_macros.h"
#include "coordinator/postgres/foreign_tables.h"
#include "coordinator/postgres/pg_support.h"
#include "coordinator/postgres/step_sql.h"

namespace schemagate {
namespace {

class PgRunSession : public RunSession {
 public:
  PgRunSession(std::unique_ptr<pqxx::connection> conn, PgStoreOptions options, int64_t lock_key)
      : conn_(std::move(conn)),
        options_(std::move(options)),
        lock_key_(lock_key),
        names_(*conn_, options_.schema) {}

  ~PgRunSession() override {
    try {
      if (conn_ && conn_->is_open()) {
        pqxx::nontransaction tx(*conn_);
        tx.exec_params("SELECT pg_advisory_unlock($1)", lock_key_);
      }
    } catch (const std::exception&) {
      // Closing the connection releases the lock all the same.
    }
  }

  absl::Status EnsureSchema() override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      CreateBookkeeping(tx, names_);
      step_note_ = CreateStepNote(tx, names_);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<DatabaseState> ReadState() override {
    absl::StatusOr<DatabaseState> out;
    absl::Status status = Guard([&] {
      out = ReadStateOn(*conn_, options_.schema, lock_key_);
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    return out;
  }

  absl::StatusOr<int64_t> BumpEpoch() override {
    int64_t epoch = 0;
    RETURN_IF_ERROR(Guard([&] {
      pqxx::work tx(*conn_);
      epoch = tx.exec1(absl::StrCat("UPDATE ", names_.meta,
                                    " SET run_epoch = run_epoch + 1 RETURNING run_epoch"))[0]
                  .as<int64_t>();
      tx.commit();
      return absl::OkStatus();
    }));
    epoch_ = epoch;
    return epoch;
  }

  // Two round trips for a one-statement migration (psql's BEGIN; file;
  // COMMIT takes three): the first opens the transaction, sets its limits,
  // checks the fence and runs the first statement; each further statement is
  // one more; the last carries the bookkeeping row, the event, the NOTIFY
  // and the COMMIT. A failure is still that of one statement.
  absl::Status RunTransactional(const std::vector<SqlStatement>& statements,
                                const StatementLimits& limits, const StepRecord& record,
                                const StatementObserver& observer,
                                SqlFailure* failure) override {
    const absl::Time start = absl::Now();
    int current = -1;
    bool committing = false;
    RETURN_IF_ERROR(CheckConnection());
    try {
      PrepareStepStatements();
      pqxx::nontransaction tx(*conn_);
      const std::string opening = StepOpeningSql(limits, epoch_);
      if (statements.empty()) tx.exec(opening);
      for (size_t i = 0; i < statements.size(); ++i) {
        current = static_cast<int>(i);
        if (observer) observer(current);
        tx.exec(i == 0 ? absl::StrCat(opening, statements[i].text) : statements[i].text);
      }
      current = -1;
      committing = true;
      const int64_t duration_ms = absl::ToInt64Milliseconds(absl::Now() - start);
      tx.exec(StepClosingSql(*conn_, record, absl::StrCat(duration_ms), statements.size(),
                             kEventsChannel, options_.schema));
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      if (!committing) return ConnectionLost(e);
      return absl::AbortedError(absl::StrCat(
          "the commit of ", record.repeatable ? record.name : std::to_string(record.version),
          " is in doubt (", CleanMessage(e.what()),
          "); the next run re-reads the state"));
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) return ConnectionLost(e);
      RollBack();
      if (absl::Status fence = FenceFailure(e); !fence.ok()) return fence;
      FillFailure(e, statements, current, record, failure);
      return absl::FailedPreconditionError(failure->message);
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return ConnectionLost(e);
      RollBack();
      return Unavailable(e);
    }
  }

  // Every step in one simple query: PostgreSQL runs them in order, each in
  // its own transaction, and abandons the rest of the query at the first
  // error. Each step raises a notice as it begins (progress while the query
  // runs); which steps committed before an error is read back from the rows.
  absl::Status RunTransactionalBatch(const std::vector<BatchStep>& steps,
                                     const std::function<void(size_t)>& on_step,
                                     size_t* committed, SqlFailure* failure) override {
    *committed = 0;
    if (!step_note_) return RunSession::RunTransactionalBatch(steps, on_step, committed, failure);
    RETURN_IF_ERROR(CheckConnection());
    auto in_doubt = [&](const std::exception& e) {
      return absl::AbortedError(absl::StrCat(
          "the commits of ", steps.front().record.version, " to ", steps.back().record.version,
          " are in doubt (", CleanMessage(e.what()), "); the next run re-reads the state"));
    };
    try {
      PrepareStepStatements();
      StepNoteHandler notes(*conn_, on_step);
      pqxx::nontransaction tx(*conn_);
      tx.exec(BatchSql(*conn_, names_, steps, epoch_, kEventsChannel, options_.schema));
      *committed = steps.size();
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      return in_doubt(e);
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) return in_doubt(e);
      RollBack();
      // The steps before the error committed, also when a fence stopped it.
      const absl::Status read = Guard([&] {
        pqxx::nontransaction tx(*conn_);
        *committed = CountBatchCommits(tx, names_, steps);
        return absl::OkStatus();
      });
      if (absl::Status fence = FenceFailure(e); !fence.ok()) return fence;
      RETURN_IF_ERROR(read);
      if (*committed >= steps.size()) return Unavailable(e);
      const BatchStep& failed = steps[*committed];
      FillFailure(e, *failed.statements, failed.statements->size() == 1 ? 0 : -1, failed.record,
                  failure);
      return absl::FailedPreconditionError(failure->message);
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return in_doubt(e);
      RollBack();
      return Unavailable(e);
    }
  }

  // Ends the transaction a failed step left open (aborted) on the session.
  void RollBack() {
    try {
      pqxx::nontransaction tx(*conn_);
      tx.exec("ROLLBACK");
    } catch (const std::exception&) {
      // A broken connection has no transaction left to end.
    }
  }

  absl::Status RunNonTransactional(const std::vector<SqlStatement>& statements, int first,
                                   const StatementLimits& limits, const StepRecord& record,
                                   const StatementObserver& observer,
                                   SqlFailure* failure) override {
    int current = -1;
    RETURN_IF_ERROR(CheckConnection());
    try {
      {
        pqxx::nontransaction tx(*conn_);
        const pqxx::row fence = tx.exec1(absl::StrCat(
            "SET lock_timeout = '", Interval(limits.lock_timeout),
            "'; SET statement_timeout = '", Interval(limits.statement_timeout),
            "'; SELECT run_epoch, ", LockHeldSql(), " FROM ", names_.meta));
        RETURN_IF_ERROR(CheckFence(fence[0].as<int64_t>(), fence[1].as<bool>()));
      }
      for (size_t i = static_cast<size_t>(first); i < statements.size(); ++i) {
        current = static_cast<int>(i);
        if (observer) observer(current);
        pqxx::nontransaction tx(*conn_);
        if (i > static_cast<size_t>(first)) {
          RETURN_IF_ERROR(CheckFence(
              epoch_, tx.exec1(absl::StrCat("SELECT ", LockHeldSql()))[0].as<bool>()));
        }
        tx.exec(statements[i].text);
        tx.exec_params(absl::StrCat("UPDATE ", names_.migrations,
                                    " SET statements_done = $2 WHERE version = $1"),
                       record.version, current + 1);
      }
      current = -1;
      pqxx::nontransaction tx(*conn_);
      tx.exec("RESET lock_timeout; RESET statement_timeout");
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      return ConnectionLost(e);
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) return ConnectionLost(e);
      FillFailure(e, statements, current, record, failure);
      ResetTimeouts();
      return absl::FailedPreconditionError(failure->message);
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return ConnectionLost(e);
      return Unavailable(e);
    }
  }

  absl::Status MarkDirty(const StepRecord& record) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      if (record.up) {
        tx.exec_params(absl::StrCat(
                           "INSERT INTO ", names_.migrations,
                           " (version, name, checksum, state, applied_by, statements_done, run_id)"
                           " VALUES ($1, $2, $3, 'dirty', $4, 0, $5) ON CONFLICT (version) DO "
                           "UPDATE SET state = 'dirty', run_id = $5, applied_by = $4,"
                           " direction = 'up'"),
                       record.version, record.name, record.checksum, record.actor, record.run_id);
      } else {
        tx.exec_params(absl::StrCat("UPDATE ", names_.migrations,
                                    " SET state = 'dirty', statements_done = 0, run_id = $2,"
                                    " direction = 'down' WHERE version = $1"),
                       record.version, record.run_id);
      }
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status FinishDirty(const StepRecord& record, absl::Duration duration) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      const int64_t ms = absl::ToInt64Milliseconds(duration);
      if (record.up) {
        tx.exec_params(absl::StrCat("UPDATE ", names_.migrations,
                                    " SET state = 'applied', applied_at = now(), duration_ms = $2"
                                    " WHERE version = $1"),
                       record.version, ms);
      } else {
        tx.exec_params(absl::StrCat("DELETE FROM ", names_.migrations, " WHERE version = $1"),
                       record.version);
      }
      tx.exec_params(absl::StrCat("INSERT INTO ", names_.events,
                                  " (kind, version, name, run_id, actor, duration_ms)"
                                  " VALUES ($1, $2, $3, $4, $5, $6)"),
                     std::string(record.up ? "apply" : "rollback"), record.version, record.name,
                     record.run_id, record.actor, ms);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status SetFailure(const std::optional<SqlFailure>& failure) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      if (failure) {
        tx.exec_params(
            absl::StrCat("UPDATE ", names_.meta,
                         " SET failed_version = $1, failed_name = $2, failed_checksum = $3,"
                         " failed_sqlstate = $4, failed_message = $5, failed_statement = $6,"
                         " failed_line = $7, failed_at = now(), failed_by = $8"),
            failure->version, failure->name, failure->checksum, failure->sqlstate,
            failure->message, failure->statement_index, failure->line, failure->coordinator_id);
      } else {
        tx.exec(absl::StrCat("UPDATE ", names_.meta,
                             " SET failed_version = NULL, failed_name = NULL,"
                             " failed_checksum = NULL, failed_sqlstate = NULL,"
                             " failed_message = NULL, failed_statement = NULL,"
                             " failed_line = NULL, failed_at = NULL, failed_by = NULL"));
      }
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status RecordSchema(const SchemaRecord& record) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(absl::StrCat("INSERT INTO ", names_.schema_record,
                                  " (singleton, fingerprint, description, recorded_at, run_id)"
                                  " VALUES (true, $1, $2, now(), $3) ON CONFLICT (singleton) DO"
                                  " UPDATE SET fingerprint = $1, description = $2,"
                                  " recorded_at = now(), run_id = $3"),
                     OptionalText(record.fingerprint), OptionalText(record.description),
                     OptionalText(record.run_id));
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status SetHold(std::optional<int64_t> hold_above) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(absl::StrCat("UPDATE ", names_.meta, " SET hold_above = $1"), hold_above);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status MarkApplied(const StepRecord& record, const EventRecord& event) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(absl::StrCat(
                         "INSERT INTO ", names_.migrations,
                         " (version, name, checksum, state, applied_by, run_id) VALUES"
                         " ($1, $2, $3, 'applied', $4, $5) ON CONFLICT (version) DO UPDATE SET"
                         " name = $2, checksum = $3, state = 'applied', applied_by = $4,"
                         " run_id = $5"),
                     record.version, record.name, record.checksum, record.actor, record.run_id);
      InsertEvent(tx, event);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status RecordAdoption(const std::vector<AdoptedRow>& rows,
                              const EventRecord& event) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      WriteAdoptionRows(tx, names_.migrations, rows);
      InsertEvent(tx, event);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::Status DeleteRow(int64_t version, const EventRecord& event) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(absl::StrCat("DELETE FROM ", names_.migrations, " WHERE version = $1"),
                     version);
      InsertEvent(tx, event);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

  absl::StatusOr<IndexLookup> LookUpIndex(const std::string& schema, const std::string& table,
                                          const std::string& index) override {
    IndexLookup found;
    RETURN_IF_ERROR(Guard([&] {
      pqxx::nontransaction tx(*conn_);
      // to_regclass resolves the names as the statement would, with this
      // session's search_path; quote_ident keeps their case.
      pqxx::result r = tx.exec_params(
          "WITH q AS (SELECT CASE WHEN $1 = '' THEN '' ELSE quote_ident($1) || '.' END AS s)"
          " SELECT i.indisvalid AND i.indisready, quote_ident(n.nspname) || '.' ||"
          " quote_ident(c.relname) FROM q, pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
          " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE CASE WHEN $2 = '' THEN"
          " i.indexrelid = to_regclass(q.s || quote_ident($3)) ELSE"
          " i.indrelid = to_regclass(q.s || quote_ident($2)) AND c.relname = $3 END",
          schema, table, index);
      if (r.empty()) return absl::OkStatus();
      found.state =
          r[0][0].as<bool>() ? IndexLookup::State::kValid : IndexLookup::State::kInvalid;
      found.qualified_name = r[0][1].as<std::string>();
      return absl::OkStatus();
    }));
    return found;
  }

  absl::Status DropIndexConcurrently(const IndexLookup& found) override {
    return Guard([&] {
      pqxx::nontransaction tx(*conn_);
      tx.exec(absl::StrCat("DROP INDEX CONCURRENTLY IF EXISTS ", found.qualified_name));
      return absl::OkStatus();
    });
  }


  absl::Status Rehearse(const std::vector<RehearsalStep>& steps,
                        std::vector<RehearsalResult>* results) override {
    RETURN_IF_ERROR(CheckConnection());
    try {
      pqxx::work tx(*conn_);
      for (const RehearsalStep& step : steps) {
        RehearsalResult result;
        result.version = step.version;
        const absl::Time start = absl::Now();
        int current = -1;
        try {
          pqxx::subtransaction sub(tx, "rehearse");
          sub.exec(absl::StrCat("SET LOCAL lock_timeout = '", Interval(step.limits.lock_timeout),
                                "'; SET LOCAL statement_timeout = '",
                                Interval(step.limits.statement_timeout), "'"));
          for (size_t i = 0; i < step.statements->size(); ++i) {
            current = static_cast<int>(i);
            sub.exec((*step.statements)[i].text);
          }
          sub.commit();  // Released into the outer transaction, rolled back below.
          result.ok = true;
        } catch (const pqxx::sql_error& e) {
          if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) throw;
          StepRecord record;
          record.version = step.version;
          record.name = step.name;
          FillFailure(e, *step.statements, current, record, &result.failure);
        }
        result.duration = absl::Now() - start;
        results->push_back(result);
        if (!result.ok) break;
      }
      tx.abort();
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      return ConnectionLost(e);
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return ConnectionLost(e);
      return Unavailable(e);
    }
  }

  absl::Status RecordEvent(const EventRecord& event) override {
    return Guard([&] {
      pqxx::work tx(*conn_);
      InsertEvent(tx, event);
      Notify(tx);
      tx.commit();
      return absl::OkStatus();
    });
  }

 private:
  // Runs `fn`, turning libpqxx exceptions into statuses.
  // libpqxx 6 reopens a closed connection on its next use: a new session
  // without the run lock. Once the connection was lost, every call fails.
  absl::Status CheckConnection() {
    if (conn_ != nullptr && conn_->is_open() && !lost_) return absl::OkStatus();
    lost_ = true;
    return absl::AbortedError(
        "the run connection was lost earlier in this run; PostgreSQL released the lock; "
        "retry the run");
  }

  template <typename Fn>
  absl::Status Guard(Fn fn) {
    RETURN_IF_ERROR(CheckConnection());
    try {
      return fn();
    } catch (const pqxx::broken_connection& e) {
      return ConnectionLost(e);
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionLoss(e.sqlstate()) || !conn_->is_open()) return ConnectionLost(e);
      return absl::UnavailableError(
          absl::StrCat("bookkeeping query failed: ", CleanMessage(e.what()), " (SQLSTATE ",
                       e.sqlstate(), ")"));
    } catch (const std::exception& e) {
      if (!conn_->is_open()) return ConnectionLost(e);
      return Unavailable(e);
    }
  }

  // The fence and the bookkeeping of every transactional step, PREPAREd
  // once per run (PrepareStepsSql).
  void PrepareStepStatements() {
    if (step_statements_prepared_) return;
    pqxx::nontransaction tx(*conn_);
    tx.exec(PrepareStepsSql(names_, LockHeldSql()));
    step_statements_prepared_ = true;
  }

  // The fence's failure as the run's: the lock lost or the epoch moved.
  absl::Status FenceFailure(const pqxx::sql_error& e) {
    const absl::string_view what = e.what();
    const size_t at = what.find(kFenceMarker);
    if (at == absl::string_view::npos) return absl::OkStatus();
    absl::string_view rest = what.substr(at + std::strlen(kFenceMarker));
    const bool held = absl::ConsumePrefix(&rest, "epoch ");
    absl::ConsumePrefix(&rest, "lock ");
    int64_t epoch = -1;
    (void)absl::SimpleAtoi(rest.substr(0, rest.find_first_not_of("0123456789")), &epoch);
    return CheckFence(epoch, held);
  }

  // Whether this very backend holds the run lock. Through a transaction
  // pooler (PgBouncer pool_mode=transaction) a transaction may land on a
  // backend that does not: the run must stop before any statement runs.
  std::string LockHeldSql() const {
    const uint64_t key = static_cast<uint64_t>(lock_key_);
    return absl::StrCat(
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND pid = pg_backend_pid() AND classid = ", key >> 32, "::oid AND objid = ",
        key & 0xFFFFFFFFu, "::oid AND objsubid = 1)");
  }

  absl::Status CheckFence(int64_t epoch, bool lock_held) {
    if (!lock_held) {
      return absl::AbortedError(
          "the run lock is not held by this database session: the connection goes through a "
          "transaction pooler (e.g. PgBouncer pool_mode=transaction) or the session was "
          "replaced; point --database-url at PostgreSQL directly (session locks need a "
          "dedicated session)");
    }
    if (epoch != epoch_) {
      return absl::AbortedError(absl::StrCat(
          "run epoch moved from ", epoch_, " to ", epoch,
          ": another coordinator took over the run (the lock was lost, e.g. on a failover)"));
    }
    return absl::OkStatus();
  }

  void InsertEvent(pqxx::transaction_base& tx, const EventRecord& event) {
    tx.exec_params(
        absl::StrCat("INSERT INTO ", names_.events,
                     " (kind, version, name, run_id, actor, duration_ms, sqlstate, message,"
                     " statement_index, line, checksum)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
        event.kind, OptionalVersion(event.version), OptionalText(event.name),
        OptionalText(event.run_id), event.actor, OptionalMillis(event.duration),
        OptionalText(event.sqlstate), OptionalText(RedactSecrets(event.message)),
        event.statement_index == 0 ? std::nullopt : std::optional<int>(event.statement_index),
        event.line == 0 ? std::nullopt : std::optional<int>(event.line),
        OptionalText(event.checksum));
  }

  void Notify(pqxx::transaction_base& tx) {
    tx.exec_params("SELECT pg_notify($1, $2)", std::string(kEventsChannel), options_.schema);
  }

  void ResetTimeouts() {
    try {
      pqxx::nontransaction tx(*conn_);
      tx.exec("RESET lock_timeout; RESET statement_timeout");
    } catch (const std::exception&) {
    }
  }

  void FillFailure(const pqxx::sql_error& e, const std::vector<SqlStatement>& statements,
                   int current, const StepRecord& record, SqlFailure* failure) {
    failure->version = record.version;
    failure->name = record.name;
    failure->checksum = record.checksum;
    failure->sqlstate = e.sqlstate();
    failure->lock_timeout = failure->sqlstate == kLockNotAvailable;
    failure->message = CleanMessage(e.what());
    failure->statement_index = current >= 0 ? current + 1 : 0;
    failure->line = current >= 0 ? statements[current].line : 0;
    failure->at = absl::Now();
    failure->coordinator_id = options_.coordinator_id;
  }

  std::unique_ptr<pqxx::connection> conn_;
  const PgStoreOptions options_;
  const int64_t lock_key_;
  const Names names_;
  int64_t epoch_ = -1;
  bool lost_ = false;
  bool step_statements_prepared_ = false;
  // Batches need the notice function (CreateStepNote): without PL/pgSQL,
  // steps run one at a time.
  bool step_note_ = false;
};

}  // namespace

std::unique_ptr<RunSession> MakePgRunSession(std::unique_ptr<pqxx::connection> conn,
                                             const PgStoreOptions& options, int64_t lock_key) {
  return std::make_unique<PgRunSession>(std::move(conn), options, lock_key);
}

}  // namespace schemagate
