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

Response ProjectionsApi::dispatch(const Request& req, const Target& t, const ApiKey& key) {
  const auto& seg = t.segments;  // "v1", "projections", ...
  const http::verb method = req.method();
  if (key.scoped())
    return error_response(req, http::status::forbidden, "forbidden",
                          "projections aggregate over every stream: a key scoped to stream prefixes may not use them");
  auto need = [&](Role r) -> std::optional<Response> {
    if (key.allows(r)) return std::nullopt;
    return error_response(req, http::status::forbidden, "forbidden",
                          fmt::format("this endpoint needs the {} role; the key has {}", role_name(r), role_name(key.role)));
  };
  auto unsupported = [&] {
    return error_response(req, http::status::unsupported_media_type, "unsupported_media_type",
                          "send Content-Type: application/json");
  };
  auto method_not_allowed = [&](std::string_view allowed) {
    Response r = error_response(req, http::status::method_not_allowed, "method_not_allowed", fmt::format("use {}", allowed));
    r.set(http::field::allow, std::string(allowed));
    return r;
  };
  auto version = version_param(t);
  if (!version.ok()) return status_response(req, version.status());

  // ---- /v1/projections
  if (seg.size() == 2) {
    if (method == http::verb::get) {
      if (auto r = need(Role::kReader)) return *r;
      json list = json::array();
      for (const auto& s : p_.list()) list.push_back(status_json(s, false));
      return json_response(req, http::status::ok, dump(json{{"projections", list}}));
    }
    if (method == http::verb::post) {
      if (auto r = need(Role::kAdmin)) return *r;
      if (!json_content(req)) return unsupported();
      auto body = json_body(req);
      if (!body.ok()) return status_response(req, body.status());
      if (body->contains("language") && (*body)["language"] != "lua")
        return status_response(req, Status::invalid_argument("language: only lua projections can be defined over HTTP (C++ "
                                                             "projections are registered by the program that embeds Cairn)"));
      auto def = project::definition_from_json(*body, false);
      if (!def.ok()) return status_response(req, def.status());
      const bool existed = p_.status(def->name, def->version).ok();
      auto s = p_.define(*def);
      if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
      return json_response(req, existed ? http::status::ok : http::status::created, dump(status_json(*s, true)));
    }
    return method_not_allowed("GET, POST");
  }
  const std::string& name = seg[2];

  // ---- /v1/projections/{name}
  if (seg.size() == 3) {
    if (method != http::verb::get) return method_not_allowed("GET");
    if (auto r = need(Role::kReader)) return *r;
    auto s = p_.status(name, *version);
    if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
    json j = status_json(*s, true);
    json versions = json::array();
    for (const auto& v : p_.versions(name))
      versions.push_back({{"version", v.version}, {"active", v.active}, {"phase", projection_phase_name(v.phase)},
                          {"position", v.position}, {"lag", v.lag}, {"fault", fault_json(v.fault)}});
    j["versions"] = versions;
    return json_response(req, http::status::ok, dump(j));
  }
  const std::string& what = seg[3];

  if (seg.size() == 4 && what == "state") {
    if (method != http::verb::get) return method_not_allowed("GET");
    if (auto r = need(Role::kReader)) return *r;
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
      auto s = p_.state_as_of(name, k, a, *version);
      if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
      return json_response(req, http::status::ok, state_body(*s));
    }
    auto wait_for = uint_param(t, "wait_for");
    if (!wait_for.ok()) return status_response(req, wait_for.status());
    auto timeout = uint_param(t, "timeout_ms");
    if (!timeout.ok()) return status_response(req, timeout.status());
    if (timeout->value_or(0) > kMaxWaitMs)
      return status_response(req, Status::invalid_argument(fmt::format("query parameter 'timeout_ms': at most {}", kMaxWaitMs)));
    auto s = p_.state(name, k, *version, *wait_for, std::chrono::milliseconds(timeout->value_or(5000)));
    if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
    return json_response(req, http::status::ok, state_body(*s));
  }

  if (seg.size() == 4 && what == "partitions") {
    if (method != http::verb::get) return method_not_allowed("GET");
    if (auto r = need(Role::kReader)) return *r;
    auto limit = uint_param(t, "limit");
    if (!limit.ok()) return status_response(req, limit.status());
    if (limit->value_or(100) == 0) return status_response(req, Status::invalid_argument("query parameter 'limit': at least 1"));
    auto page = p_.partitions(name, t.param("after"), std::min<uint64_t>(limit->value_or(100), 1000), *version);
    if (!page.ok()) return status_response(req, page.status(), "projection_not_found");
    return json_response(req, http::status::ok,
                         dump(json{{"name", page->name}, {"version", page->version}, {"position", page->position},
                                   {"keys", page->keys}, {"next", page->next ? json(*page->next) : json(nullptr)}}));
  }

  if (seg.size() == 4 && what == "digest") {
    if (method != http::verb::get) return method_not_allowed("GET");
    if (auto r = need(Role::kReader)) return *r;
    auto d = p_.digest(name, *version);
    if (!d.ok()) return status_response(req, d.status(), "projection_not_found");
    return json_response(req, http::status::ok,
                         dump(json{{"name", d->name}, {"version", d->version}, {"position", d->position},
                                   {"partitions", d->partitions}, {"sha256", d->sha256_hex}}));
  }

  if (seg.size() == 4 && what == "verify") {
    if (method != http::verb::post) return method_not_allowed("POST");
    if (auto r = need(Role::kAdmin)) return *r;
    auto limit = uint_param(t, "max_differences");
    if (!limit.ok()) return status_response(req, limit.status());
    auto v = p_.verify(name, *version, std::min<uint64_t>(limit->value_or(10), 1000));
    if (!v.ok()) return status_response(req, v.status(), "projection_not_found");
    json diffs = json::array();
    for (const auto& d : v->differences) {
      json jd{{"key", d.key}};
      jd["live"] = d.live ? json::parse(*d.live, nullptr, false) : json(nullptr);
      jd["rebuilt"] = d.rebuilt ? json::parse(*d.rebuilt, nullptr, false) : json(nullptr);
      jd["only_in"] = !d.live ? json("rebuilt") : !d.rebuilt ? json("live") : json(nullptr);
      diffs.push_back(jd);
    }
    return json_response(req, http::status::ok,
                         dump(json{{"name", v->name}, {"version", v->version}, {"position", v->position},
                                   {"equal", v->equal}, {"live_digest", v->live_digest},
                                   {"rebuilt_digest", v->rebuilt_digest}, {"partitions", v->partitions},
                                   {"differences", diffs}}));
  }

  if (seg.size() == 4 && what == "rebuild") {
    if (method == http::verb::post) {
      if (auto r = need(Role::kAdmin)) return *r;
      auto s = p_.rebuild(name, *version);
      if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
      return json_response(req, http::status::accepted, dump(status_json(*s, false)));
    }
    if (method == http::verb::get) {
      if (auto r = need(Role::kReader)) return *r;
      auto s = p_.status(name, *version);
      if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
      json j{{"name", s->name}, {"version", s->version}, {"running", s->rebuild.has_value()}};
      const json full = status_json(*s, false);
      j["rebuild"] = full["rebuild"];
      j["fault"] = full["rebuild_fault"];
      return json_response(req, http::status::ok, dump(j));
    }
    return method_not_allowed("GET, POST");
  }

  if (what == "versions") {
    if (seg.size() == 4) {
      if (method == http::verb::get) {
        if (auto r = need(Role::kReader)) return *r;
        json list = json::array();
        for (const auto& s : p_.versions(name)) list.push_back(status_json(s, false));
        if (list.empty()) return status_response(req, Status::not_found(fmt::format("no projection is named '{}'", name.substr(0, 100))), "projection_not_found");
        return json_response(req, http::status::ok, dump(json{{"name", name}, {"versions", list}}));
      }
      if (method == http::verb::post) {
        if (auto r = need(Role::kAdmin)) return *r;
        if (!json_content(req)) return unsupported();
        auto body = json_body(req);
        if (!body.ok()) return status_response(req, body.status());
        if (body->contains("name") && (*body)["name"] != name)
          return status_response(req, Status::invalid_argument("name: the body names another projection than the URL"));
        (*body)["name"] = name;
        const bool has_version = body->contains("version");
        if (!has_version) {
          const auto vs = p_.versions(name);
          if (vs.empty()) return status_response(req, Status::not_found(fmt::format("no projection is named '{}'; create it with POST /v1/projections", name.substr(0, 100))), "projection_not_found");
          (*body)["version"] = vs.back().version + 1;
        }
        if (body->contains("language") && (*body)["language"] != "lua")
          return status_response(req, Status::invalid_argument("language: only lua projections can be defined over HTTP"));
        auto def = project::definition_from_json(*body, true);
        if (!def.ok()) return status_response(req, def.status());
        const bool existed = p_.status(def->name, def->version).ok();
        auto s = p_.define(*def);
        if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
        return json_response(req, existed ? http::status::ok : http::status::created, dump(status_json(*s, true)));
      }
      return method_not_allowed("GET, POST");
    }
    uint64_t v = 0;
    const std::string& vs = seg[4];
    if (vs.empty() || vs.size() > 10 || vs.find_first_not_of("0123456789") != std::string::npos ||
        (v = std::stoull(vs)) == 0 || v > UINT32_MAX)
      return status_response(req, Status::invalid_argument(fmt::format("version '{}' in the URL is not a number from 1", vs.substr(0, 20))));
    if (seg.size() == 5) {
      if (method == http::verb::get) {
        if (auto r = need(Role::kReader)) return *r;
        auto s = p_.status(name, static_cast<uint32_t>(v));
        if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
        return json_response(req, http::status::ok, dump(status_json(*s, true)));
      }
      if (method == http::verb::delete_) {
        if (auto r = need(Role::kAdmin)) return *r;
        Status st = p_.drop(name, static_cast<uint32_t>(v));
        if (!st.ok()) return status_response(req, st, "projection_not_found");
        return json_response(req, http::status::ok, dump(json{{"name", name}, {"version", v}, {"dropped", true}}));
      }
      return method_not_allowed("GET, DELETE");
    }
    if (seg.size() == 6 && seg[5] == "activate") {
      if (method != http::verb::post) return method_not_allowed("POST");
      if (auto r = need(Role::kAdmin)) return *r;
      auto s = p_.activate(name, static_cast<uint32_t>(v));
      if (!s.ok()) return status_response(req, s.status(), "projection_not_found");
      return json_response(req, http::status::ok, dump(status_json(*s, false)));
    }
  }
  return error_response(req, http::status::not_found, "not_found",
                        fmt::format("no such endpoint: {}", std::string(req.target().data(), req.target().size()).substr(0, 200)));
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
