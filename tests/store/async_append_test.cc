// Store::append_async on the embedded store: the same answers as append(), each callback exactly once, an
// ok only once the events are durable (readable), errors through the callback, and nothing left unanswered
// by close().
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "cairn/store.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;
using testing::small_options;
using testing::TempDir;

std::unique_ptr<Store> open_ok(const Options& o) {
  auto s = open_store(o);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  return s.ok() ? std::move(*s) : nullptr;
}

// Collects callbacks; wait_for(n) returns once n have run.
class Answers {
 public:
  AppendCallback callback(size_t index) {
    return [this, index](Result<AppendResult> r) {
      std::lock_guard g(mu_);
      got_.emplace_back(index, std::move(r));
      cv_.notify_all();
    };
  }
  void wait_for(size_t n) {
    std::unique_lock g(mu_);
    ASSERT_TRUE(cv_.wait_for(g, std::chrono::seconds(60), [&] { return got_.size() >= n; }))
        << got_.size() << " of " << n << " answers";
  }
  std::vector<std::pair<size_t, Result<AppendResult>>> take() {
    std::lock_guard g(mu_);
    return std::move(got_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<size_t, Result<AppendResult>>> got_;
};

TEST(AsyncAppend, AnswersLikeAppendAndOnlyOnceDurable) {
  TempDir dir;
  EmbeddedOptions o = small_options(dir.path());
  o.durability = Durability::kFsync;
  auto s = open_ok(o);
  ASSERT_NE(s, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<AppendResult>> got;
  bool readable_in_callback = false;
  s->append_async(one("order-1", ExpectedRevision::no_stream(), {json_event("placed", R"({"n":1})"), json_event("paid", "{}")}),
                  [&](Result<AppendResult> r) {
                    // Durable and published before the answer: a read in the callback finds the events.
                    bool readable = r.ok() && s->head_position() >= r->streams[0].last_position + 1 &&
                                    s->read_position(r->streams[0].last_position).ok();
                    std::lock_guard g(mu);
                    readable_in_callback = readable;
                    got = std::move(r);
                    cv.notify_all();
                  });
  {
    std::unique_lock g(mu);
    ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds(30), [&] { return got.has_value(); }));
  }
  ASSERT_TRUE(got->ok()) << got->status().to_string();
  EXPECT_TRUE(readable_in_callback);
  const AppendResult& r = **got;
  ASSERT_EQ(r.streams.size(), 1u);
  EXPECT_EQ(r.streams[0].stream, "order-1");
  EXPECT_EQ(r.streams[0].first_position, 0u);
  EXPECT_EQ(r.streams[0].last_position, 1u);
  EXPECT_EQ(r.streams[0].last_revision, 1u);
  EXPECT_FALSE(r.replayed);
  auto page = s->read_stream("order-1", std::nullopt, Direction::kForward, 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->events[0].type, "placed");
}

TEST(AsyncAppend, RefusedInputIsAnsweredBeforeTheCallReturns) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  ASSERT_NE(s, nullptr);
  std::optional<Status> answered;
  s->append_async(one("$system", ExpectedRevision::any(), {json_event("t", "{}")}),
                  [&](Result<AppendResult> r) { answered = r.status(); });
  ASSERT_TRUE(answered.has_value());
  EXPECT_EQ(answered->code(), ErrorCode::kInvalidArgument);
  answered.reset();
  s->append_async(one("bad-json", ExpectedRevision::any(), {json_event("t", "{not json")}),
                  [&](Result<AppendResult> r) { answered = r.status(); });
  ASSERT_TRUE(answered.has_value());
  EXPECT_EQ(answered->code(), ErrorCode::kInvalidArgument);
  answered.reset();
  s->append_multi_async({}, [&](Result<AppendResult> r) { answered = r.status(); });
  ASSERT_TRUE(answered.has_value());
  EXPECT_EQ(answered->code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s->head_position(), 0u) << "refused input changes nothing";
}

TEST(AsyncAppend, AWrongExpectedRevisionComesThroughTheCallback) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->append(one("acct-1", ExpectedRevision::any(), {json_event("opened", "{}")})).ok());
  Answers answers;
  s->append_async(one("acct-1", ExpectedRevision::no_stream(), {json_event("opened", "{}")}), answers.callback(0));
  s->append_async(one("acct-1", ExpectedRevision::exact(0), {json_event("credited", "{}")}), answers.callback(1));
  answers.wait_for(2);
  auto got = answers.take();
  ASSERT_EQ(got.size(), 2u);
  for (auto& [i, r] : got) {
    if (i == 0) {
      EXPECT_EQ(r.status().code(), ErrorCode::kWrongExpectedRevision);
    } else {
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_EQ(r->streams[0].last_revision, 1u);
    }
  }
}

// Thousands in flight from one thread: every one answered once, positions dense and unique, and they
// shared group commits (far fewer groups than appends).
TEST(AsyncAppend, ThousandsInFlightFromOneThreadShareGroupCommits) {
  TempDir dir;
  EmbeddedOptions o = small_options(dir.path());
  o.durability = Durability::kFsync;
  o.segment_size = 1 << 20;
  auto s = open_ok(o);
  ASSERT_NE(s, nullptr);
  constexpr size_t kAppends = 5000;
  Answers answers;
  for (size_t i = 0; i < kAppends; ++i)
    s->append_async(one("s-" + std::to_string(i % 50), ExpectedRevision::any(), {json_event("t", R"({"i":1})")}),
                    answers.callback(i));
  answers.wait_for(kAppends);
  auto got = answers.take();
  ASSERT_EQ(got.size(), kAppends);
  std::set<size_t> indexes;
  std::set<uint64_t> positions;
  for (auto& [i, r] : got) {
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(indexes.insert(i).second) << "append " << i << " answered twice";
    EXPECT_TRUE(positions.insert(r->streams[0].first_position).second);
  }
  EXPECT_EQ(*positions.rbegin(), kAppends - 1) << "positions are dense";
  EXPECT_EQ(s->head_position(), kAppends);
  const StoreMetrics m = s->metrics();
  EXPECT_LT(m.groups, kAppends / 4) << "async appends are grouped into shared commits";
}

// The domain policies run on the asynchronous path too, with their reservations held until the outcome:
// of many decisions on one proposal in flight at once, exactly one is accepted.
TEST(AsyncAppend, PoliciesReserveUntilTheOutcome) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  ASSERT_NE(s, nullptr);
  const std::string proposal =
      R"({"proposal_id":"p-1","proposal_kind":"classification","skill":"triage","gen_ai.request.model":"m-1",)"
      R"("input":"ticket 7","proposed_value":"billing"})";
  ASSERT_TRUE(s->append(one("conv-1", ExpectedRevision::any(), {json_event("ai.proposal.made", proposal)})).ok());
  constexpr size_t kDecisions = 50;
  Answers answers;
  for (size_t i = 0; i < kDecisions; ++i)
    s->append_async(one("conv-1", ExpectedRevision::any(),
                        {json_event("human.decision.recorded", R"({"proposal_id":"p-1","outcome":"accepted","final_value":"billing"})",
                                    R"({"actor":{"kind":"human","id":"ann"}})")}),
                    answers.callback(i));
  answers.wait_for(kDecisions);
  size_t accepted = 0, conflicts = 0;
  for (auto& [i, r] : answers.take()) {
    if (r.ok()) ++accepted;
    else if (r.status().code() == ErrorCode::kInvalidEvent) ++conflicts;
    else ADD_FAILURE() << r.status().to_string();
  }
  EXPECT_EQ(accepted, 1u);
  EXPECT_EQ(conflicts, kDecisions - 1);
  // An unknown proposal is refused by the check, before anything is queued.
  std::optional<Status> refused;
  s->append_async(one("conv-1", ExpectedRevision::any(),
                      {json_event("human.decision.recorded", R"({"proposal_id":"p-404","outcome":"rejected"})",
                                  R"({"actor":{"kind":"human","id":"ann"}})")}),
                  [&](Result<AppendResult> r) { refused = r.status(); });
  ASSERT_TRUE(refused.has_value());
  EXPECT_FALSE(refused->ok());
  EXPECT_EQ(s->head_position(), 2u);
}

// A callback may queue the next append (a chain that never blocks a thread).
TEST(AsyncAppend, ACallbackMayAppendAgain) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  ASSERT_NE(s, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::function<void(int)> next = [&](int n) {
    s->append_async(one("chain-1", ExpectedRevision::exact(static_cast<uint64_t>(n) - 1), {json_event("t", "{}")}),
                    [&, n](Result<AppendResult> r) {
                      EXPECT_TRUE(r.ok()) << r.status().to_string();
                      if (r.ok() && n < 20) return next(n + 1);
                      std::lock_guard g(mu);
                      done = n;
                      cv.notify_all();
                    });
  };
  ASSERT_TRUE(s->append(one("chain-1", ExpectedRevision::no_stream(), {json_event("t", "{}")})).ok());
  next(1);
  std::unique_lock g(mu);
  ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds(30), [&] { return done != 0; }));
  EXPECT_EQ(done, 20);
  EXPECT_EQ(s->stream_info("chain-1")->last_revision, 20u);
}

// close() answers everything in flight before it returns, and later calls are answered kClosed at once.
TEST(AsyncAppend, CloseAnswersEverythingInFlight) {
  TempDir dir;
  EmbeddedOptions o = small_options(dir.path());
  o.durability = Durability::kFsync;
  auto s = open_ok(o);
  ASSERT_NE(s, nullptr);
  constexpr size_t kAppends = 2000;
  std::atomic<size_t> answered{0}, ok{0};
  std::vector<std::string> acked_ids;
  std::mutex mu;
  for (size_t i = 0; i < kAppends; ++i) {
    EventData e = json_event("t", "{}");
    e.id = Uuid::generate_v7();
    const std::string id = e.id->to_string();
    s->append_async(one("c-" + std::to_string(i % 10), ExpectedRevision::any(), {e}), [&, id](Result<AppendResult> r) {
      if (r.ok()) {
        std::lock_guard g(mu);
        acked_ids.push_back(id);
        ++ok;
      }
      ++answered;
    });
  }
  ASSERT_TRUE(s->close().ok());
  EXPECT_EQ(answered.load(), kAppends) << "close() returned with appends unanswered";
  std::optional<Status> after;
  s->append_async(one("c-0", ExpectedRevision::any(), {json_event("t", "{}")}),
                  [&](Result<AppendResult> r) { after = r.status(); });
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->code(), ErrorCode::kClosed);
  s.reset();
  // Every acknowledged append is there after a reopen.
  auto again = open_ok(o);
  ASSERT_NE(again, nullptr);
  EXPECT_GE(again->head_position(), ok.load());
  for (const auto& id : acked_ids) EXPECT_TRUE(again->read_event(*Uuid::parse(id)).ok()) << id;
}

}  // namespace
}  // namespace cairn
