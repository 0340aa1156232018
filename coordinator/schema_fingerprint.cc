#include "coordinator/schema_fingerprint.h"

#include <openssl/sha.h>

#include <algorithm>
#include <iterator>
#include <pqxx/pqxx>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "coordinator/conninfo.h"

namespace schemagate {
namespace {

// Common table expressions every catalog query starts with ($1 is the
// bookkeeping schema). Each maps a catalog row to the key its lines use:
//   ns   user schemas;
//   base relations other than indexes (tables, views, sequences,
//        composite types), with keys like "table public.users";
//   rel  base plus indexes, keyed under their table
//        ("table public.users index users_pkey");
//   fn   functions, procedures, aggregates ("function public.f(integer)"),
//        not the constructors PostgreSQL makes for a range type (internal);
//   typ  user-visible types ("type public.mood"): not the automatic array,
//        multirange and table row types.
// Unreferenced expressions cost nothing; extension members are left out.
constexpr char kWith[] = R"sql(
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname <> $1 AND nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema'
), base AS (
  SELECT c.oid, c.relkind, n.nspname, c.relname,
         CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table'
                        WHEN 'f' THEN 'foreign table' WHEN 'v' THEN 'view'
                        WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                        WHEN 'c' THEN 'type' ELSE 'relation' END
           || format(' %I.%I', n.nspname, c.relname) AS key
  FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
  WHERE c.relkind NOT IN ('i', 'I', 't')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
), rel AS (
  SELECT oid, relkind, key FROM base
  UNION ALL
  SELECT i.oid, i.relkind, b.key || ' index ' || quote_ident(i.relname)
  FROM pg_index x JOIN base b ON b.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
), fn AS (
  SELECT p.oid, p.prokind,
         CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END
           || format(' %I.%I(%s)', n.nspname, p.proname,
                     pg_get_function_identity_arguments(p.oid)) AS key
  FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace
  WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                    AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
), typ AS (
  SELECT t.oid, format('type %I.%I', n.nspname, t.typname) AS key
  FROM pg_type t JOIN ns n ON n.oid = t.typnamespace
  WHERE t.typtype <> 'm'
    AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)
    AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                    AND d.objid = t.oid AND d.deptype = 'e')
)
)sql";

// Each query returns one column: whole description lines.
constexpr const char* kQueries[] = {
    // Schemas.
    "SELECT format('schema %I', nspname) FROM ns",

    // Tables: kind, partitioning, inheritance and table-level settings.
    R"sql(
SELECT b.key || coalesce(': ' || nullif(concat_ws(' ',
    CASE WHEN c.relkind = 'p' THEN 'partition by ' || pg_get_partkeydef(c.oid) END,
    CASE WHEN c.relispartition THEN
      (SELECT format('partition of %I.%I ', pn.nspname, p.relname)
       FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
       JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid)
      || pg_get_expr(c.relpartbound, c.oid) END,
    CASE WHEN NOT c.relispartition THEN
      (SELECT 'inherits ' || string_agg(format('%I.%I', pn.nspname, p.relname), ', '
                                        ORDER BY i.inhseqno)
       FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
       JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid) END,
    CASE WHEN c.relpersistence = 'u' THEN 'unlogged' END,
    CASE WHEN c.relrowsecurity THEN 'row level security' END,
    CASE WHEN c.relforcerowsecurity THEN 'force row level security' END,
    CASE c.relreplident WHEN 'n' THEN 'replica identity nothing'
                        WHEN 'f' THEN 'replica identity full'
                        WHEN 'i' THEN 'replica identity index' END,
    'with (' || array_to_string(c.reloptions, ', ') || ')',
    (SELECT format('server %I', s.srvname)
            || coalesce(' options (' || array_to_string(ft.ftoptions, ', ') || ')', '')
     FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver
     WHERE ft.ftrelid = c.oid)), ''), '')
FROM base b JOIN pg_class c ON c.oid = b.oid
WHERE b.relkind IN ('r', 'p', 'f')
)sql",

    // Columns, by name: physical order is not part of the description.
    R"sql(
SELECT b.key || ' column ' || quote_ident(a.attname) || ': ' || concat_ws(' ',
    format_type(a.atttypid, a.atttypmod),
    CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
      (SELECT format('collate %I.%I', cn.nspname, co.collname)
       FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
       WHERE co.oid = a.attcollation) END,
    CASE WHEN a.attnotnull THEN 'not null' END,
    CASE a.attidentity WHEN 'a' THEN 'generated always as identity'
                       WHEN 'd' THEN 'generated by default as identity' END,
    CASE WHEN a.attgenerated = 's' THEN 'generated always as ('
                                        || pg_get_expr(d.adbin, d.adrelid) || ') stored'
         WHEN d.adbin IS NOT NULL THEN 'default ' || pg_get_expr(d.adbin, d.adrelid) END)
FROM base b
JOIN pg_attribute a ON a.attrelid = b.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE b.relkind IN ('r', 'p', 'f')
)sql",

    // Constraints of tables and of domains (NOT VALID included while unvalidated).
    R"sql(
SELECT r.key || ' constraint ' || quote_ident(co.conname) || ': ' || pg_get_constraintdef(co.oid)
FROM pg_constraint co JOIN rel r ON r.oid = co.conrelid
UNION ALL
SELECT t.key || ' constraint ' || quote_ident(co.conname) || ': ' || pg_get_constraintdef(co.oid)
FROM pg_constraint co JOIN typ t ON t.oid = co.contypid
)sql",

    // Indexes, with their validity.
    R"sql(
SELECT r.key || ': ' || pg_get_indexdef(x.indexrelid)
       || CASE WHEN NOT x.indisvalid THEN ' [invalid]' ELSE '' END
       || CASE WHEN x.indisclustered THEN ' [clustered]' ELSE '' END
FROM pg_index x JOIN rel r ON r.oid = x.indexrelid
)sql",

    // Views and materialized views.
    R"sql(
SELECT b.key || ': ' || concat_ws(' ', 'with (' || array_to_string(c.reloptions, ', ') || ')',
                                  ltrim(pg_get_viewdef(c.oid, true)))
FROM base b JOIN pg_class c ON c.oid = b.oid
WHERE b.relkind IN ('v', 'm')
)sql",

    // Sequences (not their values).
    R"sql(
SELECT b.key || ': ' || concat_ws(' ',
    'as ' || format_type(s.seqtypid, NULL), 'start ' || s.seqstart,
    'increment ' || s.seqincrement, 'minvalue ' || s.seqmin, 'maxvalue ' || s.seqmax,
    'cache ' || s.seqcache, CASE WHEN s.seqcycle THEN 'cycle' END,
    (SELECT CASE d.deptype WHEN 'i' THEN 'identity of ' ELSE 'owned by ' END
            || format('%I.%I.%I', tn.nspname, t.relname, a.attname)
     FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
     JOIN pg_namespace tn ON tn.oid = t.relnamespace
     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE d.classid = 'pg_class'::regclass AND d.objid = b.oid
       AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
       AND d.deptype IN ('a', 'i')
     ORDER BY 1 LIMIT 1))
FROM base b JOIN pg_sequence s ON s.seqrelid = b.oid
)sql",

    // Functions and procedures.
    R"sql(
SELECT f.key || ': ' || pg_get_functiondef(f.oid) FROM fn f WHERE f.prokind <> 'a'
)sql",

    // Aggregates (pg_get_functiondef does not take them).
    R"sql(
SELECT f.key || ': ' || concat_ws(' ',
    'sfunc ' || a.aggtransfn::regproc::text, 'stype ' || format_type(a.aggtranstype, NULL),
    CASE WHEN a.aggfinalfn <> 0 THEN 'finalfunc ' || a.aggfinalfn::regproc::text END,
    CASE WHEN a.aggcombinefn <> 0 THEN 'combinefunc ' || a.aggcombinefn::regproc::text END,
    'initcond ' || quote_literal(a.agginitval), 'kind ' || a.aggkind::text)
FROM fn f JOIN pg_aggregate a ON a.aggfnoid = f.oid
)sql",

    // Triggers (not the internal ones behind foreign keys), with enabled state.
    R"sql(
SELECT r.key || ' trigger ' || quote_ident(t.tgname) || ': ' || pg_get_triggerdef(t.oid)
       || CASE t.tgenabled WHEN 'D' THEN ' [disabled]' WHEN 'R' THEN ' [enabled replica]'
                           WHEN 'A' THEN ' [enabled always]' ELSE '' END
FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid
WHERE NOT t.tgisinternal
)sql",

    // Rules (not a view's own _RETURN rule).
    R"sql(
SELECT r.key || ' rule ' || quote_ident(w.rulename) || ': ' || pg_get_ruledef(w.oid)
       || CASE w.ev_enabled WHEN 'D' THEN ' [disabled]' WHEN 'R' THEN ' [enabled replica]'
                            WHEN 'A' THEN ' [enabled always]' ELSE '' END
FROM pg_rewrite w JOIN rel r ON r.oid = w.ev_class
WHERE w.rulename <> '_RETURN'
)sql",

    // Row level security policies.
    R"sql(
SELECT r.key || ' policy ' || quote_ident(p.polname) || ': ' || concat_ws(' ',
    CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
    'for ' || CASE p.polcmd WHEN 'r' THEN 'select' WHEN 'a' THEN 'insert'
                            WHEN 'w' THEN 'update' WHEN 'd' THEN 'delete' ELSE 'all' END,
    'to ' || (SELECT string_agg(name, ', ' ORDER BY name) FROM
                (SELECT CASE WHEN role = 0 THEN 'public'
                             ELSE quote_ident(pg_get_userbyid(role)) END AS name
                 FROM unnest(p.polroles) AS role) roles),
    'using (' || pg_get_expr(p.polqual, p.polrelid) || ')',
    'with check (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')')
FROM pg_policy p JOIN rel r ON r.oid = p.polrelid
)sql",

    // Extended statistics.
    R"sql(
SELECT r.key || format(' statistics %I.%I: ', n.nspname, s.stxname)
       || pg_get_statisticsobjdef(s.oid)
FROM pg_statistic_ext s JOIN rel r ON r.oid = s.stxrelid
JOIN pg_namespace n ON n.oid = s.stxnamespace
)sql",

    // Types: enums, domains, composites, ranges, base types.
    R"sql(
SELECT y.key || ': ' || CASE t.typtype
  WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', '
                                                        ORDER BY e.enumsortorder)
                                      FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
  WHEN 'd' THEN concat_ws(' ', 'domain ' || format_type(t.typbasetype, t.typtypmod),
    CASE WHEN t.typcollation <> 0 AND t.typcollation <> bt.typcollation THEN
      (SELECT format('collate %I.%I', cn.nspname, co.collname)
       FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
       WHERE co.oid = t.typcollation) END,
    CASE WHEN t.typnotnull THEN 'not null' END,
    'default ' || pg_get_expr(t.typdefaultbin, 0))
  WHEN 'c' THEN 'composite (' || coalesce((SELECT string_agg(
      format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
      FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0
      AND NOT a.attisdropped), '') || ')'
  WHEN 'r' THEN (SELECT concat_ws(' ', 'range of ' || format_type(g.rngsubtype, NULL),
      CASE WHEN g.rngcollation <> 0 THEN 'collation ' || g.rngcollation::regcollation::text END,
      'opclass ' || (SELECT format('%I.%I', on_.nspname, oc.opcname) FROM pg_opclass oc
                     JOIN pg_namespace on_ ON on_.oid = oc.opcnamespace
                     WHERE oc.oid = g.rngsubopc),
      CASE WHEN g.rngcanonical <> 0 THEN 'canonical ' || g.rngcanonical::regproc::text END,
      CASE WHEN g.rngsubdiff <> 0 THEN 'subdiff ' || g.rngsubdiff::regproc::text END)
    FROM pg_range g WHERE g.rngtypid = t.oid)
  WHEN 'b' THEN concat_ws(' ', 'base input ' || t.typinput::regproc::text,
                          'output ' || t.typoutput::regproc::text,
                          'length ' || t.typlen, 'align ' || t.typalign::text)
  ELSE 'pseudo' END
FROM typ y JOIN pg_type t ON t.oid = y.oid LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
)sql",

    // Comments on everything above.
    R"sql(
SELECT r.key || ' comment: ' || d.description
FROM pg_description d JOIN rel r ON r.oid = d.objoid
WHERE d.classoid = 'pg_class'::regclass AND d.objsubid = 0
UNION ALL
SELECT r.key || ' column ' || quote_ident(a.attname) || ' comment: ' || d.description
FROM pg_description d JOIN rel r ON r.oid = d.objoid
JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
WHERE d.classoid = 'pg_class'::regclass AND d.objsubid > 0
UNION ALL
SELECT f.key || ' comment: ' || d.description
FROM pg_description d JOIN fn f ON f.oid = d.objoid WHERE d.classoid = 'pg_proc'::regclass
UNION ALL
SELECT y.key || ' comment: ' || d.description
FROM pg_description d JOIN typ y ON y.oid = d.objoid WHERE d.classoid = 'pg_type'::regclass
UNION ALL
SELECT format('schema %I comment: ', n.nspname) || d.description
FROM pg_description d JOIN ns n ON n.oid = d.objoid WHERE d.classoid = 'pg_namespace'::regclass
UNION ALL
SELECT coalesce(r.key, y.key) || ' constraint ' || quote_ident(co.conname) || ' comment: '
       || d.description
FROM pg_description d JOIN pg_constraint co ON co.oid = d.objoid
LEFT JOIN rel r ON r.oid = co.conrelid LEFT JOIN typ y ON y.oid = co.contypid
WHERE d.classoid = 'pg_constraint'::regclass AND (r.key IS NOT NULL OR y.key IS NOT NULL)
UNION ALL
SELECT r.key || ' trigger ' || quote_ident(t.tgname) || ' comment: ' || d.description
FROM pg_description d JOIN pg_trigger t ON t.oid = d.objoid JOIN rel r ON r.oid = t.tgrelid
WHERE d.classoid = 'pg_trigger'::regclass
)sql",
};

// Extensions are database-wide (no schema filter, no parameter).
constexpr char kExtensionsQuery[] = R"sql(
SELECT format('extension %I: version %s schema %I', e.extname, e.extversion, n.nspname)
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
)sql";

// Pins every setting that changes how the deparser prints names and
// constants, for this transaction only.
constexpr char kPinSettings[] =
    "SET LOCAL search_path = ''; SET LOCAL TimeZone = 'UTC';"
    " SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres';"
    " SET LOCAL extra_float_digits = 1; SET LOCAL bytea_output = 'hex'";

// The object a line describes: the text before its first ": ".
absl::string_view KeyOf(const std::string& line) {
  const size_t end = line.find(": ");
  return absl::string_view(line).substr(0, end == std::string::npos ? line.size() : end);
}

// Description order: by key, then bytewise. So "table public.t: unlogged"
// comes before "table public.t column a: integer" (bytewise, ':' sorts after
// ' ') and every table heads its parts.
bool LineLess(const std::string& a, const std::string& b) {
  const absl::string_view key_a = KeyOf(a);
  const absl::string_view key_b = KeyOf(b);
  if (key_a != key_b) return key_a < key_b;
  return a < b;
}

// Keeps one object per line: "\" -> "\\", newline -> "\n", CR -> "\r".
std::string OneLine(absl::string_view text) {
  text = absl::StripTrailingAsciiWhitespace(text);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FirstLine(const char* what) {
  absl::string_view text(what);
  absl::ConsumePrefix(&text, "ERROR:  ");
  absl::ConsumePrefix(&text, "FATAL:  ");
  const size_t newline = text.find('\n');
  if (newline != absl::string_view::npos) text = text.substr(0, newline);
  return RedactSecrets(absl::StripAsciiWhitespace(text));
}

std::string Sha256Hex(absl::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

// For display only: `line` cut to about `width` bytes. When `other` is the
// same object's line on the other side, the cut keeps the first place where
// the two differ in view (a long function body changed near its end).
std::string Clip(const std::string& line, const std::string* other, size_t width) {
  if (width == 0 || line.size() <= width) return line;
  size_t at = 0;
  if (other != nullptr) {
    at = static_cast<size_t>(
        std::mismatch(line.begin(), line.end(), other->begin(), other->end()).first -
        line.begin());
  }
  const size_t key_end = line.find(": ");
  if (at + 40 <= width || key_end == std::string::npos || at < key_end + 2 + 80) {
    return absl::StrCat(line.substr(0, width), "...");
  }
  const size_t from = at - 40;
  const size_t room = width > key_end + 2 ? width - key_end - 2 : 40;
  return absl::StrCat(line.substr(0, key_end + 2), "...", line.substr(from, room),
                      from + room < line.size() ? "..." : "");
}


}  // namespace

SchemaDescription MakeSchemaDescription(std::vector<std::string> lines) {
  SchemaDescription description;
  std::sort(lines.begin(), lines.end(), LineLess);
  description.text = absl::StrCat(kSchemaDescriptionHeader, "\n");
  for (const std::string& line : lines) absl::StrAppend(&description.text, line, "\n");
  description.fingerprint = Sha256Hex(description.text);
  description.lines = std::move(lines);
  return description;
}

SchemaDescription ParseSchemaDescription(absl::string_view text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line == kSchemaDescriptionHeader) continue;
    lines.emplace_back(line);
  }
  return MakeSchemaDescription(std::move(lines));
}

class SchemaDescriber::Session {
 public:
  explicit Session(const std::string& conninfo) : conn(WithKeepalives(conninfo)) {
    pqxx::nontransaction(conn).exec("SET application_name = 'schemagate-describe'");
    for (size_t i = 0; i < std::size(kQueries); ++i) {
      conn.prepare(absl::StrCat("sg_describe_", i), absl::StrCat(kWith, kQueries[i]));
    }
  }
  pqxx::connection conn;
};

SchemaDescriber::SchemaDescriber(std::string conninfo, std::string bookkeeping_schema)
    : conninfo_(std::move(conninfo)), bookkeeping_schema_(std::move(bookkeeping_schema)) {}

SchemaDescriber::~SchemaDescriber() = default;

absl::StatusOr<SchemaDescription> SchemaDescriber::Describe() {
  std::vector<std::string> lines;
  try {
    if (session_ == nullptr || !session_->conn.is_open()) {
      session_.reset();
      session_ = std::make_unique<Session>(conninfo_);
    }
    try {
      pqxx::transaction<pqxx::isolation_level::repeatable_read, pqxx::read_only> tx(
          session_->conn);
      tx.exec(kPinSettings);
      auto collect = [&](const pqxx::result& rows) {
        for (const pqxx::row& row : rows) {
          // NULL: a definition vanished mid-read (a concurrent DROP); keep a
          // marker rather than lose the object silently.
          lines.push_back(row[0].is_null() ? std::string("?") : OneLine(row[0].c_str()));
        }
      };
      for (size_t i = 0; i < std::size(kQueries); ++i) {
        collect(tx.exec_prepared(absl::StrCat("sg_describe_", i), bookkeeping_schema_));
      }
      collect(tx.exec(kExtensionsQuery));
      tx.commit();
    } catch (const pqxx::sql_error& e) {
      if (!session_->conn.is_open() || absl::StartsWith(e.sqlstate(), "08")) throw;
      return absl::InternalError(absl::StrCat("describing the schema failed: ",
                                              FirstLine(e.what()), " (SQLSTATE ", e.sqlstate(),
                                              ")"));
    }
  } catch (const std::exception& e) {
    session_.reset();
    return absl::UnavailableError(
        absl::StrCat("describing the schema: database unavailable: ", FirstLine(e.what())));
  }
  return MakeSchemaDescription(std::move(lines));
}

absl::StatusOr<SchemaDescription> DescribeSchema(const std::string& conninfo,
                                                 const std::string& bookkeeping_schema) {
  return SchemaDescriber(conninfo, bookkeeping_schema).Describe();
}

SchemaDiff DiffSchemas(const SchemaDescription& expected, const SchemaDescription& actual) {
  SchemaDiff diff;
  std::set_difference(expected.lines.begin(), expected.lines.end(), actual.lines.begin(),
                      actual.lines.end(), std::back_inserter(diff.removed), LineLess);
  std::set_difference(actual.lines.begin(), actual.lines.end(), expected.lines.begin(),
                      expected.lines.end(), std::back_inserter(diff.added), LineLess);
  return diff;
}

namespace {

// Reads one identifier as format('%I') / quote_ident wrote it from the front
// of `text`: "a""b" -> a"b, plain ones up to the next '.', ' ' or the end.
bool ConsumeIdentifier(absl::string_view* text, std::string* out) {
  out->clear();
  if (text->empty()) return false;
  if (text->front() != '"') {
    const size_t end = text->find_first_of(". ");
    *out = std::string(text->substr(0, end));
    text->remove_prefix(end == absl::string_view::npos ? text->size() : end);
    return !out->empty();
  }
  for (size_t i = 1; i < text->size(); ++i) {
    if ((*text)[i] != '"') {
      out->push_back((*text)[i]);
    } else if (i + 1 < text->size() && (*text)[i + 1] == '"') {
      out->push_back('"');
      ++i;
    } else {
      text->remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

// An index line's key, "table public.items index items_id_idx" (or on a
// "materialized view"), taken apart; false for any other key.
struct IndexKey {
  std::string schema, relation, index;
};
bool ParseIndexKey(absl::string_view key, IndexKey* out) {
  if (!absl::ConsumePrefix(&key, "table ") && !absl::ConsumePrefix(&key, "materialized view ")) {
    return false;
  }
  return ConsumeIdentifier(&key, &out->schema) && absl::ConsumePrefix(&key, ".") &&
         ConsumeIdentifier(&key, &out->relation) && absl::ConsumePrefix(&key, " index ") &&
         ConsumeIdentifier(&key, &out->index) && key.empty();
}

bool Explains(const IndexStatement& s, IndexStatement::Kind kind, const IndexKey& key) {
  return s.kind == kind && s.index == key.index && (s.schema.empty() || s.schema == key.schema) &&
         (kind != IndexStatement::Kind::kCreate || s.table == key.relation);
}

// Moves the lines of `lines` some statement of `kind` explains into `taken`.
void TakeLines(std::vector<std::string>* lines, const std::vector<IndexStatement>& statements,
               IndexStatement::Kind kind, std::vector<std::string>* taken) {
  std::vector<std::string> kept;
  for (std::string& line : *lines) {
    IndexKey key;
    const bool explained =
        ParseIndexKey(KeyOf(line), &key) &&
        std::any_of(statements.begin(), statements.end(),
                    [&](const IndexStatement& s) { return Explains(s, kind, key); });
    (explained ? taken : &kept)->push_back(std::move(line));
  }
  *lines = std::move(kept);
}

}  // namespace

SchemaDiff TakeIndexChanges(SchemaDiff* diff, const std::vector<IndexStatement>& statements) {
  SchemaDiff taken;
  TakeLines(&diff->added, statements, IndexStatement::Kind::kCreate, &taken.added);
  TakeLines(&diff->removed, statements, IndexStatement::Kind::kDrop, &taken.removed);
  return taken;
}

std::string DescribeDrift(const SchemaDiff& diff, const std::string& recorded_run_id) {
  std::string out = absl::StrCat(
      "the live schema differs from the one recorded after run ",
      recorded_run_id.empty() ? "(unknown)" : recorded_run_id, ": ", diff.removed.size(),
      " line(s) gone or changed, ", diff.added.size(),
      " new or changed (made outside schemagate?)");
  const std::string* first = !diff.removed.empty() ? &diff.removed.front()
                             : !diff.added.empty() ? &diff.added.front()
                                                   : nullptr;
  if (first != nullptr) absl::StrAppend(&out, "; first: ", KeyOf(*first));
  return out;
}

std::string FormatSchemaDiff(const SchemaDiff& diff, const std::string& expected_label,
                             const std::string& actual_label, size_t max_lines,
                             size_t max_width) {
  std::string out = absl::StrCat("--- ", expected_label, "\n+++ ", actual_label, "\n");
  size_t r = 0, a = 0, shown = 0;
  const size_t total = diff.removed.size() + diff.added.size();
  while ((r < diff.removed.size() || a < diff.added.size()) && shown < max_lines) {
    // By object key, the old line of a changed object before its new one.
    bool take_removed = a == diff.added.size();
    if (!take_removed && r < diff.removed.size()) {
      take_removed = KeyOf(diff.removed[r]) <= KeyOf(diff.added[a]);
    }
    const std::string& line = take_removed ? diff.removed[r] : diff.added[a];
    // The same object on the other side, if it changed rather than came or went.
    const std::string* other = nullptr;
    if (take_removed && a < diff.added.size() && KeyOf(diff.added[a]) == KeyOf(line)) {
      other = &diff.added[a];
    } else if (!take_removed && r > 0 && KeyOf(diff.removed[r - 1]) == KeyOf(line)) {
      other = &diff.removed[r - 1];
    }
    absl::StrAppend(&out, take_removed ? "-" : "+", Clip(line, other, max_width), "\n");
    (take_removed ? r : a)++;
    ++shown;
  }
  if (shown < total) absl::StrAppend(&out, "... and ", total - shown, " more lines\n");
  return out;
}

}  // namespace schemagate
