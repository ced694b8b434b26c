// HTTP helpers shared by the API's parts: JSON and error answers (the mapping of Status codes to HTTP
// statuses lives here, once), request targets (decoded path segments and query parameters).
// Stateless and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/status.h"
#include "server/http_server.h"

namespace cairn::server {

Response json_response(const Request& req, boost::beast::http::status status, std::string body);
// {"error": {"code", "message", "details"?}}
Response error_response(const Request& req, boost::beast::http::status status, std::string_view code,
                        std::string_view message, const nlohmann::json& details = nullptr);
// Maps a Status to its HTTP answer. `not_found_code` names what was missing (stream_not_found, ...).
Response status_response(const Request& req, const Status& st, std::string_view not_found_code = "not_found",
                         const nlohmann::json& details = nullptr);

struct Target {
  std::vector<std::string> segments;  // decoded path segments
  std::vector<std::pair<std::string, std::string>> query;
  bool ok = true;  // false when an escape was malformed

  std::optional<std::string> param(std::string_view name) const {
    for (const auto& [k, v] : query)
      if (k == name) return v;
    return std::nullopt;
  }
  std::vector<std::string> params(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : query)
      if (k == name) out.push_back(v);
    return out;
  }
};

Target parse_target(std::string_view t);
// An optional non-negative integer query parameter; an error names it.
Result<std::optional<uint64_t>> uint_param(const Target& t, std::string_view name);

}  // namespace cairn::server
