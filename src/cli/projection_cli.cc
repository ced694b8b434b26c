// The projection commands on the command line: one subcommand per action, each with its own options.
#include "cli/app.h"
#include "cli/projection_cmds.h"

namespace cairn::cli {

void add_projection_commands(CLI::App& app, Context& ctx) {
  auto& pa = ctx.hold<ProjectionArgs>();
  auto* proj = ctx.add_store_command(app, "projection", "define, query, verify and rebuild projections (see docs/projections.md)", true);
  proj->require_subcommand(1);
  struct Action {
    const char* name;
    const char* help;
  };
  const Action actions[] = {
      {"list", "every projection version: phase, position, lag, speed, faults"},
      {"create", "register a new projection (version 1, or --version) from a Lua file"},
      {"deploy", "register the next version of a projection; it builds beside the active one, then takes over"},
      {"show", "status and definition of a projection (the active version, or --version)"},
      {"state", "the state (or --partition one partition), with the position it reflects; --as-of for the past"},
      {"partitions", "list partition keys, in order, paged"},
      {"digest", "the canonical SHA-256 digest of the state and its position"},
      {"verify", "replay from scratch to the live position and compare digests (exit 1 if they differ)"},
      {"rebuild", "rebuild from position 0 in the background; the current state serves until it is done"},
      {"versions", "every version of a projection"},
      {"activate", "make a version the active one (e.g. go back to an older version)"},
      {"drop", "stop and forget a version and its files"},
  };
  for (const auto& act : actions) {
    auto* c = proj->add_subcommand(act.name, act.help);
    c->fallthrough();
    c->callback([&pa, name = std::string(act.name)] { pa.action = name; });
    const std::string an = act.name;
    if (an != "list") c->add_option("name", pa.name, "projection name")->required();
    if (an == "activate" || an == "drop") c->add_option("version", pa.version, "version number")->required();
    else if (an != "list" && an != "versions") c->add_option("--version", pa.version, "version number (default: the active one)");
    if (an == "create" || an == "deploy") {
      c->add_option("--lua", pa.lua_file, "the reducer's Lua source file (- = stdin)");
      c->add_option("--definition", pa.definition_file, "a whole definition as JSON (flags override its fields)");
      c->add_option("--partition-by", pa.partition_by, "none, stream, category, metadata or data")
          ->check(CLI::IsMember({"none", "stream", "category", "metadata", "data"}));
      c->add_option("--field", pa.partition_field, "dotted path of the key for --partition-by metadata|data");
      c->add_option("--type", pa.types, "only events of this type (repeatable)");
      c->add_option("--type-prefix", pa.type_prefix, "only event types starting with this");
      c->add_option("--stream-prefix", pa.stream_prefix, "only streams starting with this");
      c->add_option("--category", pa.category, "only streams of this category");
      c->add_option("--snapshot-every", pa.snapshot_every, "log positions between snapshots kept for as-of queries (0: none)");
      c->add_option("--max-instructions", pa.max_instructions, "Lua instructions one event may take");
      c->add_option("--max-memory", pa.max_memory, "bytes of Lua heap for the whole state");
      c->add_option("--description", pa.description, "what the projection is for");
      if (an == "deploy") c->add_flag("--resume", pa.resume, "start from the active version's state instead of position 0");
    }
    if (an == "state") {
      c->add_option("--partition", pa.key, "only this partition (its key)");
      c->add_option("--as-of", pa.as_of, "the state after the event at this position");
      c->add_option("--as-of-time", pa.as_of_time, "the state after every event recorded at or before this RFC 3339 time");
      c->add_option("--wait-for", pa.wait_for, "wait until the state includes this position");
      c->add_option("--timeout-ms", pa.timeout_ms, "how long --wait-for may wait");
    }
    if (an == "partitions") {
      c->add_option("--after", pa.after, "continue after this key");
      c->add_option("--limit", pa.limit, "at most this many keys");
    }
    if (an == "rebuild") c->add_flag("--wait", pa.wait, "wait until done, with a progress bar on a terminal");
    if (an == "verify") c->add_option("--max-differences", pa.max_differences, "list at most this many differing partitions");
    if (an == "list" || an == "create" || an == "deploy" || an == "show" || an == "verify") c->add_flag("--json", pa.json, "print JSON");
  }
  ctx.on(proj, [&ctx, &pa] { return cmd_projection(ctx.flags, ctx.remote, pa); });
}

}  // namespace cairn::cli
