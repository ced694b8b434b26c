// `cairn`: the command-line tool. Offline on a data directory until the server exists; every command
// documents itself with --help. Exit codes: 0 done, 1 the operation failed, 2 bad usage or input.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/ai_cmds.h"
#include "cli/commands.h"
#include "cli/pg_cmds.h"
#include "cli/privacy_cmds.h"
#include "cli/projection_cmds.h"
#include "cli/remote.h"

int main(int argc, char** argv) {
  using namespace cairn::cli;
  CLI::App app{"cairn — the event store for AI-first products (embedded data directory tools)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cairn 0.1.0");

  StoreFlags flags;
  RemoteFlags remote;
  auto add_remote_flags = [&](CLI::App* c) {
    c->add_option("--url", remote.url, "a running cairnd (http://HOST:PORT) instead of --data")->envname("CAIRN_URL");
    c->add_option("--key", remote.key, "API key for --url")->envname("CAIRN_KEY");
  };
  auto add_store_flags = [&](CLI::App* c, bool writes) {
    c->add_option("--data", flags.data, "data directory")->envname("CAIRN_DATA")->capture_default_str();
    c->add_option("--backend", flags.backend, "a PostgreSQL database (postgres://...) instead of the embedded store")
        ->envname("CAIRN_BACKEND");
    c->add_option("--key-store", flags.key_store, "personal data's key store directory, outside --data (docs/privacy.md)")
        ->envname("CAIRN_KEY_STORE");
    c->add_option("--master-key-file", flags.master_key_file, "the key store's master key (base64); or CAIRN_MASTER_KEY")
        ->envname("CAIRN_MASTER_KEY_FILE");
    if (writes) {
      c->add_option("--durability", flags.durability, "fsync (default) or none (tests and benchmarks only)")
          ->envname("CAIRN_DURABILITY")
          ->check(CLI::IsMember({"fsync", "none"}));
      c->add_option("--segment-size", flags.segment_size, "bytes per log segment before it is sealed")
          ->envname("CAIRN_SEGMENT_SIZE")
          ->check(CLI::Range(uint64_t{4096}, uint64_t{1} << 40));
    }
  };

  AppendArgs aa;
  auto* append = app.add_subcommand("append", "append one event (or --events FILE for several, atomically)");
  add_store_flags(append, true);
  add_remote_flags(append);
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

  ReadArgs ra;
  auto add_read_flags = [&](CLI::App* c) {
    c->add_option("--from", ra.from, "position ($all) or revision (stream) to start at");
    c->add_option("--type", ra.types, "only events of this type (repeatable)");
    c->add_option("--type-prefix", ra.type_prefix, "only event types starting with this");
    c->add_option("--stream-prefix", ra.stream_prefix, "only streams starting with this");
    c->add_option("--category", ra.category, "only streams of this category (the part before the first '-')");
    c->add_flag("--json", ra.json, "one JSON object per line");
  };
  auto* read = app.add_subcommand("read", "read a stream, or $all when no stream is named");
  add_store_flags(read, false);
  add_remote_flags(read);
  read->add_option("stream", ra.stream, "stream name (omit for $all)");
  read->add_flag("--backward", ra.backward, "read from the end towards the start");
  read->add_option("--limit", ra.limit, "at most this many events");
  add_read_flags(read);

  auto* tail = app.add_subcommand("tail", "print the last events of $all, and with -f follow new ones");
  add_store_flags(tail, false);
  add_remote_flags(tail);
  tail->add_flag("-f,--follow", ra.follow, "keep printing events as they are appended");
  tail->add_option("-n,--lines", ra.last_n, "how many past events to print first")->capture_default_str();
  tail->add_option("--poll", ra.poll_seconds, "seconds between looks at the log when following")->capture_default_str();
  tail->add_option("--for", ra.follow_for_seconds, "stop following after this many seconds");
  add_read_flags(tail);

  std::string dir;
  bool json = false;
  auto add_dir = [&](CLI::App* c) {
    c->add_option("dir", dir, "data directory (default: --data, CAIRN_DATA or ./data)");
    c->add_option("--data", flags.data, "data directory")->envname("CAIRN_DATA");
  };
  auto* verify = app.add_subcommand("verify", "check every checksum, position, revision, digest and the hash chain");
  add_dir(verify);
  verify->add_option("--backend", flags.backend, "verify a PostgreSQL-backed store's seal chain (postgres://...)")
      ->envname("CAIRN_BACKEND");
  verify->add_flag("--json", json, "print the report as JSON");
  add_remote_flags(verify);  // the online form: a running cairnd verifies the log it serves (POST /v1/verify)
  PgArgs pga;
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
  auto* reindex = app.add_subcommand("reindex", "rebuild the derived indexes from the log");
  add_dir(reindex);
  auto* stats = app.add_subcommand("stats", "counts, sizes and the chain head");
  add_dir(stats);
  add_remote_flags(stats);
  stats->add_flag("--json", json, "print as JSON");

  std::string streams_prefix;
  std::optional<uint64_t> streams_limit;
  auto* streams = app.add_subcommand("streams", "list the streams with their revision and event count");
  add_dir(streams);
  add_remote_flags(streams);
  streams->add_option("--backend", flags.backend, "list a PostgreSQL-backed store's streams (postgres://...)")
      ->envname("CAIRN_BACKEND");
  streams->add_option("--prefix", streams_prefix, "only streams whose name starts with this");
  streams->add_option("--limit", streams_limit, "at most this many");
  streams->add_flag("--json", json, "one JSON object per line");

  std::string out_path, in_path = "-";
  uint64_t export_from = 0;
  auto* exp = app.add_subcommand("export", "write every event as NDJSON (ids, metadata, times, content types kept)");
  exp->add_option("--backend", flags.backend, "export a PostgreSQL-backed store (postgres://...)")->envname("CAIRN_BACKEND");
  add_dir(exp);
  exp->add_option("-o,--out", out_path, "output file (default: stdout)");
  exp->add_option("--from", export_from, "first position to export")->capture_default_str();
  auto* imp = app.add_subcommand("import", "append an export, commit by commit (same chain head into an empty store)");
  add_store_flags(imp, true);
  imp->add_option("input", in_path, "export file (- = stdin)")->capture_default_str();

  KeyArgs ka;
  auto* keys = app.add_subcommand("keys", "manage API keys of a running cairnd (admin key needed)");
  keys->require_subcommand(1);
  add_remote_flags(keys);
  auto* kcreate = keys->add_subcommand("create", "create a key; its secret is printed once");
  kcreate->add_option("--role", ka.role, "reader, writer or admin")->required();
  kcreate->add_option("--streams", ka.streams, "limit the key to streams with these prefixes (repeatable)");
  kcreate->add_option("--name", ka.name, "a name for humans");
  kcreate->add_flag("--json", ka.json, "print as JSON");
  auto* klist = keys->add_subcommand("list", "every key (secrets are never shown)");
  klist->add_flag("--json", ka.json, "one JSON object per line");
  auto* krevoke = keys->add_subcommand("revoke", "revoke a key at once (also its open subscriptions)");
  krevoke->add_option("id", ka.id, "the key id (key_...)")->required();
  for (auto* c : {kcreate, klist, krevoke}) c->fallthrough();  // --url/--key may follow the action

  ProjectionArgs pa;
  auto* proj = app.add_subcommand("projection", "define, query, verify and rebuild projections (see docs/projections.md)");
  proj->require_subcommand(1);
  add_store_flags(proj, true);
  add_remote_flags(proj);
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

  AiArgs ai;
  auto* why = app.add_subcommand("why", "why did we do it this way? the causal chain of an event back to its root, its flow and corrections");
  add_store_flags(why, true);
  add_remote_flags(why);
  why->add_option("event_id", ai.event_id, "the event's id (a UUID)")->required();
  why->add_flag("--json", ai.json, "print the JSON of GET /v1/why/{id}");
  auto* corr = app.add_subcommand("correlation", "every event of a flow (metadata.correlation_id), as known at a position or time");
  add_store_flags(corr, true);
  add_remote_flags(corr);
  corr->add_option("correlation_id", ai.correlation_id, "the correlation id")->required();
  corr->add_option("--as-of", ai.as_of, "a position or an RFC 3339 time (default: now)");
  corr->add_flag("--json", ai.json, "print JSON");
  auto* aicmd = app.add_subcommand("ai", "the AI decision ledger: rates, training exports, a demo history (see docs/ai-ledger.md)");
  aicmd->require_subcommand(1);
  auto* rates = aicmd->add_subcommand("rates", "accepted / edited / rejected / expired shares, edit distance and time to decision");
  auto* aexp = aicmd->add_subcommand("export", "training data (JSONL) as of a position, with a manifest (counts, SHA-256)");
  auto* demo = aicmd->add_subcommand("demo", "write a deterministic AI-product history (conversations, proposals, decisions, ...)");
  for (auto* c : {rates, aexp, demo}) {
    add_store_flags(c, true);
    add_remote_flags(c);
    c->add_flag("--json", ai.json, "print JSON");
  }
  for (auto* c : {rates, aexp}) {
    c->add_option("--since", ai.since, "decisions on or after this day (YYYY-MM-DD; export: or an RFC 3339 time)");
    c->add_option("--until", ai.until, "decisions on or before this day (YYYY-MM-DD; export: or an RFC 3339 time)");
    c->add_option("--model", ai.model, "one model (gen_ai.response.model, else gen_ai.request.model)");
    c->add_option("--skill", ai.skill, "one skill");
    c->add_option("--prompt-version", ai.prompt_version, "one prompt template version (template_id@version)");
  }
  rates->add_option("--by", ai.by, "group by model, prompt_version, skill and/or day (comma-separated)")->delimiter(',');
  aexp->add_option("--format", ai.format, "sft, sft-prompt-completion, preference, kto, openai-sft or openai-preference")->required();
  aexp->add_option("--out", ai.out, "the file to write")->required();
  aexp->add_option("--manifest", ai.manifest, "where the manifest goes (default: OUT.manifest.json)");
  aexp->add_option("--as-of", ai.as_of, "the last log position reflected (default: the head now)");
  demo->add_option("--seed", ai.seed, "the same seed (and clock) gives the same history")->capture_default_str();
  demo->add_option("--conversations", ai.conversations, "how many conversations")->capture_default_str();
  demo->add_option("--clock", ai.clock, "RFC 3339 time the review times count back from (default: now)");

  ForgetArgs fa;
  auto* priv = app.add_subcommand("privacy", "personal data: forget a subject, purge, report (see docs/privacy.md)");
  priv->require_subcommand(1);
  auto* forget = priv->add_subcommand("forget", "destroy a data subject's keys (its parts become unreadable everywhere) and record it");
  add_store_flags(forget, true);
  add_remote_flags(forget);
  forget->add_option("subject", fa.subject, "the subject as the events named it (e.g. a user id)")->required();
  forget->add_option("--reason", fa.reason, "why (recorded)")->required();
  forget->add_option("--actor", fa.actor_id, "who asks (recorded as a human actor)");
  forget->add_flag("--json", fa.json, "print JSON");
  auto* purge = priv->add_subcommand("purge", "drop forgotten subjects' parts from the sealed segments (chain kept, verified)");
  add_store_flags(purge, true);
  add_remote_flags(purge);
  purge->add_option("--actor", fa.actor_id, "who runs it (recorded as a human actor)");
  purge->add_flag("--json", fa.json, "print JSON");
  auto* report = priv->add_subcommand("report", "what forgetting a subject touched, the purges, and the log verified now");
  add_store_flags(report, true);
  add_remote_flags(report);
  report->add_option("subject", fa.subject, "the subject as the events named it, or its keyed hash hs:…")->required();
  report->add_flag("--json", fa.json, "print JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const std::string target = dir.empty() ? flags.data : dir;
  try {
    const bool online = !remote.url.empty();
    if (*keys) {
      if (!online) {
        std::fprintf(stderr, "error: cairn keys talks to a running cairnd: give --url (or CAIRN_URL) and an admin --key\n");
        return 2;
      }
      if (*kcreate) return remote_keys_create(remote, ka);
      if (*klist) return remote_keys_list(remote, ka);
      if (*krevoke) return remote_keys_revoke(remote, ka);
    }
    if (*proj) return cmd_projection(flags, remote, pa);
    if (*forget) return cmd_privacy_forget(flags, remote, fa);
    if (*purge) return cmd_privacy_purge(flags, remote, fa);
    if (*report) return cmd_privacy_report(flags, remote, fa);
    if (*why) return cmd_why(flags, remote, ai);
    if (*corr) return cmd_correlation(flags, remote, ai);
    if (*rates) return cmd_ai_rates(flags, remote, ai);
    if (*aexp) return cmd_ai_export(flags, remote, ai);
    if (*demo) return cmd_ai_demo(flags, remote, ai);
    if (*append) return online ? remote_append(remote, aa) : cmd_append(flags, aa);
    if (*read) return online ? remote_read(remote, ra) : cmd_read(flags, ra);
    if (*tail) return online ? remote_tail(remote, ra) : cmd_tail(flags, ra);
    if (*stats && online) return remote_stats(remote, json);
    if (*streams) return online ? remote_streams(remote, streams_prefix, streams_limit, json)
                                : cmd_streams(target, streams_prefix, streams_limit, json, flags.backend);
    if (*verify && online) return remote_verify(remote, json);
    if (*verify) return flags.backend.empty() ? cmd_verify(target, json) : cmd_pg_verify(flags.backend, json);
    if (*pg_init) return cmd_pg_init(pga);
    if (*pg_migrate) return cmd_pg_migrate(pga);
    if (*reindex) return cmd_reindex(target);
    if (*stats) return cmd_stats(target, json);
    if (*exp) return cmd_export(target, out_path, export_from, flags.backend);
    if (*imp) return cmd_import(flags, in_path);
  } catch (const std::exception& e) {
    // Outermost layer: a programmer error surfaced as an exception; say so rather than abort silently.
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return 70;
  }
  return 2;
}
