// Fault injection: a write, an fsync or a file creation fails (FaultFs). The store must not acknowledge
// the append that needed it, must refuse every later append with kPoisoned saying why, must never retry
// the failed fsync, and after a reopen on the real file system must hold every acknowledged event intact.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <map>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "log/log_test_util.h"
#include "runtime/compose.h"
#include "store/embedded_store.h"
#include "testing/fault_fs.h"
#include "testing/temp_dir.h"

namespace cairn::logtest {
namespace {

using testing::FaultFs;
using testing::TempDir;
using ::testing::AnyOf;
using ::testing::HasSubstr;

std::unique_ptr<store::EmbeddedStore> open_faulty(const EmbeddedOptions& o, FaultFs& fs) {
  auto s = runtime::open_embedded(o, &fs);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

// What one acknowledged (or attempted) append wrote: its events in commit order.
struct Written {
  std::vector<std::pair<std::string, EventData>> events;  // (stream, event)
  std::vector<StreamAppendResult> results;
};

// Appends `k` events of content number base.. to `stream` (expected any) and returns the request.
StreamAppend numbered(const std::string& stream, uint64_t base, size_t k, size_t pad = 0) {
  std::vector<EventData> evs;
  for (size_t i = 0; i < k; ++i) evs.push_back(make_event(base + i, pad));
  return stream_append(stream, ExpectedRevision::any(), evs);
}

// Every acknowledged event is at its position with its content; events past the acknowledged ones are
// whole, unacknowledged appends from `attempted` (a failed fsync may leave them in the file).
void check_after_reopen(const std::string& dir, const std::vector<Written>& acked,
                        const std::vector<Written>& attempted, bool nothing_unacked_allowed) {
  auto s = open_ok(small_options(dir, 4096, Durability::kFsync));
  ASSERT_TRUE(s) << "the store must reopen on the real file system after an injected failure";
  std::map<uint64_t, std::pair<std::string, EventData>> want;
  for (const auto& w : acked) {
    size_t k = 0;
    for (const auto& r : w.results)
      for (uint64_t p = r.first_position; p <= r.last_position; ++p) want[p] = w.events[k++];
  }
  const auto all = all_events(*s);
  ASSERT_EQ(all.size(), s->head_position());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i].position, i) << "positions must be dense";
  for (const auto& [p, ev] : want) {
    ASSERT_LT(p, all.size()) << "acknowledged position " << p << " is missing after reopen";
    const RecordedEvent& got = all[p];
    EXPECT_EQ(got.stream, ev.first) << p;
    EXPECT_EQ(got.id, *ev.second.id) << p;
    EXPECT_EQ(got.type, ev.second.type) << p;
    EXPECT_EQ(got.content_type, ev.second.content_type) << p;
    EXPECT_EQ(got.metadata, ev.second.metadata) << p;
    EXPECT_EQ(got.data, ev.second.data) << p;
  }
  const uint64_t acked_end = want.empty() ? 0 : want.rbegin()->first + 1;
  ASSERT_EQ(want.size(), acked_end) << "acknowledged positions are not dense";
  if (nothing_unacked_allowed) {
    EXPECT_EQ(all.size(), acked_end) << "events of a failed append became visible";
  }
  // Whatever follows must be whole unacknowledged appends, in the order they were attempted.
  uint64_t p = acked_end;
  for (const auto& w : attempted) {
    if (p >= all.size()) break;
    ASSERT_LE(p + w.events.size(), all.size()) << "a partial commit is visible at position " << p;
    for (const auto& [stream, ev] : w.events) {
      EXPECT_EQ(all[p].stream, stream) << p;
      EXPECT_EQ(all[p].id, *ev.id) << p;
      EXPECT_EQ(all[p].data, ev.data) << p;
      ++p;
    }
  }
  EXPECT_EQ(p, all.size()) << "unexpected events after the acknowledged ones";
  // The store takes appends again at its head.
  const uint64_t head = s->head_position();
  auto r = s->append(numbered("after-reopen", 990000, 1));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->streams[0].first_position, head);
  ASSERT_TRUE(s->close().ok());
  s.reset();
  expect_verify_ok(dir, head + 1);
}

void expect_failed_append(const Result<AppendResult>& r, const std::string& why) {
  ASSERT_FALSE(r.ok()) << "an append was acknowledged although its write or sync failed";
  EXPECT_THAT(r.status().code(), AnyOf(ErrorCode::kIoError, ErrorCode::kPoisoned)) << r.status().to_string();
  EXPECT_THAT(r.status().message(), HasSubstr(why));
}

void expect_poisoned(const Result<AppendResult>& r, const std::string& why) {
  ASSERT_FALSE(r.ok()) << "an append was acknowledged after the store was poisoned";
  EXPECT_EQ(r.status().code(), ErrorCode::kPoisoned) << r.status().to_string();
  EXPECT_THAT(r.status().message(), HasSubstr(why)) << "the poisoned error must say why";
}

enum class Fault { kWrite, kSync, kCreate };
const char* why_of(Fault f) {
  switch (f) {
    case Fault::kWrite: return "injected write failure";
    case Fault::kSync: return "fsync failure";  // file or directory
    case Fault::kCreate: return "injected create failure";
  }
  return "";
}
std::atomic<int>& counter_of(FaultFs& fs, Fault f) {
  switch (f) {
    case Fault::kWrite: return fs.fail_write_after;
    case Fault::kSync: return fs.fail_sync_after;
    case Fault::kCreate: return fs.fail_create_after;
  }
  return fs.fail_write_after;
}

// A sequence of appends (one stream append, or a multi-stream append every third call).
Written next_append(Store& s, int i, Result<AppendResult>* out, size_t pad) {
  Written w;
  const uint64_t base = static_cast<uint64_t>(i) * 10;
  if (i % 3 == 2) {
    std::vector<StreamAppend> multi{numbered("multi-a", base, 2, pad), numbered("multi-b", base + 2, 1, pad)};
    for (const auto& a : multi)
      for (const auto& e : a.events) w.events.emplace_back(a.stream, e);
    *out = s.append_multi(multi);
  } else {
    StreamAppend a = numbered(fmt::format("single-{}", i % 2), base, 1 + i % 2, pad);
    for (const auto& e : a.events) w.events.emplace_back(a.stream, e);
    *out = s.append(a);
  }
  if (out->ok()) w.results = (*out)->streams;
  return w;
}

// Arms one fault after `warmup` good appends, appends until an append fails, checks the poisoning, closes
// and checks the reopened store. Returns false when no append failed within the limit.
bool run_fault(const std::string& dir, Fault fault, int nth, int warmup, size_t pad, bool* failed_out) {
  FaultFs fs;
  auto s = open_faulty(small_options(dir, 4096, Durability::kFsync), fs);
  if (!s) return false;
  std::vector<Written> acked, attempted;
  Result<AppendResult> r = Status::invalid_argument("unset");
  int i = 0;
  for (; i < warmup; ++i) {
    acked.push_back(next_append(*s, i, &r, pad));
    EXPECT_TRUE(r.ok()) << r.status().to_string();
  }
  const uint64_t head_before_fault = s->head_position();
  counter_of(fs, fault) = nth;
  bool failed = false;
  for (int limit = i + 80; i < limit; ++i) {
    const uint64_t head = s->head_position();
    Written w = next_append(*s, i, &r, pad);
    if (r.ok()) {
      EXPECT_GE(w.results.front().first_position, head);
      acked.push_back(std::move(w));
      continue;
    }
    expect_failed_append(r, why_of(fault));
    attempted.push_back(std::move(w));
    failed = true;
    ++i;
    break;
  }
  *failed_out = failed;
  if (failed) {
    const uint64_t head = s->head_position();
    const int syncs = fs.syncs.load();
    const int writes = fs.writes.load();
    // Every later append fails, whatever it is: new stream, multi, idempotent retry, wrong revision.
    expect_poisoned(s->append(numbered("fresh", 800000, 1)), why_of(fault));
    expect_poisoned(s->append_multi({numbered("x", 800010, 1), numbered("y", 800011, 2)}), why_of(fault));
    if (!acked.empty()) {
      // A retry of an acknowledged append (same ids and content) is not answered either.
      const Written& w0 = acked.back();
      StreamAppend retry;
      retry.stream = w0.events.front().first;
      for (const auto& [stream, ev] : w0.events)
        if (stream == retry.stream) retry.events.push_back(ev);
      expect_poisoned(s->append(retry), why_of(fault));
    }
    StreamAppend wrong = numbered("single-0", 800020, 1);
    wrong.expected = ExpectedRevision::exact(123456);
    expect_poisoned(s->append(wrong), why_of(fault));
    for (int k = 0; k < 3; ++k) {
      Written w = next_append(*s, i + k, &r, pad);
      expect_poisoned(r, why_of(fault));
    }
    EXPECT_EQ(s->head_position(), head) << "nothing more may become visible";
    EXPECT_EQ(fs.syncs.load(), syncs) << "the store synced again after the failure (a failed fsync is never retried)";
    EXPECT_EQ(fs.writes.load(), writes) << "the store wrote to the log again after it was poisoned";
    // Acknowledged events still read in the poisoned store.
    for (const auto& w : acked)
      for (const auto& res : w.results) {
        auto e = s->read_position(res.first_position);
        EXPECT_TRUE(e.ok()) << e.status().to_string();
      }
    auto gone = s->read_position(head);
    EXPECT_EQ(gone.status().code(), ErrorCode::kNotFound);
    EXPECT_GE(head, head_before_fault);
  }
  (void)s->close();
  s.reset();
  // With a failed write or a failed segment creation nothing of the failed append reached the file (the
  // appends are sequential, so nothing else was pending); with a failed fsync its bytes may have (they
  // were never acknowledged, and may show up after the reopen, whole).
  check_after_reopen(dir, acked, attempted, fault != Fault::kSync);
  return true;
}

TEST(FaultInjection, FsyncFailurePoisonsTheStore) {
  TempDir t;
  bool failed = false;
  ASSERT_TRUE(run_fault(t.sub("d"), Fault::kSync, 1, 6, 0, &failed));
  EXPECT_TRUE(failed) << "the injected fsync failure never surfaced";
}

TEST(FaultInjection, WriteFailurePoisonsTheStore) {
  TempDir t;
  bool failed = false;
  ASSERT_TRUE(run_fault(t.sub("d"), Fault::kWrite, 1, 6, 0, &failed));
  EXPECT_TRUE(failed) << "the injected write failure never surfaced";
}

TEST(FaultInjection, FailureToCreateTheNextSegmentPoisonsTheStore) {
  TempDir t;
  const std::string dir = t.sub("d");
  bool failed = false;
  ASSERT_TRUE(run_fault(dir, Fault::kCreate, 1, 3, 200, &failed));
  EXPECT_TRUE(failed) << "no segment roll was attempted";
  // The failed roll left no half-made segment behind that breaks the log (checked by the reopen above),
  // and the reopened store rolled fine afterwards.
}

// Open cuts a torn tail and syncs the cut; if that sync fails, open must fail (not hand out a store whose
// tail state is unknown), release the directory, and a later open must recover normally.
TEST(FaultInjection, SyncFailureWhileCuttingATornTailFailsOpen) {
  TempDir t;
  const std::string dir = t.sub("d");
  uint64_t last_first = 0;
  {
    auto s = open_ok(small_options(dir, 1 << 20, Durability::kNone));
    ASSERT_TRUE(s);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->append(numbered("s-1", i * 10, 2)).ok());
    last_first = s->head_position();
    ASSERT_TRUE(s->append(numbered("s-1", 500, 3)).ok());
    ASSERT_TRUE(s->close().ok());
  }
  const std::string seg = segment_paths(dir).back();
  truncate_file(seg, file_size(seg) - 10);  // tear the last commit
  {
    FaultFs fs;
    fs.fail_sync_after = 1;
    auto s = runtime::open_embedded(small_options(dir, 1 << 20, Durability::kFsync), &fs);
    ASSERT_FALSE(s.ok()) << "open succeeded although syncing the cut tail failed";
    EXPECT_EQ(s.status().code(), ErrorCode::kIoError) << s.status().to_string();
    EXPECT_THAT(s.status().message(), HasSubstr("injected fsync failure"));
  }
  auto s = open_ok(small_options(dir, 1 << 20, Durability::kFsync));
  ASSERT_TRUE(s) << "the failed open must not keep the directory locked or damage it";
  EXPECT_EQ(s->head_position(), last_first);
  auto r = s->append(numbered("s-1", 600, 1));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->streams[0].first_position, last_first);
  EXPECT_EQ(r->streams[0].first_revision, 10u);
  ASSERT_TRUE(s->close().ok());
  s.reset();
  expect_verify_ok(dir, last_first + 1);
}

// The same three faults at every point of a workload that rolls segments often: the k-th write, sync
// (file or directory) or creation from the moment the fault is armed.
class FaultSweep : public ::testing::TestWithParam<Fault> {};

TEST_P(FaultSweep, EveryPointOfARollingWorkload) {
  const Fault fault = GetParam();
  const int points = fault == Fault::kCreate ? 6 : 30;
  int surfaced = 0;
  for (int nth = 1; nth <= points; ++nth) {
    SCOPED_TRACE(fmt::format("fault at the {}th operation", nth));
    TempDir t;
    bool failed = false;
    ASSERT_TRUE(run_fault(t.sub("d"), fault, nth, 2, 300, &failed));
    surfaced += failed;
    if (HasFailure()) return;
  }
  EXPECT_EQ(surfaced, points) << "some injected faults never reached an append";
}

INSTANTIATE_TEST_SUITE_P(Faults, FaultSweep, ::testing::Values(Fault::kWrite, Fault::kSync, Fault::kCreate),
                         [](const auto& info) {
                           switch (info.param) {
                             case Fault::kWrite: return std::string("Write");
                             case Fault::kSync: return std::string("Sync");
                             case Fault::kCreate: return std::string("Create");
                           }
                           return std::string();
                         });

// Several threads append while an fsync fails: no append submitted after any thread saw the failure is
// acknowledged, and every acknowledged one survives a reopen.
TEST(FaultInjection, ConcurrentAppendersDuringAnFsyncFailure) {
  TempDir t;
  const std::string dir = t.sub("d");
  FaultFs fs;
  auto s = open_faulty(small_options(dir, 4096, Durability::kFsync), fs);
  ASSERT_TRUE(s);
  constexpr int kThreads = 4;
  std::atomic<int> acks{0};
  std::atomic<bool> failure_seen{false};
  std::atomic<int> late_acks{0};
  std::vector<std::vector<Written>> acked(kThreads), attempted(kThreads);
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th)
    threads.emplace_back([&, th] {
      uint64_t rev = 0;
      bool exists = false;
      int failures = 0;
      for (int i = 0; i < 400 && failures < 5; ++i) {
        const bool seen_before = failure_seen.load();
        StreamAppend a = numbered(fmt::format("thread-{}", th), static_cast<uint64_t>(th) * 100000 + i * 10, 1 + i % 3, 50);
        a.expected = exists ? ExpectedRevision::exact(rev) : ExpectedRevision::no_stream();
        Written w;
        for (const auto& e : a.events) w.events.emplace_back(a.stream, e);
        auto r = s->append(a);
        if (r.ok()) {
          if (seen_before) ++late_acks;
          w.results = r->streams;
          EXPECT_EQ(r->streams[0].first_revision, exists ? rev + 1 : 0);
          rev = r->streams[0].last_revision;
          exists = true;
          acked[th].push_back(std::move(w));
          ++acks;
        } else {
          EXPECT_THAT(r.status().code(), AnyOf(ErrorCode::kIoError, ErrorCode::kPoisoned)) << r.status().to_string();
          EXPECT_THAT(r.status().message(), HasSubstr("fsync failure"));
          if (seen_before) {
            EXPECT_EQ(r.status().code(), ErrorCode::kPoisoned);
          }
          failure_seen = true;
          attempted[th].push_back(std::move(w));
          ++failures;
        }
      }
    });
  while (acks.load() < 60 && !failure_seen.load()) std::this_thread::yield();
  fs.fail_sync_after = 1;
  for (auto& th : threads) th.join();
  EXPECT_TRUE(failure_seen.load());
  EXPECT_EQ(late_acks.load(), 0) << "appends submitted after a failure was reported were acknowledged";
  const uint64_t head = s->head_position();
  (void)s->close();
  s.reset();
  // Reopen: every thread's acknowledged events are present, in order, with dense revisions.
  auto r = open_ok(small_options(dir, 4096, Durability::kFsync));
  ASSERT_TRUE(r);
  EXPECT_GE(r->head_position(), head);
  for (int th = 0; th < kThreads; ++th) {
    for (const auto& w : acked[th]) {
      const auto& res = w.results.front();
      for (uint64_t p = res.first_position, k = 0; p <= res.last_position; ++p, ++k) {
        auto e = r->read_position(p);
        ASSERT_TRUE(e.ok()) << "acknowledged position " << p << ": " << e.status().to_string();
        EXPECT_EQ(e->stream, w.events[k].first);
        EXPECT_EQ(e->id, *w.events[k].second.id);
        EXPECT_EQ(e->data, w.events[k].second.data);
        EXPECT_EQ(e->revision, res.first_revision + k);
      }
    }
  }
  const uint64_t end = r->head_position();
  ASSERT_TRUE(r->close().ok());
  r.reset();
  expect_verify_ok(dir, end);
}

// The asynchronous path (Store::append_async): with the fsync failing, no callback reports success, every
// append in flight and every later one fails saying why, and each callback runs exactly once.
TEST(FaultInjection, AsyncAppendsInFlightDuringAnFsyncFailureAreNotAcknowledged) {
  TempDir dir;
  FaultFs fs;
  auto s = open_faulty(small_options(dir.path(), 1 << 20, Durability::kFsync), fs);
  ASSERT_TRUE(s);
  std::vector<uint64_t> acked_positions;
  for (uint64_t i = 0; i < 20; ++i) {
    auto r = s->append(numbered("before", i, 1));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    acked_positions.push_back(r->streams[0].first_position);
  }
  fs.fail_sync_after = 1;
  constexpr int kAppends = 500;
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0, ok = 0;
  std::map<int, int> calls;
  for (int i = 0; i < kAppends; ++i)
    s->append_async(numbered("after-" + std::to_string(i % 7), 1000 + static_cast<uint64_t>(i), 1),
                    [&, i](Result<AppendResult> r) {
                      std::lock_guard g(mu);
                      ++calls[i];
                      if (r.ok()) ++ok;
                      else expect_failed_append(r, "fsync");
                      ++answered;
                      cv.notify_all();
                    });
  {
    std::unique_lock g(mu);
    ASSERT_TRUE(cv.wait_for(g, std::chrono::seconds(30), [&] { return answered == kAppends; })) << answered;
  }
  EXPECT_EQ(ok, 0) << "an asynchronous append was acknowledged although its fsync failed";
  for (const auto& [i, n] : calls) EXPECT_EQ(n, 1) << "callback of append " << i;
  EXPECT_EQ(calls.size(), static_cast<size_t>(kAppends));
  (void)s->close();
  s.reset();
  auto again = open_ok(small_options(dir.path(), 1 << 20, Durability::kFsync));
  ASSERT_TRUE(again);
  for (uint64_t p : acked_positions) EXPECT_TRUE(again->read_position(p).ok()) << p;
}

}  // namespace
}  // namespace cairn::logtest
