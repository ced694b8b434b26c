#include "server/projections_api.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "project/definition.h"

namespace cairn::server {

namespace http = boost::beast::http;
using nlohmann::json;

namespace {

constexpr uint64_t kMaxWaitMs = 60'000;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json fault_json(const std::optional<ProjectionFault>& f) {
  if (!f) return nullptr;
  json j{{"position", f->position}, {"message", f->message}};
  if (!f->event_id.is_nil()) {
    j["event_id"] = f->event_id.to_string();
    j["stream"] = f->stream;
    j["type"] = f->type;
  }
  if (f->at_ns) j["at"] = format_rfc3339_ns(f->at_ns);
  return j;
}

json status_json(const ProjectionStatus& s, bool with_code) {
  json def = project::definition_to_json(s.definition, s.language);
  if (!with_code) def.erase("lua");
  json j{{"name", s.name},
         {"version", s.version},
         {"active", s.active},
         {"language", s.language},
         {"phase", projection_phase_name(s.phase)},
         {"position", s.position},
         {"head", s.head},
         {"lag", s.lag},
         {"events_per_second", s.events_per_second},
         {"events_applied", s.events_applied},
         {"partitions", s.partitions},
         {"checkpoint_position", s.checkpoint_position},
         {"fault", fault_json(s.fault)},
         {"definition", def}};
  j["registered_at"] = s.registered_ns ? json(format_rfc3339_ns(s.registered_ns)) : json(nullptr);
  j["rebuild_fault"] = fault_json(s.rebuild_fault);
  j["replays"] = json::array();
  for (const auto& r : s.replays)
    j["replays"].push_back({{"kind", r.kind}, {"position", r.position}, {"target", r.target}, {"seconds", r.seconds}});
  j["detail"] = s.detail.empty() ? json(nullptr) : json(s.detail);
  if (s.rebuild)
    j["rebuild"] = {{"position", s.rebuild->position},
                    {"target", s.rebuild->target},
                    {"events_per_second", s.rebuild->events_per_second},
                    {"eta_seconds", s.rebuild->eta_seconds}};
  else
    j["rebuild"] = nullptr;
  return j;
}

// A state answer embeds the canonical state text as is.
std::string state_body(const ProjectionState& s) {
  json head{{"name", s.name}, {"version", s.version}, {"position", s.position}, {"found", s.found}};
  if (s.key) head["key"] = *s.key;
  std::string out = dump(head);
  out.pop_back();
  out += ",\"state\":";
  out += s.json;
  out += "}";
  return out;
}

Result<uint32_t> version_param(const Target& t) {
  auto v = uint_param(t, "version");
  if (!v.ok()) return v.status();
  if (v->value_or(0) > UINT32_MAX) return Status::invalid_argument("query parameter 'version': too large");
  return static_cast<uint32_t>(v->value_or(0));
}

bool json_content(const Request& req) {
  const std::string_view ct(req[http::field::content_type].data(), req[http::field::content_type].size());
  return ct.starts_with("application/json");
}

Result<json> json_body(const Request& req) {
  json j = json::parse(req.body(), nullptr, false);
  if (j.is_discarded()) return Status::invalid_argument("the body is not valid JSON");
  if (!j.is_object()) return Status::invalid_argument("the body must be a JSON object");
  return j;
}

}  // namespace

namespace {

Response unsupported(const Request& req) {
  return error_response(req, http::status::unsupported_media_type, "unsupported_media_type", "send Content-Type: application/json");
}

// Defines a projection (version); 201 when it is new, 200 when the same definition was there.
Response define_answer(const Request& req, Projections& p, const ProjectionDefinition& def) {
  const bool existed = p.status(def.name, def.version).ok();
  auto s = p.define(def);
  if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
  return json_response(req, existed ? http::status::ok : http::status::created, dump(status_json(*s, true)));
}

// A version in the URL: a number from 1.
Result<uint32_t> url_version(const std::string& vs) {
  uint64_t v = 0;
  if (vs.empty() || vs.size() > 10 || vs.find_first_not_of("0123456789") != std::string::npos ||
      (v = std::stoull(vs)) == 0 || v > UINT32_MAX)
    return Status::invalid_argument(fmt::format("version '{}' in the URL is not a number from 1", vs.substr(0, 20)));
  return static_cast<uint32_t>(v);
}

// The version query parameter, already checked by check_version (0: the active one).
uint32_t version_of(const Call& c) { return *version_param(c.t); }

// The projection's name in the URL, and the version after /versions/ (both checked by check_version).
const std::string& name_of(const Call& c) { return c.captures[0]; }
uint32_t url_version_of(const Call& c) { return *url_version(c.captures[1]); }

}  // namespace

std::optional<Response> ProjectionsApi::check_version(const Call& c) {
  auto version = version_param(c.t);
  if (!version.ok()) return status_response(c.req, version.status());
  const auto& seg = c.t.segments;  // "v1", "projections", name, "versions", version, ...
  if (seg.size() >= 5 && seg[3] == "versions")
    if (auto v = url_version(seg[4]); !v.ok()) return status_response(c.req, v.status());
  return std::nullopt;
}

Response ProjectionsApi::list(const Call& c) {
  json list = json::array();
  for (const auto& s : p_.list()) list.push_back(status_json(s, false));
  return json_response(c.req, http::status::ok, dump(json{{"projections", list}}));
}

Response ProjectionsApi::define(const Call& c) {
  const Request& req = c.req;
  if (!json_content(req)) return unsupported(req);
  auto body = json_body(req);
  if (!body.ok()) return status_response(req, body.status());
  if (body->contains("language") && (*body)["language"] != "lua")
    return status_response(req, Status::invalid_argument("language: only lua projections can be defined over HTTP (C++ "
                                                         "projections are registered by the program that embeds Cairn)"));
  auto def = project::definition_from_json(*body, false);
  if (!def.ok()) return status_response(req, def.status());
  return define_answer(req, p_, *def);
}

Response ProjectionsApi::status(const Call& c) {
  const std::string& name = name_of(c);
  auto s = p_.status(name, version_of(c));
  if (!s.ok()) return status_response(c.req, s.status(), "projection_not_found");
  json j = status_json(*s, true);
  json versions = json::array();
  for (const auto& v : p_.versions(name))
    versions.push_back({{"version", v.version}, {"active", v.active}, {"phase", projection_phase_name(v.phase)},
                        {"position", v.position}, {"lag", v.lag}, {"fault", fault_json(v.fault)}});
  j["versions"] = versions;
  return json_response(c.req, http::status::ok, dump(j));
}

Response ProjectionsApi::state(const Call& c) {
  const Request& req = c.req;
  const Target& t = c.t;
  const std::string& name = name_of(c);
  std::optional<std::string> k = t.param("key");
  if (k && k->empty()) k.reset();  // an empty parameter is an absent one, as everywhere in the API
  auto as_of = uint_param(t, "as_of");
  if (!as_of.ok()) return status_response(req, as_of.status());
  auto as_of_time = t.param("as_of_time");
  if (as_of_time && as_of_time->empty()) as_of_time.reset();
  if (*as_of || as_of_time) {
    if (*as_of && as_of_time) return status_response(req, Status::invalid_argument("give as_of or as_of_time, not both"));
    AsOf a;
    a.position = *as_of;
    if (as_of_time) {
      auto ns = parse_rfc3339_ns(*as_of_time);
      if (!ns.ok()) return status_response(req, Status::invalid_argument(fmt::format("query parameter 'as_of_time': {}", ns.status().message())));
      a.time_ns = *ns;
    }
    auto s = p_.state_as_of(name, k, a, version_of(c));
    if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
    return json_response(req, http::status::ok, state_body(*s));
  }
  auto wait_for = uint_param(t, "wait_for");
  if (!wait_for.ok()) return status_response(req, wait_for.status());
  auto timeout = uint_param(t, "timeout_ms");
  if (!timeout.ok()) return status_response(req, timeout.status());
  if (timeout->value_or(0) > kMaxWaitMs)
    return status_response(req, Status::invalid_argument(fmt::format("query parameter 'timeout_ms': at most {}", kMaxWaitMs)));
  auto s = p_.state(name, k, version_of(c), *wait_for, std::chrono::milliseconds(timeout->value_or(5000)));
  if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
  return json_response(req, http::status::ok, state_body(*s));
}

Response ProjectionsApi::partitions(const Call& c) {
  auto limit = uint_param(c.t, "limit");
  if (!limit.ok()) return status_response(c.req, limit.status());
  if (limit->value_or(100) == 0) return status_response(c.req, Status::invalid_argument("query parameter 'limit': at least 1"));
  auto page = p_.partitions(name_of(c), c.t.param("after"), std::min<uint64_t>(limit->value_or(100), 1000), version_of(c));
  if (!page.ok()) return status_response(c.req, page.status(), "projection_not_found");
  return json_response(c.req, http::status::ok,
                       dump(json{{"name", page->name}, {"version", page->version}, {"position", page->position},
                                 {"keys", page->keys}, {"next", page->next ? json(*page->next) : json(nullptr)}}));
}

Response ProjectionsApi::digest(const Call& c) {
  auto d = p_.digest(name_of(c), version_of(c));
  if (!d.ok()) return status_response(c.req, d.status(), "projection_not_found");
  return json_response(c.req, http::status::ok,
                       dump(json{{"name", d->name}, {"version", d->version}, {"position", d->position},
                                 {"partitions", d->partitions}, {"sha256", d->sha256_hex}}));
}

Response ProjectionsApi::verify(const Call& c) {
  auto limit = uint_param(c.t, "max_differences");
  if (!limit.ok()) return status_response(c.req, limit.status());
  auto v = p_.verify(name_of(c), version_of(c), std::min<uint64_t>(limit->value_or(10), 1000));
  if (!v.ok()) return status_response(c.req, v.status(), "projection_not_found");
  json diffs = json::array();
  for (const auto& d : v->differences) {
    json jd{{"key", d.key}};
    jd["live"] = d.live ? json::parse(*d.live, nullptr, false) : json(nullptr);
    jd["rebuilt"] = d.rebuilt ? json::parse(*d.rebuilt, nullptr, false) : json(nullptr);
    jd["only_in"] = !d.live ? json("rebuilt") : !d.rebuilt ? json("live") : json(nullptr);
    diffs.push_back(jd);
  }
  return json_response(c.req, http::status::ok,
                       dump(json{{"name", v->name}, {"version", v->version}, {"position", v->position},
                                 {"equal", v->equal}, {"live_digest", v->live_digest},
                                 {"rebuilt_digest", v->rebuilt_digest}, {"partitions", v->partitions},
                                 {"differences", diffs}}));
}

Response ProjectionsApi::rebuild(const Call& c) {
  auto s = p_.rebuild(name_of(c), version_of(c));
  if (!s.ok()) return status_response(c.req, s.status(), "projection_not_found");
  return json_response(c.req, http::status::accepted, dump(status_json(*s, false)));
}

Response ProjectionsApi::rebuild_status(const Call& c) {
  auto s = p_.status(name_of(c), version_of(c));
  if (!s.ok()) return status_response(c.req, s.status(), "projection_not_found");
  json j{{"name", s->name}, {"version", s->version}, {"running", s->rebuild.has_value()}};
  const json full = status_json(*s, false);
  j["rebuild"] = full["rebuild"];
  j["fault"] = full["rebuild_fault"];
  return json_response(c.req, http::status::ok, dump(j));
}

Response ProjectionsApi::versions(const Call& c) {
  const std::string& name = name_of(c);
  json list = json::array();
  for (const auto& s : p_.versions(name)) list.push_back(status_json(s, false));
  if (list.empty())
    return status_response(c.req, Status::not_found(fmt::format("no projection is named '{}'", name.substr(0, 100))), "projection_not_found");
  return json_response(c.req, http::status::ok, dump(json{{"name", name}, {"versions", list}}));
}

Response ProjectionsApi::define_version(const Call& c) {
  const Request& req = c.req;
  const std::string& name = name_of(c);
  if (!json_content(req)) return unsupported(req);
  auto body = json_body(req);
  if (!body.ok()) return status_response(req, body.status());
  if (body->contains("name") && (*body)["name"] != name)
    return status_response(req, Status::invalid_argument("name: the body names another projection than the URL"));
  (*body)["name"] = name;
  if (!body->contains("version")) {
    const auto vs = p_.versions(name);
    if (vs.empty())
      return status_response(req, Status::not_found(fmt::format("no projection is named '{}'; create it with POST /v1/projections", name.substr(0, 100))),
                             "projection_not_found");
    (*body)["version"] = vs.back().version + 1;
  }
  if (body->contains("language") && (*body)["language"] != "lua")
    return status_response(req, Status::invalid_argument("language: only lua projections can be defined over HTTP"));
  auto def = project::definition_from_json(*body, true);
  if (!def.ok()) return status_response(req, def.status());
  return define_answer(req, p_, *def);
}

Response ProjectionsApi::version(const Call& c) {
  auto s = p_.status(name_of(c), url_version_of(c));
  if (!s.ok()) return status_response(c.req, s.status(), "projection_not_found");
  return json_response(c.req, http::status::ok, dump(status_json(*s, true)));
}

Response ProjectionsApi::drop(const Call& c) {
  const uint32_t v = url_version_of(c);
  Status st = p_.drop(name_of(c), v);
  if (!st.ok()) return status_response(c.req, st, "projection_not_found");
  return json_response(c.req, http::status::ok, dump(json{{"name", name_of(c)}, {"version", v}, {"dropped", true}}));
}

Response ProjectionsApi::activate(const Call& c) {
  auto s = p_.activate(name_of(c), url_version_of(c));
  if (!s.ok()) return status_response(c.req, s.status(), "projection_not_found");
  return json_response(c.req, http::status::ok, dump(status_json(*s, false)));
}

std::string ProjectionsApi::metrics_text() {
  const auto all = p_.list();
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto& s : all) {
      auto v = value(s);
      if (v) out += fmt::format("{}{{projection=\"{}\",version=\"{}\"}} {}\n", name, s.name, s.version, *v);
    }
  };
  using O = std::optional<double>;
  family("cairn_projection_position", "gauge", "The state reflects every event below this position.",
         [](const ProjectionStatus& s) { return O(static_cast<double>(s.position)); });
  family("cairn_projection_lag_events", "gauge", "Events between the projection's position and the head.",
         [](const ProjectionStatus& s) { return O(static_cast<double>(s.lag)); });
  family("cairn_projection_events_per_second", "gauge", "Events looked at per second, recently.",
         [](const ProjectionStatus& s) { return O(s.events_per_second); });
  family("cairn_projection_events_applied_total", "counter", "Events applied by the reducer since the server started.",
         [](const ProjectionStatus& s) { return O(static_cast<double>(s.events_applied)); });
  family("cairn_projection_partitions", "gauge", "Partitions in the state.",
         [](const ProjectionStatus& s) { return O(static_cast<double>(s.partitions)); });
  family("cairn_projection_active", "gauge", "1 for the version that answers queries by name.",
         [](const ProjectionStatus& s) { return O(s.active ? 1 : 0); });
  family("cairn_projection_faulted", "gauge", "1 when the version stopped on a reducer error.",
         [](const ProjectionStatus& s) { return O(s.phase == ProjectionPhase::kFaulted ? 1 : 0); });
  family("cairn_projection_rebuild_position", "gauge", "Position of a background rebuild in progress.",
         [](const ProjectionStatus& s) { return s.rebuild ? O(static_cast<double>(s.rebuild->position)) : O(); });
  family("cairn_projection_rebuild_events_per_second", "gauge", "Speed of a background rebuild in progress.",
         [](const ProjectionStatus& s) { return s.rebuild ? O(s.rebuild->events_per_second) : O(); });
  family("cairn_projection_rebuild_eta_seconds", "gauge", "Estimated seconds until a background rebuild catches up.",
         [](const ProjectionStatus& s) { return s.rebuild ? O(s.rebuild->eta_seconds) : O(); });
  family("cairn_projection_replays_running", "gauge", "Verify and as-of replays of the version running now.",
         [](const ProjectionStatus& s) { return O(static_cast<double>(s.replays.size())); });
  return out;
}

}  // namespace cairn::server
