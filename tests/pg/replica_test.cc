// Reads and subscriptions served from a streaming replica (PostgresOptions::read_replica): a process reads
// its own appends at once, subscribers on the replica see every event in order, and the seal chain verifies
// on the replica too.
#include <gtest/gtest.h>

#include <thread>

#include <fmt/format.h>

#include "cairn/postgres.h"
#include "cairn/store.h"
#include "pg/pg_test_env.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;

TEST(PgReplica, ReadsAndSubscriptionsComeFromTheReplica) {
  std::string error;
  testing::PgClusterOptions co;
  co.replica = true;
  auto cluster = testing::PgCluster::start(co, &error);
  ASSERT_NE(cluster, nullptr) << error;
  auto db = testing::fresh_pg_db(cluster.get());
  ASSERT_FALSE(db.replica_app.empty());
  ASSERT_TRUE(cluster->wait_replica_caught_up(std::chrono::seconds(30), &error)) << error;
  testing::TempDir dir;
  PostgresOptions o;
  o.connection = db.app;
  o.read_replica = db.replica_app;
  auto s = open_store(o);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  Store& store = **s;
  auto sub = store.subscribe_all(0, Filter{});
  ASSERT_TRUE(sub.ok());
  for (int i = 0; i < 40; ++i) {
    auto r = store.append(one(fmt::format("r-{}", i % 4), ExpectedRevision::any(), {json_event("e", fmt::format(R"({{"i":{}}})", i))}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    // Read-your-writes: the store waits for the replica to hold this process's appends.
    auto back = store.read_position(r->streams[0].first_position);
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(back->data, fmt::format(R"({{"i":{}}})", i));
  }
  std::vector<uint64_t> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (got.size() < 40 && std::chrono::steady_clock::now() < deadline) {
    auto b = (*sub)->next(100, std::chrono::milliseconds(100));
    ASSERT_TRUE(b.ok()) << b.status().to_string();
    for (auto& e : *b) got.push_back(e.position);
  }
  ASSERT_EQ(got.size(), 40u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], i);
  // The replica really is read-only for Cairn: an append there is refused by the server.
  PostgresOptions ro = o;
  ro.connection = db.replica_app;
  ro.read_replica.clear();
  auto on_replica = open_store(ro);
  if (on_replica.ok()) {
    auto r = (*on_replica)->append(one("x-1", ExpectedRevision::any(), {json_event("e", "{}")}));
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("read-only"), std::string::npos) << r.status().message();
  }
  ASSERT_TRUE(store.verify_chain().ok());
  ASSERT_TRUE(cluster->wait_replica_caught_up(std::chrono::seconds(30), &error)) << error;
  auto v = pg_verify(db.replica_app);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->events, 40u);
  (void)store.close();
}

}  // namespace
}  // namespace cairn
