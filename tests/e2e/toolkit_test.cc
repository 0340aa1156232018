// The operator toolkit end to end: dry-run, rehearse, rollback and its
// hold, validate, repair (resume of a cut CONCURRENTLY), baseline.
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

class ToolkitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    db_ = std::make_unique<TestDatabase>();
    testing::WriteTrivialMigrations(dir_, 1, 3);
  }
  int Ctl(const std::string& address, std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), BinaryPath("schemagatectl"));
    args.push_back("--coordinator");
    args.push_back(address);
    return RunBinary(args, out);
  }
  std::string Applied() {
    if (db_->Query("SELECT to_regclass('schemagate.migrations')").empty()) return "";
    return db_->Query("SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') "
                      "FROM schemagate.migrations");
  }
  std::unique_ptr<TestDatabase> db_;
  TempDir dir_;
};

TEST_F(ToolkitTest, DryRunAndRehearsalChangeNothing) {
  CoordinatorProcess c(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  EXPECT_EQ(Ctl(c.address(), {"apply", "--dry-run"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("3 migration(s) would apply; nothing was executed"));
  EXPECT_EQ(Ctl(c.address(), {"apply", "--rehearse"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("rehearsed: it would apply: 3_table_3"));
  EXPECT_THAT(out, HasSubstr("all would apply"));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_tables WHERE tablename IN ('t1','t2','t3')"), "0");
  EXPECT_EQ(Applied(), "");
  // A rehearsal that fails names the migration and line, and still changes nothing.
  dir_.Write("0004_bad.up.sql", "CREATE TABLE t4 (id int);\nALTER TABLE nope ADD COLUMN x int;\n");
  CoordinatorProcess c2(db_->url(), dir_.path(), {"--apply", "manual"});
  EXPECT_EQ(Ctl(c2.address(), {"apply", "--rehearse"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("0004_bad.up.sql:2"));
  EXPECT_THAT(out, HasSubstr("42P01"));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_tables WHERE tablename LIKE 't_'"), "0");
}

TEST_F(ToolkitTest, RollbackRunsDownsHoldsAutomaticRunsAndRefusesMissingDowns) {
  dir_.Write("0004_nodown.up.sql", "CREATE TABLE t4 (id int);\n");
  CoordinatorProcess c(db_->url(), dir_.path());
  std::string out;
  for (int i = 0; i < 100 && Applied() != "1,2,3,4"; ++i) absl::SleepFor(absl::Milliseconds(50));
  ASSERT_EQ(Applied(), "1,2,3,4");
  EXPECT_EQ(Ctl(c.address(), {"rollback", "--target", "1"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("4_nodown has no down migration"));
  EXPECT_EQ(Applied(), "1,2,3,4");
  dir_.Remove("0004_nodown.up.sql");
  dir_.Write("0004_nodown.down.sql", "DROP TABLE t4;\n");
  dir_.Write("0004_nodown.up.sql", "CREATE TABLE t4 (id int);\n");
  CoordinatorProcess c2(db_->url(), dir_.path());
  EXPECT_EQ(Ctl(c2.address(), {"rollback", "--target", "1", "--actor", "bob"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("rolled back: 2_table_2"));
  EXPECT_EQ(Applied(), "1");
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.t2')"), "");
  // Automatic runs (both coordinators are auto) do not re-apply above the hold.
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(Applied(), "1");
  EXPECT_EQ(Ctl(c2.address(), {"validate"}, &out), 5);
  EXPECT_THAT(out, HasSubstr("held at version 1"));
  // The rollback recorded the schema it left: no drift.
  EXPECT_THAT(out, ::testing::Not(HasSubstr("live schema differs")));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("note:")));
  EXPECT_EQ(Ctl(c2.address(), {"apply"}, &out), 0) << out;
  EXPECT_EQ(Applied(), "1,2,3,4");
  EXPECT_EQ(Ctl(c2.address(), {"validate"}, &out), 0) << out;
  EXPECT_EQ(Ctl(c2.address(), {"history", "--limit", "100"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("rollback"));
  EXPECT_THAT(out, HasSubstr("bob"));
}

TEST_F(ToolkitTest, ValidateNamesAnEditedFileAndStatusShowsTheConflict) {
  {
    CoordinatorProcess c(db_->url(), dir_.path());
    for (int i = 0; i < 100 && Applied() != "1,2,3"; ++i) absl::SleepFor(absl::Milliseconds(50));
  }
  dir_.Write("0002_table_2.up.sql", "CREATE TABLE t2 (id bigint, edited int);\n");
  CoordinatorProcess c(db_->url(), dir_.path());
  std::string out;
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("version 2"));
  EXPECT_THAT(out, HasSubstr("edited after it was applied"));
  EXPECT_EQ(Ctl(c.address(), {"status"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("state:        CONFLICT"));
  // The operator accepts the edit: the checksum is realigned, audited.
  EXPECT_EQ(Ctl(c.address(), {"repair", "--mark-applied", "2"}, &out), 0) << out;
  for (int i = 0; i < 50; ++i) {
    if (Ctl(c.address(), {"validate"}, &out) == 0) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 0) << out;
}

TEST_F(ToolkitTest, ValidateFindsSchemaChangedOutsideSchemagateAndRunsRecordIt) {
  CoordinatorProcess c(db_->url(), dir_.path());
  for (int i = 0; i < 100 && Applied() != "1,2,3"; ++i) absl::SleepFor(absl::Milliseconds(50));
  ASSERT_EQ(Applied(), "1,2,3");
  std::string out;
  // The run recorded the schema it left: validate compares and agrees. (The
  // record follows the rows: until it is written validate says so and
  // exits 0 too.)
  const std::string kMatches = "the live schema matches the one recorded after run r-";
  for (int i = 0; i < 50 && (Ctl(c.address(), {"validate"}, &out) != 0 ||
                             out.find(kMatches) == std::string::npos);
       ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr(kMatches));

  // Someone changes the schema by hand: validate names the objects.
  db_->Exec("ALTER TABLE t2 ADD COLUMN sneaky text");
  db_->Exec("CREATE INDEX t3_id_idx ON t3 (id)");
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("the live schema differs from the one recorded after run r-"));
  EXPECT_THAT(out, HasSubstr("+table public.t2 column sneaky: text"));
  EXPECT_THAT(out, HasSubstr("+table public.t3 index t3_id_idx: CREATE INDEX t3_id_idx"));
  EXPECT_EQ(Ctl(c.address(), {"validate", "--output", "json"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("\"drifted\": true"));
  EXPECT_THAT(out, HasSubstr("\"checked\": true"));

  // The next run notes the drift in history, then records the schema it leaves.
  dir_.Write("0004_table_4.up.sql", "CREATE TABLE t4 (id int);\n");
  CoordinatorProcess c2(db_->url(), dir_.path(), {"--apply", "manual"});
  EXPECT_EQ(Ctl(c2.address(), {"apply"}, &out), 0) << out;
  EXPECT_EQ(Ctl(c2.address(), {"history", "--limit", "20"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("schema_drift"));
  EXPECT_THAT(out, HasSubstr("first: table public.t2 column sneaky"));
  EXPECT_EQ(Ctl(c2.address(), {"validate"}, &out), 0) << out;
  // Dropping the hand-made index now is drift again.
  db_->Exec("DROP INDEX t3_id_idx");
  EXPECT_EQ(Ctl(c2.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("-table public.t3 index t3_id_idx"));
}

TEST_F(ToolkitTest, ResumeFinishesACutConcurrentIndexAfterDroppingTheInvalidOne) {
  db_->Exec("CREATE TABLE accounts (id int, email text)");
  db_->Exec("INSERT INTO accounts VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')");
  dir_.Write("0004_unique_email.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY accounts_id ON accounts (id);\n"
             "CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON accounts (email);\n");
  CoordinatorProcess c(db_->url(), dir_.path(), {"--allow-non-empty"});  // the set starts on `accounts`
  std::string out;
  // The row is dirty from before statement 1; wait for statement 2's failure.
  for (int i = 0; i < 200; ++i) {
    if (!db_->Query("SELECT to_regclass('schemagate.events')").empty() &&
        db_->Query("SELECT count(*) FROM schemagate.events WHERE kind = 'failure' AND "
                   "version = 4") == "1") {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(db_->Query("SELECT statements_done FROM schemagate.migrations WHERE version = 4"), "1");
  // The cut CONCURRENTLY left an invalid index behind.
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname = 'accounts_email_key' AND NOT i.indisvalid"),
            "1");
  // The failure is recorded before the run ends (it still records the
  // schema and unlocks): RUNNING until then, never FAILED; then DIRTY.
  int status = 1;
  for (int i = 0; i < 200 && (status = Ctl(c.address(), {"status"}, &out)) == 1; ++i) {
    EXPECT_THAT(out, HasSubstr("RUNNING"));
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(status, 5) << out;
  EXPECT_THAT(out, HasSubstr("DIRTY"));
  // The operator fixes the data, then resumes at statement 2.
  db_->Exec("DELETE FROM accounts WHERE id = 2");
  EXPECT_EQ(Ctl(c.address(), {"repair", "--resume", "4"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("resumed 4_unique_email at statement 2 of 2"));
  EXPECT_THAT(out, HasSubstr("dropped invalid index public.accounts_email_key"));
  EXPECT_EQ(db_->Query("SELECT state FROM schemagate.migrations WHERE version = 4"), "applied");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname = 'accounts_email_key' AND i.indisvalid"),
            "1");
}

TEST_F(ToolkitTest, KillDuringANoTransactionMigrationLeavesItDirtyUntilRepairResumeFinishesIt) {
  // Statement 2 builds an index through a function that is slow while the
  // table `slow` has a row: long enough to kill the coordinator inside it.
  db_->Exec("CREATE TABLE slow (on_ boolean)");
  db_->Exec("INSERT INTO slow VALUES (true)");
  db_->Exec("CREATE TABLE items (id int)");
  db_->Exec("INSERT INTO items SELECT generate_series(1, 400)");
  db_->Exec("CREATE FUNCTION slow_key(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ "
            "BEGIN IF EXISTS (SELECT 1 FROM public.slow) THEN PERFORM pg_sleep(0.1); END IF; "
            "RETURN i; END $$");
  std::string out;
  {
    // A run records the schema it leaves: what validate compares with.
    // The set starts on `slow` and `items`, made above.
    CoordinatorProcess before(db_->url(), dir_.path(), {"--allow-non-empty"});
    for (int i = 0; i < 100; ++i) {
      if (Applied() == "1,2,3" && Ctl(before.address(), {"validate"}, &out) == 0 &&
          absl::StrContains(out, "the live schema matches")) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_EQ(Applied(), "1,2,3");
    ASSERT_THAT(out, HasSubstr("the live schema matches"));
  }
  dir_.Write("0004_index_items.up.sql",
             "-- schemagate:no-transaction\n"
             "CREATE INDEX CONCURRENTLY items_id ON items (id);\n"
             "CREATE INDEX CONCURRENTLY items_slow_key ON items (slow_key(id));\n"
             "CREATE INDEX CONCURRENTLY items_later ON items (id);\n");
  dir_.Write("0005_after.up.sql", "CREATE TABLE after_index (id int);\n");
  {
    CoordinatorProcess c(db_->url(), dir_.path());
    bool in_statement_2 = false;
    for (int i = 0; i < 300 && !in_statement_2; ++i) {
      in_statement_2 =
          !db_->Query("SELECT to_regclass('schemagate.migrations')").empty() &&
          db_->Query("SELECT statements_done FROM schemagate.migrations WHERE version = 4") ==
              "1" &&
          db_->Query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                     "'CREATE INDEX CONCURRENTLY items_slow_key%'") == "1";
      if (!in_statement_2) absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_TRUE(in_statement_2);
    c.process().Signal(SIGKILL);
    c.process().Wait(absl::Seconds(10));
  }
  // PostgreSQL cancels the orphaned statement (client_connection_check_interval)
  // and frees the lock; the row stays dirty.
  for (int i = 0; i < 100; ++i) {
    if (db_->Query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                   "'CREATE INDEX CONCURRENTLY items_slow_key%' AND state = 'active'") == "0") {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                       "'CREATE INDEX CONCURRENTLY items_slow_key%' AND state = 'active'"),
            "0");
  EXPECT_EQ(db_->Query("SELECT state || ' ' || statements_done FROM schemagate.migrations "
                       "WHERE version = 4"),
            "dirty 1");
  CoordinatorProcess c(db_->url(), dir_.path());
  // Every later run refuses, naming it: the automatic one and the operator's.
  EXPECT_EQ(Ctl(c.address(), {"apply"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(out, HasSubstr("migration 4 (index_items) is dirty"));
  EXPECT_EQ(Ctl(c.address(), {"status"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("DIRTY"));
  EXPECT_EQ(db_->Query("SELECT to_regclass('public.after_index')"), "");
  // How far it got, in text and JSON.
  EXPECT_EQ(Ctl(c.address(), {"migrations"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("DIRTY 1/3 statements done"));
  EXPECT_EQ(Ctl(c.address(), {"migrations", "--output", "json"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"statements_done\": 1"));
  // The indexes the cut migration made are its own, not drift.
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("version 4 (index_items) is dirty"));
  EXPECT_THAT(out, HasSubstr("not drift: dirty migration 4 (index_items)"));
  EXPECT_THAT(out, HasSubstr("'schemagatectl repair --resume 4'"));
  EXPECT_THAT(out, HasSubstr("  +table public.items index items_id: "));
  EXPECT_THAT(out, HasSubstr("  +table public.items index items_slow_key: "));
  EXPECT_THAT(out, Not(HasSubstr("outside schemagate")));
  EXPECT_EQ(Ctl(c.address(), {"validate", "--output", "json"}, &out), 5) << out;
  EXPECT_THAT(out, HasSubstr("\"drifted\": false"));
  // The operator resumes: the invalid index is dropped and statement 2 runs again.
  db_->Exec("DELETE FROM slow");
  EXPECT_EQ(Ctl(c.address(), {"repair", "--resume", "4"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("resumed 4_index_items at statement 2 of 3"));
  EXPECT_THAT(out, HasSubstr("dropped invalid index public.items_slow_key"));
  // The rollout continues by itself.
  for (int i = 0; i < 100 && Applied() != "1,2,3,4,5"; ++i) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(Applied(), "1,2,3,4,5");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname IN ('items_id', 'items_slow_key', 'items_later') AND "
                       "i.indisvalid"),
            "3");
  EXPECT_EQ(Ctl(c.address(), {"validate"}, &out), 0) << out;
}

TEST_F(ToolkitTest, BaselineAdoptsAnExistingDatabaseAndNamesAnAlembicRevision) {
  db_->Exec("CREATE TABLE t1 (id bigint PRIMARY KEY, note text)");
  db_->Exec("CREATE TABLE t2 (id bigint PRIMARY KEY, note text)");
  db_->Exec("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)");
  db_->Exec("INSERT INTO alembic_version VALUES ('ae1027a6acf')");
  CoordinatorProcess c(db_->url(), dir_.path(), {"--apply", "manual"});
  std::string out;
  EXPECT_EQ(Ctl(c.address(), {"baseline", "--version", "2"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("marked 2 migration(s) up to 2 applied"));
  EXPECT_THAT(out, HasSubstr("alembic_version table at revision ae1027a6acf"));
  EXPECT_EQ(Ctl(c.address(), {"apply"}, &out), 0) << out;
  EXPECT_EQ(Applied(), "1,2,3");
  EXPECT_EQ(Ctl(c.address(), {"baseline", "--version", "2"}, &out), 5);
  EXPECT_THAT(out, HasSubstr("never run on"));
}

}  // namespace
}  // namespace schemagate

namespace schemagate {
namespace {

TEST_F(ToolkitTest, VerifyPassesOnTheProjectsSetAndCatchesADownThatDoesNotUndoItsUp) {
  std::string out;
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "verify", "--migrations-dir",
                       testing::SourcePath("migrations"), "--database-url", db_->url()},
                      &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("0 failed"));
  TestDatabase scratch;
  dir_.Write("0004_note_index.up.sql",
             "ALTER TABLE t1 ADD COLUMN x int;\nCREATE INDEX t1_note ON t1 (note);\n");
  dir_.Write("0004_note_index.down.sql", "ALTER TABLE t1 DROP COLUMN x;\n");
  EXPECT_EQ(RunBinary({BinaryPath("schemagatectl"), "verify", "--migrations-dir", dir_.path(),
                       "--database-url", scratch.url()},
                      &out),
            1)
      << out;
  EXPECT_THAT(out, HasSubstr("4_note_index"));
  EXPECT_THAT(out, HasSubstr("differs"));
  EXPECT_THAT(out, HasSubstr("t1_note"));
}

}  // namespace
}  // namespace schemagate

namespace schemagate {
namespace {

TEST_F(ToolkitTest, ABackupIsWrittenBeforeAnyChangeAndAFailedBackupStopsTheRun) {
  TempDir backups;
  {
    CoordinatorProcess failing(db_->url(), dir_.path(),
                               {"--apply", "manual", "--backup-command", "echo disk full >&2; exit 3"});
    std::string out;
    EXPECT_EQ(Ctl(failing.address(), {"apply"}, &out), 5) << out;
    EXPECT_THAT(out, HasSubstr("backup failed"));
    EXPECT_THAT(out, HasSubstr("disk full"));
    EXPECT_EQ(Applied(), "");
  }
  CoordinatorProcess c(db_->url(), dir_.path(), {"--apply", "manual", "--backup-dir", backups.path()});
  std::string out;
  EXPECT_EQ(Ctl(c.address(), {"apply"}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("backup written: " + backups.path()));
  EXPECT_EQ(Applied(), "1,2,3");
  std::string listing;
  RunBinary({"/bin/sh", "-c", "ls -s " + backups.path() + "/*.dump"}, &listing);
  EXPECT_THAT(listing, HasSubstr(".dump"));
  // pg_restore reads it: a real custom-format dump, taken before anything changed.
  std::string contents;
  RunBinary({"/bin/sh", "-c", "pg_restore --list " + backups.path() + "/*.dump"}, &contents);
  EXPECT_THAT(contents, HasSubstr("Format: CUSTOM"));
  EXPECT_THAT(contents, ::testing::Not(HasSubstr("TABLE public t1")));
  EXPECT_EQ(Ctl(c.address(), {"history"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("backup"));
  EXPECT_THAT(out, HasSubstr("bytes"));
}

}  // namespace
}  // namespace schemagate
