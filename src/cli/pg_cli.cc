// The PostgreSQL backend's commands on the command line.
#include "cli/app.h"
#include "cli/pg_cmds.h"

namespace cairn::cli {

void add_pg_commands(CLI::App& app, Context& ctx) {
  auto& pga = ctx.hold<PgArgs>();
  auto* pgcmd = app.add_subcommand("pg", "the PostgreSQL backend: create the roles and schema, migrate (docs/scaling.md)");
  pgcmd->require_subcommand(1);
  auto* pg_init = pgcmd->add_subcommand("init", "create the Cairn roles and the login role, then apply every migration");
  auto* pg_migrate = pgcmd->add_subcommand("migrate", "apply the migrations this build has and the database lacks");
  for (auto* c : {pg_init, pg_migrate})
    c->add_option("--admin", pga.admin, "a superuser (or CREATEROLE + database owner) connection URL")
        ->envname("CAIRN_PG_ADMIN")
        ->required();
  pg_init->add_option("--app-role", pga.app_role, "login role for cairnd (member of cairn_writer, cairn_privacy)")
      ->capture_default_str();
  pg_init->add_option("--reader-role", pga.reader_role, "login role for read-only clients (member of cairn_reader)");
  ctx.on(pg_init, [&pga] { return cmd_pg_init(pga); });
  ctx.on(pg_migrate, [&pga] { return cmd_pg_migrate(pga); });
}

}  // namespace cairn::cli
