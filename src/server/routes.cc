#include "server/routes.h"

#include <ostream>  // boost::beast's verb.hpp prints a string_view and needs the complete ostream

namespace cairn::server {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view kImmutable =
    "events are immutable: nothing is updated or deleted; append a compensating event that names what it corrects";
constexpr std::string_view kImmutableShort = "events are immutable: nothing is updated or deleted";

}  // namespace

// Keep in step with docs/openapi.yaml: tests/server/allow_test.cc checks every documented path against
// the server, and the contract test (tests/contract) checks every 405 against the file.
const std::vector<Route>& routes() {
  static const std::vector<Route> table = {
      {{"health"}, "GET"},
      {{"metrics"}, "GET"},
      {{"v1", "streams"}, "GET", kImmutableShort},
      {{"v1", "streams", "*"}, "GET, POST", kImmutable},
      {{"v1", "streams", "*", "subscribe"}, "GET"},
      {{"v1", "transactions"}, "POST"},
      {{"v1", "events"}, "GET", kImmutable},
      {{"v1", "events", "*"}, "GET", kImmutable},
      {{"v1", "positions", "*"}, "GET", kImmutable},
      {{"v1", "subscribe"}, "GET"},
      {{"v1", "stats"}, "GET"},
      {{"v1", "verify"}, "POST"},
      {{"v1", "keys"}, "GET, POST"},
      {{"v1", "keys", "*"}, "DELETE"},
      {{"v1", "projections"}, "GET, POST", "", true},
      {{"v1", "projections", "*"}, "GET", "", true},
      {{"v1", "projections", "*", "state"}, "GET", "", true},
      {{"v1", "projections", "*", "partitions"}, "GET", "", true},
      {{"v1", "projections", "*", "digest"}, "GET", "", true},
      {{"v1", "projections", "*", "verify"}, "POST", "", true},
      {{"v1", "projections", "*", "rebuild"}, "GET, POST", "", true},
      {{"v1", "projections", "*", "versions"}, "GET, POST", "", true},
      {{"v1", "projections", "*", "versions", "*"}, "GET, DELETE", "", true},
      {{"v1", "projections", "*", "versions", "*", "activate"}, "POST", "", true},
      {{"v1", "why", "*"}, "GET", "", true},
      {{"v1", "correlations", "*"}, "GET", "", true},
      {{"v1", "ai", "rates"}, "GET", "", true},
      {{"v1", "ai", "export"}, "GET", "", true},
      {{"v1", "ai", "export", "manifest"}, "GET", "", true},
      {{"v1", "privacy", "subjects", "*", "forget"}, "POST"},
      {{"v1", "privacy", "subjects", "*", "report"}, "GET"},
      {{"v1", "privacy", "purge"}, "POST"},
  };
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

bool route_allows(const Route& r, http::verb method) {
  const auto verb_name = http::to_string(method);
  const std::string_view name(verb_name.data(), verb_name.size());
  std::string_view rest = r.allow;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view m = rest.substr(0, comma);
    while (!m.empty() && m.front() == ' ') m.remove_prefix(1);
    if (m == name) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

std::string method_not_allowed_message(const Route& r, http::verb method) {
  const bool update = method == http::verb::put || method == http::verb::patch || method == http::verb::delete_;
  if (update && !r.immutable_note.empty()) return std::string(r.immutable_note);
  return "use " + std::string(r.allow);
}

}  // namespace cairn::server
