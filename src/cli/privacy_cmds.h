// `cairn privacy forget|purge|report` (docs/privacy.md), offline on a data directory with its key store
// (--key-store, CAIRN_MASTER_KEY) or against a running cairnd (--url, an admin key):
//   forget SUBJECT --reason …   destroy the subject's keys and record it
//   purge                       drop forgotten parts from the sealed segments (progress on a terminal)
//   report SUBJECT              what the forget touched, the purges, and the log verified now
// Each prints a summary; --json prints the endpoint's JSON. Exit codes: 0 done (also when the subject was
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
// a.subject and a.reason unused.
int cmd_privacy_purge(const StoreFlags& flags, const RemoteFlags& remote, const ForgetArgs& a);
// a.reason and a.actor_id unused.
int cmd_privacy_report(const StoreFlags& flags, const RemoteFlags& remote, const ForgetArgs& a);

}  // namespace cairn::cli
