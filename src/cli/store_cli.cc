// The store's commands on the command line: appends, reads and the maintenance of a data directory.
#include "cli/app.h"
#include "cli/pg_cmds.h"

namespace cairn::cli {

void add_store_commands(CLI::App& app, Context& ctx) {
  auto& aa = ctx.hold<AppendArgs>();
  auto* append = ctx.add_store_command(app, "append", "append one event (or --events FILE for several, atomically)", true);
  append->add_option("stream", aa.stream, "stream name")->required();
  append->add_option("type", aa.type, "event type, e.g. ai.proposal.made");
  append->add_option("data", aa.data, "event data (JSON by default); - reads stdin");
  append->add_option("--data-file", aa.data_file, "read the data from a file");
  append->add_option("--events", aa.events_file, "NDJSON file of {type, data, metadata?, id?, content_type?} (- = stdin)");
  append->add_option("--expected", aa.expected, "expected revision: any, no_stream, exists or a number")->capture_default_str();
  append->add_option("--id", aa.id, "event id (UUID) for idempotent retries; generated (UUIDv7) if absent");
  append->add_option("--metadata", aa.metadata, "metadata JSON object (correlation_id, causation_id, actor {kind,id})");
  append->add_option("--content-type", aa.content_type, "application/json or application/octet-stream")->capture_default_str();
  append->add_flag("--json", aa.json, "print the result as JSON");
  ctx.on(append, [&ctx, &aa] { return ctx.online() ? remote_append(ctx.remote, aa) : cmd_append(ctx.flags, aa); });

  auto& ra = ctx.hold<ReadArgs>();
  auto add_read_flags = [&ra](CLI::App* c) {
    c->add_option("--from", ra.from, "position ($all) or revision (stream) to start at");
    c->add_option("--type", ra.types, "only events of this type (repeatable)");
    c->add_option("--type-prefix", ra.type_prefix, "only event types starting with this");
    c->add_option("--stream-prefix", ra.stream_prefix, "only streams starting with this");
    c->add_option("--category", ra.category, "only streams of this category (the part before the first '-')");
    c->add_flag("--json", ra.json, "one JSON object per line");
  };
  auto* read = ctx.add_store_command(app, "read", "read a stream, or $all when no stream is named", false);
  read->add_option("stream", ra.stream, "stream name (omit for $all)");
  read->add_flag("--backward", ra.backward, "read from the end towards the start");
  read->add_option("--limit", ra.limit, "at most this many events");
  add_read_flags(read);
  ctx.on(read, [&ctx, &ra] { return ctx.online() ? remote_read(ctx.remote, ra) : cmd_read(ctx.flags, ra); });

  auto* tail = ctx.add_store_command(app, "tail", "print the last events of $all, and with -f follow new ones", false);
  tail->add_flag("-f,--follow", ra.follow, "keep printing events as they are appended");
  tail->add_option("-n,--lines", ra.last_n, "how many past events to print first")->capture_default_str();
  tail->add_option("--poll", ra.poll_seconds, "seconds between looks at the log when following")->capture_default_str();
  tail->add_option("--for", ra.follow_for_seconds, "stop following after this many seconds");
  add_read_flags(tail);
  ctx.on(tail, [&ctx, &ra] { return ctx.online() ? remote_tail(ctx.remote, ra) : cmd_tail(ctx.flags, ra); });

  auto* verify = app.add_subcommand("verify", "check every checksum, position, revision, digest and the hash chain");
  ctx.add_dir(verify);
  verify->add_option("--backend", ctx.flags.backend, "verify a PostgreSQL-backed store's seal chain (postgres://...)")
      ->envname("CAIRN_BACKEND");
  verify->add_flag("--json", ctx.json, "print the report as JSON");
  ctx.add_remote_flags(verify);  // the online form: a running cairnd verifies the log it serves (POST /v1/verify)
  ctx.on(verify, [&ctx] {
    if (ctx.online()) return remote_verify(ctx.remote, ctx.json);
    return ctx.flags.backend.empty() ? cmd_verify(ctx.target(), ctx.json) : cmd_pg_verify(ctx.flags.backend, ctx.json);
  });
}

void add_maintenance_commands(CLI::App& app, Context& ctx) {
  auto* reindex = app.add_subcommand("reindex", "rebuild the derived indexes from the log");
  ctx.add_dir(reindex);
  ctx.on(reindex, [&ctx] { return cmd_reindex(ctx.target()); });
  auto* stats = app.add_subcommand("stats", "counts, sizes and the chain head");
  ctx.add_dir(stats);
  ctx.add_remote_flags(stats);
  stats->add_flag("--json", ctx.json, "print as JSON");
  ctx.on(stats, [&ctx] { return ctx.online() ? remote_stats(ctx.remote, ctx.json) : cmd_stats(ctx.target(), ctx.json); });

  struct StreamsArgs {
    std::string prefix;
    std::optional<uint64_t> limit;
  };
  auto& sa = ctx.hold<StreamsArgs>();
  auto* streams = app.add_subcommand("streams", "list the streams with their revision and event count");
  ctx.add_dir(streams);
  ctx.add_remote_flags(streams);
  streams->add_option("--backend", ctx.flags.backend, "list a PostgreSQL-backed store's streams (postgres://...)")
      ->envname("CAIRN_BACKEND");
  streams->add_option("--prefix", sa.prefix, "only streams whose name starts with this");
  streams->add_option("--limit", sa.limit, "at most this many");
  streams->add_flag("--json", ctx.json, "one JSON object per line");
  ctx.on(streams, [&ctx, &sa] {
    return ctx.online() ? remote_streams(ctx.remote, sa.prefix, sa.limit, ctx.json)
                        : cmd_streams(ctx.target(), sa.prefix, sa.limit, ctx.json, ctx.flags.backend);
  });

  struct PortArgs {
    std::string out_path, in_path = "-";
    uint64_t export_from = 0;
  };
  auto& pa = ctx.hold<PortArgs>();
  auto* exp = app.add_subcommand("export", "write every event as NDJSON (ids, metadata, times, content types kept)");
  exp->add_option("--backend", ctx.flags.backend, "export a PostgreSQL-backed store (postgres://...)")->envname("CAIRN_BACKEND");
  ctx.add_dir(exp);
  exp->add_option("-o,--out", pa.out_path, "output file (default: stdout)");
  exp->add_option("--from", pa.export_from, "first position to export")->capture_default_str();
  ctx.on(exp, [&ctx, &pa] { return cmd_export(ctx.target(), pa.out_path, pa.export_from, ctx.flags.backend); });
  auto* imp = app.add_subcommand("import", "append an export, commit by commit (same chain head into an empty store)");
  ctx.add_store_flags(imp, true);
  imp->add_option("input", pa.in_path, "export file (- = stdin)")->capture_default_str();
  ctx.on(imp, [&ctx, &pa] { return cmd_import(ctx.flags, pa.in_path); });
}

}  // namespace cairn::cli
