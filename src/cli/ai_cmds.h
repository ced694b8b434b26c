// `cairn why`, `cairn correlation` and `cairn ai rates|export|demo`: the AI ledger from the command line
// (docs/ai-ledger.md), against a running cairnd (--url) or offline on a data directory (--data), where the
// command opens the store and projection runtime in-process, lets the ledger's projections catch up (a
// progress bar on a terminal) and answers through the same endpoint code.
// Output: a readable tree or table by default, the endpoint's JSON with --json.
// Exit codes: 0 done, 1 failed, 2 bad usage or input.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/remote.h"

namespace cairn::cli {

struct AiArgs {
  std::string event_id;        // why
  std::string correlation_id;  // correlation
  std::string as_of;           // correlation: a position or an RFC 3339 time; export: a position
  // rates and export filters
  std::vector<std::string> by;
  std::string since, until, model, skill, prompt_version;
  // export
  std::string format;
  std::string out;
  std::string manifest;  // default: OUT.manifest.json
  // demo
  uint64_t seed = 1;
  uint64_t conversations = 100;
  std::string clock;  // RFC 3339; default now
  bool json = false;
};

int cmd_why(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a);
int cmd_correlation(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a);
int cmd_ai_rates(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a);
int cmd_ai_export(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a);
int cmd_ai_demo(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a);

}  // namespace cairn::cli
