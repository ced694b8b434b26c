#include "server/ledger_api.h"

#include <fmt/format.h>

namespace cairn::server {
namespace {

namespace http = boost::beast::http;

// A parameter given with an empty value counts as not given (as a query string built from empty form fields).
std::optional<std::string> param(const Target& t, std::string_view name) {
  auto v = t.param(name);
  if (v && v->empty()) return std::nullopt;
  return v;
}

Result<std::optional<int64_t>> time_param(const Target& t, std::string_view name, bool end_of_day) {
  auto v = param(t, name);
  if (!v) return std::optional<int64_t>();
  // A day means its start (since) or its end (until).
  if (v->size() == 10) {
    auto d = parse_rfc3339_ns(*v + "T00:00:00Z");
    if (!d.ok()) return Status::invalid_argument(fmt::format("{}: '{}' is not a day (YYYY-MM-DD) or an RFC 3339 time", name, v->substr(0, 64)));
    return std::optional<int64_t>(end_of_day ? *d + 86'400'000'000'000 - 1 : *d);
  }
  auto ns = parse_rfc3339_ns(*v);
  if (!ns.ok()) return Status::invalid_argument(fmt::format("{}: '{}' is not an RFC 3339 time or a day", name, v->substr(0, 64)));
  return std::optional<int64_t>(*ns);
}

Response json_ok(const Request& req, std::string body) { return json_response(req, http::status::ok, std::move(body)); }


}  // namespace

Result<ExportQuery> export_query(const Target& t, uint64_t head) {
  ExportQuery q;
  auto fmt_name = param(t, "format");
  if (!fmt_name) return Status::invalid_argument("format: required, one of sft, sft-prompt-completion, preference, kto, openai-sft, openai-preference");
  auto f = parse_export_format(*fmt_name);
  if (!f.ok()) return f.status();
  q.format = *f;
  if (param(t, "as_of")) {
    auto as_of = uint_param(t, "as_of");
    if (!as_of.ok()) return as_of.status();
    if (**as_of >= head)
      return Status::invalid_argument(fmt::format("as_of: position {} is not in the log yet (the head is {})", **as_of, head));
    q.as_of = *as_of;
  }
  if (!q.as_of && head > 0) q.as_of = head - 1;
  q.model = param(t, "model");
  q.skill = param(t, "skill");
  q.prompt_version = param(t, "prompt_version");
  auto since = time_param(t, "since", false);
  if (!since.ok()) return since.status();
  auto until = time_param(t, "until", true);
  if (!until.ok()) return until.status();
  q.since_ns = *since;
  q.until_ns = *until;
  if (q.since_ns && q.until_ns && *q.since_ns > *q.until_ns) return Status::invalid_argument("since: after until");
  for (const auto& [k, v] : t.query)
    if (k != "format" && k != "as_of" && k != "model" && k != "skill" && k != "prompt_version" && k != "since" && k != "until")
      return Status::invalid_argument(fmt::format("{}: not a parameter of the export", k.substr(0, 64)));
  return q;
}

Response LedgerApi::why(const Call& c) {
  const std::string& id_text = c.captures[0];
  auto id = Uuid::parse(id_text);
  if (!id.ok()) return status_response(c.req, Status::invalid_argument(fmt::format("event id: '{}' is not a UUID", id_text.substr(0, 64))));
  auto out = ledger_why(store_, p_, *id);
  if (!out.ok()) return status_response(c.req, out.status(), "event_not_found");
  return json_ok(c.req, std::move(*out));
}

Response LedgerApi::correlation(const Call& c) {
  const Request& req = c.req;
  AsOf as_of;
  if (auto v = param(c.t, "as_of")) {
    if (!v->empty() && std::all_of(v->begin(), v->end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      auto p = uint_param(c.t, "as_of");
      if (!p.ok()) return status_response(req, p.status());
      as_of.position = **p;
    } else {
      auto ns = parse_rfc3339_ns(*v);
      if (!ns.ok())
        return status_response(req, Status::invalid_argument(fmt::format("as_of: '{}' is neither a position nor an RFC 3339 time", v->substr(0, 64))));
      as_of.time_ns = *ns;
    }
  }
  auto out = ledger_correlation(store_, p_, c.captures[0], as_of);
  if (!out.ok()) return status_response(req, out.status(), "correlation_not_found");
  return json_ok(req, std::move(*out));
}

Response LedgerApi::rates(const Call& c) {
  const Target& t = c.t;
  RatesQuery q;
  for (const auto& b : t.params("by")) {
    size_t start = 0;
    while (start <= b.size()) {
      size_t comma = b.find(',', start);
      if (comma == std::string::npos) comma = b.size();
      if (comma > start) q.by.push_back(b.substr(start, comma - start));
      start = comma + 1;
    }
  }
  q.since = param(t, "since");
  q.until = param(t, "until");
  q.model = param(t, "model");
  q.skill = param(t, "skill");
  q.prompt_version = param(t, "prompt_version");
  auto out = ledger_rates(p_, q);
  if (!out.ok()) return status_response(c.req, out.status());
  return json_ok(c.req, std::move(*out));
}

Response LedgerApi::export_manifest(const Call& c) {
  auto q = export_query(c.t, store_.head_position());
  if (!q.ok()) return status_response(c.req, q.status());
  auto m = ledger_export(store_, *q, [](std::string_view) { return true; });
  if (!m.ok()) return status_response(c.req, m.status());
  return json_ok(c.req, m->to_json());
}

Answer LedgerApi::export_rows(const Call& c) {
  const Request& req = c.req;
  if (!c.respond_stream)  // a synchronous call (tests of the routing, the CLI's offline backend)
    return error_response(req, http::status::not_found, "not_found", "the export is streamed: use GET /v1/ai/export over HTTP");
  auto q = export_query(c.t, store_.head_position());
  if (!q.ok()) return status_response(req, q.status());
  StreamingResponse sr;
  sr.headers = {{"Content-Type", "application/x-ndjson"},
                {"Cache-Control", "no-cache"},
                {"Cairn-Export-Format", std::string(export_format_name(q->format))},
                {"Cairn-As-Of-Position", q->as_of ? std::to_string(*q->as_of) : "none"}};
  sr.producer = [this, query = *q](StreamSink& sink) {
    // The head is sent already: a failure from here on can only end the stream early. The manifest's
    // SHA-256 and byte count tell a client that it got all of it.
    auto m = ledger_export(store_, query, [&](std::string_view chunk) { return sink.write(std::string(chunk)); });
    if (!m.ok() && m.status().code() != ErrorCode::kClosed)
      fmt::print(stderr, "cairnd: an export (format {}) stopped early: {}\n", export_format_name(query.format), m.status().to_string());
  };
  (*c.respond_stream)(std::move(sr));
  return std::nullopt;
}

}  // namespace cairn::server
