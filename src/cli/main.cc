// `cairn`: the command-line tool. Offline on a data directory, or against a running cairnd with --url; every
// command documents itself with --help. Exit codes: 0 done, 1 the operation failed, 2 bad usage or input.
// Each command group registers its subcommands (cli/app.h); the order of the calls is the order of --help.
#include <cstdio>

#include "cli/app.h"

int main(int argc, char** argv) {
  using namespace cairn::cli;
  CLI::App app{"cairn — the event store for AI-first products (embedded data directory tools)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cairn 0.1.0");

  Context ctx;
  add_store_commands(app, ctx);
  add_pg_commands(app, ctx);
  add_maintenance_commands(app, ctx);
  add_key_commands(app, ctx);
  add_projection_commands(app, ctx);
  add_ai_commands(app, ctx);
  add_privacy_commands(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return ctx.run();
  } catch (const std::exception& e) {
    // Outermost layer: a programmer error surfaced as an exception; say so rather than abort silently.
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return 70;
  }
}
