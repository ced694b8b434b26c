#include "cli/remote.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/text.h"
#include "codec/event_json.h"
#include "codec/verify_report.h"

namespace cairn::cli {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using ojson = nlohmann::ordered_json;  // keeps the server's field order, so output matches offline output

struct Endpoint {
  std::string host;
  std::string port;
};

Result<Endpoint> parse_url(const std::string& url) {
  if (url.starts_with("https://"))
    return Status::invalid_argument("--url: cairnd does not speak TLS yet; use http://");
  if (!url.starts_with("http://")) return Status::invalid_argument(fmt::format("--url: '{}' is not http://HOST:PORT", url));
  std::string rest = url.substr(7);
  if (auto slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || rest.back() == ']') return Endpoint{rest, "80"};
  std::string host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return Endpoint{host, rest.substr(colon + 1)};
}

void print_event(const ojson& e, bool json) {
  if (json) {
    std::puts(e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::string data;
  if (e.contains("data")) data = e["data"].dump();
  else if (e.contains("data_text")) data = e["data_text"].get<std::string>();
  else if (e.contains("data_base64")) data = "<binary>";
  else data = "<payload removed>";
  if (data.size() > 160) data = data.substr(0, 160) + "…";
  std::printf("%8llu  %s@%llu  %s  %s  %s\n", (unsigned long long)e.value("position", uint64_t{0}),
              e.value("stream", "").c_str(), (unsigned long long)e.value("revision", uint64_t{0}), e.value("type", "").c_str(),
              e.value("recorded_at", "").c_str(), data.c_str());
}

std::string query(const ReadArgs& a, std::optional<uint64_t> from, size_t limit) {
  std::string q = fmt::format("?limit={}&direction={}", limit, a.backward ? "backward" : "forward");
  if (from) q += fmt::format("&from={}", *from);
  for (const auto& t : a.types) q += "&type=" + encode_segment(t);
  if (!a.type_prefix.empty()) q += "&type_prefix=" + encode_segment(a.type_prefix);
  if (!a.stream_prefix.empty()) q += "&stream_prefix=" + encode_segment(a.stream_prefix);
  if (!a.category.empty()) q += "&category=" + encode_segment(a.category);
  return q;
}


}  // namespace

std::string encode_segment(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out.push_back(static_cast<char>(c));
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

Result<Reply> http_call(const RemoteFlags& r, std::string_view method_name, const std::string& target, const std::string& body) {
  const http::verb method = http::string_to_verb(boost::beast::string_view(method_name.data(), method_name.size()));
  auto ep = parse_url(r.url);
  if (!ep.ok()) return ep.status();
  try {
    boost::asio::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::tcp_stream stream(ioc);
    stream.connect(resolver.resolve(ep->host, ep->port));
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, ep->host);
    if (!r.key.empty()) req.set(http::field::authorization, "Bearer " + r.key);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(256u << 20);
    http::read(stream, buf, parser);
    return Reply{parser.get().result_int(), parser.get().body()};
  } catch (const std::exception& e) {
    return Status::io_error(fmt::format("cannot reach {}: {}", r.url, e.what()));
  }
}

// Prints an error answer the way offline errors are printed; returns the exit code.
int fail_reply(const Reply& rep) {
  auto j = nlohmann::json::parse(rep.body, nullptr, false);
  std::string code = "http_" + std::to_string(rep.status), message = rep.body;
  if (!j.is_discarded() && j.contains("error")) {
    code = j["error"].value("code", code);
    message = j["error"].value("message", message);
  }
  std::fprintf(stderr, "error: %s: %s\n", code.c_str(), message.c_str());
  return rep.status == 400 || rep.status == 413 || rep.status == 415 || rep.status == 422 ? 2 : 1;
}

int fail_status(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
  return st.code() == ErrorCode::kInvalidArgument || st.code() == ErrorCode::kInvalidEvent ? 2 : 1;
}


int remote_append(const RemoteFlags& r, const AppendArgs& a) {
  ojson events = ojson::array();
  if (!a.events_file.empty()) {
    auto text = read_input(a.events_file);
    if (!text.ok()) return fail_status(text.status());
    std::istringstream in(*text);
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.empty()) continue;
      auto e = ojson::parse(line, nullptr, false);
      if (e.is_discarded() || !e.is_object())
        return fail_status(Status::invalid_argument(fmt::format("line {}: not a JSON object", n)));
      events.push_back(std::move(e));
    }
  } else {
    if (a.type.empty()) return fail_status(Status::invalid_argument("TYPE: required (or use --events FILE)"));
    ojson e = {{"type", a.type}};
    if (!a.id.empty()) e["id"] = a.id;
    std::string data = a.data.value_or("{}");
    if (!a.data_file.empty() || data == "-") {
      auto d = read_input(a.data_file.empty() ? "-" : a.data_file);
      if (!d.ok()) return fail_status(d.status());
      data = std::move(*d);
    }
    const bool binary = a.content_type == "application/octet-stream" || a.content_type == "binary";
    if (binary) {
      e["content_type"] = "application/octet-stream";
      e["data_base64"] = base::base64_encode(data);
    } else {
      e["data_text"] = data;  // the server checks it is JSON and stores it as given
    }
    if (!a.metadata.empty()) {
      auto m = ojson::parse(a.metadata, nullptr, false);
      if (m.is_discarded()) return fail_status(Status::invalid_argument("--metadata: not valid JSON"));
      e["metadata"] = std::move(m);
    }
    events.push_back(std::move(e));
  }
  ojson body = {{"events", events}};
  if (a.expected == "any" || a.expected == "no_stream" || a.expected == "exists") {
    body["expected_revision"] = a.expected;
  } else {
    try {
      body["expected_revision"] = std::stoull(a.expected);
    } catch (const std::exception&) {
      return fail_status(Status::invalid_argument(
          fmt::format("--expected: '{}' is not any, no_stream, exists or a revision number", a.expected)));
    }
  }
  auto rep = http_call(r, "POST", "/v1/streams/" + encode_segment(a.stream), body.dump());
  if (!rep.ok()) return fail_status(rep.status());
  if (rep->status != 200 && rep->status != 201) return fail_reply(*rep);
  auto j = ojson::parse(rep->body, nullptr, false);
  if (a.json) {
    j["replayed"] = rep->status == 200;
    std::puts(j.dump().c_str());
  } else {
    const uint64_t first = j.value("first_position", uint64_t{0}), last = j.value("last_position", uint64_t{0});
    std::printf("%s %llu event(s) to '%s': positions %llu..%llu, revision now %llu\n",
                rep->status == 200 ? "already appended (idempotent retry):" : "appended",
                (unsigned long long)(last - first + 1), a.stream.c_str(), (unsigned long long)first,
                (unsigned long long)last, (unsigned long long)j.value("last_revision", uint64_t{0}));
  }
  return 0;
}

int remote_read(const RemoteFlags& r, const ReadArgs& a) {
  uint64_t left = a.limit.value_or(UINT64_MAX);
  std::optional<uint64_t> from = a.from;
  for (;;) {
    const size_t page = static_cast<size_t>(std::min<uint64_t>(left, 1000));
    const std::string target = a.stream.empty() ? "/v1/events" + query(a, from, page)
                                                : "/v1/streams/" + encode_segment(a.stream) +
                                                      fmt::format("?limit={}&direction={}{}", page, a.backward ? "backward" : "forward",
                                                                  from ? fmt::format("&from={}", *from) : "");
    auto rep = http_call(r, "GET", target);
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status != 200) return fail_reply(*rep);
    auto j = ojson::parse(rep->body, nullptr, false);
    for (const auto& e : j["events"]) print_event(e, a.json);
    left -= std::min<uint64_t>(left, j["events"].size());
    if (j["next"].is_null() || left == 0) return 0;
    from = j["next"].get<uint64_t>();
  }
}

int remote_tail(const RemoteFlags& r, const ReadArgs& a) {
  uint64_t from = 0;
  if (a.from) {
    from = *a.from;
  } else {
    // The last N matching events first.
    ReadArgs back = a;
    back.backward = true;
    auto rep = http_call(r, "GET", "/v1/events" + query(back, std::nullopt, std::max<uint64_t>(a.last_n, 1)));
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status != 200) return fail_reply(*rep);
    auto j = ojson::parse(rep->body, nullptr, false);
    auto h = http_call(r, "GET", "/health");
    from = h.ok() ? ojson::parse(h->body, nullptr, false).value("head_position", uint64_t{0}) : 0;
    if (a.last_n > 0 && !j["events"].empty()) from = j["events"].back()["position"].get<uint64_t>();
  }
  if (!a.follow) {
    ReadArgs fwd = a;
    fwd.from = from;
    fwd.backward = false;
    return remote_read(r, fwd);
  }
  auto ep = parse_url(r.url);
  if (!ep.ok()) return fail_status(ep.status());
  try {
    boost::asio::io_context ioc;
    tcp::resolver resolver(ioc);
    tcp::socket sock(ioc);
    boost::asio::connect(sock, resolver.resolve(ep->host, ep->port));
    ReadArgs fwd = a;
    fwd.backward = false;
    std::string q = query(fwd, from, 1);
    const std::string req = "GET /v1/subscribe" + q + " HTTP/1.1\r\nHost: " + ep->host + "\r\nAuthorization: Bearer " +
                            r.key + "\r\nAccept: application/x-ndjson\r\n\r\n";
    boost::asio::write(sock, boost::asio::buffer(req));
    ::timeval tv{0, 200000};
    ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const auto started = std::chrono::steady_clock::now();
    std::string buf;
    bool head = false;
    unsigned status = 0;
    char tmp[65536];
    for (;;) {
      if (a.follow_for_seconds &&
          std::chrono::steady_clock::now() - started >= std::chrono::duration<double>(*a.follow_for_seconds))
        return 0;
      const ssize_t n = ::recv(sock.native_handle(), tmp, sizeof tmp, 0);
      if (n == 0) break;
      if (n < 0) continue;
      buf.append(tmp, static_cast<size_t>(n));
      if (!head) {
        const auto end = buf.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        status = static_cast<unsigned>(std::atoi(buf.c_str() + 9));
        buf.erase(0, end + 4);
        head = true;
        if (status != 200) {
          // An error answer: read the rest of its (length-delimited) body, then report it.
          for (int i = 0; i < 20 && buf.find('}') == std::string::npos; ++i) {
            const ssize_t m = ::recv(sock.native_handle(), tmp, sizeof tmp, 0);
            if (m > 0) buf.append(tmp, static_cast<size_t>(m));
          }
          return fail_reply(Reply{status, buf});
        }
      }
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        if (line.empty()) continue;  // heartbeat
        auto e = ojson::parse(line, nullptr, false);
        if (!e.is_discarded() && e.contains("error")) return fail_reply(Reply{200, line});  // the stream failed: why
        if (!e.is_discarded()) print_event(e, a.json);
      }
      std::fflush(stdout);
    }
    std::fprintf(stderr, "cairnd closed the subscription\n");
    return 1;
  } catch (const std::exception& e) {
    return fail_status(Status::io_error(fmt::format("cannot reach {}: {}", r.url, e.what())));
  }
}

int remote_stats(const RemoteFlags& r, bool json) {
  auto rep = http_call(r, "GET", "/v1/stats");
  if (!rep.ok()) return fail_status(rep.status());
  if (rep->status != 200) return fail_reply(*rep);
  auto j = ojson::parse(rep->body, nullptr, false);
  if (json) {
    std::puts(j.dump().c_str());
    return 0;
  }
  std::printf("events:          %llu\n", (unsigned long long)j.value("events", uint64_t{0}));
  std::printf("segments:        %llu (%llu bytes of log)\n", (unsigned long long)j.value("segments", uint64_t{0}),
              (unsigned long long)j.value("log_bytes", uint64_t{0}));
  std::printf("index:           %llu run(s) through position %llu, %llu event(s) in memory\n",
              (unsigned long long)j.value("index_runs", uint64_t{0}), (unsigned long long)j.value("indexed_through", uint64_t{0}),
              (unsigned long long)j.value("index_memtable_events", uint64_t{0}));
  std::printf("chain head:      %s\n", j.value("chain_head", "").c_str());
  std::printf("durability:      %s\n", j.value("durability", "").c_str());
  return 0;
}

int remote_verify(const RemoteFlags& r, bool json) {
  auto rep = http_call(r, "POST", "/v1/verify", "");
  if (!rep.ok()) return fail_status(rep.status());
  if (rep->status != 200) return fail_reply(*rep);
  auto report = codec::verify_report_from_json(rep->body);
  if (!report.ok()) return fail_status(report.status());
  const std::string out = json ? codec::verify_report_json(*report) + "\n" : codec::verify_report_text(*report);
  std::fputs(out.c_str(), stdout);
  return report->ok ? 0 : 1;
}

int remote_streams(const RemoteFlags& r, const std::string& prefix, std::optional<uint64_t> limit, bool json) {
  uint64_t left = limit.value_or(UINT64_MAX);
  std::string after;
  while (left > 0) {
    std::string target = fmt::format("/v1/streams?limit={}", std::min<uint64_t>(left, 1000));
    if (!prefix.empty()) target += "&prefix=" + encode_segment(prefix);
    if (!after.empty()) target += "&after=" + after;
    auto rep = http_call(r, "GET", target);
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status != 200) return fail_reply(*rep);
    auto j = ojson::parse(rep->body, nullptr, false);
    for (const auto& s : j["streams"]) {
      if (left == 0) break;
      --left;
      if (json) {
        ojson line = {{"stream", s["stream"]}, {"revision", s["revision"]}, {"count", s["count"]},
                      {"first_position", s["first_position"]}, {"last_position", s["last_position"]}};
        std::puts(line.dump().c_str());
      } else {
        std::printf("%-40s revision %-8llu events %-8llu positions %llu..%llu\n", s.value("stream", "").c_str(),
                    (unsigned long long)s.value("revision", uint64_t{0}), (unsigned long long)s.value("count", uint64_t{0}),
                    (unsigned long long)s.value("first_position", uint64_t{0}),
                    (unsigned long long)s.value("last_position", uint64_t{0}));
      }
    }
    if (j["next"].is_null()) break;
    after = j["next"].get<std::string>();
  }
  return 0;
}

int remote_keys_create(const RemoteFlags& r, const KeyArgs& k) {
  ojson body = {{"role", k.role}};
  if (!k.streams.empty()) body["streams"] = k.streams;
  if (!k.name.empty()) body["name"] = k.name;
  auto rep = http_call(r, "POST", "/v1/keys", body.dump());
  if (!rep.ok()) return fail_status(rep.status());
  if (rep->status != 201) return fail_reply(*rep);
  auto j = ojson::parse(rep->body, nullptr, false);
  if (k.json) {
    std::puts(j.dump().c_str());
  } else {
    std::printf("created %s (%s%s)\nkey (shown once, keep it): %s\n", j.value("id", "").c_str(), j.value("role", "").c_str(),
                k.streams.empty() ? "" : (", streams " + j["streams"].dump()).c_str(), j.value("key", "").c_str());
  }
  return 0;
}

int remote_keys_list(const RemoteFlags& r, const KeyArgs& k) {
  auto rep = http_call(r, "GET", "/v1/keys");
  if (!rep.ok()) return fail_status(rep.status());
  if (rep->status != 200) return fail_reply(*rep);
  auto j = ojson::parse(rep->body, nullptr, false);
  for (const auto& key : j["keys"]) {
    if (k.json) {
      std::puts(key.dump().c_str());
      continue;
    }
    std::printf("%-18s %-7s %-20s %s%s\n", key.value("id", "").c_str(), key.value("role", "").c_str(),
                key["streams"].empty() ? "all streams" : key["streams"].dump().c_str(), key.value("name", "").c_str(),
                key["revoked_at"].is_null() ? "" : (" (revoked " + key["revoked_at"].get<std::string>() + ")").c_str());
  }
  return 0;
}

int remote_keys_revoke(const RemoteFlags& r, const KeyArgs& k) {
  auto rep = http_call(r, "DELETE", "/v1/keys/" + encode_segment(k.id));
  if (!rep.ok()) return fail_status(rep.status());
  if (rep->status != 200) return fail_reply(*rep);
  std::printf("revoked %s\n", k.id.c_str());
  return 0;
}

}  // namespace cairn::cli
