// A cap on the long-lived streams (Wait, Attach, WatchEvents) one client
// may hold open, so one runaway or hostile host cannot use up the memory
// every other agent needs. A client is the host part of the gRPC peer.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_STREAM_QUOTA_H_
#define SCHEMAGATE_COORDINATOR_SERVER_STREAM_QUOTA_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace schemagate {

// Default of schemagated --max-streams-per-client. An agent holds at most
// two streams (Wait, then Attach), so this allows thousands of agents behind
// one address (a NAT, a mesh proxy) while bounding what one host can take.
inline constexpr int kDefaultMaxStreamsPerClient = 4096;

// The host of a gRPC peer string: "ipv4:10.0.0.7:41000" -> "10.0.0.7",
// "ipv6:[::1]:41000" -> "::1", "unix:/run/sg.sock" -> "unix:/run/sg.sock".
std::string PeerHost(absl::string_view peer);

// Thread-safe.
class StreamQuota {
 public:
  // A held stream slot; releases it when destroyed.
  class Slot {
   public:
    ~Slot() { quota_->Release(host_); }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    friend class StreamQuota;
    Slot(StreamQuota* quota, std::string host) : quota_(quota), host_(std::move(host)) {}
    StreamQuota* const quota_;
    const std::string host_;
  };

  // `max_per_client` <= 0: no limit (slots are still counted).
  explicit StreamQuota(int max_per_client) : max_per_client_(max_per_client) {}

  // A slot for one more stream of `peer` (a gRPC peer string), or
  // RESOURCE_EXHAUSTED when that client already holds the maximum.
  // REQUIRES: the quota outlives the slot.
  absl::StatusOr<std::unique_ptr<Slot>> Acquire(absl::string_view peer);

  // Streams `peer`'s host holds now.
  int open(absl::string_view peer) const;

 private:
  void Release(const std::string& host);

  const int max_per_client_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_STREAM_QUOTA_H_
