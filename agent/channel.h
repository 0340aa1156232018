// Client channels to coordinators, shared by the agent and schemagatectl.
#ifndef SCHEMAGATE_AGENT_CHANNEL_H_
#define SCHEMAGATE_AGENT_CHANNEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace schemagate {

// Splits "host:port,host:port" into addresses (blanks dropped).
std::vector<std::string> SplitCoordinators(absl::string_view list);

// A channel with client keepalive, so a dead coordinator is noticed while
// a Wait stream is open.
std::shared_ptr<grpc::Channel> NewCoordinatorChannel(const std::string& address);

// Sets the deadline of `context` to now + `timeout`.
void SetDeadline(grpc::ClientContext* context, absl::Duration timeout);

}  // namespace schemagate

#endif  // SCHEMAGATE_AGENT_CHANNEL_H_
