// The coordinator's fleet side: the instance registry (attached agents,
// their leases, refused duplicate ids) and the breaking gate that decides
// when a breaking migration may run under the fleet it knows.
#include "coordinator/fleet/coordinator.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/base/log.h"
#include "coordinator/base/sha256.h"

namespace schemagate {

std::vector<AgentStreamInfo> Coordinator::AgentStreams() const {
  std::vector<std::shared_ptr<StateObserver>> observers;
  {
    absl::MutexLock lock(&observers_mu_);
    for (const auto& [ptr, observer] : observers_) observers.push_back(observer);
  }
  std::vector<AgentStreamInfo> out;
  for (auto& observer : observers) {
    if (std::optional<AgentStreamInfo> info = observer->agent_info()) out.push_back(*info);
  }
  return out;
}

absl::Duration Coordinator::BlockedBreakingFor() const {
  const std::shared_ptr<const Snapshot> snap = snapshot();
  for (const Migration& m : snap->set->migrations()) {
    if (snap->view.db.Find(m.version) != nullptr) continue;
    if (!m.breaking()) return absl::ZeroDuration();
    absl::MutexLock lock(&gate_mu_);
    auto it = breaking_blocked_since_.find(m.version);
    return it == breaking_blocked_since_.end() ? absl::ZeroDuration()
                                               : options_.clock->Now() - it->second;
  }
  return absl::ZeroDuration();
}

bool Coordinator::BreakingGate(const Migration& m, const DatabaseState& state,
                               absl::Duration grace) {
  const bool blocked = !InstancesBelow(state, m.version).empty();
  // No instance that predates it was live within the grace period, and no
  // agent that predates it waits on this coordinator (a fresh database, a
  // fleet that never attached): nothing can need the old schema, so there
  // is no grace period to wait out.
  bool recently_seen = false;
  const absl::Time now = options_.clock->Now();
  for (const InstanceRecord& i : state.lapsed_instances) {
    recently_seen = recently_seen || (i.known_version < m.version && i.lease_expires > now - grace);
  }
  if (!blocked && !recently_seen) {
    for (const AgentStreamInfo& agent : AgentStreams()) {
      recently_seen = recently_seen || (agent.known_version != 0 && agent.known_version < m.version);
    }
  }
  absl::MutexLock lock(&gate_mu_);
  if (blocked) {
    breaking_clear_since_.erase(m.version);
    breaking_blocked_since_.emplace(m.version, now);
    return false;
  }
  breaking_blocked_since_.erase(m.version);
  if (!recently_seen) return true;
  auto [it, inserted] = breaking_clear_since_.emplace(m.version, now);
  if (inserted && grace > absl::ZeroDuration()) {
    LogInfo("breaking migration %s: no live instance needs the old schema; applying after %s",
            m.Label(), absl::FormatDuration(grace));
  }
  return now - it->second >= grace;
}

std::string Coordinator::InstanceIdTakenMessage(const std::string& instance_id) const {
  return absl::StrCat(
      "instance id \"", instance_id,
      "\" is in use by another live agent process (another attach token); give each agent its "
      "own --instance-id, or leave it unset for a unique default, or wait until the other "
      "agent exits (its lease expires ", absl::FormatDuration(options_.lease_ttl),
      " after its last heartbeat)");
}

absl::Status Coordinator::InstanceAttached(const InstanceRecord& instance, const void* stream,
                                           InstanceRefused on_refused) {
  absl::MutexLock lock(&fleet_mu_);
  LocalInstance& local = local_instances_[instance.instance_id];
  if (!local.streams.empty() && !local.record.attach_token.empty() &&
      !instance.attach_token.empty() && local.record.attach_token != instance.attach_token) {
    return absl::AlreadyExistsError(InstanceIdTakenMessage(instance.instance_id));
  }
  local.record = instance;
  local.streams[stream] = std::move(on_refused);
  pending_joins_.push_back(instance);
  return absl::OkStatus();
}

void Coordinator::InstanceDetached(const std::string& instance_id, const void* stream,
                                   bool clean) {
  absl::MutexLock lock(&fleet_mu_);
  auto it = local_instances_.find(instance_id);
  if (it == local_instances_.end() || it->second.streams.erase(stream) == 0) return;
  if (!it->second.streams.empty()) return;
  local_instances_.erase(it);
  if (!clean) return;
  // A join not yet written (attached and gone within one fleet round) must
  // not be written after the leave: the round writes leaves first.
  pending_joins_.erase(std::remove_if(pending_joins_.begin(), pending_joins_.end(),
                                      [&](const InstanceRecord& join) {
                                        return join.instance_id == instance_id;
                                      }),
                       pending_joins_.end());
  pending_leaves_.push_back(instance_id);
}

void Coordinator::FleetLoop() {
  Clock* const clock = options_.clock;
  absl::Time next_refresh = clock->Now() + options_.lease_ttl / 3;
  bool bookkeeping_ready = false;
  while (!stopping_) {
    NapUnlessStopped(absl::Milliseconds(50));  // batches joins; not a time decision
    std::vector<InstanceRecord> joins;
    std::vector<std::string> leaves, live;
    // The next refresh is due a third of a lease after this round's decision,
    // whatever the writes below take (or however far a test moves the clock).
    const absl::Time round_at = clock->Now();
    const bool refresh = round_at >= next_refresh;
    {
      absl::MutexLock lock(&fleet_mu_);
      joins.swap(pending_joins_);
      leaves.swap(pending_leaves_);
      if (refresh) {
        for (const auto& [id, local] : local_instances_) live.push_back(id);
      }
    }
    if (joins.empty() && leaves.empty() && live.empty()) {
      if (refresh) next_refresh = round_at + options_.lease_ttl / 3;
      continue;
    }
    absl::Status status = absl::OkStatus();
    if (!bookkeeping_ready) {
      status = snapshot()->view.db.initialized ? absl::OkStatus() : store_->EnsureBookkeeping();
      bookkeeping_ready = status.ok();
    }
    // Leaves first: an id freed by a clean exit may be taken by a new
    // process in the same round.
    if (status.ok()) status = store_->RemoveInstances(leaves, options_.coordinator_id);
    if (status.ok()) {
      absl::StatusOr<std::vector<InstanceRecord>> refused =
          store_->UpsertInstances(joins, options_.lease_ttl);
      status = refused.status();
      if (refused.ok()) Refuse(*refused);
    }
    if (status.ok() && !live.empty()) status = store_->RefreshLeases(live, options_.lease_ttl);
    if (status.ok()) {
      if (refresh) next_refresh = round_at + options_.lease_ttl / 3;
      continue;
    }
    // Keep what was not written for the next round (the database may be away).
    LogWarning("fleet bookkeeping: %s; retrying", status.message());
    absl::MutexLock lock(&fleet_mu_);
    pending_joins_.insert(pending_joins_.begin(), joins.begin(), joins.end());
    pending_leaves_.insert(pending_leaves_.begin(), leaves.begin(), leaves.end());
    // Re-register everything local: a database that came back may have lost nothing,
    // but leases may have lapsed while it was away.
    if (refresh) {
      for (const auto& [id, local] : local_instances_) pending_joins_.push_back(local.record);
    }
    SleepUnlessStopped(absl::Milliseconds(500));
  }
}

void Coordinator::Refuse(const std::vector<InstanceRecord>& refused) {
  std::vector<std::pair<InstanceRefused, std::string>> calls;
  {
    absl::MutexLock lock(&fleet_mu_);
    for (const InstanceRecord& r : refused) {
      auto it = local_instances_.find(r.instance_id);
      // Gone meanwhile, or re-attached by the process that holds the id.
      if (it == local_instances_.end() || it->second.record.attach_token != r.attach_token) {
        continue;
      }
      LogWarning("refused instance %s: its id is held by another live agent process",
                 r.instance_id);
      for (auto& [stream, on_refused] : it->second.streams) {
        if (on_refused) calls.emplace_back(std::move(on_refused), r.instance_id);
      }
      local_instances_.erase(it);
    }
  }
  for (auto& [on_refused, id] : calls) {
    on_refused(absl::AlreadyExistsError(InstanceIdTakenMessage(id)));
  }
}

}  // namespace schemagate
