// Verification of the PostgreSQL backend's seal chain (cairn.seals over cairn.events); see pg_verify in
// include/cairn/postgres.h for the contract and docs/format.md for the chain's definition.
// Thread safety: opens its own connection.
#pragma once

#include <string>

#include "cairn/maintenance.h"

namespace cairn::pg {

Result<VerifyReport> verify_seals(const std::string& conninfo, const ProgressFn& progress);

}  // namespace cairn::pg
