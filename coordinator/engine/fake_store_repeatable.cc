// FakeDatabase's `repeatables` table (fake_store.h), kept as PgStore keeps
// it (coordinator/postgres/pg_repeatables.cc).
#include <algorithm>

#include "coordinator/engine/fake_store.h"

namespace schemagate {

absl::Status FakeDatabase::CommitRepeatableLocked(const StepRecord& record,
                                                  absl::Duration duration) {
  AppliedRepeatable& row = repeatables_[record.name];
  row.name = record.name;
  row.checksum = record.checksum;
  row.applied_at = absl::FromUnixMicros(absl::ToUnixMicros(clock_->Now()));
  row.duration = duration;
  row.applied_by = record.actor;
  row.run_id = record.run_id;
  EventRecord event;
  event.kind = "repeatable";
  event.name = record.name;
  event.run_id = record.run_id;
  event.actor = record.actor;
  event.duration = duration;
  event.message = record.message;
  event.checksum = record.checksum;
  AppendEventLocked(std::move(event));
  NotifyLocked();
  return absl::OkStatus();
}

void FakeDatabase::RepeatablesLocked(DatabaseState* state) const {
  for (const auto& [name, row] : repeatables_) state->repeatables.push_back(row);
  for (const EventRecord& event : events_) {
    if (event.kind != "repeatable" || event.checksum.empty()) continue;
    std::vector<std::string>& texts = state->repeatable_texts[event.name];
    if (std::find(texts.begin(), texts.end(), event.checksum) == texts.end()) {
      texts.push_back(event.checksum);
    }
  }
}

}  // namespace schemagate
