// The API key commands on the command line: they only talk to a running cairnd.
#include <cstdio>

#include "cli/app.h"

namespace cairn::cli {

void add_key_commands(CLI::App& app, Context& ctx) {
  auto& ka = ctx.hold<KeyArgs>();
  auto* keys = app.add_subcommand("keys", "manage API keys of a running cairnd (admin key needed)");
  keys->require_subcommand(1);
  ctx.add_remote_flags(keys);
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
  using Remote = int (*)(const RemoteFlags&, const KeyArgs&);
  const std::pair<CLI::App*, Remote> commands[] = {{kcreate, remote_keys_create}, {klist, remote_keys_list},
                                                   {krevoke, remote_keys_revoke}};
  for (const auto& [c, f] : commands)
    ctx.on(c, [&ctx, &ka, remote_call = f] {
      if (!ctx.online()) {
        std::fprintf(stderr, "error: cairn keys talks to a running cairnd: give --url (or CAIRN_URL) and an admin --key\n");
        return 2;
      }
      return remote_call(ctx.remote, ka);
    });
}

}  // namespace cairn::cli
