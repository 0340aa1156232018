// Google Benchmark: what schemagate itself spends per waiting stream when a
// new snapshot is published (coordinator.cc Publish -> agent_service.cc
// OnStateChanged): evaluate the app's readiness against the snapshot and
// build the Readiness message. The rest of a fan-out is gRPC's; comparing
// this figure with the fan-out's CPU per stream tells whose cost it is.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/server/wire.h"
#include "coordinator/engine/readiness.h"
#include "schemagate/v1/schemagate.pb.h"

namespace schemagate {
namespace {

// A set of `count` trivial migrations, all applied (READY for the head).
struct Fixture {
  explicit Fixture(int count) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "schemagate-readiness.XXXXXX").string();
    dir = mkdtemp(pattern.data());
    for (int v = 1; v <= count; ++v) {
      std::ofstream(absl::StrCat(dir, "/", v, "_t", v, ".up.sql"))
          << "CREATE TABLE t" << v << " (id int);\n";
    }
    std::vector<std::string> warnings;
    set = *MigrationSet::LoadDirectory(dir, &warnings);
    view.set = &set;
    view.database_available = true;
    view.db.initialized = true;
    for (const Migration& m : set.migrations()) {
      AppliedMigration row;
      row.version = m.version;
      row.name = m.name;
      row.checksum = m.checksum;
      view.db.applied.push_back(row);
    }
    target.app = "bench";
    target.known_version = count;
    target.required_version = count;
  }
  ~Fixture() { std::filesystem::remove_all(dir); }

  std::string dir;
  MigrationSet set;
  SchemaView view;
  AppTarget target;
};

void BM_AnswerPerStream(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(0)));
  v1::Readiness message;
  for (auto _ : state) {
    ReadinessAnswer answer = EvaluateReadiness(f.target, f.view);
    ToProto(answer, "schemagated", &message);
    benchmark::DoNotOptimize(message);
  }
}
BENCHMARK(BM_AnswerPerStream)->Arg(30)->Arg(1000);

}  // namespace
}  // namespace schemagate

BENCHMARK_MAIN();
