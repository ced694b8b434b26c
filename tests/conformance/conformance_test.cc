// One suite, every backend: the Store API's semantics checked the same way on the embedded log and on
// PostgreSQL (a real server, a fresh database per test). A behaviour that must differ between backends is
// not tested here but documented in docs/scaling.md ("What differs").
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "cairn/ledger.h"
#include "cairn/projection.h"
#include "cairn/store.h"
#include "pg/pg_test_env.h"
#include "privacy/privacy_test_util.h"
#include "store/store_helpers.h"
#include "testing/sanitizers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgres") db_ = testing::fresh_pg_db();
    store_ = open();
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    if (store_) (void)store_->close();
  }

  Options options(const std::string& dir) {
    if (GetParam() == "postgres") {
      PostgresOptions p;
      p.connection = db_.app;
      return p;
    }
    EmbeddedOptions o;
    o.dir = dir;
    o.durability = Durability::kNone;
    o.segment_size = 8192;
    o.index_memtable_events = 64;
    return o;
  }
  Options options() { return options(dir_.path()); }
  std::unique_ptr<Store> open(Options o) {
    auto s = open_store(o);
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    return s.ok() ? std::move(*s) : nullptr;
  }
  std::unique_ptr<Store> open() { return open(options()); }
  // The store again, now with a personal-data key store (outside the data directory).
  std::unique_ptr<Store> reopen_with_keys() {
    (void)store_->close();
    store_.reset();
    auto o = options(dir_.sub("data"));
    common_options(o).key_store_dir = dir_.sub("keys");
    common_options(o).master_key = privacy_test::kMaster;
    return open(o);
  }
  std::unique_ptr<Store> reopen() {
    (void)store_->close();
    store_.reset();
    return open();
  }

  testing::TempDir dir_;
  testing::PgDb db_;
  std::unique_ptr<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::Values("embedded", "postgres"),
                         [](const auto& info) { return info.param; });

TEST_P(Conformance, DensePositionsAndRevisions) {
  Store& s = *store_;
  auto r1 = s.append(one("order-1", ExpectedRevision::no_stream(), {json_event("a", "{}"), json_event("b", "[1]")}));
  ASSERT_TRUE(r1.ok()) << r1.status().to_string();
  EXPECT_EQ(r1->streams[0].first_position, 0u);
  EXPECT_EQ(r1->streams[0].last_position, 1u);
  EXPECT_EQ(r1->streams[0].last_revision, 1u);
  auto r2 = s.append(one("order-2", ExpectedRevision::any(), {json_event("c", "3")}));
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->streams[0].first_position, 2u);
  EXPECT_EQ(r2->streams[0].first_revision, 0u);
  auto r3 = s.append(one("order-1", ExpectedRevision::exact(1), {json_event("d", "{\"x\":true}")}));
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->streams[0].first_position, 3u);
  EXPECT_EQ(r3->streams[0].first_revision, 2u);
  EXPECT_EQ(s.head_position(), 4u);
  auto page = s.read_stream("order-1", std::nullopt, Direction::kForward, 10);
  ASSERT_TRUE(page.ok()) << page.status().to_string();
  ASSERT_EQ(page->events.size(), 3u);
  EXPECT_EQ(page->events[0].type, "a");
  EXPECT_EQ(page->events[1].data, "[1]");
  EXPECT_EQ(page->events[2].position, 3u);
  EXPECT_EQ(page->events[2].revision, 2u);
  EXPECT_FALSE(page->next.has_value());
  EXPECT_EQ(page->events[0].id.bytes[6] >> 4, 7);  // generated ids are UUIDv7
  EXPECT_GE(page->events[2].recorded_ns, page->events[0].recorded_ns);
  // Survives a reopen.
  store_ = reopen();
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(store_->head_position(), 4u);
  auto ev = store_->read_position(3);
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->data, "{\"x\":true}");
}

// Store::append_async answers what append() would, on every backend (the embedded store without a waiting
// thread, PostgreSQL through the default), and a refused append changes nothing.
TEST_P(Conformance, AppendAsyncAnswersLikeAppend) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Result<AppendResult>> got;
  auto collect = [&](Result<AppendResult> r) {
    std::lock_guard g(mu);
    got.push_back(std::move(r));
    cv.notify_all();
  };
  store_->append_async(one("async-1", ExpectedRevision::no_stream(), {json_event("t", R"({"n":1})"), json_event("t", "[2]")}), collect);
  store_->append_multi_async({one("async-2", ExpectedRevision::any(), {json_event("t", "{}")}),
                              one("async-3", ExpectedRevision::any(), {json_event("t", "{}")})},
                             collect);
  {
    std::unique_lock g(mu);
    ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds(30), [&] { return got.size() == 2; }));
  }
  uint64_t events = 0;
  for (const auto& r : got) {
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    for (const auto& st : r->streams) events += st.last_position - st.first_position + 1;
  }
  EXPECT_EQ(events, 4u);
  std::optional<Status> refused;
  store_->append_async(one("async-1", ExpectedRevision::no_stream(), {json_event("t", "{}")}), [&](Result<AppendResult> r) {
    std::lock_guard g(mu);
    refused = r.status();
    cv.notify_all();
  });
  {
    std::unique_lock g(mu);
    ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds(30), [&] { return refused.has_value(); }));
  }
  EXPECT_EQ(refused->code(), ErrorCode::kWrongExpectedRevision);
  EXPECT_EQ(refused->actual_revision(), 1);
  EXPECT_EQ(store_->head_position(), 4u);
  auto page = store_->read_stream("async-1", std::nullopt, Direction::kForward, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->events.size(), 2u);
}

TEST_P(Conformance, ExpectedRevisionKindsAndActualRevisionInError) {
  Store& s = *store_;
  auto bad = s.append(one("s-1", ExpectedRevision::exists(), {json_event("a", "{}")}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kWrongExpectedRevision);
  EXPECT_EQ(bad.status().actual_revision(), -1);
  EXPECT_NE(bad.status().message().find("does not exist"), std::string::npos);
  bad = s.append(one("s-1", ExpectedRevision::exact(0), {json_event("a", "{}")}));
  ASSERT_FALSE(bad.ok());
  ASSERT_TRUE(s.append(one("s-1", ExpectedRevision::no_stream(), {json_event("a", "{}")})).ok());
  bad = s.append(one("s-1", ExpectedRevision::no_stream(), {json_event("a", "{}")}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().actual_revision(), 0);
  bad = s.append(one("s-1", ExpectedRevision::exact(5), {json_event("a", "{}")}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kWrongExpectedRevision);
  EXPECT_EQ(bad.status().actual_revision(), 0);
  EXPECT_NE(bad.status().message().find("expected revision 5"), std::string::npos);
  ASSERT_TRUE(s.append(one("s-1", ExpectedRevision::exists(), {json_event("a", "{}")})).ok());
  ASSERT_TRUE(s.append(one("s-1", ExpectedRevision::exact(1), {json_event("a", "{}")})).ok());
  EXPECT_EQ(s.head_position(), 3u);  // the failures wrote nothing
}

TEST_P(Conformance, MultiStreamAppendIsAllOrNothing) {
  Store& s = *store_;
  ASSERT_TRUE(s.append(one("b-1", ExpectedRevision::no_stream(), {json_event("x", "{}")})).ok());
  std::vector<StreamAppend> req;
  req.push_back(one("a-1", ExpectedRevision::no_stream(), {json_event("x", "{}"), json_event("y", "{}")}));
  req.push_back(one("b-1", ExpectedRevision::exact(7), {json_event("z", "{}")}));
  auto r = s.append_multi(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kWrongExpectedRevision);
  EXPECT_NE(r.status().message().find("appends[1]"), std::string::npos) << r.status().message();
  EXPECT_EQ(s.head_position(), 1u);
  EXPECT_EQ(s.stream_info("a-1").status().code(), ErrorCode::kNotFound);
  req[1].expected = ExpectedRevision::exact(0);
  r = s.append_multi(req);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->streams.size(), 2u);
  EXPECT_EQ(r->streams[0].first_position, 1u);
  EXPECT_EQ(r->streams[1].first_position, 3u);
  EXPECT_EQ(r->streams[1].first_revision, 1u);
  auto all = s.read_all(std::nullopt, Direction::kForward, 10, Filter{});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->events.size(), 4u);
  EXPECT_EQ(all->events[1].commit_position, 1u);
  EXPECT_EQ(all->events[3].commit_position, 1u);
  std::vector<StreamAppend> twice;
  twice.push_back(one("c-1", ExpectedRevision::no_stream(), {json_event("x", "{}")}));
  twice.push_back(one("c-1", ExpectedRevision::exact(0), {json_event("y", "{}")}));
  auto t = s.append_multi(twice);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->streams[1].first_revision, 1u);
}

TEST_P(Conformance, IdempotentRetriesAndDuplicateIds) {
  Store& s = *store_;
  auto id1 = Uuid::generate_v7(), id2 = Uuid::generate_v7();
  auto e1 = json_event("t", R"({"n":1})"), e2 = json_event("t", R"({"n":2})");
  e1.id = id1;
  e2.id = id2;
  ASSERT_TRUE(s.append(one("x-0", ExpectedRevision::any(), {json_event("pad", "{}")})).ok());
  auto first = s.append(one("x-1", ExpectedRevision::no_stream(), {e1, e2}));
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_FALSE(first->replayed);
  auto again = s.append(one("x-1", ExpectedRevision::no_stream(), {e1, e2}));
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->streams[0].first_position, first->streams[0].first_position);
  EXPECT_EQ(again->streams[0].last_revision, 1u);
  EXPECT_EQ(s.head_position(), 3u);
  // Different content under the same id, a part of the original, or another stream: refused, nothing written.
  auto changed = e2;
  changed.data = R"({"n":3})";
  auto r = s.append(one("x-1", ExpectedRevision::no_stream(), {e1, changed}));
  EXPECT_EQ(r.status().code(), ErrorCode::kDuplicateEventId) << r.status().to_string();
  r = s.append(one("x-1", ExpectedRevision::any(), {e1}));
  EXPECT_EQ(r.status().code(), ErrorCode::kDuplicateEventId) << r.status().to_string();
  r = s.append(one("x-2", ExpectedRevision::any(), {e1, e2}));
  EXPECT_EQ(r.status().code(), ErrorCode::kDuplicateEventId) << r.status().to_string();
  auto fresh = json_event("t", "{}");
  fresh.id = Uuid::generate_v7();
  r = s.append(one("x-1", ExpectedRevision::any(), {e1, e2, fresh}));
  EXPECT_EQ(r.status().code(), ErrorCode::kDuplicateEventId) << r.status().to_string();
  EXPECT_EQ(s.head_position(), 3u);
  // The same id twice in one append is bad input.
  r = s.append(one("x-3", ExpectedRevision::any(), {fresh, fresh}));
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  auto found = s.read_event(id2);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->revision, 1u);
  EXPECT_EQ(s.read_event(Uuid::generate_v7()).status().code(), ErrorCode::kNotFound);
}

TEST_P(Conformance, BadInputIsRefusedAndChangesNothing) {
  Store& s = *store_;
  EXPECT_EQ(s.append(one("", ExpectedRevision::any(), {json_event("a", "{}")})).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.append(one("$system", ExpectedRevision::any(), {json_event("a", "{}")})).status().code(),
            ErrorCode::kInvalidArgument);
  auto r = s.append(one("ok-1", ExpectedRevision::any(), {json_event("a", "{}"), json_event("b", "{not json")}));
  ASSERT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("events[1].data"), std::string::npos) << r.status().message();
  EXPECT_EQ(s.append(one("ok-1", ExpectedRevision::any(), {})).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.head_position(), 0u);
  EXPECT_EQ(s.stream_info("ok-1").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(s.read_stream("ok-1", std::nullopt, Direction::kForward, 10).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(s.read_all(std::nullopt, Direction::kForward, 0, Filter{}).status().code(), ErrorCode::kInvalidArgument);
}

TEST_P(Conformance, ReadsPageBothWaysWithFilters) {
  Store& s = *store_;
  for (int i = 0; i < 30; ++i) {
    const std::string stream = (i % 3 == 0 ? "order-" : i % 3 == 1 ? "customer-" : "orderline-") + std::to_string(i % 4);
    ASSERT_TRUE(s.append(one(stream, ExpectedRevision::any(),
                             {json_event(i % 2 ? "audit.noted" : "order.placed", fmt::format(R"({{"i":{}}})", i))}))
                    .ok());
  }
  // Forward pages cover everything once, in order.
  std::vector<uint64_t> seen;
  std::optional<uint64_t> from = 0;
  while (from) {
    auto p = s.read_all(from, Direction::kForward, 7, Filter{});
    ASSERT_TRUE(p.ok());
    for (auto& e : p->events) seen.push_back(e.position);
    from = p->next;
  }
  ASSERT_EQ(seen.size(), 30u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i);
  // Backward from the end.
  auto back = s.read_all(std::nullopt, Direction::kBackward, 5, Filter{});
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->events.size(), 5u);
  EXPECT_EQ(back->events[0].position, 29u);
  EXPECT_EQ(back->events[4].position, 25u);
  ASSERT_TRUE(back->next.has_value());
  EXPECT_EQ(*back->next, 24u);
  // Filters.
  const auto count = [&](const Filter& f) {
    size_t n = 0;
    EXPECT_TRUE(s.scan_all(0, f, [&](const EventView& v) {
                   EXPECT_TRUE(f.matches(v.stream, v.type));
                   ++n;
                   return true;
                 }).ok());
    auto p = s.read_all(0, Direction::kForward, 100, f);
    EXPECT_TRUE(p.ok());
    if (p.ok()) {
      EXPECT_EQ(p->events.size(), n);
    }
    return n;
  };
  Filter types;
  types.types = {"audit.noted"};
  EXPECT_EQ(count(types), 15u);
  Filter tp;
  tp.type_prefix = "order.";
  EXPECT_EQ(count(tp), 15u);
  Filter sp;
  sp.stream_prefix = "order";
  EXPECT_EQ(count(sp), 20u);
  Filter cat;
  cat.category = "order";
  EXPECT_EQ(count(cat), 10u);
  Filter both = cat;
  both.types = {"order.placed"};
  EXPECT_EQ(count(both), 5u);
  // A stream, both ways, paged by revision.
  auto fwd = s.read_stream("order-0", 0, Direction::kForward, 2);  // revisions 0..2: i = 0, 12, 24
  ASSERT_TRUE(fwd.ok());
  ASSERT_EQ(fwd->events.size(), 2u);
  EXPECT_EQ(fwd->events[1].revision, 1u);
  ASSERT_TRUE(fwd->next.has_value());
  EXPECT_EQ(*fwd->next, 2u);
  auto rest = s.read_stream("order-0", *fwd->next, Direction::kForward, 2);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->events.size(), 1u);
  EXPECT_EQ(rest->events[0].data, R"({"i":24})");
  EXPECT_FALSE(rest->next.has_value());
  auto bwd = s.read_stream("order-0", std::nullopt, Direction::kBackward, 100);
  ASSERT_TRUE(bwd.ok());
  ASSERT_FALSE(bwd->events.empty());
  EXPECT_EQ(bwd->events.front().revision + 1, bwd->events.size());
  EXPECT_FALSE(bwd->next.has_value());
  // Scans stop when the visitor says so.
  size_t visited = 0;
  ASSERT_TRUE(s.scan_all(10, Filter{}, [&](const EventView& v) {
                 EXPECT_EQ(v.position, 10 + visited);
                 return ++visited < 3;
               }).ok());
  EXPECT_EQ(visited, 3u);
}

TEST_P(Conformance, StreamInfoAndCatalog) {
  Store& s = *store_;
  for (int i = 0; i < 12; ++i)
    ASSERT_TRUE(s.append(one(fmt::format("{}-{}", i % 2 ? "a" : "b", i), ExpectedRevision::any(),
                             {json_event("t", "{}"), json_event("t", "{}")}))
                    .ok());
  auto info = s.stream_info("a-3");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->last_revision, 1u);
  EXPECT_EQ(info->first_position, 6u);
  EXPECT_EQ(info->last_position, 7u);
  std::set<std::string> names;
  std::optional<std::string> after;
  do {
    auto page = s.list_streams(after, 5, "");
    ASSERT_TRUE(page.ok());
    for (auto& st : page->streams) EXPECT_TRUE(names.insert(st.stream).second) << st.stream;
    after = page->next;
  } while (after);
  EXPECT_EQ(names.size(), 12u);
  auto only_a = s.list_streams(std::nullopt, 100, "a-");
  ASSERT_TRUE(only_a.ok());
  EXPECT_EQ(only_a->streams.size(), 6u);
}

TEST_P(Conformance, SubscriptionsCatchUpThenFollowLive) {
  Store& s = *store_;
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(s.append(one(fmt::format("sub-{}", i % 5), ExpectedRevision::any(), {json_event(i % 2 ? "odd" : "even", "{}")})).ok());
  auto all = s.subscribe_all(10, Filter{});
  ASSERT_TRUE(all.ok());
  Filter odd;
  odd.types = {"odd"};
  auto filtered = s.subscribe_all(0, odd);
  ASSERT_TRUE(filtered.ok());
  auto stream = s.subscribe_stream("sub-2", 3);
  ASSERT_TRUE(stream.ok());
  std::thread writer([&] {
    for (int i = 50; i < 120; ++i)
      EXPECT_TRUE(s.append(one(fmt::format("sub-{}", i % 5), ExpectedRevision::any(), {json_event(i % 2 ? "odd" : "even", "{}")})).ok());
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<uint64_t> got, got_odd, got_rev;
  while ((got.size() < 110 || got_odd.size() < 60 || got_rev.size() < 21) && std::chrono::steady_clock::now() < deadline) {
    if (got.size() < 110) {
      auto b = (*all)->next(17, std::chrono::milliseconds(50));
      ASSERT_TRUE(b.ok()) << b.status().to_string();
      for (auto& e : *b) got.push_back(e.position);
    }
    if (got_odd.size() < 60) {
      auto b = (*filtered)->next(100, std::chrono::milliseconds(10));
      ASSERT_TRUE(b.ok());
      for (auto& e : *b) {
        EXPECT_EQ(e.type, "odd");
        got_odd.push_back(e.position);
      }
    }
    if (got_rev.size() < 21) {
      auto b = (*stream)->next(100, std::chrono::milliseconds(10));
      ASSERT_TRUE(b.ok());
      for (auto& e : *b) {
        EXPECT_EQ(e.stream, "sub-2");
        got_rev.push_back(e.revision);
      }
    }
  }
  writer.join();
  ASSERT_EQ(got.size(), 110u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], 10 + i);  // every event once, in order
  ASSERT_EQ(got_odd.size(), 60u);
  for (size_t i = 0; i < got_odd.size(); ++i) EXPECT_EQ(got_odd[i], 2 * i + 1);
  ASSERT_EQ(got_rev.size(), 21u);
  for (size_t i = 0; i < got_rev.size(); ++i) EXPECT_EQ(got_rev[i], 3 + i);
  EXPECT_EQ((*all)->cursor(), 120u);
  // Nothing more: an empty batch after the timeout; cancel ends it.
  auto none = (*all)->next(10, std::chrono::milliseconds(20));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  (*all)->cancel();
  EXPECT_EQ((*all)->next(10, std::chrono::milliseconds(20)).status().code(), ErrorCode::kClosed);
}

// Concurrent writers with expected revisions on shared streams: every success extends the stream by exactly
// one revision, and nothing is lost or duplicated.
TEST_P(Conformance, ConcurrentOptimisticWritersNeverLoseAnUpdate) {
  Store& s = *store_;
  constexpr int kThreads = 6, kPerThread = 25, kStreams = 2;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> ts;
  std::mutex mu;
  std::map<std::string, std::set<uint64_t>> won;  // stream -> revisions won
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string stream = fmt::format("counter-{}", (t + i) % kStreams);
        for (;;) {
          auto info = s.stream_info(stream);
          ExpectedRevision exp = info.ok() ? ExpectedRevision::exact(info->last_revision) : ExpectedRevision::no_stream();
          auto r = s.append(one(stream, exp, {json_event("inc", fmt::format(R"({{"t":{},"i":{}}})", t, i))}));
          if (r.ok()) {
            std::lock_guard g(mu);
            EXPECT_TRUE(won[stream].insert(r->streams[0].first_revision).second);
            break;
          }
          ASSERT_EQ(r.status().code(), ErrorCode::kWrongExpectedRevision) << r.status().to_string();
          ++conflicts;
        }
      }
    });
  for (auto& t : ts) t.join();
  uint64_t total = 0;
  for (auto& [stream, revs] : won) {
    auto info = s.stream_info(stream);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->last_revision + 1, revs.size());
    EXPECT_EQ(*revs.rbegin(), info->last_revision);
    total += revs.size();
  }
  EXPECT_EQ(total, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(s.head_position(), total);
}

TEST_P(Conformance, ProjectionsRunOnTheStore) {
  Store& s = *store_;
  for (int i = 0; i < 40; ++i)
    ASSERT_TRUE(s.append(one(fmt::format("acct-{}", i % 4), ExpectedRevision::any(), {json_event("deposit", fmt::format(R"({{"x":{}}})", i))})).ok());
  ProjectionsOptions po;
  po.dir = dir_.sub("projections");
  auto p = open_projections(s, po);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ProjectionDefinition d;
  d.name = "totals";
  d.lua = R"(return {
    init = function() return {n = 0, sum = 0} end,
    reduce = function(s, e) s.n = s.n + 1 s.sum = s.sum + e.data.x end})";
  auto st = (*p)->define(d);
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  const auto wait = std::chrono::milliseconds(testing::kThreadSanitized ? 120000 : 20000);
  auto state = (*p)->state("totals", std::nullopt, 0, s.head_position() - 1, wait);
  ASSERT_TRUE(state.ok()) << state.status().to_string();
  EXPECT_EQ(state->json, R"({"n":40,"sum":780})");
  ASSERT_TRUE(s.append(one("acct-9", ExpectedRevision::any(), {json_event("deposit", R"({"x":1000})")})).ok());
  state = (*p)->state("totals", std::nullopt, 0, s.head_position() - 1, wait);
  ASSERT_TRUE(state.ok()) << state.status().to_string();
  EXPECT_EQ(state->json, R"({"n":41,"sum":1780})");
  (void)(*p)->close();
}

// What `cairn export` and `cairn import` rest on: each commit of a store, in its stored form, imported as one
// commit reproduces positions, revisions, ids, times and payloads, and the result verifies.
TEST_P(Conformance, ImportReproducesAnExportedHistory) {
  EmbeddedOptions so;
  so.dir = dir_.sub("source");
  so.durability = Durability::kNone;
  auto src = open(so);
  ASSERT_NE(src, nullptr);
  ASSERT_TRUE(src->append(one("a-1", ExpectedRevision::no_stream(), {json_event("t", R"({"n":1})"), json_event("t", "[2]")})).ok());
  std::vector<StreamAppend> multi;
  multi.push_back(one("b-1", ExpectedRevision::any(), {json_event("u", "{}")}));
  multi.push_back(one("a-1", ExpectedRevision::exact(1), {json_event("v", R"("x")", R"({"correlation_id":"c-1"})")}));
  ASSERT_TRUE(src->append_multi(multi).ok());
  EventData bin;
  bin.type = "blob";
  bin.content_type = ContentType::kBinary;
  bin.data = std::string("\0\1\xff", 3);
  ASSERT_TRUE(src->append(one("c-1", ExpectedRevision::any(), {bin})).ok());
  std::vector<std::vector<ImportEvent>> commits;
  std::vector<RecordedEvent> originals;
  uint64_t last_commit = UINT64_MAX;
  ASSERT_TRUE(src->scan_stored(0, Filter{}, [&](const StoredEventView& v) {
                   if (v.commit_position != last_commit) commits.emplace_back();
                   last_commit = v.commit_position;
                   commits.back().push_back(privacy_test::import_event_of(v));
                   originals.push_back(v.to_owned());
                   return true;
                 }).ok());
  ASSERT_EQ(commits.size(), 3u);
  Store& s = *store_;
  for (auto& c : commits) {
    auto first = s.import_commit(c);
    ASSERT_TRUE(first.ok()) << first.status().to_string();
  }
  // Again: the ids exist. A revision that skips one: refused. Nothing changes.
  // (Both refusals are right for a commit imported twice; the backends check in different orders.)
  auto again = s.import_commit(commits[0]);
  EXPECT_TRUE(again.status().code() == ErrorCode::kDuplicateEventId ||
              again.status().code() == ErrorCode::kWrongExpectedRevision) << again.status().to_string();
  auto fresh_ids = commits[2];
  fresh_ids[0].id = originals[0].id;
  fresh_ids[0].revision = 1;
  auto dup = s.import_commit(fresh_ids);
  EXPECT_EQ(dup.status().code(), ErrorCode::kDuplicateEventId) << dup.status().to_string();
  auto gap = commits[2];
  gap[0].id = Uuid::generate_v7();
  gap[0].revision = 5;
  auto refused = s.import_commit(gap);
  EXPECT_EQ(refused.status().code(), ErrorCode::kWrongExpectedRevision) << refused.status().to_string();
  EXPECT_NE(refused.status().message().find("does not continue the stream"), std::string::npos) << refused.status().message();
  EXPECT_EQ(s.head_position(), originals.size());
  for (const auto& o : originals) {
    auto e = s.read_position(o.position);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    EXPECT_EQ(e->id, o.id);
    EXPECT_EQ(e->stream, o.stream);
    EXPECT_EQ(e->revision, o.revision);
    EXPECT_EQ(e->commit_position, o.commit_position);
    EXPECT_EQ(e->recorded_ns, o.recorded_ns);
    EXPECT_EQ(e->data, o.data);
    EXPECT_EQ(e->metadata, o.metadata);
    EXPECT_EQ(e->content_type, o.content_type);
  }
  auto v = s.verify_chain();
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_TRUE(v->ok) << v->problem;
  // Appends continue the imported streams.
  auto next = s.append(one("a-1", ExpectedRevision::exact(2), {json_event("w", "{}")}));
  ASSERT_TRUE(next.ok()) << next.status().to_string();
  EXPECT_EQ(next->streams[0].first_position, originals.size());
  (void)src->close();
}

TEST_P(Conformance, TheAiLedgerRulesAndQueriesWork) {
  Store& s = *store_;
  const std::string proposal = R"({"proposal_id":"p-1","proposal_kind":"draft","skill":"reply","gen_ai.request.model":"m",)"
                               R"("gen_ai.response.model":"m-1","app.prompt.template_id":"t","app.prompt.template_version":"2",)"
                               R"("input":"q","proposed_value":"a b c"})";
  auto p = s.append(one("conv-1", ExpectedRevision::any(), {json_event("ai.proposal.made", proposal)}));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  // A decision on a proposal that was never made, and a second decision: refused by the ledger's rules.
  auto bad = s.append(one("conv-1", ExpectedRevision::any(),
                          {json_event("human.decision.recorded", R"({"proposal_id":"p-404","outcome":"accepted"})")}));
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidEvent) << bad.status().to_string();
  auto d = json_event("human.decision.recorded", R"({"proposal_id":"p-1","outcome":"edited","final_value":"a x c"})");
  d.id = Uuid::generate_v7();
  auto ok = s.append(one("conv-1", ExpectedRevision::any(), {d}));
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  auto twice = s.append(one("conv-1", ExpectedRevision::any(),
                            {json_event("human.decision.recorded", R"({"proposal_id":"p-1","outcome":"rejected"})")}));
  EXPECT_EQ(twice.status().code(), ErrorCode::kInvalidEvent) << twice.status().to_string();
  // The rules hold across a reopen (the reference index is rebuilt from the log).
  store_ = reopen();
  ASSERT_NE(store_, nullptr);
  twice = store_->append(one("conv-1", ExpectedRevision::any(),
                             {json_event("human.decision.recorded", R"({"proposal_id":"p-1","outcome":"rejected"})")}));
  EXPECT_EQ(twice.status().code(), ErrorCode::kInvalidEvent) << twice.status().to_string();
  ProjectionsOptions po;
  po.dir = dir_.sub("projections");
  auto proj = open_projections(*store_, po);
  ASSERT_TRUE(proj.ok()) << proj.status().to_string();
  LedgerOptions lo;
  lo.wait = std::chrono::milliseconds(testing::kThreadSanitized ? 120000 : 20000);
  auto why = ledger_why(*store_, **proj, *d.id, lo);
  ASSERT_TRUE(why.ok()) << why.status().to_string();
  EXPECT_NE(why->find("p-1"), std::string::npos) << *why;
  (void)(*proj)->close();
}

TEST_P(Conformance, PersonalDataIsSealedForgottenAndPurged) {
  store_ = reopen_with_keys();
  ASSERT_NE(store_, nullptr);
  Store& s = *store_;
  const std::string meta = R"({"privacy":{"subject":"alice@example.com","personal":["/email"]}})";
  const std::string meta_b = R"({"privacy":{"subject":"bob@example.com","personal":["/email"]}})";
  ASSERT_TRUE(s.append(one("cust-1", ExpectedRevision::any(), {json_event("customer.registered", R"({"email":"alice-secret-123@example.com","plan":"pro"})", meta)})).ok());
  ASSERT_TRUE(s.append(one("cust-2", ExpectedRevision::any(), {json_event("customer.registered", R"({"email":"bob-secret-456@example.com","plan":"free"})", meta_b)})).ok());
  auto read = s.read_position(0);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_NE(read->data.find("alice-secret-123"), std::string::npos);
  // Stored sealed: the stored form never holds the value in clear.
  ASSERT_TRUE(s.scan_stored(0, Filter{}, [&](const StoredEventView& v) {
                 EXPECT_EQ(std::string(v.data).find("secret-"), std::string::npos) << v.data;
                 return true;
               }).ok());
  auto f = s.forget("alice@example.com", "erasure request", R"({"kind":"human","id":"dpo"})");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->affected_events, 1u);
  read = s.read_position(0);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->data.find("alice-secret-123"), std::string::npos);
  EXPECT_NE(read->data.find("$cairn.redacted"), std::string::npos) << read->data;
  auto before = s.verify_chain();
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  ASSERT_TRUE(before->ok) << before->problem;
  auto p = s.purge(R"({"kind":"human","id":"dpo"})", {});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->parts, 1u);
  EXPECT_EQ(p->chain_head_before, p->chain_head_after);
  ASSERT_TRUE(p->position.has_value());
  auto rec = s.read_position(*p->position);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->type, "privacy.purge.completed");
  auto after = s.verify_chain();
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  EXPECT_TRUE(after->ok) << after->problem;
  // Bob's part still opens; a second purge finds nothing.
  auto bob = s.read_position(1);
  ASSERT_TRUE(bob.ok());
  EXPECT_NE(bob->data.find("bob-secret-456"), std::string::npos);
  auto again = s.purge("", {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->parts, 0u);
}

TEST_P(Conformance, APurgeTakesOnlyForgottenSubjectsPartsOfAnEventAndTheRestLater) {
  store_ = reopen_with_keys();
  ASSERT_NE(store_, nullptr);
  Store& s = *store_;
  const std::string meta =
      R"({"privacy":{"parts":[{"subject":"alice","pointer":"/a"},{"subject":"bob","pointer":"/b"}]}})";
  ASSERT_TRUE(s.append(one("pair-1", ExpectedRevision::any(),
                           {json_event("pair.noted", R"({"a":"alice-value-1","b":"bob-value-2","x":1})", meta)}))
                  .ok());
  ASSERT_TRUE(s.forget("alice", "request", "").ok());
  auto p = s.purge("", {});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->parts, 1u);
  auto e = s.read_position(0);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_EQ(e->data.find("alice-value-1"), std::string::npos);
  EXPECT_NE(e->data.find("bob-value-2"), std::string::npos) << e->data;
  EXPECT_NE(e->data.find("\"x\":1"), std::string::npos) << e->data;
  ASSERT_TRUE(s.forget("bob", "request", "").ok());
  p = s.purge("", {});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->parts, 1u);
  e = s.read_position(0);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->data.find("bob-value-2"), std::string::npos) << e->data;
  auto v = s.verify_chain();
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_TRUE(v->ok) << v->problem;
}

}  // namespace
}  // namespace cairn
