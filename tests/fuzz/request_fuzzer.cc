// Fuzzes what the coordinator does with a request an agent or an operator
// sends, before any database work: the protobuf decoding, the validation and
// conversion (FromProto), the fleet rules that answer Check/Wait/Attach
// (ResolveTarget, EvaluateReadiness) and the plan (BuildPlan, with lint).
//
// Input: byte 0 picks the request message (kinds below), byte 1 picks the
// coordinator's state (database up or down, a failure recorded, a dirty row,
// conflicts, a run under way, manual mode, old live instances, a rollback
// hold), the rest is the message in protobuf wire format. The state is built
// once from a small in-memory migration set; nothing touches the network or
// a database.
//
// Checks beyond "no crash": a target FromProto accepts converts back to the
// same message; every answer is a known state with a message; a plan lists
// only pending versions of the set, in order.
//
// Every request goes through its validator (coordinator/server/request_limits.h),
// as each handler does first: a refusal must be INVALID_ARGUMENT with a
// message, and only accepted requests go on to the engine.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "coordinator/engine/migration_set.h"
#include "coordinator/server/proto_convert.h"
#include "coordinator/engine/readiness.h"
#include "coordinator/server/request_limits.h"
#include "google/protobuf/stubs/logging.h"
#include "schemagate/v1/schemagate.pb.h"
#include "tests/fuzz/fuzz_check.h"

namespace schemagate {
namespace {

enum RequestKind : uint8_t {
  kCheck,
  kWait,
  kAttach,
  kPlan,
  kApply,
  kRollback,
  kRepair,
  kBaseline,
  kHistory,
  kWatchEvents,
  kReadiness,  // What an agent decodes from a coordinator's answer.
  kKindCount,
};

// Bits of byte 1.
enum StateBits : uint8_t {
  kDatabaseDown = 1 << 0,
  kFailureRecorded = 1 << 1,
  kDirtyRow = 1 << 2,
  kConflicts = 1 << 3,
  kRunInProgress = 1 << 4,
  kManual = 1 << 5,
  kOldInstancesLive = 1 << 6,
  kHeldByRollback = 1 << 7,
};

// The coordinator's set: a baseline, a no-transaction index, a breaking
// contract change, and a later expand step.
const MigrationSet& FixtureSet() {
  static const MigrationSet* const set = [] {
    std::vector<std::string> warnings;
    absl::StatusOr<MigrationSet> loaded = MigrationSet::LoadFiles(
        "fixture",
        {{"0001_users.up.sql", "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n"},
         {"0001_users.down.sql", "DROP TABLE users;\n"},
         {"0002_email_index.up.sql",
          "-- schemagate:no-transaction\n-- schemagate:lock-timeout=2s\n"
          "CREATE INDEX CONCURRENTLY users_email ON users (email);\n"},
         {"0003_drop_email.up.sql",
          "-- schemagate:breaking\nALTER TABLE users DROP COLUMN email;\n"},
         {"0004_add_name.up.sql", "ALTER TABLE users ADD COLUMN name text;\n"}},
        &warnings);
    FUZZ_CHECK(loaded.ok());
    return new MigrationSet(*std::move(loaded));
  }();
  return *set;
}

std::shared_ptr<const Snapshot> FixtureSnapshot(uint8_t bits) {
  static std::shared_ptr<const Snapshot>* const snapshots = [] {
    auto* all = new std::shared_ptr<const Snapshot>[256];
    const MigrationSet& set = FixtureSet();
    for (int b = 0; b < 256; ++b) {
      auto snapshot = std::make_shared<Snapshot>();
      SchemaView& view = snapshot->view;
      view.set = &set;
      view.database_available = (b & kDatabaseDown) == 0;
      if (!view.database_available) view.database_error = "connection refused";
      view.db.initialized = true;
      AppliedMigration first;
      first.version = 1;
      first.name = "users";
      first.checksum = set.Find(1)->checksum;
      view.db.applied.push_back(first);
      if (b & kDirtyRow) {
        AppliedMigration dirty;
        dirty.version = 2;
        dirty.name = "email_index";
        dirty.checksum = set.Find(2)->checksum;
        dirty.dirty = true;
        view.db.applied.push_back(dirty);
      }
      if (b & kFailureRecorded) {
        SqlFailure failure;
        failure.version = 3;
        failure.name = "drop_email";
        failure.sqlstate = "42703";
        failure.message = "column \"email\" does not exist";
        failure.statement_index = 1;
        failure.line = 2;
        view.db.failure = failure;
      }
      if (b & kConflicts) view.conflicts = FindConflicts(set, view.db);
      if (b & kConflicts) view.conflicts.push_back("version 9 (gone) is applied but has no file");
      view.run_in_progress = (b & kRunInProgress) != 0;
      view.db.run_in_progress = view.run_in_progress;
      view.manual = (b & kManual) != 0;
      if (b & kOldInstancesLive) {
        for (int64_t known : {1, 2}) {
          InstanceRecord old;
          old.instance_id = absl::StrCat("old-", known);
          old.known_version = known;
          view.db.live_instances.push_back(old);
        }
      }
      if (b & kHeldByRollback) view.db.hold_above = 1;
      InstanceRecord instance;
      instance.instance_id = "pod-1";
      instance.app = "api";
      instance.app_version = "1.0";
      instance.known_version = 2;
      instance.required_version = 2;
      view.db.live_instances.push_back(instance);
      all[b] = std::move(snapshot);
    }
    return all;
  }();
  return snapshots[bits];
}

void CheckAnswer(const ReadinessAnswer& answer) {
  FUZZ_CHECK(!answer.message.empty());
  v1::Readiness out;
  ToProto(answer, "fuzz-coordinator", &out);
  FUZZ_CHECK(out.state() != v1::READINESS_STATE_UNSPECIFIED);
  FUZZ_CHECK(FromProto(out) == answer);
}

// Check, Wait and Attach carry the same target; the service converts it,
// then answers with the fleet rules.
void HandleTarget(const v1::AppTarget& in, const Snapshot& snapshot) {
  AppTarget target;
  if (!FromProto(in, &target).ok()) return;
  v1::AppTarget back;
  ToProto(target, &back);
  FUZZ_CHECK(back.app() == in.app() && back.app_version() == in.app_version());
  FUZZ_CHECK(back.known_version() == in.known_version());
  FUZZ_CHECK(back.required_version() == in.required_version());
  FUZZ_CHECK(back.checksums_size() == in.checksums_size());

  const AppTarget resolved = ResolveTarget(target, *snapshot.view.set);
  FUZZ_CHECK(resolved.known_version >= 0 && resolved.required_version >= 0);
  const ReadinessAnswer answer = EvaluateReadiness(target, snapshot.view);
  CheckAnswer(answer);
  FUZZ_CHECK(answer.known_version == resolved.known_version);
  FUZZ_CHECK(answer.required_version == resolved.required_version);
}

void HandlePlan(int64_t target_version, bool rollback, const Snapshot& snapshot) {
  v1::PlanRequest request;
  request.set_target_version(target_version);
  request.set_rollback(rollback);
  v1::PlanResponse plan;
  if (!BuildPlan(snapshot, RunnerOptions(), request, &plan).ok()) return;
  int64_t previous = 0;
  for (const v1::PlanStep& step : plan.steps()) {
    FUZZ_CHECK(step.version() > previous);
    previous = step.version();
    FUZZ_CHECK(snapshot.view.set->Find(step.version()) != nullptr);
    FUZZ_CHECK(snapshot.view.db.Find(step.version()) == nullptr);
    FUZZ_CHECK(target_version == 0 || step.version() <= target_version);
  }
}

template <typename Message>
bool Decode(absl::string_view bytes, Message* message) {
  return message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

// A validator's answer: accepted, or INVALID_ARGUMENT saying what is wrong.
bool Accepted(const absl::Status& status) {
  FUZZ_CHECK(status.ok() || (absl::IsInvalidArgument(status) && !status.message().empty()));
  return status.ok();
}

void FuzzRequest(absl::string_view input) {
  // Protobuf logs every string field that is not UTF-8 as it refuses the
  // message; millions of such lines would only slow the fuzzer down.
  static const bool quiet = [] {
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  if (input.size() < 2) return;
  const uint8_t kind = static_cast<uint8_t>(input[0]) % kKindCount;
  const std::shared_ptr<const Snapshot> snapshot = FixtureSnapshot(static_cast<uint8_t>(input[1]));
  const absl::string_view bytes = input.substr(2);
  switch (kind) {
    case kCheck: {
      v1::CheckRequest request;
      if (Decode(bytes, &request) && Accepted(ValidateCheckRequest(request))) {
        HandleTarget(request.target(), *snapshot);
      }
      break;
    }
    case kWait: {
      v1::WaitRequest request;
      if (Decode(bytes, &request) && Accepted(ValidateWaitRequest(request))) {
        HandleTarget(request.target(), *snapshot);
      }
      break;
    }
    case kAttach: {
      v1::AttachRequest request;
      if (Decode(bytes, &request) && Accepted(ValidateAttachRequest(request))) {
        HandleTarget(request.target(), *snapshot);
      }
      break;
    }
    case kPlan: {
      v1::PlanRequest request;
      if (Decode(bytes, &request) && Accepted(ValidatePlanRequest(request))) {
        HandlePlan(request.target_version(), request.rollback(), *snapshot);
      }
      break;
    }
    case kApply: {
      // A dry run is the plan to the requested version.
      v1::ApplyRequest request;
      if (Decode(bytes, &request) && Accepted(ValidateApplyRequest(request))) {
        HandlePlan(request.target_version(), false, *snapshot);
      }
      break;
    }
    case kRollback: {
      v1::RollbackRequest request;
      if (Decode(bytes, &request)) Accepted(ValidateRollbackRequest(request));
      break;
    }
    case kRepair: {
      v1::RepairRequest request;
      if (Decode(bytes, &request)) Accepted(ValidateRepairRequest(request));
      break;
    }
    case kBaseline: {
      v1::BaselineRequest request;
      if (Decode(bytes, &request)) Accepted(ValidateBaselineRequest(request));
      break;
    }
    case kHistory: {
      v1::HistoryRequest request;
      if (Decode(bytes, &request)) Accepted(ValidateHistoryRequest(request));
      break;
    }
    case kWatchEvents: {
      v1::WatchEventsRequest request;
      if (Decode(bytes, &request)) Accepted(ValidateWatchEventsRequest(request));
      break;
    }
    case kReadiness: {
      v1::Readiness readiness;
      if (Decode(bytes, &readiness)) {
        const ReadinessAnswer answer = FromProto(readiness);
        (void)ReadinessStateName(answer.state);
        (void)IsFinal(answer.state);
      }
      break;
    }
  }
  // Every live instance gets a state: ListInstances from the same snapshot.
  v1::ListInstancesResponse instances;
  BuildInstances(*snapshot, &instances);
  FUZZ_CHECK(instances.instances_size() ==
             static_cast<int>(snapshot->view.db.live_instances.size()));
}

}  // namespace
}  // namespace schemagate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  schemagate::FuzzRequest(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
