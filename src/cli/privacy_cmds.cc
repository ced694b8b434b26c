#include "cli/privacy_cmds.h"

#include <cstdio>
#include <functional>

#include <nlohmann/json.hpp>

#include "cli/progress.h"
#include "ledger/vocabulary.h"
#include "privacy/keystore.h"
#include "privacy/report.h"

namespace cairn::cli {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

unsigned long long u(const ojson& j, const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<unsigned long long>() : 0; }

json actor_of(const ForgetArgs& a) { return a.actor_id.empty() ? json() : json{{"kind", "human"}, {"id", a.actor_id}}; }

// The command's JSON: from the server (--url) by method and path, or from the store of flags, opened for
// `offline` and closed after (the first error wins). On error, *code is the exit code to return.
std::optional<ojson> run(const StoreFlags& flags, const RemoteFlags& remote, const char* method, const std::string& path,
                         const std::string& body, const std::function<Result<ojson>(Store&)>& offline,
                         int* code) {
  if (!remote.url.empty()) {
    auto rep = http_call(remote, method, path, body);
    if (!rep.ok()) return *code = fail_status(rep.status()), std::nullopt;
    if (rep->status != 200 && rep->status != 201) return *code = fail_reply(*rep), std::nullopt;
    return ojson::parse(rep->body, nullptr, false);
  }
  auto o = store_options(flags, false);
  if (!o.ok()) return *code = fail_status(o.status()), std::nullopt;
  auto store = open_store(*o);
  if (!store.ok()) return *code = fail_status(store.status()), std::nullopt;
  auto out = offline(**store);
  Status closed = (*store)->close();
  if (!out.ok()) return *code = fail_status(out.status()), std::nullopt;
  if (!closed.ok()) return *code = fail_status(closed), std::nullopt;
  return std::move(*out);
}

}  // namespace

int cmd_privacy_forget(const StoreFlags& flags, const RemoteFlags& remote, const ForgetArgs& a) {
  const json actor = actor_of(a);
  json body = {{"reason", a.reason}};
  if (!actor.is_null()) body["actor"] = actor;
  int code = 0;
  auto got = run(flags, remote, "POST", "/v1/privacy/subjects/" + encode_segment(a.subject) + "/forget", body.dump(),
                 [&](Store& store) -> Result<ojson> {
                   auto r = store.forget(a.subject, a.reason, actor.is_null() ? "" : actor.dump());
                   if (!r.ok()) return r.status();
                   return ojson{{"subject", r->subject_id}, {"keys_destroyed", r->keys_destroyed},
                                {"affected_events", r->affected_events}, {"position", r->position},
                                {"already_forgotten", r->already}};
                 }, &code);
  if (!got) return code;
  const ojson& out = *got;
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
  } else if (out.value("already_forgotten", false)) {
    std::printf("subject %s was forgotten before (recorded at position %llu); nothing changed\n",
                out.value("subject", "").c_str(), u(out, "position"));
  } else {
    std::printf("forgot subject %s: %llu key(s) destroyed, %llu event(s) now unreadable; recorded at position %llu in $privacy\n",
                out.value("subject", "").c_str(), u(out, "keys_destroyed"), u(out, "affected_events"), u(out, "position"));
  }
  return 0;
}

int cmd_privacy_purge(const StoreFlags& flags, const RemoteFlags& remote, const ForgetArgs& a) {
  const json actor = actor_of(a);
  json body = json::object();
  if (!actor.is_null()) body["actor"] = actor;
  int code = 0;
  auto got = run(flags, remote, "POST", "/v1/privacy/purge", body.dump(), [&](Store& store) -> Result<ojson> {
    Progress progress("purging");
    auto r = store.purge(actor.is_null() ? "" : actor.dump(), [&](uint64_t done, uint64_t total) {
      progress.update(done, total, "bytes");
    });
    progress.done();
    if (!r.ok()) return r.status();
    return privacy::purge_result_json(*r);
  }, &code);
  if (!got) return code;
  const ojson& out = *got;
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
  } else if (u(out, "parts") == 0) {
    std::printf("nothing to purge: %llu sealed segment(s) hold no part of a forgotten subject; chain head %s verified\n",
                u(out, "segments_scanned"), out.value("chain_head_after", "").c_str());
  } else {
    std::printf("purged %llu part(s) of %llu event(s) from %llu of %llu sealed segment(s) (%llu bytes overwritten) in %.2f s\n"
                "chain head at position %llu: %s before, %s after (verified both times)\nrecorded at position %llu in $privacy\n",
                u(out, "parts"), u(out, "events"), u(out, "segments_rewritten"), u(out, "segments_scanned"),
                u(out, "bytes_replaced"), out.value("seconds", 0.0), u(out, "verified_through"),
                out.value("chain_head_before", "").c_str(), out.value("chain_head_after", "").c_str(), u(out, "position"));
  }
  return 0;
}

int cmd_privacy_report(const StoreFlags& flags, const RemoteFlags& remote, const ForgetArgs& a) {
  int code = 0;
  auto got = run(flags, remote, "GET", "/v1/privacy/subjects/" + encode_segment(a.subject) + "/report", "",
                 [&](Store& store) -> Result<ojson> {
                   std::string id = a.subject;
                   if (!privacy::is_subject_id(id)) {
                     auto h = store.subject_id(a.subject);
                     if (!h.ok()) return h.status();
                     id = *h;
                   }
                   auto r = privacy::subject_report(store, id, flags.data + "/projections", ledger::is_ledger_type);
                   if (!r.ok()) return r.status();
                   if ((*r)["forgotten"].is_null() && u((*r)["events"], "count") == 0)
                     return Status::not_found("subject: nothing of this subject is stored here (" + id + ")");
                   return std::move(*r);
                 }, &code);
  if (!got) return code;
  const ojson& out = *got;
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  const ojson& f = out["forgotten"];
  const ojson& ev = out["events"];
  std::printf("subject %s\n", out.value("subject", "").c_str());
  if (f.is_null()) {
    std::printf("  not forgotten\n");
  } else {
    std::printf("  forgotten at position %llu (%s): %s; %llu key(s) destroyed\n", u(f, "position"),
                f.value("recorded_at", "").c_str(), f.value("reason", "").c_str(), u(f, "keys_destroyed"));
  }
  std::printf("  events: %llu (%llu purged, %llu unreadable awaiting a purge, %llu readable)\n", u(ev, "count"),
              u(ev, "purged"), u(ev, "unreadable_awaiting_purge"), u(ev, "readable"));
  for (const auto& [type, n] : ev["by_type"].items()) std::printf("    %-32s %llu\n", type.c_str(), n.get<unsigned long long>());
  std::printf("  training exports: %s\n", out["ai_ledger"].value("training_exports", "").c_str());
  if (out["projections"].is_object())
    std::printf("  projections: %s\n", out["projections"].value("rebuilt_without_the_subject", false)
                                          ? "rebuilt without the subject's parts"
                                          : "rebuild not finished yet (the projection runtime rebuilds in the background while it runs)");
  for (const auto& p : out["purges"])
    std::printf("  purge at position %llu (%s): %llu part(s); chain head at position %llu %s before and after\n",
                u(p, "position"), p.value("recorded_at", "").c_str(), u(p, "parts"), u(p, "verified_through"),
                p.value("chain_head_after", "").c_str());
  const ojson& v = out["verification"];
  std::printf("  log verified now: %s, %llu events, chain head %s\n", v.value("ok", false) ? "ok" : "FAILED", u(v, "events"),
              v.value("chain_head", "").c_str());
  return v.value("ok", false) ? 0 : 1;
}

}  // namespace cairn::cli
