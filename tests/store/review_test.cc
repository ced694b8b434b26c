// Review tests: durability, crash safety, concurrency, recovery and index correctness of the embedded
// store, with a file system that can hold a segment fdatasync at a gate (to pin the writer/syncer
// pipeline in a chosen interleaving) or fail it.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "cairn/store.h"
#include "base/file.h"
#include "log/record.h"
#include "runtime/compose.h"
#include "store/embedded_store.h"
#include "store/store_helpers.h"
#include "testing/gate_fs.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;
using testing::GateFs;
using testing::TempDir;

// ---------------------------------------------------------------------------------------------------------

// Opens the gate and joins the test's threads on every way out of a test (also a failed ASSERT).
struct Threads {
  GateFs& fs;
  std::vector<std::thread> ts;
  template <typename F>
  void run(F f) { ts.emplace_back(std::move(f)); }
  void join() {
    fs.release();
    for (auto& t : ts)
      if (t.joinable()) t.join();
  }
  ~Threads() { join(); }
};

std::unique_ptr<store::EmbeddedStore> open_with(const EmbeddedOptions& o, base::FileSystem* fs) {
  auto s = runtime::open_embedded(o, fs);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

std::unique_ptr<Store> open_ok(const EmbeddedOptions& o) {
  auto s = open_store(o);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

EmbeddedOptions fsync_options(const std::string& dir) {
  EmbeddedOptions o;
  o.dir = dir;
  o.durability = Durability::kFsync;
  return o;
}

EventData binary_event(std::string type, std::string data, std::optional<Uuid> id = std::nullopt) {
  EventData e;
  e.type = std::move(type);
  e.content_type = ContentType::kBinary;
  e.data = std::move(data);
  e.id = id;
  return e;
}

// ---------------------------------------------------------------------------------------------------------
// Durability / poisoning.
//
// The syncer's fdatasync of a segment is in progress (G1 waits for it) when the writer rolls that same
// segment and its own fdatasync of it fails: the store is poisoned. The syncer's fdatasync then returns ok
// (on Linux the error is reported once per open file, and it was reported to the roll), and G1 is
// acknowledged although the failure may have dropped its dirty pages. Contract (store.h, format.md): once
// a sync failed, nothing more is acknowledged.
TEST(Review, SyncThatCompletesAfterAConcurrentSyncFailureDoesNotAcknowledge) {
  TempDir dir;
  GateFs fs;
  EmbeddedOptions o = fsync_options(dir.path());
  o.segment_size = 4096;
  auto s = open_with(o, &fs);
  ASSERT_TRUE(s);
  fs.arm(/*block_on=*/1, /*fail_on=*/2);
  // G1 fills the segment past segment_size, so the next append rolls it (write, then fdatasync).
  Result<AppendResult> r1 = Status::io_error("not run"), r2 = r1;
  Threads th{fs, {}};
  th.run([&] { r1 = s->append(one("g1", ExpectedRevision::any(), {binary_event("t", std::string(4200, 'x'))})); });
  ASSERT_TRUE(fs.wait([&] { return fs.blocked(); })) << "the syncer never synced G1";
  th.run([&] { r2 = s->append(one("g2", ExpectedRevision::any(), {binary_event("t", "y")})); });
  ASSERT_TRUE(fs.wait([&] { return fs.syncs() >= 2; })) << "the writer never rolled";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the writer record the poison
  th.join();
  EXPECT_EQ(r2.status().code(), ErrorCode::kPoisoned) << r2.status().to_string();
  EXPECT_FALSE(r1.ok()) << "G1 was acknowledged after an fdatasync of its segment failed";
  EXPECT_EQ(r1.status().code(), ErrorCode::kPoisoned) << r1.status().to_string();
  EXPECT_EQ(s->append(one("g3", ExpectedRevision::any(), {binary_event("t", "z")})).status().code(),
            ErrorCode::kPoisoned);
  (void)s->close();
}

// ---------------------------------------------------------------------------------------------------------
// Writer: the stream revision cache.
//
// The cache holds revisions of groups not yet synced; the index (its fallback) only knows published
// commits, so it may be cleared only while nothing is in flight. current_revision() clears it on any miss
// once it holds 1,000,000 streams, in flight or not. Here the group that brings it to 1,000,000 (and
// writes "s-target") waits for its fdatasync; an append to an older stream clears the cache; then an
// append to "s-target" reads the stale index and gets revision 0 again.
TEST(Review, RevisionCacheIsNotClearedWhileAGroupIsInFlight) {
  TempDir dir;
  GateFs fs;
  EmbeddedOptions o = fsync_options(dir.path());
  o.segment_size = 1ull << 30;           // no roll
  o.index_memtable_events = 10'000'000;  // no flush (its fsyncs are not gated anyway)
  {
    auto s = open_with(o, &fs);
    ASSERT_TRUE(s);
    ASSERT_TRUE(s->append(one("old-stream", ExpectedRevision::no_stream(), {json_event("t", "1")})).ok());
    ASSERT_TRUE(s->close().ok());
  }
  auto s = open_with(o, &fs);  // the revision cache starts empty: "old-stream" is only in the index
  ASSERT_TRUE(s);
  constexpr int kBatch = 100'000;  // max_events_per_append
  auto batch = [&](int b) {
    std::vector<StreamAppend> v;
    v.reserve(kBatch);
    for (int i = 0; i < kBatch; ++i)
      v.push_back(one(b == 9 && i == 0 ? std::string("s-target") : fmt::format("f{}-{}", b, i), ExpectedRevision::any(),
                      {json_event("t", "1")}));
    return v;
  };
  for (int b = 0; b < 9; ++b) {
    auto r = s->append_multi(batch(b));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
  }
  fs.arm(/*block_on=*/1, /*fail_on=*/0);
  Result<AppendResult> big = Status::io_error("not run"), older = big, target = big;
  auto last = batch(9);
  Threads th{fs, {}};
  th.run([&] { big = s->append_multi(std::move(last)); });
  ASSERT_TRUE(fs.wait([&] { return fs.blocked(); }));
  const int w0 = fs.log_writes_locked();
  th.run([&] { older = s->append(one("old-stream", ExpectedRevision::any(), {json_event("t", "2")})); });
  ASSERT_TRUE(fs.wait([&] { return fs.log_writes() >= w0 + 1; }));
  th.run([&] { target = s->append(one("s-target", ExpectedRevision::any(), {json_event("t", "3")})); });
  ASSERT_TRUE(fs.wait([&] { return fs.log_writes() >= w0 + 2; }));
  th.join();
  ASSERT_TRUE(big.ok()) << big.status().to_string();
  ASSERT_TRUE(older.ok()) << older.status().to_string();
  EXPECT_EQ(older->streams[0].first_revision, 1u);
  ASSERT_TRUE(target.ok()) << target.status().to_string();
  EXPECT_EQ(target->streams[0].first_revision, 1u) << "s-target got a revision it already has";
  auto page = s->read_stream("s-target", std::nullopt, Direction::kForward, 10);
  ASSERT_TRUE(page.ok()) << page.status().to_string();
  ASSERT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->events[0].revision, 0u);
  EXPECT_EQ(page->events[1].revision, 1u);
  ASSERT_TRUE(s->close().ok());
}

// ---------------------------------------------------------------------------------------------------------
// API contract: event ids are unique in the log.

// validate_stream_append() refuses an id repeated inside one stream append, but ids are not compared
// across the stream appends of one append_multi, and the writer only sees earlier requests' ids.
TEST(Review, AppendMultiRefusesTheSameIdInTwoStreamAppends) {
  TempDir dir;
  auto s = open_ok(testing::small_options(dir.path()));
  ASSERT_TRUE(s);
  const Uuid id = *Uuid::parse("aaaaaaaa-0000-4000-8000-000000000001");
  EventData a = json_event("t", "1");
  a.id = id;
  EventData b = json_event("t", "2");
  b.id = id;
  auto r = s->append_multi({one("left-1", ExpectedRevision::any(), {a}), one("right-1", ExpectedRevision::any(), {b})});
  EXPECT_FALSE(r.ok()) << "one id was written twice, at positions " << (r.ok() ? r->streams[0].first_position : 0)
                       << " and " << (r.ok() ? r->streams[1].first_position : 0);
  if (!r.ok()) {
    EXPECT_TRUE(r.status().code() == ErrorCode::kInvalidArgument || r.status().code() == ErrorCode::kDuplicateEventId)
        << r.status().to_string();
  }
  EXPECT_EQ(s->head_position(), 0u);
}

// plan_import() checks each event's id against earlier requests and the log, not against the events
// before it in the same commit.
TEST(Review, ImportRefusesTheSameIdTwiceInOneCommit) {
  TempDir dir;
  auto s = open_ok(testing::small_options(dir.path()));
  ASSERT_TRUE(s);
  const Uuid id = *Uuid::parse("bbbbbbbb-0000-4000-8000-000000000002");
  std::vector<ImportEvent> evs(2);
  for (int i = 0; i < 2; ++i) {
    evs[i].stream = i == 0 ? "imp-a" : "imp-b";
    evs[i].revision = 0;
    evs[i].id = id;
    evs[i].type = "t";
    evs[i].recorded_ns = 1'000'000'000 + i;
    evs[i].data = "{}";
  }
  auto r = s->import_commit(evs);
  EXPECT_FALSE(r.ok()) << "an imported commit wrote one id twice";
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), ErrorCode::kDuplicateEventId) << r.status().to_string();
  }
  EXPECT_EQ(s->head_position(), 0u);
}

// A retry must repeat the whole original append (writer.cc); a retry of part of it is answered as a replay
// whose result is not the original's.
TEST(Review, RetryOfPartOfAnAppendIsNotAnsweredAsTheOriginal) {
  TempDir dir;
  auto s = open_ok(testing::small_options(dir.path()));
  ASSERT_TRUE(s);
  EventData a = json_event("t", "1"), b = json_event("t", "2");
  a.id = *Uuid::parse("cccccccc-0000-4000-8000-000000000001");
  b.id = *Uuid::parse("cccccccc-0000-4000-8000-000000000002");
  auto first = s->append(one("part-1", ExpectedRevision::no_stream(), {a, b}));
  ASSERT_TRUE(first.ok());
  auto retry = s->append(one("part-1", ExpectedRevision::no_stream(), {a}));
  if (retry.ok()) {
    EXPECT_EQ(retry->streams[0].last_position, first->streams[0].last_position)
        << "a 'replayed' answer that is not the original append's result";
    EXPECT_EQ(retry->streams[0].last_revision, first->streams[0].last_revision);
  } else {
    EXPECT_EQ(retry.status().code(), ErrorCode::kDuplicateEventId) << retry.status().to_string();
  }
  EXPECT_EQ(s->head_position(), 2u);
}

// ---------------------------------------------------------------------------------------------------------
// Recovery: check_frame's zero rule.
//
// format.md: a complete frame at the tail whose body CRC fails is corrupt (open refuses unless repair).
// check_frame() instead calls it torn whenever the file ends in >= 512 zero bytes that reach into the body,
// so an acknowledged commit whose payload legitimately ends in zeros and which is damaged is silently cut.
TEST(Review, DamagedLastCommitWhosePayloadEndsInZerosIsCorruptionNotATornTail) {
  TempDir dir;
  EmbeddedOptions o = fsync_options(dir.path());
  {
    auto s = open_ok(o);
    ASSERT_TRUE(s);
    ASSERT_TRUE(s->append(one("z-1", ExpectedRevision::any(), {json_event("t", "1")})).ok());
    auto r = s->append(one("z-1", ExpectedRevision::any(), {binary_event("blob", std::string(2048, '\0'))}));
    ASSERT_TRUE(r.ok());  // acknowledged: fdatasync'ed
    ASSERT_TRUE(s->close().ok());
  }
  const std::string seg = dir.path() + "/log/" + log::segment_file_name(0);
  std::string bytes = slurp(seg);
  const uint64_t second = log::kSegmentHeaderSize + log::load32(reinterpret_cast<const uint8_t*>(bytes.data()) + 68);
  ASSERT_LT(second + log::kFrameHeaderSize + log::kEventFixedSize, bytes.size());
  bytes[second + log::kFrameHeaderSize + log::kEventFixedSize] ^= 0x01;  // first byte of the stream name
  spit(seg, bytes);
  auto s = open_store(o);
  if (s.ok()) {
    const uint64_t head = (*s)->head_position();
    (void)(*s)->close();
    FAIL() << "open accepted a damaged acknowledged commit as a torn tail and cut it (head " << head << ", was 2)";
  }
  EXPECT_EQ(s.status().code(), ErrorCode::kCorruption) << s.status().to_string();
}

// ---------------------------------------------------------------------------------------------------------
// Index: run file integrity.
//
// format.md: a run carries a footer CRC over every byte, and any damage makes the index start empty (and
// be rebuilt). Run::open checks the header CRC and section sizes but never the footer, so a damaged entry
// is served: here the stream's last entry gets another key, the stream's tip reads as revision 8 instead
// of 9, and an append with expected revision 8 writes revision 9 a second time.
TEST(Review, DamagedIndexRunIsRebuiltNotServed) {
  TempDir dir;
  EmbeddedOptions o = testing::small_options(dir.path());
  o.index_memtable_events = 1000;
  {
    auto s = open_ok(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(s->append(one("idx-1", ExpectedRevision::any(), {json_event("t", "1")})).ok());
    ASSERT_TRUE(s->close().ok());  // the memtable becomes run [0, 10)
  }
  std::string run;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/index"))
    if (e.path().filename().string().starts_with("run-")) run = e.path().string();
  ASSERT_FALSE(run.empty());
  std::string bytes = slurp(run);
  const size_t last_entry = 64 + 9 * sizeof(index::StreamEntry);  // streams section: 10 entries of one key
  ASSERT_EQ(log::load64(reinterpret_cast<const uint8_t*>(bytes.data()) + last_entry + 8), 9u);
  log::store64(reinterpret_cast<uint8_t*>(bytes.data()) + last_entry, UINT64_MAX - 1);
  spit(run, bytes);

  auto s = open_ok(o);
  ASSERT_TRUE(s);
  auto info = s->stream_info("idx-1");
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  EXPECT_EQ(info->last_revision, 9u) << "the damaged run was served";
  auto r = s->append(one("idx-1", ExpectedRevision::exact(8), {json_event("t", "2")}));
  EXPECT_EQ(r.status().code(), ErrorCode::kWrongExpectedRevision)
      << "expected revision 8 accepted on a stream at 9: revision " << (r.ok() ? r->streams[0].first_revision : 0)
      << " written twice";
  ASSERT_TRUE(s->close().ok());
}

// ---------------------------------------------------------------------------------------------------------
// Visibility across processes: log/HEAD.
//
// format.md: a read-only open made while a writer holds LOCK ignores every commit at or past HEAD. G1 is
// written and waits for the syncer; G2 rolls the segment (the roll syncs G1's segment and creates the next
// one, whose first position is past G1). recover_tail() scans only that new last segment, breaks at its
// first frame (>= HEAD) and sets the durable end to the segment's first position: past HEAD, so the
// reader sees G1, which the writer has not published (nor acknowledged; it may still fail).
TEST(Review, ReadOnlyOpenDuringARollSeesNothingPastTheWritersPublishedEnd) {
  TempDir dir;
  GateFs fs;
  EmbeddedOptions o = fsync_options(dir.path());
  o.segment_size = 4096;
  auto s = open_with(o, &fs);
  ASSERT_TRUE(s);
  fs.arm(/*block_on=*/1, /*fail_on=*/0);
  Threads th{fs, {}};
  th.run([&] { (void)s->append(one("g1", ExpectedRevision::any(), {binary_event("t", std::string(4200, 'x'))})); });
  ASSERT_TRUE(fs.wait([&] { return fs.blocked(); }));
  const int w0 = fs.log_writes_locked();
  th.run([&] { (void)s->append(one("g2", ExpectedRevision::any(), {binary_event("t", "y")})); });
  // The new segment's header, then G2 in it.
  ASSERT_TRUE(fs.wait([&] { return fs.log_writes() >= w0 + 2; }));
  ASSERT_TRUE(std::filesystem::exists(dir.path() + "/log/" + log::segment_file_name(1)));
  auto head = published_head(dir.path());
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, 0u);
  EmbeddedOptions ro = o;
  ro.read_only = true;
  auto r = open_store(ro);
  uint64_t seen = 0;
  if (r.ok()) {
    seen = (*r)->head_position();
    if (seen > 0) {
      auto ev = (*r)->read_position(0);
      EXPECT_FALSE(ev.ok()) << "the reader read unpublished event '" << (ev.ok() ? ev->stream : "") << "'";
    }
    (void)(*r)->close();
  }
  th.join();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(seen, 0u) << "a read-only open saw commits past the writer's published end (HEAD = 0)";
  ASSERT_TRUE(s->close().ok());
}

// The syncer answers and publishes only after fdatasync: while G1's sync is held, neither reads nor a
// live subscription see it, and the appender is not answered; afterwards all three do. (Passes.)
TEST(Review, NothingIsVisibleOrAnsweredBeforeItsFdatasyncReturns) {
  TempDir dir;
  GateFs fs;
  auto s = open_with(fsync_options(dir.path()), &fs);
  ASSERT_TRUE(s);
  auto sub = s->subscribe_all(0, Filter{});
  ASSERT_TRUE(sub.ok());
  fs.arm(/*block_on=*/1, /*fail_on=*/0);
  std::atomic<bool> answered{false};
  Threads th{fs, {}};
  th.run([&] {
    auto r = s->append(one("vis-1", ExpectedRevision::no_stream(), {json_event("t", "1")}));
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    answered = true;
  });
  ASSERT_TRUE(fs.wait([&] { return fs.blocked(); }));
  auto early = (*sub)->next(10, std::chrono::milliseconds(100));
  ASSERT_TRUE(early.ok());
  EXPECT_TRUE(early->empty());
  EXPECT_EQ(s->head_position(), 0u);
  EXPECT_EQ(s->read_all(0, Direction::kForward, 10, Filter{})->events.size(), 0u);
  EXPECT_EQ(s->stream_info("vis-1").status().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(answered.load());
  th.join();
  auto late = (*sub)->next(10, std::chrono::seconds(30));
  ASSERT_TRUE(late.ok());
  ASSERT_EQ(late->size(), 1u);
  EXPECT_EQ((*late)[0].stream, "vis-1");
  EXPECT_EQ(s->head_position(), 1u);
  ASSERT_TRUE(s->close().ok());
}

// ---------------------------------------------------------------------------------------------------------
// Index backpressure: a one-event memtable (a freeze, run, manifest and merge per group) under concurrent
// appenders; every stream reads back complete, in place, before and after a reopen. (Passes.)
TEST(Review, TinyMemtableUnderConcurrentAppendersLosesNoIndexEntry) {
  TempDir dir;
  EmbeddedOptions o = testing::small_options(dir.path());
  o.index_memtable_events = 2;
  constexpr int kThreads = 4, kPer = 150;
  auto check = [&](Store& s) {
    EXPECT_EQ(s.head_position(), uint64_t{kThreads} * kPer);
    for (int t = 0; t < kThreads; ++t) {
      auto page = s.read_stream(fmt::format("bp-{}", t), std::nullopt, Direction::kForward, 1000);
      ASSERT_TRUE(page.ok()) << page.status().to_string();
      ASSERT_EQ(page->events.size(), size_t{kPer});
      for (int i = 0; i < kPer; ++i) {
        EXPECT_EQ(page->events[i].revision, uint64_t(i));
        EXPECT_EQ(page->events[i].data, std::to_string(i));
        auto byid = s.read_event(page->events[i].id);
        ASSERT_TRUE(byid.ok());
        EXPECT_EQ(byid->position, page->events[i].position);
      }
    }
    auto typed = s.read_all(std::nullopt, Direction::kBackward, 1000, Filter{{"odd"}, "", "", ""});
    ASSERT_TRUE(typed.ok());
    EXPECT_EQ(typed->events.size(), size_t{kThreads * kPer / 2});
  };
  {
    auto s = open_ok(o);
    ASSERT_TRUE(s);
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
      ts.emplace_back([&, t] {
        for (int i = 0; i < kPer; ++i) {
          const auto expected = i == 0 ? ExpectedRevision::no_stream() : ExpectedRevision::exact(uint64_t(i - 1));
          auto r = s->append(one(fmt::format("bp-{}", t), expected,
                                 {json_event(i % 2 ? "odd" : "even", std::to_string(i))}));
          ASSERT_TRUE(r.ok()) << r.status().to_string();
        }
      });
    for (auto& t : ts) t.join();
    check(*s);
    ASSERT_TRUE(s->close().ok());
  }
  auto s = open_ok(o);
  ASSERT_TRUE(s);
  check(*s);
  EXPECT_GT(s->metrics().index_runs, 0u);
}

// ---------------------------------------------------------------------------------------------------------
// Recovery with a damaged sealed-segment header.
//
// log.cc keeps a sealed segment with a damaged header open ("costs reads of that segment, not the whole
// store"), and corruption_test checks that with a complete index. When the index must be rebuilt (MANIFEST
// lost; also `cairn reindex`), replay_index() walks every segment and stops at that header's error, so the
// store cannot be opened at all.
TEST(Review, RebuildingTheIndexSurvivesADamagedSealedSegmentHeader) {
  TempDir dir;
  EmbeddedOptions o = testing::small_options(dir.path());
  {
    auto s = open_ok(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 60; ++i)
      ASSERT_TRUE(s->append(one(fmt::format("h-{}", i % 5), ExpectedRevision::any(),
                                {binary_event("t", std::string(400, 'a' + i % 26))}))
                      .ok());
    ASSERT_GE(s->stats().segments, 3u);
    ASSERT_TRUE(s->close().ok());
  }
  std::vector<std::string> segs;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/log"))
    if (e.path().extension() == ".seg") segs.push_back(e.path().string());
  std::sort(segs.begin(), segs.end());
  ASSERT_GE(segs.size(), 3u);
  std::string bytes = slurp(segs[1]);
  bytes[0] ^= 0x02;  // magic
  spit(segs[1], bytes);
  {  // with the index intact, the store opens (as corruption_test expects)
    auto s = open_store(o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    ASSERT_TRUE((*s)->close().ok());
  }
  std::filesystem::remove(dir.path() + "/index/MANIFEST");
  auto s = open_store(o);
  ASSERT_TRUE(s.ok()) << "losing the (derived) index made the store unopenable: " << s.status().to_string();
  EXPECT_EQ((*s)->head_position(), 60u);
  auto tail = (*s)->read_all(59, Direction::kForward, 10, Filter{});
  ASSERT_TRUE(tail.ok()) << tail.status().to_string();
  EXPECT_EQ(tail->events.size(), 1u);
  (void)(*s)->close();
}

}  // namespace
}  // namespace cairn
