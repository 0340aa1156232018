// PostgreSQL connection strings: credential redaction for logs and errors,
// and the TCP keepalive settings every schemagate connection uses.
#ifndef SCHEMAGATE_COORDINATOR_BASE_CONNINFO_H_
#define SCHEMAGATE_COORDINATOR_BASE_CONNINFO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace schemagate {

// Replaces every password in `text` with "***": the password part of
// postgres:// and postgresql:// URLs (`user:secret@host`), `password=...`
// key/value pairs (quoted or not) and `?password=`/`&password=` URL parameters.
// Safe to call on arbitrary text (log lines, error messages).
std::string RedactSecrets(absl::string_view text);

// Returns `conninfo` (URL or key=value form) with TCP keepalives and
// tcp_user_timeout added, so that a half-open connection is noticed within
// seconds. Settings the user already gave are kept as they are.
std::string WithKeepalives(absl::string_view conninfo);

// SET statements giving PostgreSQL's end of a session the same keepalive
// and tcp_user_timeout settings as WithKeepalives gives the client's end.
// The client's settings only let schemagate notice a dead network; the
// server's let PostgreSQL end the session of a coordinator that vanished
// (host down, partition) within seconds, which frees its run lock for a
// standby instead of after the kernel's default of hours. PostgreSQL ignores
// them on Unix-domain sockets. On PostgreSQL 14+ also sets
// client_connection_check_interval, so that a killed coordinator's long
// statement is cancelled (and the lock freed) within seconds rather than
// when the statement ends.
std::string ServerKeepaliveSql();

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_BASE_CONNINFO_H_
