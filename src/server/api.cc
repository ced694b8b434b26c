#include "server/api.h"

#include <thread>

#include <simdjson.h>

#include <charconv>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/text.h"
#include "codec/event_json.h"
#include "codec/verify_report.h"
#include "server/http_util.h"
#include "server/process_metrics.h"
#include "server/routes.h"

namespace cairn::server {

namespace http = boost::beast::http;
using nlohmann::json;

namespace {

// The paging parameters of a read: from, direction (forward|backward), limit (default 100, at most max).
struct PageQuery {
  std::optional<uint64_t> from;
  Direction direction = Direction::kForward;
  size_t limit = 100;
};

Result<PageQuery> page_query(const Target& t, size_t max) {
  PageQuery q;
  auto from = uint_param(t, "from");
  if (!from.ok()) return from.status();
  auto limit = uint_param(t, "limit");
  if (!limit.ok()) return limit.status();
  const std::string dir = t.param("direction").value_or("forward");
  if (dir != "forward" && dir != "backward")
    return Status::invalid_argument("query parameter 'direction': forward or backward");
  q.from = *from;
  q.direction = dir == "forward" ? Direction::kForward : Direction::kBackward;
  q.limit = static_cast<size_t>(std::min<uint64_t>(limit->value_or(100), max));
  if (q.limit == 0) return Status::invalid_argument("query parameter 'limit': at least 1");
  return q;
}

// ------------------------------------------------------------------------------------------ bodies

simdjson::dom::parser& parser() {
  thread_local simdjson::dom::parser p;
  return p;
}

Result<ExpectedRevision> parse_expected(simdjson::dom::element v, const std::string& where) {
  if (v.is_string()) {
    std::string_view s = v.get_string().value_unsafe();
    if (s == "any") return ExpectedRevision::any();
    if (s == "no_stream") return ExpectedRevision::no_stream();
    if (s == "exists") return ExpectedRevision::exists();
  } else if (v.is_uint64()) {
    return ExpectedRevision::exact(v.get_uint64().value_unsafe());
  }
  return Status::invalid_argument(where + ": must be \"any\", \"no_stream\", \"exists\" or a revision number");
}

Result<std::vector<EventData>> parse_events(simdjson::dom::element v, const std::string& where) {
  simdjson::dom::array arr;
  if (v.get(arr)) return Status::invalid_argument(where + ": must be an array of events");
  std::vector<EventData> out;
  size_t i = 0;
  for (simdjson::dom::element e : arr) {
    const std::string w = fmt::format("{}[{}]", where, i++);
    simdjson::dom::object o;
    if (e.get(o)) return Status::invalid_argument(w + ": must be an object");
    EventData ev;
    for (auto field : o) {
      const std::string_view key = field.key;
      if (key != "id" && key != "type" && key != "data" && key != "data_text" && key != "data_base64" &&
          key != "metadata" && key != "content_type")
        return Status::invalid_argument(fmt::format("{}.{}: unknown field", w, key.substr(0, 40)));
    }
    std::string_view s;
    if (o["type"].get(s)) return Status::invalid_argument(w + ".type: required, a string");
    ev.type = std::string(s);
    if (simdjson::dom::element id; o["id"].get(id) == simdjson::SUCCESS) {
      if (id.get(s)) return Status::invalid_argument(w + ".id: must be a UUID string");
      auto u = Uuid::parse(s);
      if (!u.ok()) return Status::invalid_argument(w + ".id: " + u.status().message());
      ev.id = *u;
    }
    if (simdjson::dom::element ct; o["content_type"].get(ct) == simdjson::SUCCESS) {
      if (ct.get(s)) return Status::invalid_argument(w + ".content_type: must be a string");
      auto c = parse_content_type(s);
      if (!c.ok()) return Status::invalid_argument(w + ".content_type: " + c.status().message());
      ev.content_type = *c;
    }
    // The output forms are accepted too, so an event read back can be posted as it is: data_text (JSON
    // text in a string, stored as given) and data_base64 (the bytes, for application/octet-stream).
    simdjson::dom::element data;
    const bool has_data = o["data"].get(data) == simdjson::SUCCESS;
    simdjson::dom::element alt;
    if (o["data_text"].get(alt) == simdjson::SUCCESS) {
      if (has_data) return Status::invalid_argument(w + ": give data or data_text, not both");
      if (alt.get(s) || ev.content_type != ContentType::kJson)
        return Status::invalid_argument(w + ".data_text: a string of JSON text, for application/json");
      ev.data = std::string(s);
    } else if (o["data_base64"].get(alt) == simdjson::SUCCESS) {
      if (has_data) return Status::invalid_argument(w + ": give data or data_base64, not both");
      if (alt.get(s) || ev.content_type != ContentType::kBinary)
        return Status::invalid_argument(w + ".data_base64: a base64 string, for application/octet-stream");
      auto d = base::base64_decode(s);
      if (!d.ok()) return Status::invalid_argument(w + ".data_base64: " + d.status().message());
      ev.data = std::move(*d);
    } else if (!has_data) {
      return Status::invalid_argument(w + ".data: required");
    } else if (ev.content_type == ContentType::kJson) {
      ev.data = simdjson::minify(data);
    } else {
      if (data.get(s)) return Status::invalid_argument(w + ".data: binary data must be a base64 string");
      auto d = base::base64_decode(s);
      if (!d.ok()) return Status::invalid_argument(w + ".data: " + d.status().message());
      ev.data = std::move(*d);
    }
    if (simdjson::dom::element md; o["metadata"].get(md) == simdjson::SUCCESS) {
      if (!md.is_object()) return Status::invalid_argument(w + ".metadata: must be a JSON object");
      ev.metadata = simdjson::minify(md);
    }
    out.push_back(std::move(ev));
  }
  return out;
}

// A large body gets a parser of its own (freed after the request): a shared per-thread parser would keep
// the capacity of the largest body it ever parsed, in every worker thread.
constexpr size_t kSharedParserMax = 64 * 1024;

Result<simdjson::dom::object> parse_body(const Request& req, simdjson::dom::parser& own) {
  simdjson::dom::parser& p = req.body().size() <= kSharedParserMax ? parser() : own;
  simdjson::dom::element doc;
  if (auto err = p.parse(req.body().data(), req.body().size()).get(doc))
    return Status::invalid_argument(fmt::format("body: not valid JSON: {}", simdjson::error_message(err)));
  simdjson::dom::object o;
  if (doc.get(o)) return Status::invalid_argument("body: must be a JSON object");
  return o;
}

json append_json(const StreamAppendResult& r) {
  return {{"stream", r.stream},
          {"first_position", r.first_position},
          {"last_position", r.last_position},
          {"first_revision", r.first_revision},
          {"last_revision", r.last_revision}};
}

json conflict_details(const StreamAppend& a, const Status& st) {
  json expected = a.expected.kind == ExpectedRevision::Kind::kExact ? json(a.expected.revision) : json(a.expected.to_string());
  json actual = st.actual_revision() < 0 ? json("no_stream") : json(st.actual_revision());
  return {{"stream", a.stream}, {"expected", expected}, {"actual", actual}};
}

std::string page_json(const std::vector<RecordedEvent>& events, std::optional<uint64_t> next) {
  std::string out = "{\"events\":[";
  for (size_t i = 0; i < events.size(); ++i) {
    if (i) out.push_back(',');
    out += codec::event_json(events[i]);
  }
  out += "],\"next\":";
  out += next ? std::to_string(*next) : "null";
  out += "}";
  return out;
}

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

}  // namespace

Api::Api(Store& store, KeyStore& keys, ApiOptions options, Projections* projections)
    : store_(store), keys_(keys), options_(options), pool_(options.workers), replay_pool_(std::max<size_t>(1, options.replay_workers)) {
  if (projections) {
    projections_ = std::make_unique<ProjectionsApi>(*projections);
    ledger_ = std::make_unique<LedgerApi>(store, *projections);
  }
  privacy_ = std::make_unique<PrivacyApi>(store, options_.projections_dir);
  parts_ = Parts{this, projections_.get(), ledger_.get(), privacy_.get(), &keys_};
}

Api::~Api() { begin_shutdown(); }

void Api::begin_shutdown() {
  {
    base::MutexLock g(handle_mu_);
    if (shutting_down_.exchange(true)) return;
  }
  cancel_subscriptions("");
  // Appends in flight are answered by the store's callbacks, which post their answers to the pool: wait
  // for every request to be answered before the pools stop taking work (a group commit takes milliseconds;
  // a store that no longer answers gets a bound, not a hang).
  for (int i = 0; i < 30'000 && queued_.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  pool_.join();
  replay_pool_.join();
}

namespace {
// A projection verify or an as-of state, or a verify of the whole log: a replay that can take seconds
// (Api::replay_pool_).
bool is_replay(const Request& req) {
  const Target t = parse_target(sv(req.target()));
  if (t.ok && t.segments.size() == 2 && t.segments[0] == "v1" && t.segments[1] == "verify")
    return req.method() == http::verb::post;
  if (!t.ok || t.segments.size() != 4 || t.segments[0] != "v1" || t.segments[1] != "projections") return false;
  if (t.segments[3] == "verify") return req.method() == http::verb::post;
  if (t.segments[3] != "state" || req.method() != http::verb::get) return false;
  auto nonempty = [&](std::string_view name) {
    auto v = t.param(name);
    return v && !v->empty();
  };
  return nonempty("as_of") || nonempty("as_of_time");
}
}  // namespace

void Api::handle(Request req, Respond respond, RespondStream respond_stream) {
  // The check and the post happen under the lock that begin_shutdown() takes before it joins the pool,
  // so a request is either answered 503 here or runs on the pool: never posted to a finished pool.
  base::MutexLock g(handle_mu_);
  if (shutting_down_) {
    return respond(error_response(req, http::status::service_unavailable, "shutting_down", "cairnd is shutting down"));
  }
  // Admission control: beyond max_queued requests in the pool, answer at once rather than queue without
  // bound (memory, and latency nobody waits for). Clients retry after the hint.
  if (queued_.load() >= options_.max_queued) {
    Response res = error_response(req, http::status::service_unavailable, "overloaded",
                                  fmt::format("more than {} requests are waiting; retry shortly", options_.max_queued));
    res.set(http::field::retry_after, "1");
    count(res);
    return respond(std::move(res));
  }
  ++queued_;
  const bool replay = is_replay(req);
  // Every answer leaves through one of these two, however late and from whichever thread: counted, and the
  // request no longer queued (an asynchronous append stays queued until its group commit answered it).
  Respond answer = [this, respond = std::move(respond)](Response res) {
    count(res);
    --queued_;
    respond(std::move(res));
  };
  RespondStream stream = [this, respond_stream = std::move(respond_stream)](StreamingResponse sr) {
    {
      base::MutexLock g(counts_mu_);
      ++by_status_[200];
    }
    --queued_;
    respond_stream(std::move(sr));
  };
  auto job = [this, req = std::move(req), answer = std::move(answer), stream = std::move(stream)]() mutable {
    Answer now;
    try {
      now = dispatch_route(parts_, req, nullptr, &stream, &answer);
    } catch (const std::exception& e) {
      // Outermost layer: a programmer error must not take the server down with it.
      now = error_response(req, http::status::internal_server_error, "internal", e.what());
    }
    if (now) answer(std::move(*now));  // else answered, or to be answered, through `answer` or `stream`
  };
  if (replay) boost::asio::post(replay_pool_, std::move(job));
  else boost::asio::post(pool_, std::move(job));
}

void Api::count(const Response& res) {
  const unsigned status = res.result_int();
  std::string code;
  // Error bodies are {"error":{"code":"…",…}} (keys sorted): the code is the first string.
  constexpr std::string_view kPrefix = R"({"error":{"code":")";
  if (status >= 400 && res.body().starts_with(kPrefix)) {
    const size_t end = res.body().find('"', kPrefix.size());
    if (end != std::string::npos) code = res.body().substr(kPrefix.size(), end - kPrefix.size());
  }
  base::MutexLock g(counts_mu_);
  ++by_status_[status];
  if (!code.empty()) ++by_error_[code];
}

Response Api::metrics(const Call& c) {
  const Request& req = c.req;
  const std::string_view auth = sv(req[http::field::authorization]);
  const auto key = auth.starts_with("Bearer ") ? keys_.authenticate(auth.substr(7)) : std::nullopt;
  if (!key) return error_response(req, http::status::unauthorized, "unauthorized", "/metrics needs an API key: Authorization: Bearer <key>");
  if (key->scoped())
    return error_response(req, http::status::forbidden, "forbidden", "store-wide metrics need a key without stream scopes");
  return metrics_answer(req);
}

Response Api::metrics_answer(const Request& req) {
  Response res{http::status::ok, req.version()};
  res.set(http::field::content_type, "text/plain; version=0.0.4");
  res.keep_alive(req.keep_alive());
  res.body() = metrics_text();
  res.prepare_payload();
  return res;
}

void Api::handle_metrics_only(Request req, Respond respond) {
  const Target t = parse_target(sv(req.target()));
  Response res;
  if (!t.ok || t.segments.size() != 1 || t.segments[0] != "metrics") {
    res = error_response(req, http::status::not_found, "not_found",
                         "this listener (--metrics-http) serves only GET /metrics");
  } else if (req.method() != http::verb::get) {
    res = error_response(req, http::status::method_not_allowed, "method_not_allowed", "use GET");
    res.set(http::field::allow, "GET");
  } else {
    // Reading the store's statistics and /proc takes no store call worth a worker: answered on the I/O thread,
    // where an exception must not escape.
    try {
      res = metrics_answer(req);
    } catch (const std::exception& e) {
      res = error_response(req, http::status::internal_server_error, "internal", e.what());
    }
  }
  count(res);
  respond(std::move(res));
}

std::string Api::metrics_text() {
  const StoreStats st = store_.stats();
  const StoreMetrics s = store_.metrics();
  std::string out;
  auto metric = [&](std::string_view name, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  auto single = [&](std::string_view name, std::string_view type, std::string_view help, uint64_t value) {
    metric(name, type, help);
    out += fmt::format("{} {}\n", name, value);
  };
  single("cairn_events", "gauge", "Events in the log (the head position).", st.events);
  single("cairn_log_bytes", "gauge", "Bytes of log on disk.", st.log_bytes);
  single("cairn_segments", "gauge", "Log segment files.", st.segments);
  single("cairn_appends_total", "counter", "Acknowledged commits (append calls) since start.", s.appended_commits);
  single("cairn_appended_events_total", "counter", "Events in acknowledged commits since start.", s.appended_events);
  single("cairn_appended_bytes_total", "counter", "Log bytes of acknowledged commits since start.", s.appended_bytes);
  metric("cairn_fsync_seconds", "histogram", "Latency of the fdatasync that makes a group commit durable.");
  for (size_t b = 0; b < s.sync_buckets.size(); ++b)
    out += fmt::format("cairn_fsync_seconds_bucket{{le=\"{}\"}} {}\n", StoreMetrics::kSyncBucketsSeconds[b], s.sync_buckets[b]);
  out += fmt::format("cairn_fsync_seconds_bucket{{le=\"+Inf\"}} {}\ncairn_fsync_seconds_sum {}\ncairn_fsync_seconds_count {}\n",
                     s.syncs, s.sync_seconds, s.syncs);
  metric("cairn_group_commit_events", "histogram", "Events made durable by one fdatasync (group commit size).");
  for (size_t b = 0; b < s.group_buckets.size(); ++b)
    out += fmt::format("cairn_group_commit_events_bucket{{le=\"{}\"}} {}\n", StoreMetrics::kGroupBucketsEvents[b], s.group_buckets[b]);
  out += fmt::format("cairn_group_commit_events_bucket{{le=\"+Inf\"}} {}\ncairn_group_commit_events_sum {}\ncairn_group_commit_events_count {}\n",
                     s.groups, s.group_events, s.groups);
  single("cairn_index_memtable_events", "gauge", "Events indexed in memory, not yet in an index run.",
         s.index_memtable_events);
  single("cairn_privacy_purge_running", "gauge", "1 while a privacy purge runs.", s.purge_running ? 1 : 0);
  single("cairn_privacy_purge_done_bytes", "gauge", "Bytes the running (or last) purge has done: verify, rewrite, verify.",
         s.purge_done_bytes);
  single("cairn_privacy_purge_total_bytes", "gauge", "Bytes the running (or last) purge has to do.", s.purge_total_bytes);
  single("cairn_privacy_purges_total", "counter", "Privacy purges finished since start.", s.purges);
  single("cairn_privacy_purged_parts_total", "counter", "Personal parts purged since start.", s.purged_parts);
  single("cairn_http_open_connections", "gauge", "Open HTTP connections.", open_connections_ ? open_connections_() : 0);
  uint64_t subs = 0, max_lag = 0;
  {
    base::MutexLock g(subs_mu_);
    subs = subs_.size();
    for (const auto& [k, o] : subs_)
      if (o.all) max_lag = std::max(max_lag, st.events > o.sub->cursor() ? st.events - o.sub->cursor() : 0);
  }
  single("cairn_subscriptions", "gauge", "Open subscriptions (SSE and NDJSON).", subs);
  single("cairn_subscription_lag_events", "gauge", "Largest number of events a $all subscription is behind the head.",
         max_lag);
  base::MutexLock g(counts_mu_);
  metric("cairn_http_responses_total", "counter", "HTTP answers by status.");
  for (const auto& [st, n] : by_status_) out += fmt::format("cairn_http_responses_total{{status=\"{}\"}} {}\n", st, n);
  metric("cairn_http_errors_total", "counter", "HTTP error answers by error code.");
  for (const auto& [code, n] : by_error_) out += fmt::format("cairn_http_errors_total{{code=\"{}\"}} {}\n", code, n);
  if (projections_) out += projections_->metrics_text();
  out += process_metrics_text();
  out += build_info_text(CAIRN_VERSION);
  return out;
}

uint64_t Api::open_subscriptions() const {
  base::MutexLock g(subs_mu_);
  return subs_.size();
}

void Api::cancel_subscriptions(const std::string& key_id) {
  base::MutexLock g(subs_mu_);
  for (auto& [k, s] : subs_)
    if (key_id.empty() || k == key_id) s.sub->cancel();
}

Answer Api::subscribe(const Call& c) {
  const Request& req = c.req;
  const Target& t = c.t;
  const ApiKey* key = c.key;
  if (!c.respond_stream)
    return error_response(req, http::status::not_found, "not_found", "a subscription is streamed: use it over HTTP");
  auto from = uint_param(t, "from");
  if (!from.ok()) return status_response(req, from.status());
  // A browser's EventSource resumes with the id of the last event it got: a position.
  std::optional<uint64_t> last_event_id;
  if (auto h = sv(req["Last-Event-ID"]); !h.empty()) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(h.data(), h.data() + h.size(), v);
    if (ec != std::errc() || p != h.data() + h.size())
      return status_response(req, Status::invalid_argument("Last-Event-ID: must be a position (a number)"));
    last_event_id = v;
  }
  const bool ndjson = sv(req[http::field::accept]).find("application/x-ndjson") != std::string_view::npos;
  // A backend that does not answer (PostgreSQL down) is said before the stream starts, with a hint when to
  // come back, so that clients do not reconnect at once in a loop.
  const auto refused = [&req](const Status& st) {
    if (st.code() != ErrorCode::kUnavailable) return status_response(req, st);
    Response res = error_response(req, http::status::service_unavailable, "unavailable", st.message());
    res.set(http::field::retry_after, "1");
    return res;
  };
  std::unique_ptr<Subscription> sub;
  if (t.segments.size() == 4) {
    const std::string& stream = t.segments[2];
    if (!key->can_see(stream))
      return error_response(req, http::status::forbidden, "forbidden", fmt::format("the key may not access stream '{}'", stream.substr(0, 256)));
    uint64_t rev = from->value_or(0);
    if (last_event_id) {
      auto ev = store_.read_position(*last_event_id);
      if (!ev.ok() && ev.status().code() != ErrorCode::kNotFound) return refused(ev.status());
      if (!ev.ok() || ev->stream != stream)
        return status_response(req, Status::invalid_argument("Last-Event-ID: not a position of this stream"));
      rev = ev->revision + 1;
    }
    auto s = store_.subscribe_stream(stream, rev);
    if (!s.ok()) return refused(s.status());
    sub = std::move(*s);
  } else {
    Filter f{t.params("type"), t.param("type_prefix").value_or(""), t.param("stream_prefix").value_or(""),
             t.param("category").value_or("")};
    auto s = store_.subscribe_all(last_event_id ? *last_event_id + 1 : from->value_or(0), std::move(f));
    if (!s.ok()) return refused(s.status());
    sub = std::move(*s);
  }
  StreamingResponse sr;
  sr.headers = {{"Content-Type", ndjson ? "application/x-ndjson" : "text/event-stream"},
                {"Cache-Control", "no-cache"},
                {"X-Accel-Buffering", "no"}};
  const uint32_t heartbeat = options_.heartbeat_ms;
  const bool all = t.segments.size() == 2;
  sr.producer = [this, sub = std::shared_ptr<Subscription>(std::move(sub)), key = *key, ndjson, heartbeat,
                 all](StreamSink& sink) {
    // Registered only once the stream runs (a producer that never starts must leave nothing behind);
    // the checks after registering close the window in which a revocation or shutdown could be missed.
    {
      base::MutexLock g(subs_mu_);
      subs_.emplace(key.id, OpenSubscription{sub.get(), all});
    }
    if (shutting_down_.load() || !keys_.is_active(key.id)) sub->cancel();
    if (!ndjson) sink.write(": connected\n\n");
    while (!sink.closed()) {
      auto batch = sub->next(256, std::chrono::milliseconds(heartbeat));
      if (!batch.ok()) {
        // Cancelled (revoked key, shutdown) or the store closed: the stream ends as it always has. Any other
        // failure ends it too, but never silently: its last item says why (docs/http-api.md).
        if (batch.status().code() != ErrorCode::kClosed) {
          const std::string e = json{{"error", {{"code", error_code_name(batch.status().code())},
                                                {"message", batch.status().message()}}}}
                                    .dump(-1, ' ', false, json::error_handler_t::replace);
          sink.write(ndjson ? e + "\n" : "event: error\ndata: " + e + "\n\n");
        }
        break;
      }
      std::string chunk;
      for (const auto& e : *batch) {
        if (!key.can_see(e.stream)) continue;
        if (ndjson) {
          chunk += codec::event_json(e);
          chunk += '\n';
        } else {
          chunk += fmt::format("id: {}\ndata: ", e.position);
          chunk += codec::event_json(e);
          chunk += "\n\n";
        }
      }
      if (chunk.empty()) chunk = ndjson ? "\n" : ": heartbeat\n\n";
      if (!sink.write(std::move(chunk))) break;
    }
    base::MutexLock g(subs_mu_);
    for (auto it = subs_.begin(); it != subs_.end(); ++it)
      if (it->second.sub == sub.get()) {
        subs_.erase(it);
        break;
      }
  };
  (*c.respond_stream)(std::move(sr));
  return std::nullopt;
}

namespace {

Response unsupported_media_type(const Request& req) {
  return error_response(req, http::status::unsupported_media_type, "unsupported_media_type", "send Content-Type: application/json");
}

bool has_json_body(const Request& req) { return sv(req[http::field::content_type]).starts_with("application/json"); }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Response out_of_scope(const Request& req, std::string_view stream) {
  return error_response(req, http::status::forbidden, "forbidden",
                        fmt::format("the key may not access stream '{}'", stream.substr(0, 256)));
}

json key_json(const ApiKey& k) {
  json j = {{"id", k.id}, {"name", k.name}, {"role", role_name(k.role)}, {"streams", k.prefixes},
            {"created_at", format_rfc3339_ns(k.created_ns)}};
  j["revoked_at"] = k.revoked_ns ? json(format_rfc3339_ns(k.revoked_ns)) : json(nullptr);
  return j;
}

}  // namespace

Response Api::health(const Call& c) {
  return json_response(c.req, http::status::ok, dump(json{{"status", "ok"}, {"head_position", store_.head_position()}}));
}

// GET /v1/streams: the catalog.
Response Api::list_streams(const Call& c) {
  const Request& req = c.req;
  const Target& t = c.t;
  auto limit = uint_param(t, "limit");
  if (!limit.ok()) return status_response(req, limit.status());
  const size_t n = static_cast<size_t>(std::min<uint64_t>(limit->value_or(100), options_.max_page));
  if (n == 0) return status_response(req, Status::invalid_argument("query parameter 'limit': at least 1"));
  std::optional<std::string> after = t.param("after");
  if (after && after->empty()) after.reset();
  const std::string prefix = t.param("prefix").value_or("");
  json out = json::array();
  std::optional<std::string> next = after;
  // A scoped key lists only its streams; keep reading pages until this one is full or the catalog ends.
  do {
    auto page = store_.list_streams(next, n - out.size(), prefix);
    if (!page.ok()) return status_response(req, page.status());
    for (const auto& s : page->streams)
      if (c.key->can_see(s.stream))
        out.push_back({{"stream", s.stream},
                       {"revision", s.last_revision},
                       {"count", s.last_revision + 1},
                       {"first_position", s.first_position},
                       {"last_position", s.last_position}});
    next = page->next;
  } while (c.key->scoped() && next && out.size() < n);
  return json_response(req, http::status::ok, dump(json{{"streams", out}, {"next", next ? json(*next) : json(nullptr)}}));
}

namespace {

// What an answer needs of its request (HTTP version, keep-alive), for an answer given after the request is gone.
Request reply_head(const Request& req) {
  Request head;
  head.version(req.version());
  head.keep_alive(req.keep_alive());
  return head;
}

Response append_answer(const Request& req, const StreamAppend& head, const Result<AppendResult>& r) {
  if (!r.ok())
    return status_response(req, r.status(), "not_found",
                           r.status().code() == ErrorCode::kWrongExpectedRevision ? conflict_details(head, r.status()) : json(nullptr));
  return json_response(req, r->replayed ? http::status::ok : http::status::created, dump(append_json(r->streams[0])));
}

Response transaction_answer(const Request& req, const std::vector<StreamAppend>& heads, const Result<AppendResult>& r) {
  if (!r.ok()) {
    json details = nullptr;
    if (r.status().code() == ErrorCode::kWrongExpectedRevision) {
      // The store's message starts with the failing append's index: "appends[i].stream ...".
      const std::string& m = r.status().message();
      size_t idx = 0;
      if (m.starts_with("appends[") && std::from_chars(m.data() + 8, m.data() + m.size(), idx).ec == std::errc() &&
          idx < heads.size()) {
        details = conflict_details(heads[idx], r.status());
        details["append"] = idx;
      }
    }
    return status_response(req, r.status(), "not_found", details);
  }
  json out = json::array();
  for (const auto& s : r->streams) out.push_back(append_json(s));
  return json_response(req, r->replayed ? http::status::ok : http::status::created, dump(json{{"appends", out}}));
}

}  // namespace

// POST /v1/streams/{stream}
Answer Api::append(const Call& c) {
  const Request& req = c.req;
  if (!has_json_body(req)) return unsupported_media_type(req);
  simdjson::dom::parser own_parser;
  auto body = parse_body(req, own_parser);
  if (!body.ok()) return status_response(req, body.status());
  StreamAppend a;
  a.stream = c.captures[0];
  for (auto field : *body) {
    const std::string_view k = field.key;
    if (k != "expected_revision" && k != "events")
      return status_response(req, Status::invalid_argument(fmt::format("{}: unknown field", k.substr(0, 40))));
  }
  if (simdjson::dom::element ex; (*body)["expected_revision"].get(ex) == simdjson::SUCCESS) {
    auto e = parse_expected(ex, "expected_revision");
    if (!e.ok()) return status_response(req, e.status());
    a.expected = *e;
  }
  simdjson::dom::element evs;
  if ((*body)["events"].get(evs)) return status_response(req, Status::invalid_argument("events: required"));
  auto events = parse_events(evs, "events");
  if (!events.ok()) return status_response(req, events.status());
  a.events = std::move(*events);
  StreamAppend head{a.stream, a.expected, {}};
  if (c.respond_later) {
    // No thread waits for the group commit. The store's callback runs on its syncer thread, which must
    // get back to syncing: it only hands the outcome to the pool, where the answer is built and sent.
    store_.append_async(std::move(a), [this, reply_to = reply_head(req), head = std::move(head),
                                       respond = *c.respond_later](Result<AppendResult> r) mutable {
      boost::asio::post(pool_, [reply_to = std::move(reply_to), head = std::move(head), respond = std::move(respond),
                                r = std::move(r)] { respond(append_answer(reply_to, head, r)); });
    });
    return std::nullopt;
  }
  return append_answer(req, head, store_.append(std::move(a)));
}

// GET /v1/streams/{stream}
Response Api::read_stream(const Call& c) {
  auto pq = page_query(c.t, options_.max_page);
  if (!pq.ok()) return status_response(c.req, pq.status());
  auto page = store_.read_stream(c.captures[0], pq->from, pq->direction, pq->limit);
  if (!page.ok()) return status_response(c.req, page.status(), "stream_not_found");
  return json_response(c.req, http::status::ok, page_json(page->events, page->next));
}

// POST /v1/transactions: appends to several streams, atomically.
Answer Api::transaction(const Call& c) {
  const Request& req = c.req;
  if (!has_json_body(req)) return unsupported_media_type(req);
  simdjson::dom::parser own_parser;
  auto body = parse_body(req, own_parser);
  if (!body.ok()) return status_response(req, body.status());
  for (auto field : *body)
    if (std::string_view(field.key) != "appends")
      return status_response(req, Status::invalid_argument(fmt::format("{}: unknown field", std::string_view(field.key).substr(0, 40))));
  simdjson::dom::array arr;
  if ((*body)["appends"].get(arr)) return status_response(req, Status::invalid_argument("appends: required, an array"));
  std::vector<StreamAppend> appends;
  size_t i = 0;
  for (simdjson::dom::element e : arr) {
    const std::string w = fmt::format("appends[{}]", i++);
    simdjson::dom::object o;
    if (e.get(o)) return status_response(req, Status::invalid_argument(w + ": must be an object"));
    for (auto field : o) {
      const std::string_view k = field.key;
      if (k != "stream" && k != "expected_revision" && k != "events")
        return status_response(req, Status::invalid_argument(fmt::format("{}.{}: unknown field", w, k.substr(0, 40))));
    }
    StreamAppend a;
    std::string_view s;
    if (o["stream"].get(s)) return status_response(req, Status::invalid_argument(w + ".stream: required, a string"));
    a.stream = std::string(s);
    if (!c.key->can_see(a.stream)) return out_of_scope(req, a.stream);
    if (simdjson::dom::element ex; o["expected_revision"].get(ex) == simdjson::SUCCESS) {
      auto x = parse_expected(ex, w + ".expected_revision");
      if (!x.ok()) return status_response(req, x.status());
      a.expected = *x;
    }
    simdjson::dom::element evs;
    if (o["events"].get(evs)) return status_response(req, Status::invalid_argument(w + ".events: required"));
    auto events = parse_events(evs, w + ".events");
    if (!events.ok()) return status_response(req, events.status());
    a.events = std::move(*events);
    appends.push_back(std::move(a));
  }
  std::vector<StreamAppend> heads;
  for (const auto& a : appends) heads.push_back({a.stream, a.expected, {}});
  if (c.respond_later) {
    store_.append_multi_async(std::move(appends), [this, reply_to = reply_head(req), heads = std::move(heads),
                                                   respond = *c.respond_later](Result<AppendResult> r) mutable {
      boost::asio::post(pool_, [reply_to = std::move(reply_to), heads = std::move(heads), respond = std::move(respond),
                                r = std::move(r)] { respond(transaction_answer(reply_to, heads, r)); });
    });
    return std::nullopt;
  }
  return transaction_answer(req, heads, store_.append_multi(std::move(appends)));
}


// GET /v1/events/{id} and /v1/positions/{position}.
Response Api::event_answer(const Call& c, Result<RecordedEvent> ev) {
  // Out of scope answers exactly like absent: a scoped key learns nothing about streams it cannot read.
  if (c.key->scoped() && (!ev.ok() ? ev.status().code() == ErrorCode::kNotFound : !c.key->can_see(ev->stream)))
    ev = Status::not_found("no such event");
  if (!ev.ok()) return status_response(c.req, ev.status(), "event_not_found");
  return json_response(c.req, http::status::ok, codec::event_json(*ev));
}

Response Api::read_event(const Call& c) {
  auto id = Uuid::parse(c.captures[0]);
  if (!id.ok()) return status_response(c.req, id.status());
  return event_answer(c, store_.read_event(*id));
}

Response Api::read_position(const Call& c) {
  const std::string& s = c.captures[0];
  uint64_t p = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), p);
  if (ec != std::errc() || ptr != s.data() + s.size())
    return status_response(c.req, Status::invalid_argument(fmt::format("'{}' is not a position", s.substr(0, 40))));
  return event_answer(c, store_.read_position(p));
}

// GET /v1/events: $all.
Response Api::read_all(const Call& c) {
  const Target& t = c.t;
  auto pq = page_query(t, options_.max_page);
  if (!pq.ok()) return status_response(c.req, pq.status());
  const size_t n = pq->limit;
  Filter f{t.params("type"), t.param("type_prefix").value_or(""), t.param("stream_prefix").value_or(""),
           t.param("category").value_or("")};
  std::vector<RecordedEvent> events;
  std::optional<uint64_t> next = pq->from;
  bool first = true;
  // A scoped key's pages are filtered to its streams; keep reading until the page is full or $all ends.
  while (events.size() < n && (first || next)) {
    auto page = store_.read_all(next, pq->direction, n - events.size(), f);
    if (!page.ok()) return status_response(c.req, page.status());
    for (auto& e : page->events)
      if (c.key->can_see(e.stream)) events.push_back(std::move(e));
    next = page->next;
    first = false;
    if (!c.key->scoped()) break;
  }
  return json_response(c.req, http::status::ok, page_json(events, next));
}

Response Api::stats(const Call& c) {
  const StoreStats s = store_.stats();
  const StoreMetrics m = store_.metrics();
  return json_response(c.req, http::status::ok,
                       dump(json{{"events", s.events},
                                 {"segments", s.segments},
                                 {"log_bytes", s.log_bytes},
                                 {"index_runs", m.index_runs},
                                 {"index_memtable_events", m.index_memtable_events},
                                 {"indexed_through", m.indexed_through},
                                 {"chain_head", s.chain_head_hex},
                                 {"durability", durability_name(s.durability)}}));
}

// POST /v1/verify: the whole log's checksums, digests and chain, on the open store (the online form of
// `cairn verify`, which cannot open a directory cairnd holds).
Response Api::verify(const Call& c) {
  auto report = store_.verify_chain();
  if (!report.ok()) return status_response(c.req, report.status());
  return json_response(c.req, http::status::ok, codec::verify_report_json(*report));
}

Response Api::list_keys(const Call& c) {
  json out = json::array();
  for (const auto& k : keys_.list()) out.push_back(key_json(k));
  return json_response(c.req, http::status::ok, dump(json{{"keys", out}}));
}

Response Api::create_key(const Call& c) {
  const Request& req = c.req;
  if (!has_json_body(req)) return unsupported_media_type(req);
  auto j = json::parse(req.body(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return status_response(req, Status::invalid_argument("body: must be a JSON object"));
  for (const auto& [k, v] : j.items())
    if (k != "role" && k != "streams" && k != "name")
      return status_response(req, Status::invalid_argument(fmt::format("{}: unknown field", k.substr(0, 40))));
  if (j.contains("name") && !j["name"].is_string()) return status_response(req, Status::invalid_argument("name: must be a string"));
  if (!j.contains("role") || !j["role"].is_string()) return status_response(req, Status::invalid_argument("role: required, a string"));
  auto role = parse_role(j["role"].get<std::string>());
  if (!role.ok()) return status_response(req, role.status());
  std::vector<std::string> prefixes;
  if (j.contains("streams")) {
    if (!j["streams"].is_array() || j["streams"].empty())
      return status_response(req, Status::invalid_argument("streams: must be a non-empty array of prefixes (omit it for every stream)"));
    for (const auto& p : j["streams"]) {
      if (!p.is_string()) return status_response(req, Status::invalid_argument("streams: must be an array of strings"));
      prefixes.push_back(p.get<std::string>());
    }
  }
  const std::string name = j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>() : "";
  auto created = keys_.create(*role, std::move(prefixes), name);
  if (!created.ok()) return status_response(req, created.status());
  json out = key_json(created->first);
  out["key"] = created->second;
  return json_response(req, http::status::created, dump(out));
}

Response Api::revoke_key(const Call& c) {
  const std::string& id = c.captures[0];
  size_t other_admins = 0;
  bool target_is_admin = false;
  for (const auto& k : keys_.list()) {
    if (k.revoked_ns || k.role != Role::kAdmin || k.scoped()) continue;
    if (k.id == id) target_is_admin = true;
    else ++other_admins;
  }
  if (target_is_admin && other_admins == 0)
    return error_response(c.req, http::status::conflict, "last_admin_key",
                          "this is the last active admin key; create another admin key before revoking it");
  Status st = keys_.revoke(id);
  if (!st.ok()) return status_response(c.req, st, "key_not_found");
  cancel_subscriptions(id);  // revocation also ends the key's open subscriptions
  return json_response(c.req, http::status::ok, dump(json{{"id", id}, {"revoked", true}}));
}

}  // namespace cairn::server
