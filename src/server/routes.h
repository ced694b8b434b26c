// The route table of cairnd: every method of every path the server serves, the role and stream scope each
// needs, and the handler that answers it, declared once (routes.cc). dispatch_route() is the one router:
// find the path, 405 with Allow when the method is not there (RFC 9110 §15.5.6), the key, the scope and
// role checks, then the handler. The table is static and immutable; dispatch_route() is thread-safe as far
// as the handlers it calls are (every part of the API is callable from any thread). Nothing here owns the
// parts: Parts only borrows them for the call.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/beast/http/verb.hpp>

#include "server/http_util.h"
#include "server/keys.h"

namespace cairn::server {

class Api;
class LedgerApi;
class PrivacyApi;
class ProjectionsApi;

// The objects that answer routes. A null part's routes are not served (404 as an unknown path): the
// projections and the AI ledger exist only when the server runs projections; the CLI's offline backend has
// only those two.
struct Parts {
  Api* api = nullptr;
  ProjectionsApi* projections = nullptr;
  LedgerApi* ledger = nullptr;
  PrivacyApi* privacy = nullptr;
  const KeyStore* keys = nullptr;  // where an Authorization header's key is looked up
};

// One request as a handler sees it; valid for the duration of the handler call.
struct Call {
  const Request& req;
  const Target& t;
  const ApiKey* key;                    // authenticated; null on public routes (health, metrics)
  std::vector<std::string> captures;    // the path's "*" segments, in order
  const RespondStream* respond_stream;  // where a streamed answer goes; null for synchronous calls
  // Where a handler that answers later sends its answer (an append answered once its group commit is
  // durable, from the store's thread); null when the caller needs the answer now (the CLI's offline backend).
  const Respond* respond_later = nullptr;
};

// A handler's answer; nullopt when it answers through Call::respond_stream or Call::respond_later.
using Answer = std::optional<Response>;
using RouteHandler = Answer (*)(const Parts&, const Call&);

enum class Part : uint8_t { kCore, kProjections, kLedger, kPrivacy };

// How a route limits keys scoped to stream prefixes (the order of the checks is what clients see).
enum class Scope : uint8_t {
  kAny,         // no check here: the handler filters what the key may see, or checks after its parameters
  kStream,      // the key must see the stream of the first capture; checked before the role
  kWhole,       // a key without stream scopes; checked after the role (store-wide answers)
  kWholeFirst,  // the same, checked before the guard and the role (projections: whatever the role)
};

struct RouteMethod {
  boost::beast::http::verb verb;
  std::optional<Role> role;  // nullopt: public, no key needed
  RouteHandler handler;
};

struct Route {
  std::vector<std::string_view> pattern;  // path segments; "*" matches any one segment
  std::vector<RouteMethod> methods;       // in the order the Allow header lists them
  Part part = Part::kCore;
  Scope scope = Scope::kAny;
  std::string_view scope_message = "";  // the 403 of a key whose scopes the route refuses
  // Why an update or delete is refused, for the paths of events ("" elsewhere: "use GET, POST").
  std::string_view immutable_note = "";
  // Validation run before the role check (a projection's version parameter), or null.
  std::optional<Response> (*guard)(const Call&) = nullptr;
  std::string allow = "";  // filled from methods: "GET, POST"

  bool projections() const { return part == Part::kProjections || part == Part::kLedger; }
  const RouteMethod* method(boost::beast::http::verb v) const;
};

const std::vector<Route>& routes();
// The route of these decoded path segments, or nullptr when the server has no such path.
const Route* find_route(const std::vector<std::string>& segments);

// Routes one request. known_key: the caller when already known (the CLI's offline backend); otherwise the
// Authorization header is looked up in parts.keys. respond_stream and respond_later may be null (then no
// streamed answers, and every answer is returned).
Answer dispatch_route(const Parts& parts, const Request& req, const ApiKey* known_key,
                      const RespondStream* respond_stream, const Respond* respond_later = nullptr);

// The key of a request's Authorization header, or the 401 answer.
std::variant<ApiKey, Response> authenticate(const KeyStore& keys, const Request& req);

}  // namespace cairn::server
