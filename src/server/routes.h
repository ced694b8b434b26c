// The route table of cairnd: every path the server serves and the methods each accepts. It is the one place
// that knows this, so that every 405 carries an Allow header naming exactly those methods (RFC 9110
// §15.5.6), whichever handler the path belongs to. Handlers still route within their part of the API; this
// table only answers "which methods does this path accept" before they run. Stateless and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/verb.hpp>

namespace cairn::server {

struct Route {
  std::vector<std::string_view> pattern;  // path segments; "*" matches any one segment
  std::string_view allow;                 // the methods, as the Allow header lists them: "GET, POST"
  // Why an update or delete is refused, for the paths of events ("" elsewhere: "use GET, POST").
  std::string_view immutable_note = "";
  bool projections = false;  // served only when the server runs projections (/v1/projections, the AI ledger)
};

const std::vector<Route>& routes();
// The route of these decoded path segments, or nullptr when the server has no such path.
const Route* find_route(const std::vector<std::string>& segments);
bool route_allows(const Route& r, boost::beast::http::verb method);
// The message of the 405 for this route and method.
std::string method_not_allowed_message(const Route& r, boost::beast::http::verb method);

}  // namespace cairn::server
