// cairnd on the PostgreSQL backend: two servers on one database append with expected revisions through
// HTTP, each sees the other's events in the same order, and the CLI migrates, reads and verifies it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

#include <fstream>
#include <sstream>

#include "cairn/event.h"

#include "pg/pg_test_env.h"
#include "server/harness.h"
#include "testing/temp_dir.h"

namespace cairn::server_test {
namespace {

TEST(PgHttp, TwoServersOnOneDatabaseShareOneOrder) {
  auto db = cairn::testing::fresh_pg_db();
  cairn::testing::TempDir dir;
  auto m = cli("pg migrate --admin " + shell_quote(db.admin));
  ASSERT_EQ(m.first, 0) << m.second;
  EXPECT_NE(m.second.find("nothing to apply"), std::string::npos) << m.second;
  Cairnd a(dir.sub("a"), {"--backend", db.app});
  Cairnd b(dir.sub("b"), {"--backend", db.app});
  ASSERT_GT(a.port(), 0);
  ASSERT_GT(b.port(), 0);
  auto r = call(a.port(), http::verb::post, "/v1/streams/conv-1", a.key(), one_event("no_stream", "test.asked", R"({"q":1})"));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.j()["first_position"], 0);
  r = call(b.port(), http::verb::post, "/v1/streams/conv-1", b.key(), one_event("0", "test.answered", R"({"a":1})"));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.j()["first_position"], 1);
  // A stale expected revision on the other server is refused with the truth.
  r = call(a.port(), http::verb::post, "/v1/streams/conv-1", a.key(), one_event("0", "test.answered", R"({"a":2})"));
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.j()["error"]["details"]["actual"], 1);
  for (int i = 0; i < 20; ++i) {
    const int port = i % 2 ? a.port() : b.port();
    const std::string& key = i % 2 ? a.key() : b.key();
    ASSERT_EQ(call(port, http::verb::post, "/v1/streams/conv-" + std::to_string(i % 3), key,
                   one_event("any", "test.noted", "{\"i\":" + std::to_string(i) + "}")).status, 201);
  }
  auto pa = call(a.port(), http::verb::get, "/v1/events?limit=100", a.key());
  auto pb = call(b.port(), http::verb::get, "/v1/events?limit=100", b.key());
  ASSERT_EQ(pa.status, 200) << pa.body;
  ASSERT_EQ(pb.status, 200) << pb.body;
  ASSERT_EQ(pa.j()["events"].size(), 22u);
  EXPECT_EQ(pa.j()["events"], pb.j()["events"]);
  for (size_t i = 0; i < 22; ++i) EXPECT_EQ(pa.j()["events"][i]["position"], i);
  auto read = cli("read conv-1 --backend " + shell_quote(db.app) + " --data " + shell_quote(dir.sub("cli")));
  ASSERT_EQ(read.first, 0) << read.second;
  EXPECT_NE(read.second.find("test.answered"), std::string::npos) << read.second;
  auto v = cli("verify --backend " + shell_quote(db.app));
  EXPECT_EQ(v.first, 0) << v.second;
  EXPECT_NE(v.second.find("ok:"), std::string::npos) << v.second;
  EXPECT_EQ(a.stop(SIGTERM), 0);
  EXPECT_EQ(b.stop(SIGTERM), 0);
}

TEST(PgHttp, TheCliInitializesADatabaseAndRefusesBadInput) {
  auto db = cairn::testing::fresh_pg_db();
  std::string error;
  ASSERT_TRUE(db.cluster->psql("CREATE DATABASE cli_init_" + std::to_string(::getpid()) + ";", nullptr, &error)) << error;
  const std::string admin = db.cluster->conninfo(db.cluster->superuser(), "cli_init_" + std::to_string(::getpid()));
  auto init = cli("pg init --admin " + shell_quote(admin));
  ASSERT_EQ(init.first, 0) << init.second;
  EXPECT_NE(init.second.find("applied 0001 initial"), std::string::npos) << init.second;
  auto again = cli("pg init --admin " + shell_quote(admin));
  EXPECT_EQ(again.first, 0) << again.second;
  EXPECT_NE(again.second.find("nothing to apply"), std::string::npos) << again.second;
  auto bad = cli("pg migrate --admin 'host=127.0.0.1 port=1 user=nobody connect_timeout=2'");
  EXPECT_EQ(bad.first, 1) << bad.second;
  EXPECT_NE(bad.second.find("cannot connect to PostgreSQL"), std::string::npos) << bad.second;
  auto no_backend = cli("verify --backend 'host=127.0.0.1 port=1 connect_timeout=2'");
  EXPECT_EQ(no_backend.first, 1) << no_backend.second;
}

// Moving an embedded store into PostgreSQL with the CLI: its export, imported with --backend and exported
// again from PostgreSQL, is the same file line for line (positions, ids, times, salts, payloads).
TEST(PgHttp, AnEmbeddedStoreMovesIntoPostgresAndExportsTheSame) {
  auto db = cairn::testing::fresh_pg_db();
  cairn::testing::TempDir dir;
  const std::string src = " --data " + shell_quote(dir.sub("src"));
  for (int i = 0; i < 6; ++i) {
    auto a = cli("append s-" + std::to_string(i % 2) + " t.e '{\"i\":" + std::to_string(i) + "}'" + src);
    ASSERT_EQ(a.first, 0) << a.second;
  }
  auto e1 = cli("export" + src + " -o " + shell_quote(dir.sub("a.ndjson")));
  ASSERT_EQ(e1.first, 0) << e1.second;
  const std::string backend = " --backend " + shell_quote(db.app) + " --data " + shell_quote(dir.sub("local"));
  auto im = cli("import " + shell_quote(dir.sub("a.ndjson")) + backend);
  ASSERT_EQ(im.first, 0) << im.second;
  auto e2 = cli("export" + backend + " -o " + shell_quote(dir.sub("b.ndjson")));
  ASSERT_EQ(e2.first, 0) << e2.second;
  const auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  const std::string a = slurp(dir.sub("a.ndjson")), b = slurp(dir.sub("b.ndjson"));
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  auto streams = cli("streams" + backend);
  ASSERT_EQ(streams.first, 0) << streams.second;
  EXPECT_NE(streams.second.find("s-1"), std::string::npos) << streams.second;
  auto v = cli("verify --backend " + shell_quote(db.app));
  EXPECT_EQ(v.first, 0) << v.second;
}

// kill -9 of cairnd while clients append over HTTP: every append that got its 201 is in the database, a new
// cairnd serves it, and the seal chain verifies.
TEST(PgHttp, KillingCairndLosesNoAcknowledgedAppend) {
  auto db = cairn::testing::fresh_pg_db();
  cairn::testing::TempDir dir;
  std::mutex mu;
  std::set<std::string> acked;
  {
    Cairnd a(dir.sub("a"), {"--backend", db.app});
    ASSERT_GT(a.port(), 0);
    std::atomic<bool> stop{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        while (!stop.load()) {
          const std::string id = cairn::Uuid::generate_v7().to_string();
          auto r = call(a.port(), http::verb::post, "/v1/streams/k-" + std::to_string(t), a.key(),
                        one_event("any", "crash.tested", "{}", id));
          if (r.status == 201) {
            std::lock_guard g(mu);
            acked.insert(id);
          }
        }
      });
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    EXPECT_EQ(a.stop(SIGKILL), 128 + SIGKILL);
    stop = true;
    for (auto& t : ts) t.join();
  }
  ASSERT_GT(acked.size(), 10u);
  Cairnd b(dir.sub("b"), {"--backend", db.app});
  ASSERT_GT(b.port(), 0);
  size_t found = 0;
  for (const auto& id : acked) found += call(b.port(), http::verb::get, "/v1/events/" + id, b.key()).status == 200 ? 1 : 0;
  EXPECT_EQ(found, acked.size());
  auto v = cli("verify --backend " + shell_quote(db.app));
  EXPECT_EQ(v.first, 0) << v.second;
}

// ------------------------------------------------------------------- database outages, roles and logins

// A cluster of the test's own, for tests that stop its server or require passwords: that must not disturb
// the other tests' databases.
std::unique_ptr<cairn::testing::PgCluster> own_cluster(bool password_auth = false) {
  cairn::testing::PgClusterOptions o;
  o.password_auth = password_auth;
  std::string error;
  auto c = cairn::testing::PgCluster::start(o, &error);
  EXPECT_TRUE(c != nullptr) << error;
  return c;
}

// A database on a cluster of the test's own, and a directory for the cairnd processes on it.
struct OwnDb {
  std::unique_ptr<cairn::testing::PgCluster> cluster = own_cluster();
  cairn::testing::PgDb db = cluster ? cairn::testing::fresh_pg_db(cluster.get()) : cairn::testing::PgDb{};
  cairn::testing::TempDir dir;
  std::string error;
  // cairnd's arguments for this database, then `extra`.
  std::vector<std::string> args(std::vector<std::string> extra = {}) const {
    extra.insert(extra.begin(), {"--backend", db.app});
    return extra;
  }
};

// One cairnd on an OwnDb, with one event appended (stream s-1, position 0).
struct OneServer {
  OwnDb o;
  Cairnd d;
  explicit OneServer(std::vector<std::string> extra = {}) : d(o.dir.sub("d"), o.args(std::move(extra))) {
    EXPECT_EQ(call(d.port(), http::verb::post, "/v1/streams/s-1", d.key(), one_event("any", "t.e", "{}")).status, 201);
  }
};

// One GET with its response head: the status, the headers and the body (read until Content-Length, or until
// the server closes a stream).
struct Answer {
  int status = 0;
  std::string retry_after;
  std::string content_type;
  std::string body;
};
Answer get_with_head(int port, const std::string& target, const std::string& key, const std::string& accept = "") {
  namespace beast = boost::beast;
  Answer a;
  try {
    boost::asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
    stream.expires_after(std::chrono::seconds(120));  // a stream that never ends fails the test instead of hanging it
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Bearer " + key);
    if (!accept.empty()) req.set(http::field::accept, accept);
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    a.status = static_cast<int>(res.result_int());
    a.retry_after = std::string(res[http::field::retry_after]);
    a.content_type = std::string(res[http::field::content_type]);
    a.body = res.body();
  } catch (const std::exception&) {
  }
  return a;
}

// A live subscription read line by line over a real socket, as a client sees it.
class LiveStream {
 public:
  LiveStream(int port, const std::string& target, const std::string& key, bool ndjson) : sock_(ioc_) {
    sock_.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
    const std::string req = "GET " + target + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n" +
                            (ndjson ? "Accept: application/x-ndjson\r\n" : "") + "\r\n";
    boost::asio::write(sock_, boost::asio::buffer(req));
    ::timeval tv{0, 100000};
    ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!closed_ && buf_.find("\r\n\r\n") == std::string::npos) fill();
    const auto end = buf_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    status_ = std::atoi(buf_.c_str() + 9);
    buf_.erase(0, end + 4);
  }
  int status() const { return status_; }
  bool closed() const { return closed_; }
  // The next line of the body without its newline; nullopt once the server closed the connection and every
  // line was read, or when `seconds` passed without one.
  std::optional<std::string> line(double seconds = 120) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      if (closed_ || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      fill();
    }
  }

 private:
  void fill() {
    char tmp[4096];
    const ssize_t n = ::recv(sock_.native_handle(), tmp, sizeof tmp, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closed_ = true;
    if (n > 0) buf_.append(tmp, static_cast<size_t>(n));
  }
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket sock_;
  std::string buf_;
  int status_ = 0;
  bool closed_ = false;
};

// What a subscriber read, line by line: events (by position), heartbeats and error lines, in order.
struct Seen {
  std::vector<uint64_t> positions;
  std::vector<std::string> ids;
  size_t heartbeats = 0;
  std::vector<json> errors;
};

// Reads one item (an event, a heartbeat or an error) of an NDJSON or SSE stream into *seen; false when the
// stream ended or nothing came within `seconds`.
bool read_item(LiveStream& s, bool ndjson, Seen* seen, double seconds = 120) {
  for (;;) {
    auto l = s.line(seconds);
    if (!l) return false;
    if (ndjson) {
      if (l->empty()) return ++seen->heartbeats, true;
      json j = json::parse(*l, nullptr, false);
      if (j.contains("error")) return seen->errors.push_back(j), true;
      seen->positions.push_back(j["position"].get<uint64_t>());
      seen->ids.push_back(j["id"].get<std::string>());
      return true;
    }
    if (*l == ": heartbeat") return ++seen->heartbeats, true;
    if (l->starts_with("event: error")) {
      auto data = s.line(seconds);
      if (!data || !data->starts_with("data: ")) return false;
      seen->errors.push_back(json::parse(data->substr(6), nullptr, false));
      return true;
    }
    if (l->starts_with("data: ")) {
      json j = json::parse(l->substr(6), nullptr, false);
      seen->positions.push_back(j["position"].get<uint64_t>());
      seen->ids.push_back(j["id"].get<std::string>());
      return true;
    }
    // ": connected", "id: N" and the blank line after each event carry nothing more.
  }
}

// Appends one event with a supplied id, retried with the same id until it is acknowledged: the documented
// way through an outage (an append whose outcome is unknown is answered idempotently on the retry).
void append_until_acked(int port, const std::string& key, const std::string& stream, const std::string& id) {
  for (int attempt = 0; attempt < 3000; ++attempt) {
    auto r = call(port, http::verb::post, "/v1/streams/" + stream, key, one_event("any", "outage.noted", "{}", id));
    if (r.status == 201 || r.status == 200) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "append " << id << " was never acknowledged";
}

// Issue 14.3, first point: with PostgreSQL down a subscription cannot start, and says so before the stream
// starts (503 unavailable, Retry-After), instead of 200 and an empty stream that looks like a clean end.
TEST(PgHttp, SubscribingWhilePostgresIsDownIsRefusedWithUnavailable) {
  OneServer one;
  auto& [o, d] = one;
  ASSERT_TRUE(o.cluster != nullptr);
  ASSERT_TRUE(o.cluster->stop_primary(&o.error)) << o.error;
  for (const std::string accept : {"", "application/x-ndjson"}) {
    for (const std::string target : {"/v1/subscribe", "/v1/streams/s-1/subscribe"}) {
      auto a = get_with_head(d.port(), target, d.key(), accept);
      EXPECT_EQ(a.status, 503) << target << " " << accept << ": " << a.body;
      EXPECT_EQ(a.content_type, "application/json") << target;
      EXPECT_TRUE(contains(a.body, R"("code":"unavailable")")) << a.body;
      EXPECT_FALSE(a.retry_after.empty()) << target;
    }
  }
  ASSERT_TRUE(o.cluster->start_primary(&o.error)) << o.error;
  // Back: the same request streams the log.
  LiveStream s(d.port(), "/v1/subscribe", d.key(), true);
  EXPECT_EQ(s.status(), 200);
  Seen seen;
  ASSERT_TRUE(read_item(s, true, &seen));
  EXPECT_EQ(seen.positions, std::vector<uint64_t>{0});
}

// Issue 14.3, second point: two cairnd with writers on both, `pg_ctl stop -m immediate`, then start. Live
// subscriptions (NDJSON on one server, SSE on the other) keep their connection, send heartbeats while the
// database is away, and go on from their own cursor: every position once, in order, no gap, and every
// acknowledged append among them.
TEST(PgHttp, LiveSubscriptionsRideOutADatabaseRestart) {
  OwnDb o;
  ASSERT_TRUE(o.cluster != nullptr);
  Cairnd a(o.dir.sub("a"), o.args());
  Cairnd b(o.dir.sub("b"), o.args());
  ASSERT_GT(a.port(), 0);
  ASSERT_GT(b.port(), 0);
  LiveStream sa(a.port(), "/v1/subscribe", a.key(), true);
  LiveStream sb(b.port(), "/v1/subscribe", b.key(), false);
  ASSERT_EQ(sa.status(), 200);
  ASSERT_EQ(sb.status(), 200);
  Seen seen_a, seen_b;

  std::mutex mu;
  std::set<std::string> acked;
  struct Writers {  // stopped and joined on every way out of the test, a failed assertion included
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    void join() {
      stop = true;
      for (auto& t : threads)
        if (t.joinable()) t.join();
    }
    ~Writers() { join(); }
  } writers;
  for (int t = 0; t < 8; ++t)
    writers.threads.emplace_back([&, t] {
      const Cairnd& to = t % 2 ? a : b;
      while (!writers.stop.load()) {
        const std::string id = cairn::Uuid::generate_v7().to_string();
        auto r = call(to.port(), http::verb::post, "/v1/streams/w-" + std::to_string(t), to.key(),
                      one_event("any", "outage.noted", "{}", id));
        if (r.status == 201) {
          std::lock_guard g(mu);
          acked.insert(id);
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the database is away: do not spin
        }
      }
    });
  const auto acked_count = [&] {
    std::lock_guard g(mu);
    return acked.size();
  };
  ASSERT_TRUE(eventually([&] { return acked_count() >= 50; }, 120));
  ASSERT_TRUE(o.cluster->stop_primary(&o.error)) << o.error;
  // While it is down, each subscription sends a heartbeat (after the events it had already been sent).
  for (auto [s, seen, ndjson] : {std::tuple{&sa, &seen_a, true}, std::tuple{&sb, &seen_b, false}}) {
    const size_t before = seen->heartbeats;
    while (seen->heartbeats == before && seen->errors.empty())
      ASSERT_TRUE(read_item(*s, ndjson, seen)) << "the subscription ended while the database was down";
  }
  ASSERT_TRUE(o.cluster->start_primary(&o.error)) << o.error;
  const size_t at_restart = acked_count();
  ASSERT_TRUE(eventually([&] { return acked_count() >= at_restart + 50; }, 120));
  writers.join();
  // A final event on each server: once a subscriber has it, it has everything before it.
  const std::string last_a = cairn::Uuid::generate_v7().to_string(), last_b = cairn::Uuid::generate_v7().to_string();
  append_until_acked(a.port(), a.key(), "last", last_a);
  append_until_acked(b.port(), b.key(), "last", last_b);
  for (auto [s, seen, ndjson] : {std::tuple{&sa, &seen_a, true}, std::tuple{&sb, &seen_b, false}}) {
    const auto has_both = [&] {
      return std::count(seen->ids.begin(), seen->ids.end(), last_a) && std::count(seen->ids.begin(), seen->ids.end(), last_b);
    };
    while (!has_both()) ASSERT_TRUE(read_item(*s, ndjson, seen)) << "the subscription ended after the restart";
    EXPECT_TRUE(seen->errors.empty()) << seen->errors.front().dump();
    for (size_t i = 0; i < seen->positions.size(); ++i) ASSERT_EQ(seen->positions[i], i) << "a gap or a duplicate";
    std::set<std::string> got(seen->ids.begin(), seen->ids.end());
    for (const auto& id : acked) EXPECT_TRUE(got.count(id)) << "acknowledged append " << id << " was not delivered";
  }
  EXPECT_FALSE(sa.closed());
  EXPECT_FALSE(sb.closed());
  EXPECT_EQ(a.stop(SIGTERM), 0);
  EXPECT_EQ(b.stop(SIGTERM), 0);
}

// Issue 14.3, second point: past --pg-outage-timeout a subscription ends, and says why as its last item
// (an NDJSON error line, an SSE `event: error`), never with a silent clean end.
TEST(PgHttp, ASubscriptionEndsWithAnErrorAfterTheOutageTimeout) {
  OneServer one({"--pg-outage-timeout", "1"});
  auto& [o, d] = one;
  ASSERT_TRUE(o.cluster != nullptr);
  LiveStream nd(d.port(), "/v1/subscribe", d.key(), true);
  LiveStream sse(d.port(), "/v1/streams/s-1/subscribe", d.key(), false);
  Seen seen_nd, seen_sse;
  ASSERT_TRUE(read_item(nd, true, &seen_nd));
  ASSERT_TRUE(read_item(sse, false, &seen_sse));
  ASSERT_TRUE(o.cluster->stop_primary(&o.error)) << o.error;
  for (auto [s, seen, ndjson] : {std::tuple{&nd, &seen_nd, true}, std::tuple{&sse, &seen_sse, false}}) {
    while (read_item(*s, ndjson, seen)) {
    }
    EXPECT_TRUE(s->closed()) << "the server should end the stream";
    EXPECT_EQ(seen->positions, std::vector<uint64_t>{0});
    ASSERT_EQ(seen->errors.size(), 1u) << "the stream ended without saying why";
    EXPECT_EQ(seen->errors[0]["error"]["code"], "unavailable") << seen->errors[0].dump();
    EXPECT_TRUE(contains(seen->errors[0]["error"]["message"].get<std::string>(), "PostgreSQL")) << seen->errors[0].dump();
  }
  ASSERT_TRUE(o.cluster->start_primary(&o.error)) << o.error;
}

// Issue 14.3, third point: an append after the database restarted is not failed on a pooled connection
// the server closed while it was down (it was never sent: it goes on a fresh connection). An append while
// the database is still down says it was not appended, not that its outcome is unknown.
TEST(PgHttp, TheFirstAppendAfterADatabaseRestartSucceeds) {
  OneServer one;
  auto& [o, d] = one;
  ASSERT_TRUE(o.cluster != nullptr);
  ASSERT_TRUE(o.cluster->stop_primary(&o.error)) << o.error;
  ASSERT_TRUE(o.cluster->start_primary(&o.error)) << o.error;
  auto r = call(d.port(), http::verb::post, "/v1/streams/s-1", d.key(), one_event("0", "t.e", "{}"));
  EXPECT_EQ(r.status, 201) << r.body;
  ASSERT_TRUE(o.cluster->stop_primary(&o.error)) << o.error;
  r = call(d.port(), http::verb::post, "/v1/streams/s-1", d.key(), one_event("1", "t.e", "{}"));
  EXPECT_GE(r.status, 500) << r.body;
  EXPECT_TRUE(contains(r.body, "not appended")) << r.body;
  EXPECT_FALSE(contains(r.body, "unknown")) << r.body;
  ASSERT_TRUE(o.cluster->start_primary(&o.error)) << o.error;
  r = call(d.port(), http::verb::post, "/v1/streams/s-1", d.key(), one_event("1", "t.e", "{}"));
  EXPECT_EQ(r.status, 201) << r.body;
  auto page = call(d.port(), http::verb::get, "/v1/streams/s-1", d.key());
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.j()["events"].size(), 3u) << page.body;
}

// Issue 14.3, fourth point: `cairn pg init --reader-role` gives that login the password from
// CAIRN_PG_APP_PASSWORD, as docs/scaling.md says, so `cairn verify` can log in as it; init says which roles it
// created or changed, and a second run changes nothing.
TEST(PgHttp, PgInitGivesTheReaderRoleItsPasswordAndSaysWhatItCreated) {
  auto cluster = own_cluster(/*password_auth=*/true);
  ASSERT_NE(cluster, nullptr);
  std::string error;
  ASSERT_TRUE(cluster->psql("CREATE DATABASE roles_db;", nullptr, &error)) << error;
  const std::string admin = cluster->conninfo(cluster->superuser(), "roles_db");
  const std::string env = "CAIRN_PG_APP_PASSWORD=s3cret-pw ";
  auto init = cli_raw(env + CAIRN_CLI + " pg init --admin " + shell_quote(admin) + " --reader-role cairn_ro");
  ASSERT_EQ(init.first, 0) << init.second;
  for (const char* role : {"cairn_owner", "cairn_purger", "cairn_writer", "cairn_privacy", "cairn_reader", "cairn_app",
                           "cairn_ro"})
    EXPECT_TRUE(contains(init.second, std::string("created role ") + role)) << role << ":\n" << init.second;
  EXPECT_TRUE(contains(init.second, "applied 0001 initial")) << init.second;
  // A real login, by libpq (cairn verify) and by psql, with the password and only with it.
  const std::string reader = cluster->conninfo("cairn_ro", "roles_db");
  auto v = cli_raw("PGPASSWORD=s3cret-pw " + std::string(CAIRN_CLI) + " verify --backend " + shell_quote(reader));
  EXPECT_EQ(v.first, 0) << v.second;
  EXPECT_TRUE(contains(v.second, "ok:")) << v.second;
  const char* bindir = std::getenv("CAIRN_PG_BINDIR");  // as the cluster fixture finds its binaries
  const std::string psql = std::string(bindir && *bindir ? bindir : "/usr/lib/postgresql/15/bin") +
                           "/psql -X -A -t -c 'SELECT count(*) FROM cairn.events' " + shell_quote(reader);
  auto q = cli_raw("PGPASSWORD=s3cret-pw " + psql);
  EXPECT_EQ(q.first, 0) << q.second;
  EXPECT_TRUE(contains(q.second, "0")) << q.second;
  auto wrong = cli_raw("PGPASSWORD=wrong " + psql);
  EXPECT_NE(wrong.first, 0) << "the cluster must check passwords: " << wrong.second;
  auto app = cli_raw("PGPASSWORD=s3cret-pw " + std::string(CAIRN_CLI) + " verify --backend " +
                     shell_quote(cluster->conninfo("cairn_app", "roles_db")));
  EXPECT_EQ(app.first, 0) << app.second;
  // Again: the roles exist, nothing is created or changed.
  auto again = cli_raw(env + CAIRN_CLI + " pg init --admin " + shell_quote(admin) + " --reader-role cairn_ro");
  ASSERT_EQ(again.first, 0) << again.second;
  EXPECT_FALSE(contains(again.second, "created role")) << again.second;
  EXPECT_TRUE(contains(again.second, "roles: nothing to change")) << again.second;
}

}  // namespace
}  // namespace cairn::server_test
