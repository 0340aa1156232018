// Coming from Alembic, as a new user does it, with Debian's python3-alembic:
// a project made by `alembic init` with five revisions (a table, an enum, a
// foreign key with a partial index and a check, seed rows with quotes and
// semicolons, a plpgsql trigger function and a comment), migrated by
// `alembic upgrade head`; then `schemagatectl import-alembic` writes the SQL
// pairs, `adopt` maps alembic_version onto them (nothing re-runs, CURRENT),
// the imported set on an empty database gives Alembic's schema
// (pg_dump-identical), and its downs undo its ups (`verify`).
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/format_sets.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::schemagate::testing::AgentWait;
using ::schemagate::testing::BinaryPath;
using ::schemagate::testing::CoordinatorProcess;
using ::schemagate::testing::RunBinary;
using ::schemagate::testing::SchemaDump;
using ::schemagate::testing::TempDir;
using ::schemagate::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPython[] = "/usr/bin/python3";

struct Revision {
  const char* file;
  const char* source;
};

// Five revisions in Alembic's own style (op.*, sa.*, bulk_insert, execute).
const std::vector<Revision>& Revisions() {
  static const std::vector<Revision> revisions = {
      {"a1_accounts.py", R"PY("""create accounts

Revision ID: a1c0ffee0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "a1c0ffee0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    )


def downgrade():
    op.drop_table("accounts")
)PY"},
      {"a2_status.py", R"PY("""account status enum

Revision ID: a2c0ffee0002
Revises: a1c0ffee0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "a2c0ffee0002"
down_revision = "a1c0ffee0001"

status = postgresql.ENUM("active", "suspended", name="account_status")


def upgrade():
    status.create(op.get_bind())
    op.add_column("accounts", sa.Column("status", status, nullable=False,
                                        server_default="active"))


def downgrade():
    op.drop_column("accounts", "status")
    status.drop(op.get_bind())
)PY"},
      {"a3_orders.py", R"PY("""orders, with a partial index

Revision ID: a3c0ffee0003
Revises: a2c0ffee0002
"""
from alembic import op
import sqlalchemy as sa

revision = "a3c0ffee0003"
down_revision = "a2c0ffee0002"


def upgrade():
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("account_id", sa.BigInteger,
                  sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("total_cents", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
        sa.CheckConstraint("total_cents >= 0", name="orders_total_nonnegative"),
    )
    op.create_index("orders_open_idx", "orders", ["account_id"],
                    postgresql_where=sa.text("note IS NULL"))


def downgrade():
    op.drop_index("orders_open_idx", table_name="orders")
    op.drop_table("orders")
)PY"},
      {"a4_plans.py", R"PY("""plans, seeded; quotes and semicolons in data

Revision ID: a4c0ffee0004
Revises: a3c0ffee0003
"""
from alembic import op
import sqlalchemy as sa

revision = "a4c0ffee0004"
down_revision = "a3c0ffee0003"


def upgrade():
    plans = op.create_table(
        "plans",
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
    )
    op.bulk_insert(plans, [
        {"code": "free", "title": "Free; no card"},
        {"code": "pro", "title": "Pro's plan -- monthly"},
    ])


def downgrade():
    op.drop_table("plans")
)PY"},
      {"a5_touch.py", R"PY("""touch trigger

Revision ID: a5c0ffee0005
Revises: a4c0ffee0004
"""
from alembic import op
import sqlalchemy as sa

revision = "a5c0ffee0005"
down_revision = "a4c0ffee0004"


def upgrade():
    op.add_column("accounts", sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.execute("""
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();

  RETURN NEW;
END;
$$
""")
    op.execute("CREATE TRIGGER accounts_touch BEFORE UPDATE ON accounts "
               "FOR EACH ROW EXECUTE FUNCTION touch_updated_at()")
    op.execute("COMMENT ON TABLE accounts IS 'one row per customer; see orders'")


def downgrade():
    op.execute("COMMENT ON TABLE accounts IS NULL")
    op.execute("DROP TRIGGER accounts_touch ON accounts")
    op.execute("DROP FUNCTION touch_updated_at()")
    op.drop_column("accounts", "updated_at")
)PY"},
  };
  return revisions;
}

bool HaveAlembic() {
  std::string out;
  return access(kPython, X_OK) == 0 && RunBinary({kPython, "-c", "import alembic"}, &out) == 0;
}

// SQLAlchemy 1.4 takes postgresql://, not postgres://.
std::string SqlAlchemyUrl(const std::string& url) {
  return absl::StrReplaceAll(url, {{"postgres://", "postgresql://"}});
}

// `alembic init` in `project`, the revisions written, sqlalchemy.url set to `url`.
void MakeProject(const TempDir& project, const std::string& url) {
  std::string out;
  ASSERT_EQ(RunBinary({"/bin/sh", "-c",
                       absl::StrCat("cd '", project.path(), "' && ", kPython,
                                    " -m alembic init alembic")},
                      &out),
            0)
      << out;
  std::string ini;
  ASSERT_EQ(RunBinary({"/bin/cat", project.path() + "/alembic.ini"}, &ini), 0);
  const size_t at = ini.find("sqlalchemy.url = ");
  ASSERT_NE(at, std::string::npos) << ini;
  ini.replace(at, ini.find('\n', at) - at, "sqlalchemy.url = " + SqlAlchemyUrl(url));
  project.Write("alembic.ini", ini);
  for (const Revision& r : Revisions()) {
    project.Write(absl::StrCat("alembic/versions/", r.file), r.source);
  }
}

int Alembic(const TempDir& project, const std::string& args, std::string* out) {
  return RunBinary({"/bin/sh", "-c",
                    absl::StrCat("cd '", project.path(), "' && ", kPython, " -m alembic ", args)},
                   out);
}

int Ctl(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {BinaryPath("schemagatectl")};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunBinary(argv, out);
}

class AlembicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SG_REQUIRE_DATABASE();
    if (!HaveAlembic()) {
      // deploy/install-deps.sh installs it: under CI its absence is a failure.
      if (std::getenv("CI") != nullptr) {
        FAIL() << kPython << " cannot import alembic (Debian's python3-alembic)";
      }
      GTEST_SKIP() << "Debian's python3-alembic is not installed";
    }
  }
};

TEST_F(AlembicTest, ImportedRevisionsAdoptAlembicsDatabaseAndRebuildItsSchema) {
  TestDatabase by_alembic;
  TempDir project;
  MakeProject(project, by_alembic.url());
  std::string out;
  ASSERT_EQ(Alembic(project, "upgrade head", &out), 0) << out;
  ASSERT_EQ(by_alembic.Query("SELECT version_num FROM alembic_version"), "a5c0ffee0005");

  TempDir imported;
  const std::string config = project.path() + "/alembic.ini";
  EXPECT_EQ(
      Ctl({"import-alembic", "--config", config, "--out", imported.path(), "--dry-run"}, &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("would import 5 revisions"));
  EXPECT_EQ(Ctl({"import-alembic", "--config", config, "--out", imported.path()}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("imported 5 revisions"));
  EXPECT_THAT(out, HasSubstr("0001_create_accounts.up.sql and .down.sql"));
  EXPECT_THAT(out, HasSubstr("0005_touch_trigger.up.sql"));
  std::string first;
  ASSERT_EQ(RunBinary({"/bin/cat", imported.path() + "/0001_create_accounts.up.sql"}, &first), 0);
  EXPECT_THAT(first, HasSubstr("-- alembic revision: a1c0ffee0001"));
  EXPECT_THAT(first, Not(HasSubstr("alembic_version")));
  // Run again: everything is there already, nothing is written.
  EXPECT_EQ(Ctl({"import-alembic", "--config", config, "--out", imported.path()}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("imported 0 revisions"));
  EXPECT_THAT(out, HasSubstr("5 already there"));
  EXPECT_EQ(Ctl({"lint", "--migrations-dir", imported.path()}, &out), 0) << out;

  // Adopt the database Alembic migrated: nothing re-runs.
  EXPECT_EQ(
      Ctl({"adopt", "--database-url", by_alembic.url(), "--migrations-dir", imported.path()}, &out),
      0)
      << out;
  EXPECT_THAT(out, HasSubstr("adopted"));
  {
    CoordinatorProcess coordinator(by_alembic.url(), imported.path());
    EXPECT_EQ(AgentWait(coordinator.address(), imported.path(), "", &out), 0)
        << out << coordinator.process().Log();
    EXPECT_EQ(Ctl({"status", "--coordinator", coordinator.address()}, &out), 0) << out;
    EXPECT_THAT(out, HasSubstr("CURRENT"));
  }
  EXPECT_EQ(by_alembic.Query("SELECT count(*) FROM plans"), "2");
  EXPECT_EQ(by_alembic.Query("SELECT count(*) FROM schemagate.migrations WHERE state = 'applied'"),
            "5");

  // The imported set on an empty database: Alembic's schema and data.
  TestDatabase fresh;
  {
    CoordinatorProcess coordinator(fresh.url(), imported.path());
    EXPECT_EQ(AgentWait(coordinator.address(), imported.path(), "", &out), 0)
        << out << coordinator.process().Log();
  }
  EXPECT_EQ(SchemaDump(fresh.url(), {"--exclude-schema=schemagate"}),
            SchemaDump(by_alembic.url(),
                       {"--exclude-schema=schemagate", "--exclude-table=public.alembic_version"}));
  EXPECT_EQ(fresh.Query("SELECT string_agg(title, '|' ORDER BY code) FROM plans"),
            "Free; no card|Pro's plan -- monthly");

  // Each down undoes its up.
  TestDatabase scratch;
  EXPECT_EQ(
      Ctl({"verify", "--migrations-dir", imported.path(), "--database-url", scratch.url()}, &out),
      0)
      << out;
}

TEST_F(AlembicTest, ABranchedHistoryAndAForeignDirectoryAreRefused) {
  TestDatabase db;
  TempDir project;
  MakeProject(project, db.url());
  const std::string config = project.path() + "/alembic.ini";
  TempDir out_dir;
  out_dir.Write("0001_mine.up.sql", "SELECT 1;\n");
  std::string out;
  EXPECT_EQ(Ctl({"import-alembic", "--config", config, "--out", out_dir.path()}, &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("0001_mine.up.sql, which import-alembic did not write"));

  project.Write("alembic/versions/b2_branch.py",
                "revision = 'b2c0ffee0002'\ndown_revision = 'a1c0ffee0001'\n"
                "def upgrade():\n    pass\n\ndef downgrade():\n    pass\n");
  TempDir empty;
  EXPECT_EQ(Ctl({"import-alembic", "--config", config, "--out", empty.path() + "/new"}, &out), 2)
      << out;
  EXPECT_THAT(out, HasSubstr("2 heads"));
  EXPECT_THAT(out, HasSubstr("alembic merge heads"));

  EXPECT_EQ(Ctl({"import-alembic", "--config", project.path() + "/nope.ini", "--out",
                 empty.path() + "/new"},
                &out),
            2);
  EXPECT_THAT(out, HasSubstr("not found: pass --config"));
  EXPECT_EQ(Ctl({"import-alembic", "--config", config, "--out", empty.path() + "/new", "--python",
                 "/nonexistent/python3"},
                &out),
            2);
  EXPECT_THAT(out, HasSubstr("no Python with alembic found"));
}

}  // namespace
}  // namespace schemagate
