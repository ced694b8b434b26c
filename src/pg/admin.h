// Setting up and checking a PostgreSQL database for Cairn: roles, versioned migrations, and the checks an
// open runs before trusting a server (engine capabilities, schema version).
// Thread safety: free functions; each opens its own connections.
#pragma once

#include <string>
#include <vector>

#include "cairn/postgres.h"
#include "pg/client.h"

namespace cairn::pg {

// Refuses (kInvalidArgument, saying what is missing) a server that lacks what Cairn's correctness rests on:
// PostgreSQL 13+ semantics, xid8 and the snapshot functions, row locks held to commit, advisory locks that
// actually exclude (some PostgreSQL-compatible engines accept them as no-ops), a UTF8 database, and
// synchronous_commit not off (an acknowledged append must survive a server crash). conninfo opens the second
// connection the advisory-lock probe needs.
Status check_engine(Connection& c, const std::string& conninfo);
// kInvalidArgument when the schema is missing, older than this build (run `cairn pg migrate`), or newer.
Status check_schema(Connection& c);

}  // namespace cairn::pg
