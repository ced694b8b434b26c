#include "server/http_util.h"

#include <charconv>

#include <fmt/format.h>

namespace cairn::server {

namespace http = boost::beast::http;
using nlohmann::json;

// ------------------------------------------------------------------------------------------ responses

Response json_response(const Request& req, http::status status, std::string body) {
  Response res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response error_response(const Request& req, http::status status, std::string_view code, std::string_view message,
                        const json& details) {
  if (status == http::status::unauthorized) {
    Response res = json_response(req, status, json{{"error", {{"code", code}, {"message", message}}}}.dump(-1, ' ', false, json::error_handler_t::replace));
    res.set(http::field::www_authenticate, "Bearer");
    return res;
  }
  // Messages may echo client input; invalid UTF-8 in it is replaced, never a reason to fail (dump(replace)).
  json e = {{"code", code}, {"message", message}};
  if (!details.is_null()) e["details"] = details;
  return json_response(req, status, json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace));
}

// Maps a Store error to its HTTP answer. `not_found_code` names what was missing (stream_not_found, ...).
Response status_response(const Request& req, const Status& st, std::string_view not_found_code,
                         const json& details) {
  switch (st.code()) {
    case ErrorCode::kInvalidArgument: return error_response(req, http::status::bad_request, "invalid_argument", st.message(), details);
    case ErrorCode::kNotFound: return error_response(req, http::status::not_found, not_found_code, st.message(), details);
    case ErrorCode::kWrongExpectedRevision: return error_response(req, http::status::conflict, "wrong_expected_revision", st.message(), details);
    case ErrorCode::kDuplicateEventId: return error_response(req, http::status::conflict, "duplicate_event_id", st.message(), details);
    case ErrorCode::kLimitExceeded: return error_response(req, http::status::payload_too_large, "limit_exceeded", st.message(), details);
    case ErrorCode::kPoisoned:
    case ErrorCode::kClosed:
    case ErrorCode::kBusy: return error_response(req, http::status::service_unavailable, error_code_name(st.code()), st.message(), details);
    case ErrorCode::kUnavailable: {
      // The database did not answer and nothing was done: a retry shortly is the right move.
      Response r = error_response(req, http::status::service_unavailable, "unavailable", st.message(), details);
      r.set(http::field::retry_after, "1");
      return r;
    }
    case ErrorCode::kTimeout: return error_response(req, http::status::gateway_timeout, "timeout", st.message(), details);
    case ErrorCode::kConflict: return error_response(req, http::status::conflict, "conflict", st.message(), details);
    case ErrorCode::kFaulted: return error_response(req, http::status::conflict, "faulted", st.message(), details);
    case ErrorCode::kInvalidEvent:
      return error_response(req, http::status::unprocessable_entity, "invalid_event", st.message(), details);
    case ErrorCode::kCorruption:
    case ErrorCode::kIoError:
    case ErrorCode::kOk: break;
  }
  return error_response(req, http::status::internal_server_error, error_code_name(st.code()), st.message(), details);
}

// ------------------------------------------------------------------------------------------ targets

// %-decoding; '+' means a space only in the query string (plus_is_space), never in the path.
std::string url_decode(std::string_view s, bool* ok, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      auto hexv = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      };
      if (i + 2 >= s.size() || hexv(s[i + 1]) < 0 || hexv(s[i + 2]) < 0) {
        *ok = false;
        return {};
      }
      out.push_back(static_cast<char>(hexv(s[i + 1]) * 16 + hexv(s[i + 2])));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Target parse_target(std::string_view t) {
  Target out;
  const auto q = t.find('?');
  std::string_view path = t.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.segments.push_back(url_decode(path.substr(i, j - i), &out.ok, false));
    i = j;
  }
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    out.query.emplace_back(url_decode(kv.substr(0, eq), &out.ok, true),
                           eq == std::string_view::npos ? std::string() : url_decode(kv.substr(eq + 1), &out.ok, true));
  }
  return out;
}

Result<std::optional<uint64_t>> uint_param(const Target& t, std::string_view name) {
  auto v = t.param(name);
  if (!v || v->empty()) return std::optional<uint64_t>{};
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || p != v->data() + v->size())
    return Status::invalid_argument(fmt::format("query parameter '{}': '{}' is not a non-negative integer", name, v->substr(0, 40)));
  return std::optional<uint64_t>(n);
}

}  // namespace cairn::server
