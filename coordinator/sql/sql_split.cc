#include "coordinator/sql/sql_split.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "pg_query.h"
#include "pg_query.pb.h"

namespace schemagate {
namespace {

// Returns why `node` cannot run inside a transaction block, or "".
std::string NoTransactionReason(const pg_query::Node& node) {
  switch (node.node_case()) {
    case pg_query::Node::kIndexStmt:
      if (node.index_stmt().concurrent()) return "CREATE INDEX CONCURRENTLY";
      break;
    case pg_query::Node::kDropStmt:
      if (node.drop_stmt().concurrent()) return "DROP INDEX CONCURRENTLY";
      break;
    case pg_query::Node::kReindexStmt:
      for (const pg_query::Node& param : node.reindex_stmt().params()) {
        if (param.has_def_elem() &&
            absl::AsciiStrToLower(param.def_elem().defname()) == "concurrently") {
          return "REINDEX CONCURRENTLY";
        }
      }
      break;
    case pg_query::Node::kVacuumStmt:
      return node.vacuum_stmt().is_vacuumcmd() ? "VACUUM" : "";
    case pg_query::Node::kCreatedbStmt:
      return "CREATE DATABASE";
    case pg_query::Node::kDropdbStmt:
      return "DROP DATABASE";
    case pg_query::Node::kCreateTableSpaceStmt:
      return "CREATE TABLESPACE";
    case pg_query::Node::kDropTableSpaceStmt:
      return "DROP TABLESPACE";
    case pg_query::Node::kAlterSystemStmt:
      return "ALTER SYSTEM";
    default:
      break;
  }
  return "";
}

// Returns the offset just past the block comment that opens at `begin`, or
// npos if it does not close before `end`. PostgreSQL's block comments nest
// ("/* a /* b */ c */" is one comment), and inside one "--" and quotes mean
// nothing.
size_t SkipBlockComment(const std::string& text, size_t begin, size_t end) {
  int depth = 0;
  size_t i = begin;
  while (i + 1 < end) {
    if (text[i] == '/' && text[i + 1] == '*') {
      ++depth;
      i += 2;
    } else if (text[i] == '*' && text[i + 1] == '/') {
      i += 2;
      if (--depth == 0) return i;
    } else {
      ++i;
    }
  }
  return std::string::npos;
}

// Returns the first offset in [begin, end) that is neither blank nor inside a
// leading comment, so a statement's text and line are where its SQL starts.
size_t SkipBlanksAndComments(const std::string& text, size_t begin, size_t end) {
  while (begin < end) {
    if (absl::ascii_isspace(static_cast<unsigned char>(text[begin]))) {
      ++begin;
    } else if (text.compare(begin, 2, "--") == 0) {
      // As PostgreSQL's lexer: a "--" comment ends at a newline, \n or \r.
      while (begin < end && text[begin] != '\n' && text[begin] != '\r') ++begin;
    } else if (text.compare(begin, 2, "/*") == 0) {
      const size_t past = SkipBlockComment(text, begin, end);
      if (past == std::string::npos) return begin;
      begin = past;
    } else {
      break;
    }
  }
  return begin;
}

}  // namespace

absl::StatusOr<std::vector<SqlStatement>> SplitSql(absl::string_view sql) {
  // libpg_query reads a C string, so a NUL byte would silently end the input
  // there; and its parse tree carries text in protobuf strings, which do not
  // decode unless they are UTF-8.
  if (size_t nul = sql.find('\0'); nul != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", LineOfOffset(sql, nul), ": NUL byte in the SQL (byte ", nul, ")"));
  }
  if (size_t bad = FindInvalidUtf8(sql); bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", LineOfOffset(sql, bad), ": not valid UTF-8 (byte ", bad, ")"));
  }
  const std::string input(sql);
  PgQueryProtobufParseResult result = pg_query_parse_protobuf(input.c_str());
  if (result.error != nullptr) {
    // cursorpos is 1-based; 0 means "unknown", reported as the first line.
    const int cursor = result.error->cursorpos;
    const int line = cursor > 0 ? LineOfOffset(input, cursor - 1) : 1;
    std::string message = absl::StrCat("line ", line, ": ", result.error->message);
    pg_query_free_protobuf_parse_result(result);
    return absl::InvalidArgumentError(message);
  }
  pg_query::ParseResult tree;
  const bool parsed =
      tree.ParseFromArray(result.parse_tree.data, static_cast<int>(result.parse_tree.len));
  pg_query_free_protobuf_parse_result(result);
  if (!parsed) {
    return absl::InternalError("libpg_query returned a parse tree that does not decode");
  }

  std::vector<SqlStatement> statements;
  statements.reserve(tree.stmts_size());
  for (const pg_query::RawStmt& raw : tree.stmts()) {
    size_t begin = static_cast<size_t>(raw.stmt_location());
    size_t end = raw.stmt_len() == 0 ? input.size() : begin + raw.stmt_len();
    if (end > input.size()) end = input.size();
    begin = SkipBlanksAndComments(input, begin, end);
    while (end > begin && (absl::ascii_isspace(static_cast<unsigned char>(input[end - 1])) ||
                           input[end - 1] == ';')) {
      --end;
    }
    SqlStatement statement;
    statement.text = input.substr(begin, end - begin);
    statement.line = LineOfOffset(input, begin);
    statement.needs_no_transaction = NoTransactionReason(raw.stmt());
    statement.is_transaction_control = raw.stmt().has_transaction_stmt();
    statements.push_back(std::move(statement));
  }
  return statements;
}

IndexStatement DescribeIndexStatement(absl::string_view sql) {
  const std::string text(sql);
  PgQueryProtobufParseResult result = pg_query_parse_protobuf(text.c_str());
  IndexStatement described;
  pg_query::ParseResult tree;
  if (result.error == nullptr &&
      tree.ParseFromArray(result.parse_tree.data, static_cast<int>(result.parse_tree.len)) &&
      tree.stmts_size() == 1) {
    const pg_query::Node& node = tree.stmts(0).stmt();
    if (node.has_index_stmt() && !node.index_stmt().idxname().empty()) {
      const pg_query::IndexStmt& index = node.index_stmt();
      described.kind = IndexStatement::Kind::kCreate;
      described.schema = index.relation().schemaname();
      described.table = index.relation().relname();
      described.index = index.idxname();
      described.if_exists = index.if_not_exists();
      described.concurrently = index.concurrent();
    } else if (node.has_drop_stmt() &&
               node.drop_stmt().remove_type() == pg_query::OBJECT_INDEX &&
               node.drop_stmt().objects_size() == 1) {
      const pg_query::DropStmt& drop = node.drop_stmt();
      std::vector<std::string> parts;
      const pg_query::Node& object = drop.objects(0);
      if (object.has_list()) {
        for (const pg_query::Node& item : object.list().items()) {
          if (item.has_string()) parts.push_back(item.string().sval());
        }
      }
      // [name] or [schema, name]; a catalog-qualified name is left alone.
      if (parts.size() == 1 || parts.size() == 2) {
        described.kind = IndexStatement::Kind::kDrop;
        described.index = parts.back();
        if (parts.size() == 2) described.schema = parts[0];
        described.if_exists = drop.missing_ok();
        described.concurrently = drop.concurrent();
      }
    }
  }
  pg_query_free_protobuf_parse_result(result);
  return described;
}

}  // namespace schemagate
