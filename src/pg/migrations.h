// The PostgreSQL schema of the Cairn backend as numbered migrations, and the roles it runs under.
//
// Roles (cluster-wide, created by init): cairn_owner (NOLOGIN) owns the schema, its tables and the append
// and seal functions; cairn_purger (NOLOGIN) owns the purge function and may only change an event's data
// to the redacted form its digest already commits to; cairn_writer (NOLOGIN group) has USAGE, SELECT and
// EXECUTE on cairn.append and cairn.seal; cairn_privacy (NOLOGIN group) has EXECUTE on cairn.purge_parts;
// cairn_reader (NOLOGIN group) has USAGE and SELECT. Applications log in as their own role, a member of
// those groups. docs/scaling.md describes the design; docs/format.md the seal chain.
// Thread safety: plain data.
#pragma once

#include <string_view>
#include <vector>

namespace cairn::pg {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;  // run in one transaction by the migrating (owner-capable) role
};

// Every migration in order; the schema version is the last one's number.
const std::vector<Migration>& migrations();
int latest_schema_version();

}  // namespace cairn::pg
