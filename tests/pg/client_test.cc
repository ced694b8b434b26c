// The libpq layer against a real server: binary parameters and results (arrays included, NUL bytes kept),
// prepared statements, pipeline mode with a sync per statement, the pool, and the mapping of SQLSTATEs to
// Cairn's error codes. Also the writer's pipelined retry: a group whose call fails is sent again one request
// at a time, so one bad request fails alone.
#include <gtest/gtest.h>

#include <thread>

#include <fmt/format.h>

#include "cairn/store.h"
#include "pg/client.h"
#include "pg/pg_test_env.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using pg::Connection;
using pg::Oid;
using pg::Params;
using testing::json_event;
using testing::one;

std::unique_ptr<Connection> connect_or_fail(const std::string& conninfo) {
  auto c = Connection::connect(conninfo);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return c.ok() ? std::move(*c) : nullptr;
}

TEST(PgClient, BinaryParametersAndResultsRoundTrip) {
  auto db = testing::fresh_pg_db();
  auto c = connect_or_fail(db.admin);
  ASSERT_NE(c, nullptr);
  const Uuid id = Uuid::generate_v7();
  const std::string bytes("a\0b\xff", 4);
  Params p;
  p.int8(-5'000'000'000).int4(-7).int2(300).boolean(true).text("naïve").bytea(bytes).uuid(id);
  p.begin_array(Oid::kInt8).el_int8(1).el_int8(-2).end_array();
  p.begin_array(Oid::kBytea).el_text(bytes).el_text("").end_array();
  p.begin_array(Oid::kText).end_array();  // empty
  p.null(Oid::kText);
  auto r = c->prepared("rt", "SELECT $1::int8, $2::int4, $3::int2, $4::bool, $5::text, $6::bytea, $7::uuid, "
                             "array_length($8::int8[], 1), ($8::int8[])[2], octet_length(($9::bytea[])[1]), "
                             "coalesce(array_length($10::text[], 1), 0), $11::text IS NULL",
                       p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->int8(0, 0), -5'000'000'000);
  EXPECT_EQ(r->int4(0, 1), -7);
  EXPECT_EQ(r->int2(0, 2), 300);
  EXPECT_TRUE(r->boolean(0, 3));
  EXPECT_EQ(r->bytes(0, 4), "naïve");
  EXPECT_EQ(r->bytes(0, 5), bytes);
  EXPECT_EQ(r->uuid(0, 6), id);
  EXPECT_EQ(r->int4(0, 7), 2);
  EXPECT_EQ(r->int8(0, 8), -2);
  EXPECT_EQ(r->int4(0, 9), 4);
  EXPECT_EQ(r->int4(0, 10), 0);
  EXPECT_TRUE(r->boolean(0, 11));
  // The same prepared statement again on the same connection.
  auto again = c->prepared("rt", "SELECT 1", p);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->int8(0, 0), -5'000'000'000);
}

TEST(PgClient, ErrorsMapToCairnCodesWithThePostgresMessage) {
  auto db = testing::fresh_pg_db();
  auto c = connect_or_fail(db.admin);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->exec("CREATE TABLE u (k int PRIMARY KEY); INSERT INTO u VALUES (1);").ok());
  auto dup = c->exec("INSERT INTO u VALUES (1)");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), ErrorCode::kDuplicateEventId);
  EXPECT_NE(dup.status().message().find("23505"), std::string::npos) << dup.status().message();
  auto syntax = c->exec("SELEC 1");
  EXPECT_EQ(syntax.status().code(), ErrorCode::kIoError);
  EXPECT_NE(syntax.status().message().find("syntax error"), std::string::npos) << syntax.status().message();
  ASSERT_TRUE(c->exec("SET statement_timeout = '50ms'").ok());
  EXPECT_EQ(c->exec("SELECT pg_sleep(1)").status().code(), ErrorCode::kTimeout);
  auto bad = Connection::connect("host=127.0.0.1 port=1 connect_timeout=2");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cannot connect to PostgreSQL"), std::string::npos);
}

TEST(PgClient, PipelineWithASyncPerStatementIsolatesAFailure) {
  auto db = testing::fresh_pg_db();
  auto c = connect_or_fail(db.admin);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->exec("CREATE TABLE t (k int PRIMARY KEY)").ok());
  const std::string sql = "INSERT INTO t VALUES ($1) RETURNING k";
  Params p1, p2, p3;
  p1.int4(1);
  p2.int4(1);  // a duplicate: fails
  p3.int4(3);
  ASSERT_TRUE(c->prepare("ins", sql, p1).ok());
  EXPECT_EQ(c->pipeline_send("other", "SELECT 1", p1).code(), ErrorCode::kInvalidArgument);  // not prepared
  ASSERT_TRUE(c->pipeline_begin().ok());
  for (Params* p : {&p1, &p2, &p3}) {
    ASSERT_TRUE(c->pipeline_send("ins", sql, *p).ok());
    ASSERT_TRUE(c->pipeline_sync().ok());
  }
  auto r1 = c->pipeline_next();
  ASSERT_TRUE(r1.ok()) << r1.status().to_string();
  EXPECT_EQ(r1->int4(0, 0), 1);
  ASSERT_TRUE(c->pipeline_next().ok());  // sync
  auto r2 = c->pipeline_next();
  EXPECT_EQ(r2.status().code(), ErrorCode::kDuplicateEventId) << r2.status().to_string();
  ASSERT_TRUE(c->pipeline_next().ok());  // sync
  auto r3 = c->pipeline_next();
  ASSERT_TRUE(r3.ok()) << r3.status().to_string();
  EXPECT_EQ(r3->int4(0, 0), 3);
  ASSERT_TRUE(c->pipeline_next().ok());
  EXPECT_EQ(c->pipeline_next().status().code(), ErrorCode::kInvalidArgument);  // nothing pending
  ASSERT_TRUE(c->pipeline_end().ok());
  auto n = c->exec("SELECT count(*) FROM t");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->bytes(0, 0), "2");
}

TEST(PgClient, ThePoolBoundsConnectionsAndReplacesBrokenOnes) {
  auto db = testing::fresh_pg_db();
  pg::Pool pool(db.admin, 2);
  {
    auto a = pool.acquire();
    auto b = pool.acquire();
    ASSERT_TRUE(a.ok() && b.ok());
    auto c = pool.acquire(std::chrono::milliseconds(50));
    EXPECT_EQ(c.status().code(), ErrorCode::kTimeout);
    // A connection the server ends is dropped when it comes back, and a new one takes its place.
    auto pid = (*a)->exec("SELECT pg_backend_pid()");
    ASSERT_TRUE(pid.ok());
    auto killer = connect_or_fail(db.admin);
    ASSERT_TRUE(killer->exec(fmt::format("SELECT pg_terminate_backend({})", pid->bytes(0, 0))).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE((*a)->exec("SELECT 1").ok());
    EXPECT_TRUE((*a)->broken());
  }
  for (int i = 0; i < 4; ++i) {
    auto l = pool.acquire();
    ASSERT_TRUE(l.ok());
    EXPECT_TRUE((*l)->exec("SELECT 1").ok()) << "attempt " << i;
  }
}

// A request that makes cairn.append fail as a whole (here: a trigger the test adds, failing inserts into one
// stream) is retried alone with the others of its group; only it fails.
TEST(PgClient, OneFailingRequestDoesNotFailItsGroup) {
  auto db = testing::fresh_pg_db();
  auto admin = connect_or_fail(db.admin);
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(admin->exec("CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                          "IF NEW.stream = 'poison-1' THEN RAISE EXCEPTION 'poisoned stream'; END IF; RETURN NEW; END $$; "
                          "CREATE TRIGGER poison BEFORE INSERT ON cairn.events FOR EACH ROW EXECUTE FUNCTION public.poison();")
                  .ok());
  testing::TempDir dir;
  auto s = testing::open_pg(db);
  ASSERT_NE(s, nullptr);
  // Hold the head row so that the appends below queue up and go as groups when it is released.
  ASSERT_TRUE(admin->exec("BEGIN; SELECT * FROM cairn.head FOR UPDATE;").ok());
  std::vector<std::thread> ts;
  std::atomic<int> ok{0}, poisoned{0};
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      auto r = s->append(one(t == 3 ? "poison-1" : fmt::format("fine-{}", t), ExpectedRevision::any(), {json_event("e", "{}")}));
      if (r.ok()) ++ok;
      else if (r.status().message().find("poisoned stream") != std::string::npos) ++poisoned;
      else ADD_FAILURE() << r.status().to_string();
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(admin->exec("COMMIT").ok());
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 7);
  EXPECT_EQ(poisoned.load(), 1);
  EXPECT_EQ(s->head_position(), 7u);
  EXPECT_GE(s->metrics().groups, 1u);
  auto v = s->verify_chain();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
}

}  // namespace
}  // namespace cairn
