// Torn tails: a crash can leave the last commit of the last segment written only in part (or the file
// extended with zeros before its data reached the disk). Opening must cut exactly that commit, keep
// everything before it byte for byte, and continue appending where the cut commit started.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "log/log_test_util.h"
#include "testing/temp_dir.h"

namespace cairn::logtest {
namespace {

using testing::TempDir;

// A store whose last commit is a multi-stream append (2 events on "alpha-1", 1 on "beta-2").
struct Built {
  std::vector<RecordedEvent> before;  // every event before the last commit
  uint64_t last_first_position = 0;   // where the last commit starts
  uint64_t alpha_rev_before = 0;      // stream revisions before the last commit
  uint64_t beta_rev_before = 0;
  SegmentLayout last_segment;
  size_t segments = 0;
};

// last_commit_opens_segment: the last commit is the first frame of a freshly rolled segment.
Built build(const std::string& dir, bool last_commit_opens_segment, uint64_t segment_size = 4096, size_t pad = 0) {
  Built b;
  auto s = open_ok(small_options(dir, segment_size));
  if (!s) return b;
  uint64_t n = 0;
  uint64_t alpha = 0, beta = 0;  // number of events appended so far
  auto append_single = [&](const std::string& stream, uint64_t* count, size_t k) {
    std::vector<EventData> evs;
    for (size_t i = 0; i < k; ++i) evs.push_back(make_event(n++, pad));
    auto r = s->append(stream_append(stream, *count == 0 ? ExpectedRevision::no_stream() : ExpectedRevision::exact(*count - 1), evs));
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    *count += k;
  };
  // Enough commits for a few segments.
  for (int i = 0; i < 30; ++i) append_single(i % 2 ? "alpha-1" : "beta-2", i % 2 ? &alpha : &beta, 1 + i % 3);
  if (last_commit_opens_segment) {
    // Fill the active segment until the next append must roll.
    for (int guard = 0; guard < 1000 && file_size(segment_paths(dir).back()) < segment_size; ++guard)
      append_single("beta-2", &beta, 1);
  } else {
    // The last segment holds a few frames and has room, so the last commit goes after them.
    for (int guard = 0; guard < 1000; ++guard) {
      const auto l = layout_of(segment_paths(dir).back());
      if (l.frames.size() >= 3 && l.file_size < segment_size) break;
      append_single("alpha-1", &alpha, 1);
    }
  }
  b.before = all_events(*s);
  b.alpha_rev_before = alpha - 1;
  b.beta_rev_before = beta - 1;
  b.last_first_position = s->head_position();
  std::vector<StreamAppend> multi;
  multi.push_back(stream_append("alpha-1", ExpectedRevision::exact(alpha - 1), {make_event(n, pad), make_event(n + 1, pad)}));
  multi.push_back(stream_append("beta-2", ExpectedRevision::exact(beta - 1), {make_event(n + 2, pad)}));
  auto r = s->append_multi(multi);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  if (r.ok()) {
    EXPECT_EQ(r->streams[0].first_position, b.last_first_position);
  }
  EXPECT_TRUE(s->close().ok());
  s.reset();
  const auto segs = segment_paths(dir);
  b.segments = segs.size();
  b.last_segment = layout_of(segs.back());
  return b;
}

// Opens a copy whose last segment was cut (or altered) and checks the torn commit is gone and nothing else.
void expect_recovers_to_before(const std::string& dir, const Built& b, const std::string& what) {
  SCOPED_TRACE(what);
  auto s = open_ok(small_options(dir));
  ASSERT_TRUE(s);
  ASSERT_EQ(s->head_position(), b.last_first_position);
  expect_events(*s, b.before);
  // Reads through the index (rebuilt, since the index covered the cut commit) agree.
  auto page = s->read_stream("alpha-1", std::nullopt, Direction::kBackward, 1);
  ASSERT_TRUE(page.ok()) << page.status().to_string();
  ASSERT_EQ(page->events.size(), 1u);
  EXPECT_EQ(page->events[0].revision, b.alpha_rev_before);
  auto gone = s->read_position(b.last_first_position);
  EXPECT_EQ(gone.status().code(), ErrorCode::kNotFound) << gone.status().to_string();
  // The next append lands exactly where the cut commit started, with the next revisions.
  std::vector<StreamAppend> multi;
  multi.push_back(stream_append("beta-2", ExpectedRevision::exact(b.beta_rev_before), {make_event(900001)}));
  multi.push_back(stream_append("alpha-1", ExpectedRevision::exact(b.alpha_rev_before), {make_event(900002)}));
  auto r = s->append_multi(multi);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->streams[0].first_position, b.last_first_position);
  EXPECT_EQ(r->streams[0].first_revision, b.beta_rev_before + 1);
  EXPECT_EQ(r->streams[1].first_position, b.last_first_position + 1);
  EXPECT_EQ(r->streams[1].first_revision, b.alpha_rev_before + 1);
  EXPECT_FALSE(r->replayed);
  auto back = s->read_position(b.last_first_position + 1);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->data, make_event(900002).data);
  EXPECT_EQ(back->stream, "alpha-1");
  ASSERT_TRUE(s->close().ok());
  s.reset();
  expect_verify_ok(dir, b.last_first_position + 2);
}

class TornTail : public ::testing::TestWithParam<bool> {};

TEST_P(TornTail, EveryCutInsideTheLastCommitIsRecovered) {
  TempDir t;
  const std::string orig = t.sub("orig");
  const Built b = build(orig, GetParam());
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_GE(b.segments, 3u) << "the test needs sealed segments";
  ASSERT_FALSE(b.last_segment.frames.empty());
  const FrameInfo& last = b.last_segment.frames.back();
  ASSERT_EQ(last.first_position, b.last_first_position);
  ASSERT_EQ(last.offset + last.size, b.last_segment.file_size);
  if (GetParam()) {
    ASSERT_EQ(b.last_segment.frames.size(), 1u) << "the last commit should open its segment";
  } else {
    ASSERT_GE(b.last_segment.frames.size(), 2u);
  }
  const std::string name = std::filesystem::path(b.last_segment.path).filename().string();

  for (uint64_t cut = last.offset; cut < last.offset + last.size; ++cut) {
    const std::string dir = t.sub("cut");
    copy_dir(orig, dir);
    const std::string seg = dir + "/log/" + name;
    truncate_file(seg, cut);
    // verify (before any open) reports an intact log with a torn tail of exactly the cut commit's bytes.
    {
      auto v = verify_log(dir);
      ASSERT_TRUE(v.ok()) << v.status().to_string();
      ASSERT_TRUE(v->ok) << "cut at " << cut << ": " << v->file << " offset " << v->offset << ": " << v->problem;
      EXPECT_EQ(v->torn_tail_bytes, cut - last.offset) << "cut at " << cut;
      EXPECT_EQ(v->events, b.last_first_position);
    }
    expect_recovers_to_before(dir, b, fmt::format("segment {} cut at offset {} (commit at {}..{})", name, cut,
                                                  last.offset, last.offset + last.size));
    ASSERT_FALSE(::testing::Test::HasFatalFailure()) << "cut at " << cut;
    if (::testing::Test::HasFailure()) break;  // one failing offset says enough
  }
}

INSTANTIATE_TEST_SUITE_P(LastSegment, TornTail, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "CommitOpensSegment" : "CommitAfterOthers"; });

constexpr uint64_t kSegmentSizeForZeros = 4096;

TEST(TornTailZeros, ZeroFilledExtensionOpensAsTorn) {
  TempDir t;
  const std::string orig = t.sub("orig");
  const Built b = build(orig, false);
  ASSERT_FALSE(::testing::Test::HasFailure());
  const uint64_t total = b.last_first_position + 3;  // nothing is cut: the zeros are the torn part
  const std::string name = std::filesystem::path(b.last_segment.path).filename().string();
  for (uint64_t zeros : {1u, 7u, 63u, 64u, 65u, 100u, 4096u, 10000u}) {
    SCOPED_TRACE(fmt::format("{} zero bytes", zeros));
    const std::string dir = t.sub("z");
    copy_dir(orig, dir);
    const std::string seg = dir + "/log/" + name;
    const uint64_t size = file_size(seg);
    truncate_file(seg, size + zeros);  // extends with zeros
    auto v = verify_log(dir);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    EXPECT_TRUE(v->ok) << v->problem;
    EXPECT_EQ(v->torn_tail_bytes, zeros);
    EXPECT_EQ(v->events, total);
    {
      auto s = open_ok(small_options(dir));
      ASSERT_TRUE(s);
      EXPECT_EQ(s->head_position(), total);
      auto all = all_events(*s);
      ASSERT_EQ(all.size(), total);
      for (size_t i = 0; i < b.before.size(); ++i) ASSERT_TRUE(same_event(all[i], b.before[i])) << i;
      auto r = s->append(stream_append("alpha-1", ExpectedRevision::exact(b.alpha_rev_before + 2), {make_event(7777)}));
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_EQ(r->streams[0].first_position, total);
      EXPECT_EQ(r->streams[0].first_revision, b.alpha_rev_before + 3);
      ASSERT_TRUE(s->close().ok());
    }
    // The zeros were cut: the old segment ends with its last commit, and the new commit follows it
    // directly (or opens the next segment when the old one was full).
    const SegmentLayout after = layout_of(seg);
    EXPECT_EQ(after.end, after.file_size) << "bytes that are not whole commits remain in " << seg;
    ASSERT_GE(after.frames.size(), 1u);
    const SegmentLayout newest = layout_of(segment_paths(dir).back());
    ASSERT_FALSE(newest.frames.empty());
    EXPECT_EQ(newest.frames.back().first_position, total);
    if (newest.path == after.path) {
      ASSERT_GE(after.frames.size(), 2u);
      const FrameInfo& prev = after.frames[after.frames.size() - 2];
      EXPECT_EQ(prev.offset + prev.size, size) << "the new commit does not follow the old end";
    } else {
      EXPECT_EQ(after.file_size, size) << "the zeros were not cut from the sealed segment";
      EXPECT_GE(size, kSegmentSizeForZeros);
    }
    expect_verify_ok(dir, total + 1);
  }
}

// The realistic torn write on a file system that persists the file size before the data: the last
// commit's first page (holding its header) reached the disk, the following pages did not and read back as
// zeros. Nothing of that commit was ever acknowledged (its fdatasync never returned), so this is a torn
// tail like any other and must open (cutting the commit), not be refused as corruption.
TEST(TornTailZeros, LastCommitWhosePagesAfterTheHeaderAreZerosOpensAsTorn) {
  TempDir t;
  const std::string orig = t.sub("orig");
  // Larger segments and payloads so that the last commit spans several 4 KiB pages.
  const Built b = build(orig, false, 64 * 1024, 3000);
  ASSERT_FALSE(::testing::Test::HasFailure());
  const FrameInfo& last = b.last_segment.frames.back();
  const uint64_t page = 4096;
  const uint64_t first_page_end = (last.offset / page + 1) * page;
  ASSERT_LT(first_page_end, last.offset + last.size) << "the last commit must cross a page boundary";
  ASSERT_GE(first_page_end, last.offset + log::kFrameHeaderSize) << "its header must be on the first page";
  const std::string name = std::filesystem::path(b.last_segment.path).filename().string();
  const std::string dir = t.sub("z");
  copy_dir(orig, dir);
  const std::string seg = dir + "/log/" + name;
  std::string bytes = read_file(seg);
  std::fill(bytes.begin() + static_cast<ptrdiff_t>(first_page_end), bytes.end(), '\0');
  write_file(seg, bytes);
  auto v = verify_log(dir);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_TRUE(v->ok) << "verify calls an unacknowledged, partly written tail commit damage: " << v->file << " offset "
                     << v->offset << ": " << v->problem;
  EXPECT_EQ(v->torn_tail_bytes, last.size);
  expect_recovers_to_before(dir, b, "last commit zero-filled after its first page");
}

}  // namespace
}  // namespace cairn::logtest
