// Batches of transactional steps: consecutive one-statement migrations sent
// to the database in one round trip, each still in its own transaction.
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/base/log.h"
#include "coordinator/engine/runner.h"

namespace schemagate {
namespace {

constexpr size_t kMaxBatchSteps = 64;
constexpr size_t kMaxBatchBytes = 256 * 1024;

bool Batchable(const PlanStep& step) {
  return step.up && step.transactional() && step.script->statements.size() == 1 &&
         !step.migration->breaking();
}

}  // namespace

size_t Runner::BatchableFrom(const std::vector<PlanStep>& steps, size_t first) {
  size_t bytes = 0;
  size_t n = 0;
  while (first + n < steps.size() && n < kMaxBatchSteps && bytes < kMaxBatchBytes &&
         Batchable(steps[first + n])) {
    bytes += steps[first + n].script->statements.front().text.size();
    ++n;
  }
  return n;
}

absl::Status Runner::ExecuteBatch(const RunContext& run, const std::vector<PlanStep>& steps,
                                  size_t first, size_t n, size_t* done) {
  std::vector<RunSession::BatchStep> batch;
  batch.reserve(n);
  for (size_t i = first; i < first + n; ++i) {
    batch.push_back({&steps[i].script->statements, steps[i].limits, RecordOf(run, steps[i])});
  }
  // Progress as a step at a time gives it, while the batch runs: a step's
  // start is announced by the database, and means the ones before it
  // committed.
  size_t finished = 0;
  absl::Time began = absl::Now();
  auto finish_before = [&](size_t index) {
    for (; finished < index; ++finished) {
      const PlanStep& step = steps[first + finished];
      run.emit(StepEvent(RunEvent::Kind::kMigrationFinished, step, began));
      LogInfo("run %s: applied %s in %s", run.run_id, step.migration->Label(),
              absl::FormatDuration(absl::Now() - began));
      began = absl::Now();
    }
  };
  auto on_step = [&](size_t index) {
    if (index >= n) return;
    finish_before(index);
    const PlanStep& step = steps[first + index];
    run.emit(StepEvent(RunEvent::Kind::kMigrationStarted, step, began));
    RunEvent statement = StepEvent(RunEvent::Kind::kStatementStarted, step, began);
    statement.statement_index = 1;
    run.emit(statement);
  };
  size_t committed = 0;
  SqlFailure failure;
  const absl::Status status = run.session->RunTransactionalBatch(batch, on_step, &committed,
                                                                 &failure);
  finish_before(committed);
  *done = committed;
  if (status.ok()) return status;
  if (!absl::IsFailedPrecondition(status) || failure.sqlstate.empty()) return status;
  if (failure.lock_timeout) return absl::OkStatus();
  return ReportFailure(run, steps[first + committed], /*resuming=*/false, began, failure);
}

}  // namespace schemagate
