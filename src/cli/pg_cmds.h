// `cairn pg init|migrate` and `cairn verify --backend`: setting up and checking the PostgreSQL backend.
// Each command opens its own connections and prints what it did; exit 0 on success, 1 on failure, 2 on bad input.
#pragma once

#include <string>

namespace cairn::cli {

struct PgArgs {
  std::string admin;
  std::string app_role = "cairn_app";
  std::string reader_role;
  // The login roles' passwords come from the environment, never a flag (command lines are visible to other
  // users): CAIRN_PG_APP_PASSWORD for both, or CAIRN_PG_READER_PASSWORD for the reader role if it is set.
};

int cmd_pg_init(const PgArgs& a);
int cmd_pg_migrate(const PgArgs& a);
int cmd_pg_verify(const std::string& backend, bool json);

}  // namespace cairn::cli
