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
