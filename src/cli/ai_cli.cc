// The AI decision ledger's commands on the command line.
#include "cli/ai_cmds.h"
#include "cli/app.h"

namespace cairn::cli {

void add_ai_commands(CLI::App& app, Context& ctx) {
  auto& ai = ctx.hold<AiArgs>();
  auto* why = ctx.add_store_command(app, "why", "why did we do it this way? the causal chain of an event back to its root, its flow and corrections", true);
  why->add_option("event_id", ai.event_id, "the event's id (a UUID)")->required();
  why->add_flag("--json", ai.json, "print the JSON of GET /v1/why/{id}");
  auto* corr = ctx.add_store_command(app, "correlation", "every event of a flow (metadata.correlation_id), as known at a position or time", true);
  corr->add_option("correlation_id", ai.correlation_id, "the correlation id")->required();
  corr->add_option("--as-of", ai.as_of, "a position or an RFC 3339 time (default: now)");
  corr->add_flag("--json", ai.json, "print JSON");
  auto* aicmd = app.add_subcommand("ai", "the AI decision ledger: rates, training exports, a demo history (see docs/ai-ledger.md)");
  aicmd->require_subcommand(1);
  auto* rates = aicmd->add_subcommand("rates", "accepted / edited / rejected / expired shares, edit distance and time to decision");
  auto* aexp = aicmd->add_subcommand("export", "training data (JSONL) as of a position, with a manifest (counts, SHA-256)");
  auto* demo = aicmd->add_subcommand("demo", "write a deterministic AI-product history (conversations, proposals, decisions, ...)");
  for (auto* c : {rates, aexp, demo}) {
    ctx.add_store_flags(c, true);
    ctx.add_remote_flags(c);
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
  using Command = int (*)(const StoreFlags&, const RemoteFlags&, const AiArgs&);
  const std::pair<CLI::App*, Command> commands[] = {
      {why, cmd_why}, {corr, cmd_correlation}, {rates, cmd_ai_rates}, {aexp, cmd_ai_export}, {demo, cmd_ai_demo}};
  for (const auto& [c, f] : commands)
    ctx.on(c, [&ctx, &ai, command = f] { return command(ctx.flags, ctx.remote, ai); });
}

}  // namespace cairn::cli
