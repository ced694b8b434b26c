#include "server/privacy_api.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ledger/vocabulary.h"
#include "privacy/keystore.h"
#include "privacy/report.h"

namespace cairn::server {

namespace http = boost::beast::http;
using nlohmann::json;

namespace {

// forget and purge take a JSON body (purge's may be empty): the body, or the answer refusing it. The actor
// who asked is the body's, else the API key's.
std::optional<Response> read_body(const Call& c, bool forget, json* body, std::string* actor) {
  const Request& req = c.req;
  *body = json::object();
  if (!req.body().empty() || forget) {
    const auto type = req[http::field::content_type];
    if (!std::string_view(type.data(), type.size()).starts_with("application/json"))
      return error_response(req, http::status::unsupported_media_type, "unsupported_media_type", "send application/json");
    *body = json::parse(req.body(), nullptr, false);
    if (body->is_discarded() || !body->is_object())
      return status_response(req, Status::invalid_argument(forget ? "body: must be a JSON object {\"reason\", \"actor\"?}"
                                                                  : "body: must be a JSON object {\"actor\"?}"));
  }
  for (auto it = body->begin(); it != body->end(); ++it)
    if (it.key() != "actor" && !(forget && it.key() == "reason"))
      return status_response(req, Status::invalid_argument(fmt::format("{}: not a field of the body ({})", it.key().substr(0, 64),
                                                                       forget ? "reason, actor" : "actor")));
  *actor = body->contains("actor") ? (*body)["actor"].dump() : json{{"kind", "service"}, {"id", c.key->id}}.dump();
  return std::nullopt;
}

}  // namespace

Response PrivacyApi::report(const Call& c) {
  const Request& req = c.req;
  const std::string& subject = c.captures[0];
  // The subject in clear, or already as its keyed hash (what the forgotten event shows).
  std::string id = subject;
  if (!privacy::is_subject_id(id)) {
    auto h = store_.subject_id(subject);
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

Response PrivacyApi::forget(const Call& c) {
  json body;
  std::string actor;
  if (auto refused = read_body(c, true, &body, &actor)) return *refused;
  if (!body.contains("reason") || !body["reason"].is_string())
    return status_response(c.req, Status::invalid_argument("reason: required, a string (why the subject is forgotten)"));
  auto r = store_.forget(c.captures[0], body["reason"].get<std::string>(), actor);
  if (!r.ok()) return status_response(c.req, r.status(), "subject_not_found");
  return json_response(c.req, r->already ? http::status::ok : http::status::created,
                       json{{"subject", r->subject_id}, {"keys_destroyed", r->keys_destroyed}, {"affected_events", r->affected_events},
                            {"position", r->position}, {"already_forgotten", r->already}}
                           .dump());
}

Response PrivacyApi::purge(const Call& c) {
  json body;
  std::string actor;
  if (auto refused = read_body(c, false, &body, &actor)) return *refused;
  auto r = store_.purge(actor, {});
  if (!r.ok()) return status_response(c.req, r.status());
  return json_response(c.req, http::status::ok, privacy::purge_result_json(*r).dump());
}

}  // namespace cairn::server
