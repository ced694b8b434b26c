#include "server/routes.h"

#include <ostream>  // boost::beast's verb.hpp prints a string_view and needs the complete ostream

#include <fmt/format.h>

#include "server/api.h"
#include "server/ledger_api.h"
#include "server/privacy_api.h"
#include "server/projections_api.h"

namespace cairn::server {

namespace http = boost::beast::http;

namespace {

using V = http::verb;
constexpr std::optional<Role> kPublic = std::nullopt;
constexpr std::optional<Role> kReader = Role::kReader;
constexpr std::optional<Role> kWriter = Role::kWriter;
constexpr std::optional<Role> kAdmin = Role::kAdmin;

constexpr std::string_view kImmutable =
    "events are immutable: nothing is updated or deleted; append a compensating event that names what it corrects";
constexpr std::string_view kImmutableShort = "events are immutable: nothing is updated or deleted";
constexpr std::string_view kOutOfScope = "the key may not access stream '{}'";
constexpr std::string_view kProjectionsWhole =
    "projections aggregate over every stream: a key scoped to stream prefixes may not use them";
constexpr std::string_view kLedgerWhole =
    "the AI ledger's queries read across streams: they need a key without stream scopes";
constexpr std::string_view kPrivacyWhole = "privacy operations need an admin key without stream scopes";
constexpr std::string_view kKeysWhole = "managing keys needs an admin key without stream scopes";

// The object a handler is a member of, from its member pointer.
template <class M>
struct MemberOf;
template <class C, class R>
struct MemberOf<R (C::*)(const Call&)> {
  using type = C;
};

template <class C>
C* part_of(const Parts& p);
template <>
Api* part_of<Api>(const Parts& p) { return p.api; }
template <>
ProjectionsApi* part_of<ProjectionsApi>(const Parts& p) { return p.projections; }
template <>
LedgerApi* part_of<LedgerApi>(const Parts& p) { return p.ledger; }
template <>
PrivacyApi* part_of<PrivacyApi>(const Parts& p) { return p.privacy; }

// A member function as a route handler: on<&Api::health>.
template <auto M>
Answer on(const Parts& p, const Call& c) {
  return (part_of<typename MemberOf<decltype(M)>::type>(p)->*M)(c);
}

bool served(const Route& r, const Parts& p) {
  switch (r.part) {
    case Part::kCore: return p.api != nullptr;
    case Part::kProjections: return p.projections != nullptr;
    case Part::kLedger: return p.ledger != nullptr;
    case Part::kPrivacy: return p.privacy != nullptr;
  }
  return false;
}

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

std::vector<Route> make_table() {
  // Keep in step with docs/openapi.yaml: tests/server/routes_doc_test.cc compares the two, allow_test.cc
  // checks every documented path's Allow against the server, and the contract test (tests/contract) checks
  // every answer against the file.
  std::vector<Route> t = {
      {.pattern = {"health"}, .methods = {{V::get, kPublic, on<&Api::health>}}},
      // /metrics checks its own key: its 401 and 403 say what a scraper needs.
      {.pattern = {"metrics"}, .methods = {{V::get, kPublic, on<&Api::metrics>}}},
      {.pattern = {"v1", "streams"},
       .methods = {{V::get, kReader, on<&Api::list_streams>}},
       .immutable_note = kImmutableShort},
      {.pattern = {"v1", "streams", "*"},
       .methods = {{V::get, kReader, on<&Api::read_stream>}, {V::post, kWriter, on<&Api::append>}},
       .scope = Scope::kStream,
       .scope_message = kOutOfScope,
       .immutable_note = kImmutable},
      // Subscriptions check the stream after their parameters (Api::subscribe).
      {.pattern = {"v1", "streams", "*", "subscribe"}, .methods = {{V::get, kReader, on<&Api::subscribe>}}},
      {.pattern = {"v1", "transactions"}, .methods = {{V::post, kWriter, on<&Api::transaction>}}},
      {.pattern = {"v1", "events"}, .methods = {{V::get, kReader, on<&Api::read_all>}}, .immutable_note = kImmutable},
      {.pattern = {"v1", "events", "*"},
       .methods = {{V::get, kReader, on<&Api::read_event>}},
       .immutable_note = kImmutable},
      {.pattern = {"v1", "positions", "*"},
       .methods = {{V::get, kReader, on<&Api::read_position>}},
       .immutable_note = kImmutable},
      {.pattern = {"v1", "subscribe"}, .methods = {{V::get, kReader, on<&Api::subscribe>}}},
      {.pattern = {"v1", "stats"},
       .methods = {{V::get, kReader, on<&Api::stats>}},
       .scope = Scope::kWhole,
       .scope_message = "store-wide statistics need a key without stream scopes"},
      {.pattern = {"v1", "verify"},
       .methods = {{V::post, kAdmin, on<&Api::verify>}},
       .scope = Scope::kWhole,
       .scope_message = "verifying the log needs an admin key without stream scopes"},
      {.pattern = {"v1", "keys"},
       .methods = {{V::get, kAdmin, on<&Api::list_keys>}, {V::post, kAdmin, on<&Api::create_key>}},
       .scope = Scope::kWhole,
       .scope_message = kKeysWhole},
      {.pattern = {"v1", "keys", "*"},
       .methods = {{V::delete_, kAdmin, on<&Api::revoke_key>}},
       .scope = Scope::kWhole,
       .scope_message = kKeysWhole},
  };
  using P = ProjectionsApi;
  auto projection = [&](std::vector<std::string_view> tail, std::vector<RouteMethod> methods) {
    std::vector<std::string_view> pattern = {"v1", "projections"};
    pattern.insert(pattern.end(), tail.begin(), tail.end());
    t.push_back({.pattern = std::move(pattern),
                 .methods = std::move(methods),
                 .part = Part::kProjections,
                 .scope = Scope::kWholeFirst,
                 .scope_message = kProjectionsWhole,
                 .guard = &P::check_version});
  };
  projection({}, {{V::get, kReader, on<&P::list>}, {V::post, kAdmin, on<&P::define>}});
  projection({"*"}, {{V::get, kReader, on<&P::status>}});
  projection({"*", "state"}, {{V::get, kReader, on<&P::state>}});
  projection({"*", "partitions"}, {{V::get, kReader, on<&P::partitions>}});
  projection({"*", "digest"}, {{V::get, kReader, on<&P::digest>}});
  projection({"*", "verify"}, {{V::post, kAdmin, on<&P::verify>}});
  projection({"*", "rebuild"}, {{V::get, kReader, on<&P::rebuild_status>}, {V::post, kAdmin, on<&P::rebuild>}});
  projection({"*", "versions"}, {{V::get, kReader, on<&P::versions>}, {V::post, kAdmin, on<&P::define_version>}});
  projection({"*", "versions", "*"}, {{V::get, kReader, on<&P::version>}, {V::delete_, kAdmin, on<&P::drop>}});
  projection({"*", "versions", "*", "activate"}, {{V::post, kAdmin, on<&P::activate>}});

  auto ledger = [&](std::vector<std::string_view> pattern, RouteHandler handler) {
    t.push_back({.pattern = std::move(pattern),
                 .methods = {{V::get, kReader, handler}},
                 .part = Part::kLedger,
                 .scope = Scope::kWhole,
                 .scope_message = kLedgerWhole});
  };
  ledger({"v1", "why", "*"}, on<&LedgerApi::why>);
  ledger({"v1", "correlations", "*"}, on<&LedgerApi::correlation>);
  ledger({"v1", "ai", "rates"}, on<&LedgerApi::rates>);
  ledger({"v1", "ai", "export"}, on<&LedgerApi::export_rows>);
  ledger({"v1", "ai", "export", "manifest"}, on<&LedgerApi::export_manifest>);

  auto privacy = [&](std::vector<std::string_view> pattern, RouteMethod method) {
    t.push_back({.pattern = std::move(pattern),
                 .methods = {method},
                 .part = Part::kPrivacy,
                 .scope = Scope::kWhole,
                 .scope_message = kPrivacyWhole});
  };
  privacy({"v1", "privacy", "subjects", "*", "forget"}, {V::post, kAdmin, on<&PrivacyApi::forget>});
  privacy({"v1", "privacy", "subjects", "*", "report"}, {V::get, kAdmin, on<&PrivacyApi::report>});
  privacy({"v1", "privacy", "purge"}, {V::post, kAdmin, on<&PrivacyApi::purge>});

  for (Route& r : t)
    for (const RouteMethod& m : r.methods) {
      if (!r.allow.empty()) r.allow += ", ";
      r.allow += std::string(sv(http::to_string(m.verb)));
    }
  return t;
}

Response no_such_endpoint(const Request& req) {
  return error_response(req, http::status::not_found, "not_found",
                        fmt::format("no such endpoint: {}", std::string(sv(req.target())).substr(0, 200)));
}

Response forbidden(const Request& req, std::string_view message) {
  return error_response(req, http::status::forbidden, "forbidden", message);
}

std::optional<Response> need_role(const Call& c, Role r) {
  if (c.key->allows(r)) return std::nullopt;
  return forbidden(c.req, fmt::format("this endpoint needs the {} role; the key has {}", role_name(r), role_name(c.key->role)));
}

// The checks before a route's handler, in the order clients have always seen them.
std::optional<Response> check_access(const Route& r, const RouteMethod& m, const Call& c) {
  if (!m.role) return std::nullopt;
  const ApiKey& key = *c.key;
  if (r.scope == Scope::kStream && !key.can_see(c.captures[0]))
    return forbidden(c.req, fmt::format(fmt::runtime(r.scope_message), c.captures[0].substr(0, 256)));
  if (r.scope == Scope::kWholeFirst && key.scoped()) return forbidden(c.req, r.scope_message);
  if (r.guard)
    if (auto refused = r.guard(c)) return refused;
  if (auto refused = need_role(c, *m.role)) return refused;
  if (r.scope == Scope::kWhole && key.scoped()) return forbidden(c.req, r.scope_message);
  return std::nullopt;
}

// A /v1 path the table does not serve, for an authenticated key: each part of the API has always answered
// the unknown paths under its prefix with its own hint, after its own checks of the key.
Response unrouted(const Parts& parts, const Call& c) {
  const auto& seg = c.t.segments;
  const Request& req = c.req;
  const std::string_view part = seg.size() >= 2 ? std::string_view(seg[1]) : std::string_view();
  if (part == "projections") {
    if (!parts.projections)
      return error_response(req, http::status::not_found, "not_found", "projections are not enabled on this server");
    if (c.key->scoped()) return forbidden(req, kProjectionsWhole);
    if (auto refused = ProjectionsApi::check_version(c)) return *refused;
    return no_such_endpoint(req);
  }
  if (part == "why" || part == "correlations" || part == "ai") {
    if (!parts.ledger)
      return error_response(req, http::status::not_found, "not_found",
                            "the AI ledger's queries need projections, which are not enabled on this server");
    if (req.method() != http::verb::get) return no_such_endpoint(req);
    if (c.key->scoped()) return forbidden(req, kLedgerWhole);
    if (part == "why") return error_response(req, http::status::not_found, "not_found", "use /v1/why/{event_id}");
    if (part == "correlations")
      return error_response(req, http::status::not_found, "not_found", "use /v1/correlations/{correlation_id}");
    return no_such_endpoint(req);
  }
  if (part == "privacy" && parts.privacy)
    return error_response(req, http::status::not_found, "not_found",
                          "use POST /v1/privacy/subjects/{subject}/forget, GET /v1/privacy/subjects/{subject}/report or "
                          "POST /v1/privacy/purge");
  if (part == "positions" && seg.size() == 2)
    return req.method() == http::verb::get
               ? error_response(req, http::status::not_found, "not_found", "use /v1/positions/{position}")
               : no_such_endpoint(req);
  if (part == "keys" && parts.api) {
    if (auto refused = need_role(c, Role::kAdmin)) return *refused;
    if (c.key->scoped()) return forbidden(req, kKeysWhole);
    return no_such_endpoint(req);
  }
  return error_response(req, http::status::not_found, "not_found",
                        fmt::format("no such endpoint: {} {}", std::string(sv(req.method_string())),
                                    std::string(sv(req.target())).substr(0, 200)));
}

}  // namespace

const RouteMethod* Route::method(http::verb v) const {
  for (const RouteMethod& m : methods)
    if (m.verb == v) return &m;
  return nullptr;
}

const std::vector<Route>& routes() {
  static const std::vector<Route> table = make_table();
  return table;
}

const Route* find_route(const std::vector<std::string>& segments) {
  for (const Route& r : routes()) {
    if (r.pattern.size() != segments.size()) continue;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) match = r.pattern[i] == "*" || r.pattern[i] == segments[i];
    if (match) return &r;
  }
  return nullptr;
}

std::variant<ApiKey, Response> authenticate(const KeyStore& keys, const Request& req) {
  const std::string_view auth = sv(req[http::field::authorization]);
  if (!auth.starts_with("Bearer ") || auth.size() <= 7)
    return error_response(req, http::status::unauthorized, "unauthorized", "an API key is required: Authorization: Bearer <key>");
  const auto key = keys.authenticate(auth.substr(7));
  if (!key) return error_response(req, http::status::unauthorized, "unauthorized", "unknown or revoked API key");
  return *key;
}

Answer dispatch_route(const Parts& parts, const Request& req, const ApiKey* known_key, const RespondStream* respond_stream,
                      const Respond* respond_later) {
  const Target t = parse_target(sv(req.target()));
  if (!t.ok) return error_response(req, http::status::bad_request, "bad_request", "the URL has a malformed %-escape");
  const Route* route = find_route(t.segments);
  if (route && !served(*route, parts)) route = nullptr;  // answered as an unknown path
  const RouteMethod* method = route ? route->method(req.method()) : nullptr;
  // A method the path does not accept is answered before the key is checked (Allow is no secret).
  if (route && !method) {
    const bool update = req.method() == V::put || req.method() == V::patch || req.method() == V::delete_;
    const std::string message = update && !route->immutable_note.empty() ? std::string(route->immutable_note)
                                                                         : "use " + route->allow;
    Response res = error_response(req, http::status::method_not_allowed, "method_not_allowed", message);
    res.set(http::field::allow, route->allow);
    return res;
  }
  ApiKey key;
  const ApiKey* caller = nullptr;
  if (!method || method->role) {  // every /v1 path needs a key, known or not
    if (!route && (t.segments.empty() || t.segments[0] != "v1")) return no_such_endpoint(req);
    if (known_key) {
      caller = known_key;
    } else {
      if (!parts.keys) return error_response(req, http::status::internal_server_error, "internal", "no key store");
      auto authenticated = authenticate(*parts.keys, req);
      if (auto* refused = std::get_if<Response>(&authenticated)) return std::move(*refused);
      key = std::get<ApiKey>(std::move(authenticated));
      caller = &key;
    }
  }
  Call c{req, t, caller, {}, respond_stream, respond_later};
  if (!route) return unrouted(parts, c);
  for (size_t i = 0; i < route->pattern.size(); ++i)
    if (route->pattern[i] == "*") c.captures.push_back(t.segments[i]);
  if (auto refused = check_access(*route, *method, c)) return refused;
  return method->handler(parts, c);
}

}  // namespace cairn::server
