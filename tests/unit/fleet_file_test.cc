// The fleet file (coordinator/engine/fleet_file.h): what a correct file
// gives, and each mistake refused with file:line:column and what to write.
#include "coordinator/engine/fleet_file.h"

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace schemagate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::map<std::string, std::string> kEnv = {
    {"EU1_DATABASE_URL", "postgres://app@eu1/app"},
    {"APP_DATABASE_URL", "postgres://app@db/app"},
    {"CONTROL_DATABASE_URL", "postgres://app@db/control"},
};

EnvLookup Env() {
  return [](const std::string& name) -> std::optional<std::string> {
    auto it = kEnv.find(name);
    if (it == kEnv.end()) return std::nullopt;
    return it->second;
  };
}

absl::StatusOr<FleetSpec> Parse(const std::string& text) {
  return ParseFleetText(text, "fleet.yaml", Env());
}

std::string Error(const std::string& text) {
  absl::StatusOr<FleetSpec> spec = Parse(text);
  EXPECT_FALSE(spec.ok()) << text;
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

constexpr char kDesignExample[] = R"(databases:                      # a static list (optional)
  - name: eu-1                  # unique, [a-z0-9_.-]+
    url_env: EU1_DATABASE_URL   # or url: postgres://host/db
    labels: {tier: canary, region: eu}
  - name: acme
    url_env: APP_DATABASE_URL
    schema: tenant_acme         # schema-per-tenant: one schema of that database
discover:                       # optional: found by a query, re-run every `every`
  url_env: CONTROL_DATABASE_URL
  query: SELECT nspname AS name, nspname AS schema FROM pg_namespace WHERE nspname LIKE 'tenant\_%'
  every: 30s
waves:
  - {name: canary, match: {tier: canary}, parallel: 1, soak: 2m}
  - {name: rest, parallel: 8}   # no match: every database not matched before
on_failure: halt                # or continue
)";

TEST(FleetFileTest, TheDesignExampleParses) {
  absl::StatusOr<FleetSpec> spec = Parse(kDesignExample);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->databases.size(), 2u);
  const DatabaseSpec& eu = spec->databases[0];
  EXPECT_EQ(eu.name, "eu-1");
  EXPECT_EQ(eu.url, "postgres://app@eu1/app");
  EXPECT_EQ(eu.url_env, "EU1_DATABASE_URL");
  EXPECT_EQ(eu.schema, "");
  EXPECT_EQ(eu.labels, (Labels{{"tier", "canary"}, {"region", "eu"}}));
  EXPECT_EQ(eu.line, 2);
  EXPECT_EQ(spec->databases[1].schema, "tenant_acme");
  EXPECT_EQ(spec->databases[1].line, 5);
  ASSERT_TRUE(spec->discover.has_value());
  EXPECT_EQ(spec->discover->url, "postgres://app@db/control");
  EXPECT_THAT(spec->discover->query, HasSubstr("FROM pg_namespace"));
  EXPECT_EQ(spec->discover->every, absl::Seconds(30));
  ASSERT_EQ(spec->waves.size(), 2u);
  EXPECT_EQ(spec->waves[0].name, "canary");
  EXPECT_EQ(spec->waves[0].match, (Labels{{"tier", "canary"}}));
  EXPECT_EQ(spec->waves[0].soak, absl::Minutes(2));
  EXPECT_EQ(spec->waves[1].parallel, 8);
  EXPECT_TRUE(spec->waves[1].match.empty());
  EXPECT_EQ(spec->on_failure, OnFailure::kHalt);
  EXPECT_THAT(AssignWaves(*spec, spec->databases), ElementsAre(0, 1));
}

TEST(FleetFileTest, DefaultsAreOneWaveOfEveryDatabaseOneAtATimeHaltingOnFailure) {
  absl::StatusOr<FleetSpec> spec = Parse("databases:\n  - name: a\n    url: postgres://app@db/a\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->waves.size(), 1u);
  EXPECT_EQ(spec->waves[0].name, "all");
  EXPECT_EQ(spec->waves[0].parallel, 1);
  EXPECT_EQ(spec->on_failure, OnFailure::kHalt);
  EXPECT_FALSE(spec->discover.has_value());
}

TEST(FleetFileTest, LabelsStayTextAndUnmatchedDatabasesGoInTheLastWave) {
  absl::StatusOr<FleetSpec> spec = Parse(
      "databases:\n"
      "  - {name: a, url_env: APP_DATABASE_URL, schema: t_a, labels: {tier: canary, beta: no}}\n"
      "  - {name: b, url_env: APP_DATABASE_URL, schema: t_b, labels: {tier: gold}}\n"
      "  - {name: c, url_env: APP_DATABASE_URL, schema: t_c}\n"
      "waves:\n"
      "  - {name: canary, match: {tier: canary}}\n"
      "  - {name: gold, match: {tier: gold}, parallel: 2}\n"
      "on_failure: continue\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->databases[0].labels.at("beta"), "no");  // not a YAML 1.1 boolean
  EXPECT_THAT(AssignWaves(*spec, spec->databases), ElementsAre(0, 1, 1));
  EXPECT_EQ(spec->on_failure, OnFailure::kContinue);
}

TEST(FleetFileTest, SyntaxErrorsAndEmptyFilesNameTheLine) {
  EXPECT_THAT(Error("databases:\n  - name: a\n   url: [oops\n"), HasSubstr("fleet.yaml:"));
  EXPECT_THAT(Error("databases:\n  - name: a\n   url: [oops\n"), HasSubstr("not valid YAML"));
  EXPECT_THAT(Error(""), HasSubstr("fleet.yaml: the fleet file is empty"));
  EXPECT_THAT(Error("- a\n- b\n"), HasSubstr("fleet.yaml:1:1: the fleet file must be a map"));
  EXPECT_THAT(Error("waves:\n  - {name: all}\n"),
              HasSubstr("fleet.yaml:1:1: the fleet file lists no databases"));
}

TEST(FleetFileTest, UnknownAndRepeatedKeysAreRefusedWithTheLikelyOne) {
  EXPECT_THAT(Error("databases:\n  - name: a\n    url_env: APP_DATABASE_URL\n"
                    "waves:\n  - {name: all, paralel: 4}\n"),
              HasSubstr("fleet.yaml:5:17: unknown key 'paralel' in a wave; did you mean "
                        "'parallel'?"));
  EXPECT_THAT(Error("database:\n  - name: a\n"),
              HasSubstr("fleet.yaml:1:1: unknown key 'database' in the fleet file; did you "
                        "mean 'databases'?"));
  EXPECT_THAT(Error("databases:\n  - name: a\n    name: b\n    url_env: APP_DATABASE_URL\n"),
              HasSubstr("fleet.yaml:3:5: 'name' is given twice in a database; keep one"));
}

TEST(FleetFileTest, DatabaseEntriesAreChecked) {
  EXPECT_THAT(Error("databases:\n  - url_env: APP_DATABASE_URL\n"),
              HasSubstr("fleet.yaml:2:5: a database needs a name:"));
  EXPECT_THAT(Error("databases:\n  - {name: Acme, url_env: APP_DATABASE_URL}\n"),
              HasSubstr("fleet.yaml:2:12: database name 'Acme': use a-z, 0-9, _ . -"));
  EXPECT_THAT(Error("databases:\n  - name: a\n"),
              HasSubstr("database a needs one of url_env (the name of an environment variable "
                        "holding the URL) or url, not neither"));
  EXPECT_THAT(Error("databases:\n  - {name: a, url: postgres://x/a, url_env: APP_DATABASE_URL}\n"),
              HasSubstr("not both"));
  EXPECT_THAT(Error("databases:\n  - name: a\n    url: postgres://app:s3cret@db/a\n"),
              HasSubstr("fleet.yaml:3:10: a password is written in the file; write url_env:"));
  EXPECT_THAT(Error("databases:\n  - name: a\n    url: host=db password=s3cret\n"),
              HasSubstr("a password is written in the file"));
  EXPECT_THAT(Error("databases:\n  - name: a\n    url_env: NOPE_URL\n"),
              HasSubstr("fleet.yaml:3:14: url_env: $NOPE_URL is not set; export NOPE_URL="));
  EXPECT_THAT(Error("databases:\n  - {name: a, url_env: APP_DATABASE_URL, schema: pg_temp}\n"),
              HasSubstr("schema 'pg_temp': a lower-case schema name"));
  EXPECT_THAT(Error("databases:\n  - {name: a, url_env: APP_DATABASE_URL, labels: [x]}\n"),
              HasSubstr("labels must be a map, e.g. {tier: canary}"));
  EXPECT_THAT(Error("databases:\n  - {name: a, url_env: APP_DATABASE_URL}\n"
                    "  - {name: a, url_env: EU1_DATABASE_URL}\n"),
              HasSubstr("fleet.yaml:3:5: database name 'a' is also used on line 2"));
  EXPECT_THAT(Error("databases:\n  - {name: a, url_env: APP_DATABASE_URL, schema: t}\n"
                    "  - {name: b, url: 'postgres://app@db/app', schema: t}\n"),
              HasSubstr("database 'b' is the same schema as 'a'; list it once"));
  EXPECT_THAT(Error("databases: {name: a}\n"), HasSubstr("databases must be a list"));
}

TEST(FleetFileTest, DiscoveryIsChecked) {
  EXPECT_THAT(Error("discover:\n  url_env: CONTROL_DATABASE_URL\n"),
              HasSubstr("fleet.yaml:2:3: discover needs a query:"));
  EXPECT_THAT(Error("discover:\n  url_env: CONTROL_DATABASE_URL\n  query: SELEC name FROM t\n"),
              HasSubstr("fleet.yaml:3:10: discover.query does not parse"));
  EXPECT_THAT(Error("discover:\n  url_env: CONTROL_DATABASE_URL\n"
                    "  query: SELECT 1 AS name; SELECT 2\n"),
              HasSubstr("discover.query must be one SELECT statement"));
  EXPECT_THAT(Error("discover:\n  url_env: CONTROL_DATABASE_URL\n  query: SELECT 'a' AS name\n"
                    "  every: 100ms\n"),
              HasSubstr("fleet.yaml:4:10: discover.every must be at least 1s"));
  EXPECT_THAT(Error("discover:\n  url_env: CONTROL_DATABASE_URL\n  query: SELECT 'a' AS name\n"
                    "  every: often\n"),
              HasSubstr("discover.every: 'often' is not a duration"));
  absl::StatusOr<FleetSpec> spec =
      Parse("discover:\n  url: postgres://app@db/control\n  query: SELECT 'a' AS name\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->databases.empty());
  EXPECT_EQ(spec->discover->every, absl::Seconds(30));
}

TEST(FleetFileTest, WavesAreChecked) {
  const std::string db = "databases:\n  - {name: a, url_env: APP_DATABASE_URL}\n";
  EXPECT_THAT(Error(db + "waves: []\n"), HasSubstr("waves must be a non-empty list"));
  EXPECT_THAT(Error(db + "waves:\n  - {match: {tier: x}}\n"), HasSubstr("a wave needs a name:"));
  EXPECT_THAT(Error(db + "waves:\n  - {name: w, parallel: 0}\n"),
              HasSubstr("fleet.yaml:4:25: parallel is how many databases of the wave run at "
                        "once: a whole number from 1 to 64, not '0'"));
  EXPECT_THAT(Error(db + "waves:\n  - {name: w, parallel: lots}\n"), HasSubstr("not 'lots'"));
  EXPECT_THAT(Error(db + "waves:\n  - {name: w, soak: 2 minutes}\n"),
              HasSubstr("soak: '2 minutes' is not a duration"));
  EXPECT_THAT(Error(db + "waves:\n  - {name: w}\n  - {name: w, match: {a: b}}\n"),
              HasSubstr("wave name 'w' is used twice"));
  EXPECT_THAT(Error(db + "waves:\n  - {name: rest}\n  - {name: canary, match: {tier: canary}}\n"),
              HasSubstr("fleet.yaml:5:5: wave 'rest' has no match, so it takes every database "
                        "left and wave 'canary' would be empty"));
  EXPECT_THAT(Error(db + "on_failure: stop\n"),
              HasSubstr("fleet.yaml:3:13: on_failure is halt (stop the rollout at the first "
                        "failure) or continue"));
}

TEST(FleetFileTest, AFileThatCannotBeReadIsNamed) {
  absl::StatusOr<FleetSpec> spec = ParseFleetFile("/nonexistent/fleet.yaml", Env());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("/nonexistent/fleet.yaml: cannot read"));
  testing::TempDir dir;
  const std::string path = dir.Write("fleet.yaml", kDesignExample);
  spec = ParseFleetFile(path, Env());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->path, path);
}

}  // namespace
}  // namespace schemagate
