// schemagatectl import-alembic (import_alembic.h).
#include "ctl/import_alembic.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "agent/exit_codes.h"
#include "coordinator/engine/foreign_bookkeeping.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/sql/sql_split.h"
#include "ctl/new_migration.h"

namespace schemagate {
namespace {

// Run by the interpreter in the project's directory with the config and an
// output path. Exit 3: alembic cannot be imported; 4: a refusal (an ERROR
// field says why). Everything the project's env.py prints goes to the log,
// never into the output.
constexpr char kHelper[] = R"PY(
import io
import os
import sys
import traceback

try:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
except ImportError as e:
    sys.stderr.write("cannot import alembic: %s\n" % e)
    sys.exit(3)

config_path, out_path = sys.argv[1], sys.argv[2]
out = open(out_path, "wb")


def field(key, value):
    data = value.encode("utf-8")
    out.write(b"%s %d\n" % (key.encode("ascii"), len(data)))
    out.write(data)
    out.write(b"\n")


def fail(message):
    field("ERROR", message)
    out.close()
    sys.exit(4)


def why(error):
    return "".join(traceback.format_exception_only(type(error), error)).strip()


def render(fn, target):
    buffer = io.StringIO()
    fn(Config(config_path, output_buffer=buffer), target, sql=True)
    return buffer.getvalue()


try:
    script = ScriptDirectory.from_config(Config(config_path))
    heads = script.get_heads()
    revisions = list(script.walk_revisions(base="base", head="heads"))
except Exception as e:
    fail("cannot read the revisions: %s" % why(e))
if len(heads) > 1:
    fail("the history has %d heads (%s): merge them first ('alembic merge heads')"
         % (len(heads), ", ".join(sorted(heads))))
revisions.reverse()
for r in revisions:
    down = r.down_revision
    path = os.path.relpath(r.path)
    if isinstance(down, (tuple, list)):
        if len(down) > 1:
            fail("%s: revision %s merges %s: only a linear history can be imported"
                 % (path, r.revision, ", ".join(down)))
        down = down[0] if down else None
    try:
        up_sql = render(command.upgrade, "%s:%s" % (down, r.revision) if down else r.revision)
    except Exception as e:
        fail("%s: Alembic could not render revision %s offline (alembic upgrade --sql): %s"
             % (path, r.revision, why(e)))
    doc = (r.doc or "").strip()
    field("REVISION", r.revision)
    field("DOWN_REVISION", down or "")
    field("PATH", path)
    field("MESSAGE", doc.splitlines()[0] if doc else "")
    field("UP", up_sql)
    try:
        field("DOWN", render(command.downgrade, "%s:%s" % (r.revision, down or "base")))
    except Exception as e:
        field("DOWN_ERROR", why(e))
out.close()
)PY";

constexpr int kHelperNoAlembic = 3;
constexpr int kHelperRefused = 4;

int Refuse(const std::string& message) {
  std::fprintf(stderr, "schemagatectl import-alembic: %s\n", message.c_str());
  return kExitUsage;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A file in the temporary directory holding `content`; "" if it cannot be made.
std::string TempFile(const std::string& content) {
  std::string path =
      (std::filesystem::temp_directory_path() / "schemagate-alembic-XXXXXX").string();
  const int fd = mkstemp(path.data());
  if (fd < 0) return "";
  const bool ok = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  close(fd);
  if (!ok) unlink(path.c_str());
  return ok ? path : "";
}

// Runs argv in `directory`, its output and errors into `log_path`; the exit
// code (127 when argv[0] cannot be run).
int RunIn(const std::string& directory, const std::vector<std::string>& argv,
          const std::string& log_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_TRUNC);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    if (chdir(directory.c_str()) != 0) _exit(126);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The last `n` lines of `text`, indented, for an error message.
std::string Tail(const std::string& text, size_t n) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) {
    absl::StrAppend(&out, "\n  ", lines[i]);
  }
  return out;
}

bool TouchesTable(absl::string_view statement, absl::string_view table) {
  std::string s = absl::AsciiStrToLower(statement);
  for (const char* prefix :
       {"create table ", "insert into ", "update ", "delete from ", "drop table "}) {
    absl::string_view rest = s;
    if (!absl::ConsumePrefix(&rest, prefix)) continue;
    rest = absl::StripLeadingAsciiWhitespace(rest);
    // schema-qualified or quoted: alembic_version, "alembic_version", public.alembic_version
    const size_t end = rest.find_first_of(" \t\n(");
    absl::string_view name = rest.substr(0, end);
    if (const size_t dot = name.rfind('.'); dot != absl::string_view::npos) {
      name.remove_prefix(dot + 1);
    }
    absl::ConsumePrefix(&name, "\"");
    absl::ConsumeSuffix(&name, "\"");
    return name == absl::AsciiStrToLower(table);
  }
  return false;
}

struct Existing {
  std::vector<std::pair<int64_t, std::string>> imported;  // version, revision, in order
  std::string foreign;                                    // a file import-alembic did not write
};

absl::StatusOr<Existing> ReadExisting(const std::string& directory) {
  Existing existing;
  std::error_code error;
  if (!std::filesystem::exists(directory, error)) return existing;
  std::map<int64_t, std::string> by_version;
  for (std::filesystem::directory_iterator it(directory, error), end; !error && it != end;
       it.increment(error)) {
    const std::string file = it->path().filename().string();
    if (!absl::EndsWith(file, ".sql")) continue;
    std::string digits, name;
    bool is_up = false;
    int64_t version = 0;
    if (!ParseMigrationFileName(file, &digits, &name, &is_up) ||
        !absl::SimpleAtoi(digits, &version)) {
      existing.foreign = file;
      continue;
    }
    if (!is_up) continue;
    const std::string revision = AlembicRevisionInHeader(ReadAll(it->path().string()));
    if (revision.empty()) {
      existing.foreign = file;
    } else {
      by_version[version] = revision;
    }
  }
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot list ", directory, ": ", error.message()));
  }
  existing.imported.assign(by_version.begin(), by_version.end());
  return existing;
}

}  // namespace

absl::StatusOr<std::vector<AlembicRevision>> ParseAlembicHelperOutput(absl::string_view text) {
  std::vector<AlembicRevision> revisions;
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    std::pair<absl::string_view, absl::string_view> head =
        absl::StrSplit(text.substr(0, newline), absl::MaxSplits(' ', 1));
    size_t length = 0;
    if (newline == absl::string_view::npos || !absl::SimpleAtoi(head.second, &length) ||
        newline + 1 + length + 1 > text.size()) {
      return absl::InternalError("the Alembic helper's output is cut short");
    }
    const std::string value(text.substr(newline + 1, length));
    text.remove_prefix(newline + 1 + length + 1);
    if (head.first == "ERROR") return absl::FailedPreconditionError(value);
    if (head.first == "REVISION") {
      revisions.emplace_back().revision = value;
      continue;
    }
    if (revisions.empty())
      return absl::InternalError("the Alembic helper's output has no revision");
    AlembicRevision& r = revisions.back();
    if (head.first == "DOWN_REVISION") r.down_revision = value;
    if (head.first == "PATH") r.path = value;
    if (head.first == "MESSAGE") r.message = value;
    if (head.first == "UP") r.up_sql = value;
    if (head.first == "DOWN") r.down_sql = value;
    if (head.first == "DOWN_ERROR") r.down_error = value;
  }
  return revisions;
}

absl::StatusOr<std::string> MigrationSqlFromAlembic(absl::string_view rendered,
                                                    absl::string_view version_table,
                                                    bool* no_transaction) {
  absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql(rendered);
  if (!statements.ok()) return statements.status();
  std::string sql;
  for (const SqlStatement& s : *statements) {
    if (s.is_transaction_control || TouchesTable(s.text, version_table)) continue;
    if (!s.needs_no_transaction.empty()) *no_transaction = true;
    absl::StrAppend(&sql, s.text, ";\n\n");
  }
  return sql;
}

std::string AlembicSlug(const AlembicRevision& revision) {
  std::string slug = SanitizeMigrationName(revision.message);
  if (slug.size() > 48) slug.resize(48);
  while (!slug.empty() && slug.back() == '_') slug.pop_back();
  return slug.empty() ? SanitizeMigrationName(revision.revision) : slug;
}

int RunImportAlembic(const ImportAlembicCommand& command) {
  if (command.out.empty()) return Refuse("--out DIR is required: where to write the SQL files");
  std::error_code error;
  const std::filesystem::path config = std::filesystem::absolute(command.config, error);
  if (error || !std::filesystem::is_regular_file(config, error)) {
    return Refuse(
        absl::StrCat(command.config, " not found: pass --config with the project's alembic.ini"));
  }
  absl::StatusOr<Existing> existing = ReadExisting(command.out);
  if (!existing.ok()) return Refuse(std::string(existing.status().message()));
  if (!existing->foreign.empty()) {
    return Refuse(absl::StrCat(command.out, " holds ", existing->foreign,
                               ", which import-alembic did not write: import into an empty "
                               "directory (or one only earlier imports wrote)"));
  }

  std::vector<std::string> interpreters;
  if (!command.python.empty()) {
    interpreters.push_back(command.python);
  } else if (const char* env = std::getenv("SCHEMAGATE_PYTHON"); env && *env) {
    interpreters.push_back(env);
  } else {
    interpreters = {"python3", "/usr/bin/python3"};
  }
  const std::string helper = TempFile(kHelper);
  const std::string output = TempFile("");
  const std::string log = TempFile("");
  if (helper.empty() || output.empty() || log.empty()) {
    return Refuse("cannot write temporary files in " +
                  std::filesystem::temp_directory_path().string());
  }
  int code = 127;
  std::string tried;
  for (const std::string& python : interpreters) {
    code = RunIn(config.parent_path().string(), {python, helper, config.string(), output}, log);
    absl::StrAppend(&tried, tried.empty() ? "" : ", ", python);
    if (code != kHelperNoAlembic && code != 127) break;
  }
  const std::string text = ReadAll(output);
  const std::string log_text = ReadAll(log);
  for (const std::string& path : {helper, output, log}) unlink(path.c_str());
  if (code == kHelperNoAlembic || code == 127) {
    return Refuse(absl::StrCat(
        "no Python with alembic found (tried ", tried,
        "): install Debian's python3-alembic, or name the interpreter of the project's "
        "virtualenv with --python (or SCHEMAGATE_PYTHON)"));
  }
  absl::StatusOr<std::vector<AlembicRevision>> revisions = ParseAlembicHelperOutput(text);
  if (!revisions.ok() && revisions.status().code() == absl::StatusCode::kFailedPrecondition) {
    return Refuse(std::string(revisions.status().message()));
  }
  if (code != 0 || !revisions.ok()) {
    return Refuse(
        absl::StrCat("Alembic failed (exit ", code, "); its last lines:", Tail(log_text, 8)));
  }
  if (revisions->empty()) return Refuse("the project has no revisions: nothing to import");

  // Earlier imports must be the start of this history, in order.
  const std::vector<std::pair<int64_t, std::string>>& done = existing->imported;
  for (size_t i = 0; i < done.size(); ++i) {
    if (i >= revisions->size() || (*revisions)[i].revision != done[i].second) {
      return Refuse(
          absl::StrCat(command.out, " holds an import of another history (version ", done[i].first,
                       " is revision ", done[i].second, ", the project's revision ", i + 1, " is ",
                       i < revisions->size() ? (*revisions)[i].revision : std::string("none"),
                       "): import into an empty directory"));
    }
  }
  if (!command.dry_run) {
    std::filesystem::create_directories(command.out, error);
    if (error) return Refuse(absl::StrCat("cannot create ", command.out, ": ", error.message()));
  }
  int64_t version = done.empty() ? 0 : done.back().first;
  int written = 0;
  for (size_t i = done.size(); i < revisions->size(); ++i) {
    const AlembicRevision& r = (*revisions)[i];
    bool no_transaction = false;
    absl::StatusOr<std::string> up =
        MigrationSqlFromAlembic(r.up_sql, command.version_table, &no_transaction);
    if (!up.ok()) {
      return Refuse(absl::StrCat(r.path, ": the SQL Alembic rendered for revision ", r.revision,
                                 " does not parse: ", up.status().message()));
    }
    absl::StatusOr<std::string> down = std::string();
    if (r.down_error.empty()) {
      down = MigrationSqlFromAlembic(r.down_sql, command.version_table, &no_transaction);
    }
    const std::string header =
        absl::StrCat(no_transaction ? "-- schemagate:no-transaction\n" : "", kAlembicRevisionHeader,
                     r.revision, "\n-- imported by schemagatectl import-alembic from ", r.path,
                     r.message.empty() ? "" : ": ", r.message, "\n\n");
    const std::string stem =
        absl::StrCat(command.out, "/", absl::StrFormat("%04d", ++version), "_", AlembicSlug(r));
    const std::string what = absl::StrCat("  (revision ", r.revision, ", ", r.path, ")");
    if (command.dry_run) {
      std::printf("would write %s.up.sql%s%s\n", stem.c_str(),
                  down.ok() && r.down_error.empty() ? " and .down.sql" : "", what.c_str());
      ++written;
      continue;
    }
    if (absl::Status s = WriteNewFile(stem + ".up.sql", header + *up); !s.ok()) {
      return Refuse(std::string(s.message()));
    }
    if (!r.down_error.empty() || !down.ok()) {
      std::fprintf(
          stderr, "schemagatectl import-alembic: warning: %s: no down file for revision %s: %s\n",
          r.path.c_str(), r.revision.c_str(),
          std::string(r.down_error.empty() ? down.status().message() : r.down_error).c_str());
    } else if (absl::Status s = WriteNewFile(stem + ".down.sql", header + *down); !s.ok()) {
      return Refuse(std::string(s.message()));
    }
    std::printf("wrote %s.up.sql%s%s\n", stem.c_str(), r.down_error.empty() ? " and .down.sql" : "",
                what.c_str());
    ++written;
  }
  std::printf("%s %d revision%s into %s%s; the head is %s\n",
              command.dry_run ? "would import" : "imported", written, written == 1 ? "" : "s",
              command.out.c_str(),
              done.empty() ? "" : absl::StrCat(" (", done.size(), " already there)").c_str(),
              revisions->back().revision.c_str());
  std::printf("next: schemagatectl adopt --from alembic --database-url URL --migrations-dir %s\n",
              command.out.c_str());
  return kExitReady;
}

}  // namespace schemagate
