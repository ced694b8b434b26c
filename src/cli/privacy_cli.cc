// The personal data commands on the command line.
#include "cli/app.h"
#include "cli/privacy_cmds.h"

namespace cairn::cli {

void add_privacy_commands(CLI::App& app, Context& ctx) {
  auto& fa = ctx.hold<ForgetArgs>();
  auto* priv = app.add_subcommand("privacy", "personal data: forget a subject, purge, report (see docs/privacy.md)");
  priv->require_subcommand(1);
  auto* forget = ctx.add_store_command(*priv, "forget", "destroy a data subject's keys (its parts become unreadable everywhere) and record it", true);
  forget->add_option("subject", fa.subject, "the subject as the events named it (e.g. a user id)")->required();
  forget->add_option("--reason", fa.reason, "why (recorded)")->required();
  forget->add_option("--actor", fa.actor_id, "who asks (recorded as a human actor)");
  forget->add_flag("--json", fa.json, "print JSON");
  auto* purge = ctx.add_store_command(*priv, "purge", "drop forgotten subjects' parts from the sealed segments (chain kept, verified)", true);
  purge->add_option("--actor", fa.actor_id, "who runs it (recorded as a human actor)");
  purge->add_flag("--json", fa.json, "print JSON");
  auto* report = ctx.add_store_command(*priv, "report", "what forgetting a subject touched, the purges, and the log verified now", true);
  report->add_option("subject", fa.subject, "the subject as the events named it, or its keyed hash hs:…")->required();
  report->add_flag("--json", fa.json, "print JSON");
  ctx.on(forget, [&ctx, &fa] { return cmd_privacy_forget(ctx.flags, ctx.remote, fa); });
  ctx.on(purge, [&ctx, &fa] { return cmd_privacy_purge(ctx.flags, ctx.remote, fa); });
  ctx.on(report, [&ctx, &fa] { return cmd_privacy_report(ctx.flags, ctx.remote, fa); });
}

}  // namespace cairn::cli
