#include "server/privacy_api.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ledger/vocabulary.h"
#include "privacy/keystore.h"
#include "privacy/report.h"

namespace cairn::server {

namespace http = boost::beast::http;
using nlohmann::json;

bool PrivacyApi::handles(const Target& t) { return t.segments.size() >= 2 && t.segments[1] == "privacy"; }

Response PrivacyApi::dispatch(const Request& req, const Target& t, const ApiKey& key) {
  const auto& seg = t.segments;
  const bool forget = seg.size() == 5 && seg[2] == "subjects" && seg[4] == "forget";
  const bool report = seg.size() == 5 && seg[2] == "subjects" && seg[4] == "report";
  const bool purge = seg.size() == 3 && seg[2] == "purge";
  if (!forget && !report && !purge)
    return error_response(req, http::status::not_found, "not_found",
                          "use POST /v1/privacy/subjects/{subject}/forget, GET /v1/privacy/subjects/{subject}/report or "
                          "POST /v1/privacy/purge");
  const http::verb want = report ? http::verb::get : http::verb::post;
  if (req.method() != want)
    return error_response(req, http::status::method_not_allowed, "method_not_allowed", report ? "use GET" : "use POST");
  if (!key.allows(Role::kAdmin))
    return error_response(req, http::status::forbidden, "forbidden",
                          fmt::format("this endpoint needs the admin role; the key has {}", role_name(key.role)));
  if (key.scoped())
    return error_response(req, http::status::forbidden, "forbidden", "privacy operations need an admin key without stream scopes");

  if (report) {
    // The subject in clear, or already as its keyed hash (what the forgotten event shows).
    std::string id = seg[3];
    if (!privacy::is_subject_id(id)) {
      auto h = store_.subject_id(seg[3]);
      if (!h.ok()) return status_response(req, h.status());
      id = *h;
    }
    auto r = privacy::subject_report(store_, id, projections_dir_, ledger::is_ledger_type);
    if (!r.ok()) return status_response(req, r.status());
    if ((*r)["forgotten"].is_null() && (*r)["events"]["count"] == 0)
      return status_response(req, Status::not_found(fmt::format("subject: nothing of this subject is stored here ({})", id)),
                             "subject_not_found");
    return json_response(req, http::status::ok, r->dump(-1, ' ', false, json::error_handler_t::replace));
  }

  // forget and purge take a JSON body (purge's may be empty).
  json body = json::object();
  if (!req.body().empty() || forget) {
    const auto type = req[http::field::content_type];
    if (!std::string_view(type.data(), type.size()).starts_with("application/json"))
      return error_response(req, http::status::unsupported_media_type, "unsupported_media_type", "send application/json");
    body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return status_response(req, Status::invalid_argument(forget ? "body: must be a JSON object {\"reason\", \"actor\"?}"
                                                                  : "body: must be a JSON object {\"actor\"?}"));
  }
  for (auto it = body.begin(); it != body.end(); ++it)
    if (it.key() != "actor" && !(forget && it.key() == "reason"))
      return status_response(req, Status::invalid_argument(fmt::format("{}: not a field of the body ({})", it.key().substr(0, 64),
                                                                       forget ? "reason, actor" : "actor")));
  // Who asked: the body's actor, else the API key.
  const std::string actor = body.contains("actor") ? body["actor"].dump() : json{{"kind", "service"}, {"id", key.id}}.dump();
  if (forget) {
    if (!body.contains("reason") || !body["reason"].is_string())
      return status_response(req, Status::invalid_argument("reason: required, a string (why the subject is forgotten)"));
    auto r = store_.forget(seg[3], body["reason"].get<std::string>(), actor);
    if (!r.ok()) return status_response(req, r.status(), "subject_not_found");
    return json_response(req, r->already ? http::status::ok : http::status::created,
                         json{{"subject", r->subject_id}, {"keys_destroyed", r->keys_destroyed}, {"affected_events", r->affected_events},
                              {"position", r->position}, {"already_forgotten", r->already}}
                             .dump());
  }
  auto r = store_.purge(actor, {});
  if (!r.ok()) return status_response(req, r.status());
  return json_response(req, http::status::ok, privacy::purge_result_json(*r).dump());
}

}  // namespace cairn::server
