// Small gRPC callback-API building blocks shared by the services.
#ifndef SCHEMAGATE_COORDINATOR_SERVER_REACTORS_H_
#define SCHEMAGATE_COORDINATOR_SERVER_REACTORS_H_

#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace schemagate {

// A server-streaming reactor that ends the call at once with `status`
// (used to refuse a bad request).
template <typename Response>
class FinishedWriter : public grpc::ServerWriteReactor<Response> {
 public:
  explicit FinishedWriter(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// A bidirectional-streaming reactor that ends the call at once with `status`
// (used to refuse a caller before reading anything).
template <typename Request, typename Response>
class FinishedBidi : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit FinishedBidi(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_SERVER_REACTORS_H_
