// `cairn privacy forget SUBJECT --reason …`: the right to be forgotten (docs/privacy.md), offline on a data
// directory with its key store (--key-store, CAIRN_MASTER_KEY) or against a running cairnd (--url, an admin
// key). Prints what was done; --json prints the endpoint's JSON. Exit codes: 0 done (also when the subject was
// forgotten before), 1 failed or unknown subject, 2 bad usage.
#pragma once

#include <string>

#include "cli/commands.h"
#include "cli/remote.h"

namespace cairn::cli {

struct ForgetArgs {
  std::string subject;
  std::string reason;
  std::string actor_id;  // who asks; recorded as a human actor
  bool json = false;
};

int cmd_privacy_forget(const StoreFlags& flags, const RemoteFlags& remote, const ForgetArgs& a);

}  // namespace cairn::cli
