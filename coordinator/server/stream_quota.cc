#include "coordinator/server/stream_quota.h"

#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "coordinator/server/access.h"

namespace schemagate {

std::string PeerHost(absl::string_view peer) {
  if (absl::ConsumePrefix(&peer, "ipv4:") || absl::ConsumePrefix(&peer, "ipv6:")) {
    return AddressHost(peer);
  }
  return std::string(peer);
}

absl::StatusOr<std::unique_ptr<StreamQuota::Slot>> StreamQuota::Acquire(absl::string_view peer) {
  std::string host = PeerHost(peer);
  {
    absl::MutexLock lock(&mu_);
    int& n = open_[host];
    if (max_per_client_ > 0 && n >= max_per_client_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "too many open streams from ", host, " (", max_per_client_,
          "; schemagated --max-streams-per-client); close some or spread the agents"));
    }
    ++n;
  }
  return std::unique_ptr<Slot>(new Slot(this, std::move(host)));
}

int StreamQuota::open(absl::string_view peer) const {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(PeerHost(peer));
  return it == open_.end() ? 0 : it->second;
}

void StreamQuota::Release(const std::string& host) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(host);
  if (it == open_.end()) return;
  if (--it->second <= 0) open_.erase(it);
}

}  // namespace schemagate
