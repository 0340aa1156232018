// RETURN_IF_ERROR and ASSIGN_OR_RETURN: Debian's abseil (20220623) ships
// neither, so they are defined once here.
#ifndef SCHEMAGATE_COORDINATOR_BASE_STATUS_MACROS_H_
#define SCHEMAGATE_COORDINATOR_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SG_CONCAT_INNER_(a, b) a##b
#define SG_CONCAT_(a, b) SG_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status sg_status_ = (expr);              \
    if (!sg_status_.ok()) return sg_status_;         \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates a StatusOr expression; returns its
// status on error, otherwise moves the value into `lhs` (which may declare).
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(SG_CONCAT_(sg_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // SCHEMAGATE_COORDINATOR_BASE_STATUS_MACROS_H_
