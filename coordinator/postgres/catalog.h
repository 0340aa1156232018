// Reads a database's user schema from its catalogs into a SchemaDescription
// (coordinator/engine/schema_description.h): the one place schemagate asks
// PostgreSQL what its schema looks like.
#ifndef SCHEMAGATE_COORDINATOR_POSTGRES_CATALOG_H_
#define SCHEMAGATE_COORDINATOR_POSTGRES_CATALOG_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/engine/schema_description.h"

namespace schemagate {

// Connects to `conninfo` (URL or key=value) and describes its user schema,
// leaving out `bookkeeping_schema` (schemagate's own tables). Reads only.
// UNAVAILABLE if the database cannot be reached or the connection drops;
// INTERNAL if a catalog query fails (e.g. a PostgreSQL older than 12).
absl::StatusOr<SchemaDescription> DescribeSchema(const std::string& conninfo,
                                                 const std::string& bookkeeping_schema =
                                                     "schemagate");

// Describes one database again and again over one connection, whose warm
// catalog caches and prepared queries make a description several times
// cheaper than DescribeSchema's fresh connection (verify describes the
// schema three or four times per migration). Reconnects on the next call
// after a lost connection. Not thread-safe.
class SchemaDescriber {
 public:
  explicit SchemaDescriber(std::string conninfo, std::string bookkeeping_schema = "schemagate");
  ~SchemaDescriber();
  SchemaDescriber(const SchemaDescriber&) = delete;
  SchemaDescriber& operator=(const SchemaDescriber&) = delete;

  // As DescribeSchema.
  absl::StatusOr<SchemaDescription> Describe();

 private:
  class Session;  // the libpqxx connection, kept out of this header
  const std::string conninfo_;
  const std::string bookkeeping_schema_;
  std::unique_ptr<Session> session_;
};

}  // namespace schemagate

#endif  // SCHEMAGATE_COORDINATOR_POSTGRES_CATALOG_H_
