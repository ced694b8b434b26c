// Subscriptions: catch-up then live with no seam, filters, stream subscriptions, cancellation, close;
// no gaps, no duplicates, order kept, under concurrent appenders.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cairn/store.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using namespace std::chrono_literals;
using testing::json_event;
using testing::one;

TEST(Subscription, CatchUpThenLiveWithoutGapsOrDuplicates) {
  testing::TempDir dir;
  auto s = *open_store(testing::small_options(dir.path()));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(s->append(one("pre-" + std::to_string(i % 5), ExpectedRevision::any(), {json_event("t", "{}")})).ok());
  auto sub = *s->subscribe_all(0, Filter{});
  constexpr int kWriters = 4, kPer = 150;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPer; ++i)
        ASSERT_TRUE(s->append(one("live-" + std::to_string(w), ExpectedRevision::any(), {json_event("t", "{}"), json_event("u", "{}")})).ok());
    });
  const uint64_t total = 100 + kWriters * kPer * 2;
  uint64_t expect = 0;
  while (expect < total) {
    auto batch = sub->next(64, 5000ms);
    ASSERT_TRUE(batch.ok()) << batch.status().to_string();
    ASSERT_FALSE(batch->empty()) << "stalled at " << expect;
    for (const auto& e : *batch) {
      ASSERT_EQ(e.position, expect);  // in order, no gap, no duplicate
      ++expect;
    }
    // Never past the durable end.
    EXPECT_LE(expect, s->head_position());
  }
  for (auto& t : writers) t.join();
  auto none = sub->next(10, 50ms);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(sub->cursor(), total);
}

TEST(Subscription, FiltersAndStreamSubscriptions) {
  testing::TempDir dir;
  auto s = *open_store(testing::small_options(dir.path()));
  auto by_type = *s->subscribe_all(0, Filter{{}, "test.proposal", "", ""});
  auto by_stream = *s->subscribe_stream("conv-7", 2);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(s->append(one("conv-" + std::to_string(i % 10), ExpectedRevision::any(),
                              {json_event(i % 2 ? "test.proposal.made" : "test.decision.recorded", std::to_string(i))}))
                    .ok());
  }
  std::vector<RecordedEvent> got;
  while (got.size() < 15) {
    auto b = by_type->next(4, 2000ms);
    ASSERT_TRUE(b.ok());
    ASSERT_FALSE(b->empty());
    got.insert(got.end(), b->begin(), b->end());
  }
  for (const auto& e : got) EXPECT_EQ(e.type, "test.proposal.made");
  EXPECT_EQ(got.size(), 15u);
  auto b = by_stream->next(100, 2000ms);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 1u);  // conv-7 has revisions 0..2; the subscription started at 2
  EXPECT_EQ((*b)[0].revision, 2u);
  EXPECT_EQ((*b)[0].data, "27");
  // Live: the next event of the stream arrives.
  std::thread later([&] {
    std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(s->append(one("conv-7", ExpectedRevision::exact(2), {json_event("t", "\"late\"")})).ok());
  });
  b = by_stream->next(100, 5000ms);
  later.join();
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].data, "\"late\"");
  EXPECT_EQ(by_stream->cursor(), 4u);
}

TEST(Subscription, CancelAndCloseWakeAWaiter) {
  testing::TempDir dir;
  auto s = *open_store(testing::small_options(dir.path()));
  auto sub = *s->subscribe_all(0, Filter{});
  std::thread canceller([&] {
    std::this_thread::sleep_for(30ms);
    sub->cancel();
  });
  auto r = sub->next(10, 10000ms);
  canceller.join();
  EXPECT_EQ(r.status().code(), ErrorCode::kClosed);
  auto sub2 = *s->subscribe_all(0, Filter{});
  std::thread closer([&] {
    std::this_thread::sleep_for(30ms);
    ASSERT_TRUE(s->close().ok());
  });
  auto r2 = sub2->next(10, 10000ms);
  closer.join();
  EXPECT_EQ(r2.status().code(), ErrorCode::kClosed);
  EXPECT_EQ(s->append(one("x-1", ExpectedRevision::any(), {json_event("t", "{}")})).status().code(), ErrorCode::kClosed);
}

TEST(Subscription, SlowSubscriberDoesNotBlockWriters) {
  testing::TempDir dir;
  auto s = *open_store(testing::small_options(dir.path()));
  auto sub = *s->subscribe_all(0, Filter{});  // never read while 2,000 appends go through
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(s->append(one("fast-1", ExpectedRevision::any(), {json_event("t", "{}")})).ok());
  uint64_t n = 0;
  while (n < 2000) {
    auto b = sub->next(500, 1000ms);
    ASSERT_TRUE(b.ok());
    ASSERT_FALSE(b->empty());
    for (const auto& e : *b) ASSERT_EQ(e.position, n++);
  }
}

}  // namespace
}  // namespace cairn
