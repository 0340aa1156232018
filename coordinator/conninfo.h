// PostgreSQL connection strings: credential redaction for logs and errors,
// and the TCP keepalive settings every schemagate connection uses.
#ifndef SCHEMAGATE_COORDINATOR_CONNINFO_H_
#define SCHEMAGATE_COORDINATOR_CONNINFO_H_

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

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_CONNINFO_H_
