// The store API end to end on the embedded backend: appends, expected revisions, atomic multi-stream
// commits, idempotent retries, reads, filters, paging, segments, reopen and reindex.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <thread>

#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;
using testing::small_options;
using testing::TempDir;

std::unique_ptr<Store> open_ok(const EmbeddedOptions& o) {
  auto s = open_store(o);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  return std::move(*s);
}

// Dense positions, expected revisions and atomic multi-stream appends are checked on every backend in
// tests/conformance/conformance_test.cc; this file keeps what is particular to the embedded log.

TEST(Store, IdempotentRetryReturnsOriginalResultAlsoAfterRestart) {
  TempDir dir;
  const Uuid id1 = *Uuid::parse("11111111-1111-4111-8111-111111111111");
  const Uuid id2 = *Uuid::parse("22222222-2222-4222-8222-222222222222");
  auto mk = [&](std::string d2) {
    EventData a = json_event("t", "{\"n\":1}");
    a.id = id1;
    EventData b = json_event("t", std::move(d2));
    b.id = id2;
    return one("retry-1", ExpectedRevision::no_stream(), {a, b});
  };
  AppendResult first;
  {
    auto s = open_ok(small_options(dir.path()));
    ASSERT_TRUE(s->append(one("other-1", ExpectedRevision::any(), {json_event("t", "{}")})).ok());
    auto r = s->append(mk("{\"n\":2}"));
    ASSERT_TRUE(r.ok());
    first = *r;
    auto again = s->append(mk("{\"n\":2}"));
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    EXPECT_TRUE(again->replayed);
    EXPECT_EQ(again->streams[0].first_position, first.streams[0].first_position);
    EXPECT_EQ(again->streams[0].last_revision, first.streams[0].last_revision);
    EXPECT_EQ(s->head_position(), 3u);
    ASSERT_TRUE(s->close().ok());
  }
  auto s = open_ok(small_options(dir.path()));
  auto again = s->append(mk("{\"n\":2}"));
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->streams[0].first_position, first.streams[0].first_position);
  EXPECT_EQ(s->head_position(), 3u);
  // Same id, different content: an error naming the id, nothing written.
  auto diff = s->append(mk("{\"n\":3}"));
  ASSERT_FALSE(diff.ok());
  EXPECT_EQ(diff.status().code(), ErrorCode::kDuplicateEventId);
  EXPECT_NE(diff.status().message().find(id2.to_string()), std::string::npos) << diff.status().message();
  // Same id in another stream: an error.
  EventData e = json_event("t", "{\"n\":1}");
  e.id = id1;
  auto other = s->append(one("retry-2", ExpectedRevision::any(), {e}));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), ErrorCode::kDuplicateEventId);
  // A retry with an expected revision that cannot have produced the original: an error.
  auto wrong = mk("{\"n\":2}");
  wrong.expected = ExpectedRevision::exact(4);
  EXPECT_EQ(s->append(wrong).status().code(), ErrorCode::kDuplicateEventId);
  EXPECT_EQ(s->head_position(), 3u);
  auto byid = s->read_event(id2);
  ASSERT_TRUE(byid.ok());
  EXPECT_EQ(byid->position, 2u);
  EXPECT_EQ(s->read_event(*Uuid::parse("33333333-3333-4333-8333-333333333333")).status().code(), ErrorCode::kNotFound);
}

TEST(Store, ConcurrentRetriesOfOneAppendWriteItOnce) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  EventData e = json_event("t", "{}");
  e.id = Uuid::generate_v7();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, replayed{0};
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] {
      auto r = s->append(one("dup-1", ExpectedRevision::any(), {e}));
      if (r.ok()) {
        ++ok;
        if (r->replayed) ++replayed;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(replayed.load(), 7);
  EXPECT_EQ(s->head_position(), 1u);
}

TEST(Store, ReadAllFiltersPagingAndDirections) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  for (int i = 0; i < 300; ++i) {
    const std::string stream = (i % 3 == 0 ? "order-" : i % 3 == 1 ? "user-" : "orderline-") + std::to_string(i % 7);
    const std::string type = i % 2 ? "test.proposal.made" : "test.decision.recorded";
    ASSERT_TRUE(s->append(one(stream, ExpectedRevision::any(), {json_event(type, "{\"i\":" + std::to_string(i) + "}")})).ok());
  }
  // Forward paging over everything.
  std::vector<uint64_t> seen;
  std::optional<uint64_t> from;
  for (;;) {
    auto p = s->read_all(from, Direction::kForward, 37, Filter{});
    ASSERT_TRUE(p.ok());
    for (auto& e : p->events) seen.push_back(e.position);
    if (!p->next) break;
    from = p->next;
  }
  ASSERT_EQ(seen.size(), 300u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i);
  // Backward paging.
  seen.clear();
  from.reset();
  for (;;) {
    auto p = s->read_all(from, Direction::kBackward, 41, Filter{});
    ASSERT_TRUE(p.ok());
    for (auto& e : p->events) seen.push_back(e.position);
    if (!p->next) break;
    from = p->next;
  }
  ASSERT_EQ(seen.size(), 300u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 299 - i);

  auto count = [&](const Filter& f, Direction d) {
    size_t n = 0;
    std::optional<uint64_t> at;
    for (;;) {
      auto p = s->read_all(at, d, 13, f);
      EXPECT_TRUE(p.ok()) << p.status().to_string();
      for (auto& e : p->events) {
        EXPECT_TRUE(f.matches(e.stream, e.type)) << e.stream << " " << e.type;
        ++n;
      }
      if (!p->next) break;
      at = p->next;
    }
    return n;
  };
  for (Direction d : {Direction::kForward, Direction::kBackward}) {
    EXPECT_EQ(count(Filter{{"test.proposal.made"}, "", "", ""}, d), 150u);
    EXPECT_EQ(count(Filter{{"test.proposal.made", "test.decision.recorded"}, "", "", ""}, d), 300u);
    EXPECT_EQ(count(Filter{{}, "test.decision", "", ""}, d), 150u);
    EXPECT_EQ(count(Filter{{}, "", "order", ""}, d), 200u);
    EXPECT_EQ(count(Filter{{}, "", "", "order"}, d), 100u);
    EXPECT_EQ(count(Filter{{"test.proposal.made"}, "", "", "user"}, d), 50u);
    EXPECT_EQ(count(Filter{{"no.such.type"}, "", "", ""}, d), 0u);
  }
  // Zero-copy scan with a filter.
  size_t n = 0;
  ASSERT_TRUE(s->scan_all(100, Filter{{}, "", "user-", ""}, [&](const EventView& v) {
                 EXPECT_GE(v.position, 100u);
                 ++n;
                 return true;
               }).ok());
  EXPECT_EQ(n, 67u);
}

TEST(Store, StreamReadsBackwardFromRevisionAndPaging) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(s->append(one("st-1", ExpectedRevision::any(), {json_event("t", std::to_string(i))})).ok());
    ASSERT_TRUE(s->append(one("st-2", ExpectedRevision::any(), {json_event("t", std::to_string(i))})).ok());
  }
  auto p = s->read_stream("st-1", 10, Direction::kForward, 5);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->events.size(), 5u);
  EXPECT_EQ(p->events[0].revision, 10u);
  EXPECT_EQ(p->events[0].data, "10");
  EXPECT_EQ(*p->next, 15u);
  p = s->read_stream("st-1", 3, Direction::kBackward, 10);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->events.size(), 4u);
  EXPECT_EQ(p->events[0].revision, 3u);
  EXPECT_EQ(p->events[3].revision, 0u);
  EXPECT_FALSE(p->next);
  p = s->read_stream("st-1", std::nullopt, Direction::kBackward, 2);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->events[0].revision, 49u);
  EXPECT_EQ(*p->next, 47u);
  p = s->read_stream("st-1", 50, Direction::kForward, 2);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->events.empty());
  EXPECT_EQ(s->read_stream("nope-1", std::nullopt, Direction::kForward, 2).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(s->read_stream("st-1", std::nullopt, Direction::kForward, 0).status().code(), ErrorCode::kInvalidArgument);
  auto info = s->stream_info("st-2");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->last_revision, 49u);
  EXPECT_EQ(info->last_position, 99u);
  auto ev = s->read_position(57);
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->stream, "st-2");
  EXPECT_EQ(ev->revision, 28u);
  EXPECT_EQ(s->read_position(100).status().code(), ErrorCode::kNotFound);
}

TEST(Store, ReopenReplaysIndexAndReindexRebuildsIt) {
  TempDir dir;
  std::vector<RecordedEvent> before;
  {
    auto s = open_ok(small_options(dir.path()));
    for (int i = 0; i < 500; ++i)
      ASSERT_TRUE(s->append(one("r-" + std::to_string(i % 11), ExpectedRevision::any(),
                                {json_event("t." + std::to_string(i % 4), "{\"v\":\"" + std::string(i % 50, 'x') + "\"}")}))
                      .ok());
    auto p = s->read_all(std::nullopt, Direction::kForward, 1000, Filter{});
    ASSERT_TRUE(p.ok());
    before = p->events;
    EXPECT_GT(s->stats().segments, 5u);
    // No close(): the destructor closes; the index memtable then goes to disk.
  }
  auto check = [&](Store& s) {
    EXPECT_EQ(s.head_position(), 500u);
    auto p = s.read_all(std::nullopt, Direction::kForward, 1000, Filter{});
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(p->events.size(), before.size());
    for (size_t i = 0; i < before.size(); ++i) {
      EXPECT_EQ(p->events[i].data, before[i].data);
      EXPECT_EQ(p->events[i].id, before[i].id);
      EXPECT_EQ(p->events[i].recorded_ns, before[i].recorded_ns);
    }
    auto st = s.read_stream("r-3", std::nullopt, Direction::kForward, 1000);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->events.size(), 46u);  // i % 11 == 3 for 46 values of i below 500
    auto ty = s.read_all(std::nullopt, Direction::kForward, 1000, Filter{{"t.2"}, "", "", ""});
    ASSERT_TRUE(ty.ok());
    EXPECT_EQ(ty->events.size(), 125u);
    auto r = s.append(one("r-3", ExpectedRevision::exact(45), {json_event("t", "{}")}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->streams[0].first_position, 500u);
  };
  {
    auto s = open_ok(small_options(dir.path()));
    EXPECT_GE(s->metrics().index_runs, 1u);
    check(*s);
  }
  auto rx = reindex(dir.path());
  ASSERT_TRUE(rx.ok()) << rx.status().to_string();
  EXPECT_EQ(rx->events, 501u);
  before.push_back({});  // the append made in check()
  auto s = open_ok(small_options(dir.path()));
  EXPECT_EQ(s->head_position(), 501u);
  auto v = verify_log(dir.path());
  EXPECT_EQ(v.status().code(), ErrorCode::kBusy);  // the store holds the directory
  s.reset();
  v = verify_log(dir.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->events, 501u);
  EXPECT_EQ(v->streams, 11u);
}

TEST(Store, RecordedTimeNeverDecreasesAndSurvivesRestart) {
  TempDir dir;
  int64_t last = 0;
  for (int round = 0; round < 3; ++round) {
    auto s = open_ok(small_options(dir.path()));
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(s->append(one("time-1", ExpectedRevision::any(), {json_event("t", "{}")})).ok());
    ASSERT_TRUE(s->scan_all(0, Filter{}, [&](const EventView& v) {
                   if (v.position >= static_cast<uint64_t>(round) * 20) {
                     EXPECT_GE(v.recorded_ns, last);
                     last = v.recorded_ns;
                   }
                   return true;
                 }).ok());
  }
}

TEST(Store, ConcurrentWritersGetDenseUniquePositions) {
  TempDir dir;
  auto o = small_options(dir.path());
  o.segment_size = 64 * 1024;
  auto s = open_ok(o);
  constexpr int kThreads = 8, kPer = 200;
  std::vector<std::thread> threads;
  std::vector<std::vector<uint64_t>> got(kThreads);
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        const auto expected = i == 0 ? ExpectedRevision::no_stream() : ExpectedRevision::exact(static_cast<uint64_t>(i - 1));
        auto r = s->append(one("w-" + std::to_string(t), expected, {json_event("t", std::to_string(i))}));
        ASSERT_TRUE(r.ok()) << r.status().to_string();
        got[t].push_back(r->streams[0].first_position);
      }
    });
  for (auto& t : threads) t.join();
  std::vector<uint64_t> all;
  for (auto& g : got) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), size_t{kThreads * kPer});
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i);
  for (int t = 0; t < kThreads; ++t) {
    auto p = s->read_stream("w-" + std::to_string(t), std::nullopt, Direction::kForward, 1000);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(p->events.size(), size_t{kPer});
    for (int i = 0; i < kPer; ++i) EXPECT_EQ(p->events[i].data, std::to_string(i));
  }
}

TEST(Store, SecondWriterProcessIsRefusedAndReadOnlyOpenWorks) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  ASSERT_TRUE(s->append(one("x-1", ExpectedRevision::any(), {json_event("t", "{}")})).ok());
  // flock is per open file description, so a second open in this process is refused like another process.
  auto second = open_store(small_options(dir.path()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::kBusy);
  auto ro = small_options(dir.path());
  ro.read_only = true;
  auto r = open_store(ro);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ((*r)->head_position(), 1u);
  EXPECT_EQ((*r)->append(one("x-1", ExpectedRevision::any(), {json_event("t", "{}")})).status().code(),
            ErrorCode::kInvalidArgument);
}

TEST(Store, ReadOnlyOpenNeverReadsPastTheWritersPublishedEnd) {
  TempDir dir;
  auto s = open_ok(small_options(dir.path()));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->append(one("h-1", ExpectedRevision::any(), {json_event("t", "{}")})).ok());
  auto head = published_head(dir.path());
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, 5u);
  // Pretend the writer had published only 3: a reader in another process must stop there, even though
  // later commits are complete in the file (they could be written but not yet synced).
  {
    std::FILE* f = std::fopen((dir.path() + "/log/HEAD").c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    const uint8_t three[8] = {3, 0, 0, 0, 0, 0, 0, 0};
    ASSERT_EQ(std::fwrite(three, 1, 8, f), 8u);
    std::fclose(f);
  }
  auto ro = small_options(dir.path());
  ro.read_only = true;
  auto r = open_store(ro);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ((*r)->head_position(), 3u);
  EXPECT_EQ((*r)->read_position(3).status().code(), ErrorCode::kNotFound);
  r->reset();
  // With no writer holding the directory, the log itself is the truth.
  s.reset();
  r = open_store(ro);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->head_position(), 5u);
}

TEST(Store, ListStreamsPagesThroughTheCatalog) {
  TempDir dir;
  auto o = small_options(dir.path());
  auto s = open_ok(o);
  std::map<std::string, uint64_t> want;  // stream -> events
  for (int i = 0; i < 300; ++i) {
    const std::string stream = (i % 3 ? "order-" : "user-") + std::to_string(i % 37);
    ASSERT_TRUE(s->append(one(stream, ExpectedRevision::any(), {json_event("t", "{}")})).ok());
    ++want[stream];
  }
  auto collect = [&](Store& st, std::string_view prefix, size_t page) {
    std::map<std::string, uint64_t> got;
    std::optional<std::string> after;
    for (int guard = 0; guard < 1000; ++guard) {
      auto p = st.list_streams(after, page, prefix);
      EXPECT_TRUE(p.ok()) << p.status().to_string();
      for (const auto& info : p->streams) {
        EXPECT_TRUE(got.emplace(info.stream, info.last_revision + 1).second) << "listed twice: " << info.stream;
        EXPECT_LE(info.first_position, info.last_position);
      }
      if (!p->next) break;
      after = p->next;
    }
    return got;
  };
  EXPECT_EQ(collect(*s, "", 7), want);
  std::map<std::string, uint64_t> users;
  for (auto& [k, v] : want)
    if (k.starts_with("user-")) users[k] = v;
  EXPECT_EQ(collect(*s, "user-", 5), users);
  // Also from index runs after a restart.
  s.reset();
  s = open_ok(o);
  EXPECT_EQ(collect(*s, "", 1000), want);
  EXPECT_EQ(s->list_streams(std::string("zz-not-hex"), 10, "").status().code(), ErrorCode::kInvalidArgument);
  auto info = s->stream_info("user-0");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->first_position, 0u);
}

TEST(Store, ImportReproducesChainHead) {
  TempDir a, b;
  std::vector<ImportEvent> events;
  std::vector<uint64_t> commits;
  std::string head_a;
  {
    auto s = open_ok(small_options(a.path()));
    for (int i = 0; i < 40; ++i) {
      std::vector<EventData> evs{json_event("t", "{\"i\":" + std::to_string(i) + "}", "{\"correlation_id\":\"c\"}")};
      if (i % 5 == 0) evs.push_back(json_event("u", "[]"));
      ASSERT_TRUE(s->append(one("imp-" + std::to_string(i % 3), ExpectedRevision::any(), evs)).ok());
    }
    EventData bin;
    bin.type = "blob";
    bin.content_type = ContentType::kBinary;
    bin.data = std::string("\x00\xff\x10", 3);
    ASSERT_TRUE(s->append(one("imp-0", ExpectedRevision::any(), {bin})).ok());
    ASSERT_TRUE(s->scan_stored(0, Filter{}, [&](const StoredEventView& v) {
                   ImportEvent e{std::string(v.stream), v.revision, v.id, std::string(v.type), v.recorded_ns,
                                 v.content_type, std::string(v.metadata), std::string(v.data), {}};
                   std::memcpy(e.digest_salt.data(), v.digest_salt.data(), 16);
                   events.push_back(e);
                   commits.push_back(v.commit_position);
                   return true;
                 }).ok());
    head_a = s->stats().chain_head_hex;
  }
  auto s = open_ok(small_options(b.path()));
  for (size_t i = 0; i < events.size();) {
    size_t j = i;
    std::vector<ImportEvent> c;
    while (j < events.size() && commits[j] == commits[i]) c.push_back(events[j++]);
    auto r = s->import_commit(c);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(*r, commits[i]);
    i = j;
  }
  EXPECT_EQ(s->stats().chain_head_hex, head_a);
  // Importing the first commit again: revisions no longer continue the stream, nothing written.
  auto again = s->import_commit({events[0]});
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(s->head_position(), events.size());
}

}  // namespace
}  // namespace cairn
