// Property test: random interleavings of appends (expected revisions of every kind, multi-stream commits,
// idempotent retries), reads of every kind and restarts, checked step by step against a simple in-memory
// model of what an event store must do. Seeds are fixed (and printed) so failures reproduce.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

struct ModelEvent {
  uint64_t position;
  std::string stream;
  uint64_t revision;
  Uuid id;
  std::string type;
  std::string metadata;
  std::string data;
};

class Model {
 public:
  std::vector<ModelEvent> log;
  std::map<std::string, uint64_t> last;

  std::optional<uint64_t> revision(const std::string& s) const {
    auto it = last.find(s);
    return it == last.end() ? std::nullopt : std::optional<uint64_t>(it->second);
  }
  static bool expected_ok(const ExpectedRevision& e, std::optional<uint64_t> cur) {
    switch (e.kind) {
      case ExpectedRevision::Kind::kAny: return true;
      case ExpectedRevision::Kind::kNoStream: return !cur;
      case ExpectedRevision::Kind::kExists: return cur.has_value();
      case ExpectedRevision::Kind::kExact: return cur && *cur == e.revision;
    }
    return false;
  }
  // Applies a commit if every expected revision holds (in order, seeing earlier parts); true if applied.
  bool apply(const std::vector<StreamAppend>& req, const std::vector<std::vector<Uuid>>& ids) {
    std::map<std::string, std::optional<uint64_t>> local;
    for (const auto& a : req) {
      auto cur = local.count(a.stream) ? local[a.stream] : revision(a.stream);
      if (!expected_ok(a.expected, cur)) return false;
      local[a.stream] = (cur ? *cur + 1 : 0) + a.events.size() - 1;
    }
    for (size_t i = 0; i < req.size(); ++i) {
      const auto& a = req[i];
      auto cur = revision(a.stream);
      uint64_t rev = cur ? *cur + 1 : 0;
      for (size_t j = 0; j < a.events.size(); ++j) {
        const auto& e = a.events[j];
        log.push_back({log.size(), a.stream, rev, ids[i][j], e.type, e.metadata, e.data});
        last[a.stream] = rev++;
      }
    }
    return true;
  }
};

void expect_same(const RecordedEvent& got, const ModelEvent& want) {
  EXPECT_EQ(got.position, want.position);
  EXPECT_EQ(got.stream, want.stream);
  EXPECT_EQ(got.revision, want.revision);
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.type, want.type);
  EXPECT_EQ(got.metadata, want.metadata);
  EXPECT_EQ(got.data, want.data);
}

void run_model(uint32_t seed, int steps) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  testing::TempDir dir;
  auto opts = testing::small_options(dir.path());
  opts.index_memtable_events = 16 + static_cast<uint64_t>(pick(64));
  auto store = std::move(*open_store(opts));
  Model model;
  const std::vector<std::string> streams{"acct-1", "acct-2", "order-1", "order-2", "order-3", "user-9"};
  const std::vector<std::string> types{"test.proposal.made", "test.decision.recorded", "test.feedback.given"};
  struct Past {
    std::vector<StreamAppend> req;
    AppendResult result;
  };
  std::vector<Past> retryable;

  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const int op = pick(100);
    if (op < 45) {  // an append, one or several streams
      const int parts = pick(4) == 0 ? 2 + pick(2) : 1;
      std::vector<StreamAppend> req;
      bool all_ids = pick(2) == 0;
      for (int p = 0; p < parts; ++p) {
        StreamAppend a;
        a.stream = streams[static_cast<size_t>(pick(static_cast<int>(streams.size())))];
        auto cur = model.revision(a.stream);
        switch (pick(6)) {
          case 0: a.expected = ExpectedRevision::any(); break;
          case 1: a.expected = ExpectedRevision::no_stream(); break;
          case 2: a.expected = ExpectedRevision::exists(); break;
          case 3: a.expected = ExpectedRevision::exact(cur.value_or(0) + static_cast<uint64_t>(pick(3))); break;
          default: a.expected = cur ? ExpectedRevision::exact(*cur) : ExpectedRevision::no_stream(); break;
        }
        const int n = 1 + pick(3);
        for (int k = 0; k < n; ++k) {
          EventData e = testing::json_event(types[static_cast<size_t>(pick(3))],
                                            "{\"step\":" + std::to_string(step) + ",\"k\":" + std::to_string(k) + "}",
                                            pick(3) == 0 ? "{\"correlation_id\":\"c" + std::to_string(step) + "\"}" : "");
          if (all_ids) e.id = Uuid::generate_v7();
          a.events.push_back(std::move(e));
        }
        req.push_back(std::move(a));
      }
      auto r = parts == 1 ? store->append(req[0]) : store->append_multi(req);
      std::vector<std::vector<Uuid>> ids;
      const uint64_t head = model.log.size();
      if (r.ok()) {
        // Learn generated ids from the store, then check the model agreed it should succeed.
        for (const auto& sr : r->streams) {
          std::vector<Uuid> v;
          for (uint64_t p = sr.first_position; p <= sr.last_position; ++p) v.push_back(store->read_position(p)->id);
          ids.push_back(v);
        }
      } else {
        for (const auto& a : req) ids.emplace_back(a.events.size());
      }
      const bool model_ok = model.apply(req, ids);
      ASSERT_EQ(r.ok(), model_ok) << r.status().to_string();
      if (r.ok()) {
        EXPECT_FALSE(r->replayed);
        uint64_t pos = head;
        for (size_t i = 0; i < req.size(); ++i) {
          EXPECT_EQ(r->streams[i].first_position, pos);
          pos += req[i].events.size();
        }
        if (all_ids) retryable.push_back({req, *r});
      } else {
        EXPECT_EQ(r.status().code(), ErrorCode::kWrongExpectedRevision);
      }
    } else if (op < 55 && !retryable.empty()) {  // an idempotent retry of something already written
      const auto& past = retryable[static_cast<size_t>(pick(static_cast<int>(retryable.size())))];
      auto r = past.req.size() == 1 ? store->append(past.req[0]) : store->append_multi(past.req);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_TRUE(r->replayed);
      for (size_t i = 0; i < past.req.size(); ++i) {
        EXPECT_EQ(r->streams[i].first_position, past.result.streams[i].first_position);
        EXPECT_EQ(r->streams[i].last_revision, past.result.streams[i].last_revision);
      }
    } else if (op < 70) {  // read a stream
      const auto& s = streams[static_cast<size_t>(pick(static_cast<int>(streams.size())))];
      const bool fwd = pick(2) == 0;
      const size_t limit = 1 + static_cast<size_t>(pick(10));
      auto cur = model.revision(s);
      std::optional<uint64_t> from;
      if (pick(2) && cur) from = static_cast<uint64_t>(pick(static_cast<int>(*cur) + 3));
      auto page = store->read_stream(s, from, fwd ? Direction::kForward : Direction::kBackward, limit);
      if (!cur) {
        EXPECT_EQ(page.status().code(), ErrorCode::kNotFound);
        continue;
      }
      ASSERT_TRUE(page.ok()) << page.status().to_string();
      std::vector<const ModelEvent*> want;
      for (const auto& e : model.log)
        if (e.stream == s) want.push_back(&e);
      std::vector<const ModelEvent*> expect;
      if (fwd) {
        for (auto* e : want)
          if (e->revision >= from.value_or(0) && expect.size() < limit) expect.push_back(e);
      } else {
        for (auto it = want.rbegin(); it != want.rend(); ++it)
          if ((*it)->revision <= from.value_or(UINT64_MAX) && expect.size() < limit) expect.push_back(*it);
      }
      ASSERT_EQ(page->events.size(), expect.size());
      for (size_t i = 0; i < expect.size(); ++i) expect_same(page->events[i], *expect[i]);
    } else if (op < 85) {  // read $all, maybe filtered
      const bool fwd = pick(2) == 0;
      const size_t limit = 1 + static_cast<size_t>(pick(20));
      Filter f;
      if (pick(3) == 0) f.types = {types[static_cast<size_t>(pick(3))]};
      if (pick(4) == 0) f.category = "order";
      std::optional<uint64_t> from;
      if (pick(2) && !model.log.empty()) from = static_cast<uint64_t>(pick(static_cast<int>(model.log.size()) + 2));
      auto page = store->read_all(from, fwd ? Direction::kForward : Direction::kBackward, limit, f);
      ASSERT_TRUE(page.ok()) << page.status().to_string();
      std::vector<const ModelEvent*> expect;
      if (fwd) {
        for (const auto& e : model.log)
          if (e.position >= from.value_or(0) && f.matches(e.stream, e.type) && expect.size() < limit) expect.push_back(&e);
      } else {
        for (auto it = model.log.rbegin(); it != model.log.rend(); ++it)
          if (it->position <= from.value_or(UINT64_MAX) && f.matches(it->stream, it->type) && expect.size() < limit)
            expect.push_back(&*it);
      }
      ASSERT_EQ(page->events.size(), expect.size());
      for (size_t i = 0; i < expect.size(); ++i) expect_same(page->events[i], *expect[i]);
    } else if (op < 92 && !model.log.empty()) {  // point reads
      const auto& e = model.log[static_cast<size_t>(pick(static_cast<int>(model.log.size())))];
      auto byid = store->read_event(e.id);
      ASSERT_TRUE(byid.ok());
      expect_same(*byid, e);
      auto bypos = store->read_position(e.position);
      ASSERT_TRUE(bypos.ok());
      expect_same(*bypos, e);
    } else if (op < 95) {  // restart
      ASSERT_TRUE(store->close().ok());
      store.reset();
      store = std::move(*open_store(opts));
      ASSERT_EQ(store->head_position(), model.log.size());
    }
  }
  ASSERT_TRUE(store->close().ok());
  store.reset();
  auto v = verify_log(dir.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->events, model.log.size());
}

TEST(StoreModel, RandomInterleavingsMatchTheModel) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) run_model(seed, 1500);
}

}  // namespace
}  // namespace cairn
