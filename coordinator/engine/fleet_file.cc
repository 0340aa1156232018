// The fleet file (fleet_file.h).
#include "coordinator/engine/fleet_file.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/base/conninfo.h"
#include "coordinator/base/flags.h"
#include "coordinator/base/text.h"
#include "coordinator/sql/sql_split.h"

namespace schemagate {
namespace {

constexpr char kDocs[] = "docs/many-databases.md";

bool IsEnvName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

bool IsSchemaName(absl::string_view name) {
  if (name.empty() || name.size() > 63 ||
      absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_islower(static_cast<unsigned char>(c)) ||
           absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_';
  });
}

bool IsLabelKey(absl::string_view key) {
  return !key.empty() && key.size() <= 63 && std::all_of(key.begin(), key.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == '/';
  });
}

// A map's entries by key, with the key's node (for its mark).
struct Entry {
  YAML::Node key;
  YAML::Node value;
};

class Parser {
 public:
  Parser(std::string path, const EnvLookup& env) : path_(std::move(path)), env_(env) {}

  absl::Status Error(const YAML::Mark& mark, absl::string_view what) const {
    if (mark.is_null()) return absl::InvalidArgumentError(absl::StrCat(path_, ": ", what));
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ":", mark.line + 1, ":", mark.column + 1, ": ", what));
  }

  // `node`'s entries, each key once and known; `where` names the map.
  absl::StatusOr<std::map<std::string, Entry>> Entries(const YAML::Node& node,
                                                       const std::vector<std::string>& known,
                                                       absl::string_view where) const {
    if (!node.IsMap()) {
      return Error(node.Mark(), absl::StrCat(where, " must be a map of ",
                                             absl::StrJoin(known, ", "), " (key: value lines)"));
    }
    std::map<std::string, Entry> entries;
    for (YAML::const_iterator it = node.begin(); it != node.end(); ++it) {
      // Copies: yaml-cpp's iterator hands out a temporary pair (a reference
      // to its members dangles after the statement).
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) return Error(key.Mark(), "a key must be a plain word");
      const std::string& k = key.Scalar();
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        std::string hint;
        for (const std::string& candidate : known) {
          if (EditDistance(k, candidate) <= 2)
            hint = absl::StrCat("; did you mean '", candidate, "'?");
        }
        return Error(key.Mark(), absl::StrCat("unknown key '", k, "' in ", where, hint,
                                              " (known: ", absl::StrJoin(known, ", "), ")"));
      }
      if (!entries.emplace(k, Entry{key, value}).second) {
        return Error(key.Mark(), absl::StrCat("'", k, "' is given twice in ", where, "; keep one"));
      }
    }
    return entries;
  }

  // The text of a scalar value; an error for a list, a map or nothing.
  absl::StatusOr<std::string> Text(const Entry& e, absl::string_view where) const {
    if (e.value.IsNull() || (e.value.IsScalar() && e.value.Scalar().empty())) {
      return Error(e.key.Mark(), absl::StrCat(where, " is empty; give it a value or leave it out"));
    }
    if (!e.value.IsScalar()) {
      return Error(e.value.Mark(),
                   absl::StrCat(where, " must be a single value, not a list or a map"));
    }
    return e.value.Scalar();
  }

  absl::StatusOr<absl::Duration> Duration(const Entry& e, absl::string_view where) const {
    absl::StatusOr<std::string> text = Text(e, where);
    if (!text.ok()) return text.status();
    absl::StatusOr<absl::Duration> d = ParseFlagDuration(std::string(where), *text);
    if (!d.ok()) return Error(e.value.Mark(), d.status().message());
    return *d;
  }

  absl::StatusOr<Labels> LabelMap(const Entry& e, absl::string_view where) const {
    Labels labels;
    if (e.value.IsNull()) return labels;
    if (!e.value.IsMap()) {
      return Error(e.value.Mark(), absl::StrCat(where, " must be a map, e.g. {tier: canary}"));
    }
    for (YAML::const_iterator it = e.value.begin(); it != e.value.end(); ++it) {
      const YAML::Node key = it->first;  // copies, as in Entries
      const YAML::Node value = it->second;
      if (!key.IsScalar() || !IsLabelKey(key.Scalar())) {
        return Error(key.Mark(), absl::StrCat("a label key in ", where,
                                              " is letters, digits and _ - . / (at most 63)"));
      }
      if (!value.IsScalar()) {
        return Error(value.Mark(),
                     absl::StrCat("label '", key.Scalar(), "' must be a single value"));
      }
      if (!labels.emplace(key.Scalar(), value.Scalar()).second) {
        return Error(key.Mark(), absl::StrCat("label '", key.Scalar(), "' is given twice"));
      }
    }
    return labels;
  }

  // `url` or `url_env` (exactly one), resolved; a password in the file is refused.
  absl::Status Url(const std::map<std::string, Entry>& entries, const YAML::Mark& at,
                   absl::string_view where, std::string* url, std::string* url_env) const {
    auto u = entries.find("url");
    auto v = entries.find("url_env");
    if ((u == entries.end()) == (v == entries.end())) {
      return Error(u != entries.end() ? u->second.key.Mark() : at,
                   absl::StrCat(where,
                                " needs one of url_env (the name of an environment "
                                "variable holding the URL) or url, not ",
                                u == entries.end() ? "neither" : "both"));
    }
    if (u != entries.end()) {
      absl::StatusOr<std::string> text = Text(u->second, "url");
      if (!text.ok()) return text.status();
      if (RedactSecrets(*text) != *text) {
        return Error(u->second.value.Mark(),
                     "a password is written in the file; write url_env: SOME_VARIABLE instead and "
                     "put the URL in $SOME_VARIABLE (secrets come from the environment)");
      }
      *url = *text;
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> name = Text(v->second, "url_env");
    if (!name.ok()) return name.status();
    if (!IsEnvName(*name)) {
      return Error(v->second.value.Mark(),
                   absl::StrCat("url_env names an environment variable (letters, digits, _), "
                                "not '",
                                *name, "'"));
    }
    std::optional<std::string> value = env_(*name);
    if (!value || value->empty()) {
      return Error(v->second.value.Mark(),
                   absl::StrCat("url_env: $", *name, " is not set; export ", *name,
                                "=postgres://… before starting schemagated"));
    }
    *url_env = *name;
    *url = *value;
    return absl::OkStatus();
  }

  absl::StatusOr<DatabaseSpec> Database(const YAML::Node& node) const {
    DatabaseSpec spec;
    spec.line = node.Mark().line + 1;
    absl::StatusOr<std::map<std::string, Entry>> entries =
        Entries(node, {"name", "url", "url_env", "schema", "labels"}, "a database");
    if (!entries.ok()) return entries.status();
    auto name = entries->find("name");
    if (name == entries->end()) {
      return Error(node.Mark(), "a database needs a name: (unique, [a-z0-9_.-]+)");
    }
    absl::StatusOr<std::string> text = Text(name->second, "name");
    if (!text.ok()) return text.status();
    if (!IsValidDatabaseName(*text)) {
      return Error(name->second.value.Mark(),
                   absl::StrCat("database name '", *text, "': use a-z, 0-9, _ . - (at most 63)"));
    }
    spec.name = *text;
    if (absl::Status s = Url(*entries, node.Mark(), absl::StrCat("database ", spec.name), &spec.url,
                             &spec.url_env);
        !s.ok()) {
      return s;
    }
    if (auto schema = entries->find("schema"); schema != entries->end()) {
      absl::StatusOr<std::string> s = Text(schema->second, "schema");
      if (!s.ok()) return s.status();
      if (!IsSchemaName(*s) || absl::StartsWith(*s, "pg_") || *s == "information_schema") {
        return Error(schema->second.value.Mark(),
                     absl::StrCat("schema '", *s,
                                  "': a lower-case schema name (a-z, 0-9, _; "
                                  "not pg_… or information_schema)"));
      }
      spec.schema = *s;
    }
    if (auto labels = entries->find("labels"); labels != entries->end()) {
      absl::StatusOr<Labels> l = LabelMap(labels->second, "labels");
      if (!l.ok()) return l.status();
      spec.labels = *std::move(l);
    }
    return spec;
  }

  absl::StatusOr<DiscoverSpec> Discover(const Entry& e) const {
    DiscoverSpec spec;
    spec.line = e.key.Mark().line + 1;
    absl::StatusOr<std::map<std::string, Entry>> entries =
        Entries(e.value, {"url", "url_env", "query", "every"}, "discover");
    if (!entries.ok()) return entries.status();
    if (absl::Status s = Url(*entries, e.value.Mark(), "discover", &spec.url, &spec.url_env);
        !s.ok()) {
      return s;
    }
    auto query = entries->find("query");
    if (query == entries->end()) {
      return Error(e.value.Mark(),
                   "discover needs a query: returning name (and optionally url, schema; every "
                   "other column is a label)");
    }
    absl::StatusOr<std::string> q = Text(query->second, "discover.query");
    if (!q.ok()) return q.status();
    absl::StatusOr<std::vector<SqlStatement>> statements = SplitSql(*q);
    if (!statements.ok()) {
      return Error(query->second.value.Mark(),
                   absl::StrCat("discover.query does not parse: ", statements.status().message()));
    }
    if (statements->size() != 1) {
      return Error(query->second.value.Mark(), "discover.query must be one SELECT statement");
    }
    spec.query = *q;
    if (auto every = entries->find("every"); every != entries->end()) {
      absl::StatusOr<absl::Duration> d = Duration(every->second, "discover.every");
      if (!d.ok()) return d.status();
      if (*d < absl::Seconds(1)) {
        return Error(every->second.value.Mark(), "discover.every must be at least 1s");
      }
      spec.every = *d;
    }
    return spec;
  }

  absl::StatusOr<WaveSpec> Wave(const YAML::Node& node) const {
    WaveSpec spec;
    spec.line = node.Mark().line + 1;
    absl::StatusOr<std::map<std::string, Entry>> entries =
        Entries(node, {"name", "match", "parallel", "soak"}, "a wave");
    if (!entries.ok()) return entries.status();
    auto name = entries->find("name");
    if (name == entries->end()) return Error(node.Mark(), "a wave needs a name:");
    absl::StatusOr<std::string> text = Text(name->second, "name");
    if (!text.ok()) return text.status();
    if (!IsValidDatabaseName(*text)) {
      return Error(name->second.value.Mark(),
                   absl::StrCat("wave name '", *text, "': use a-z, 0-9, _ . - (at most 63)"));
    }
    spec.name = *text;
    if (auto match = entries->find("match"); match != entries->end()) {
      absl::StatusOr<Labels> l = LabelMap(match->second, "match");
      if (!l.ok()) return l.status();
      spec.match = *std::move(l);
    }
    if (auto parallel = entries->find("parallel"); parallel != entries->end()) {
      absl::StatusOr<std::string> p = Text(parallel->second, "parallel");
      if (!p.ok()) return p.status();
      if (!absl::SimpleAtoi(*p, &spec.parallel) || spec.parallel < 1 || spec.parallel > 64) {
        return Error(parallel->second.value.Mark(),
                     absl::StrCat("parallel is how many databases of the wave run at once: a "
                                  "whole number from 1 to 64, not '",
                                  *p, "'"));
      }
    }
    if (auto soak = entries->find("soak"); soak != entries->end()) {
      absl::StatusOr<absl::Duration> d = Duration(soak->second, "soak");
      if (!d.ok()) return d.status();
      spec.soak = *d;
    }
    return spec;
  }

  absl::StatusOr<FleetSpec> File(const YAML::Node& root) const {
    FleetSpec spec;
    spec.path = path_;
    if (root.IsNull()) {
      return Error(YAML::Mark::null_mark(),
                   absl::StrCat("the fleet file is empty; list databases: (name, url_env) and/or "
                                "a discover: query (",
                                kDocs, ")"));
    }
    absl::StatusOr<std::map<std::string, Entry>> entries =
        Entries(root, {"databases", "discover", "waves", "on_failure"}, "the fleet file");
    if (!entries.ok()) return entries.status();
    if (auto databases = entries->find("databases"); databases != entries->end()) {
      const YAML::Node& list = databases->second.value;
      if (!list.IsNull() && !list.IsSequence()) {
        return Error(list.Mark(), "databases must be a list (each entry starts with '- name:')");
      }
      std::map<std::string, int> names;
      std::map<std::pair<std::string, std::string>, std::string> places;
      for (const YAML::Node node : list) {  // a copy: *it is a temporary
        absl::StatusOr<DatabaseSpec> db = Database(node);
        if (!db.ok()) return db.status();
        if (auto [it, added] = names.emplace(db->name, db->line); !added) {
          return Error(node.Mark(),
                       absl::StrCat("database name '", db->name, "' is also used on line ",
                                    it->second, "; names are unique"));
        }
        if (auto [it, added] = places.emplace(std::make_pair(db->url, db->schema), db->name);
            !added) {
          return Error(node.Mark(), absl::StrCat("database '", db->name, "' is the same ",
                                                 db->schema.empty() ? "database" : "schema",
                                                 " as '", it->second, "'; list it once"));
        }
        spec.databases.push_back(*std::move(db));
      }
    }
    if (auto discover = entries->find("discover"); discover != entries->end()) {
      absl::StatusOr<DiscoverSpec> d = Discover(discover->second);
      if (!d.ok()) return d.status();
      spec.discover = *std::move(d);
    }
    if (spec.databases.empty() && !spec.discover) {
      return Error(root.Mark(), absl::StrCat("the fleet file lists no databases; add databases: "
                                             "(name, url_env) or a discover: query (",
                                             kDocs, ")"));
    }
    if (auto waves = entries->find("waves"); waves != entries->end()) {
      const YAML::Node& list = waves->second.value;
      if (!list.IsSequence() || list.size() == 0) {
        return Error(waves->second.key.Mark(),
                     "waves must be a non-empty list (- {name: canary, match: {tier: canary}}); "
                     "leave it out for one wave of every database");
      }
      std::set<std::string> names;
      for (const YAML::Node node : list) {  // a copy: *it is a temporary
        absl::StatusOr<WaveSpec> wave = Wave(node);
        if (!wave.ok()) return wave.status();
        if (!names.insert(wave->name).second) {
          return Error(node.Mark(), absl::StrCat("wave name '", wave->name, "' is used twice"));
        }
        if (!spec.waves.empty() && spec.waves.back().match.empty()) {
          return Error(node.Mark(),
                       absl::StrCat("wave '", spec.waves.back().name,
                                    "' has no match, so it takes every database "
                                    "left and wave '",
                                    wave->name, "' would be empty; give '", spec.waves.back().name,
                                    "' a match: or make it "
                                    "the last wave"));
        }
        spec.waves.push_back(*std::move(wave));
      }
    } else {
      spec.waves.push_back(WaveSpec{"all", {}, 1, absl::ZeroDuration(), 0});
    }
    if (auto on_failure = entries->find("on_failure"); on_failure != entries->end()) {
      absl::StatusOr<std::string> text = Text(on_failure->second, "on_failure");
      if (!text.ok()) return text.status();
      if (*text == "halt") {
        spec.on_failure = OnFailure::kHalt;
      } else if (*text == "continue") {
        spec.on_failure = OnFailure::kContinue;
      } else {
        return Error(on_failure->second.value.Mark(),
                     absl::StrCat("on_failure is halt (stop the rollout at the first failure) or "
                                  "continue (let the other databases go on), not '",
                                  *text, "'"));
      }
    }
    return spec;
  }

 private:
  const std::string path_;
  const EnvLookup& env_;
};

}  // namespace

std::optional<std::string> ProcessEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

bool IsValidDatabaseName(absl::string_view name) {
  return !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_islower(static_cast<unsigned char>(c)) ||
           absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

absl::StatusOr<FleetSpec> ParseFleetText(absl::string_view text, const std::string& path,
                                         const EnvLookup& env) {
  Parser parser(path, env);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return parser.Error(e.mark, absl::StrCat("not valid YAML: ", e.msg));
  }
  try {
    return parser.File(root);
  } catch (const YAML::Exception& e) {  // a node of an unexpected kind
    return parser.Error(e.mark, e.msg);
  }
}

absl::StatusOr<FleetSpec> ParseFleetFile(const std::string& path, const EnvLookup& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot read the fleet file (--databases); check the path"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseFleetText(text.str(), path, env);
}

std::vector<int> AssignWaves(const FleetSpec& spec, const std::vector<DatabaseSpec>& databases) {
  std::vector<int> waves;
  waves.reserve(databases.size());
  const int last = static_cast<int>(spec.waves.size()) - 1;
  for (const DatabaseSpec& db : databases) {
    int wave = last;
    for (int i = 0; i <= last; ++i) {
      const Labels& match = spec.waves[i].match;
      const bool matches = std::all_of(match.begin(), match.end(),
                                       [&](const std::pair<const std::string, std::string>& kv) {
                                         auto it = db.labels.find(kv.first);
                                         return it != db.labels.end() && it->second == kv.second;
                                       });
      if (matches) {
        wave = i;
        break;
      }
    }
    waves.push_back(wave);
  }
  return waves;
}

}  // namespace schemagate
