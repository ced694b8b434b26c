#include "cli/privacy_cmds.h"

#include <cstdio>

#include <nlohmann/json.hpp>

namespace cairn::cli {

int cmd_privacy_forget(const StoreFlags& flags, const RemoteFlags& remote, const ForgetArgs& a) {
  using nlohmann::json;
  const json actor = a.actor_id.empty() ? json() : json{{"kind", "human"}, {"id", a.actor_id}};
  json out;
  if (!remote.url.empty()) {
    json body = {{"reason", a.reason}};
    if (!actor.is_null()) body["actor"] = actor;
    auto rep = http_call(remote, "POST", "/v1/privacy/subjects/" + encode_segment(a.subject) + "/forget", body.dump());
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status != 200 && rep->status != 201) return fail_reply(*rep);
    out = json::parse(rep->body, nullptr, false);
  } else {
    auto o = store_options(flags, false);
    if (!o.ok()) return fail_status(o.status());
    auto store = open_store(*o);
    if (!store.ok()) return fail_status(store.status());
    auto r = (*store)->forget(a.subject, a.reason, actor.is_null() ? "" : actor.dump());
    Status closed = (*store)->close();
    if (!r.ok()) return fail_status(r.status());
    if (!closed.ok()) return fail_status(closed);
    out = {{"subject", r->subject_id}, {"keys_destroyed", r->keys_destroyed}, {"affected_events", r->affected_events},
           {"position", r->position}, {"already_forgotten", r->already}};
  }
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
  } else if (out.value("already_forgotten", false)) {
    std::printf("subject %s was forgotten before (recorded at position %llu); nothing changed\n",
                out.value("subject", "").c_str(), static_cast<unsigned long long>(out.value("position", 0)));
  } else {
    std::printf("forgot subject %s: %llu key(s) destroyed, %llu event(s) now unreadable; recorded at position %llu in $privacy\n",
                out.value("subject", "").c_str(), static_cast<unsigned long long>(out.value("keys_destroyed", 0)),
                static_cast<unsigned long long>(out.value("affected_events", 0)),
                static_cast<unsigned long long>(out.value("position", 0)));
  }
  return 0;
}

}  // namespace cairn::cli
