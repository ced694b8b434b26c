// Damaged bytes: a flipped bit anywhere in a segment must be found by verify (naming file and offset),
// must make reads of the damaged records fail with kCorruption naming the file, must never let altered
// data through, and must not disturb reads elsewhere. A damaged complete commit in the tail of the last
// segment stops open (kCorruption) unless repair is asked for, which cuts it and keeps the cut bytes.
// Tampering that keeps the checksums valid is caught by the payload digests and the hash chain.
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "log/log_test_util.h"
#include "testing/temp_dir.h"

namespace cairn::logtest {
namespace {

using testing::TempDir;
using ::testing::HasSubstr;

constexpr uint64_t kSegmentSize = 4096;
const char* const kStreams[] = {"acct-1", "acct-2", "user-3", "user-4"};

struct Fixture {
  std::vector<RecordedEvent> events;  // the whole log
  std::vector<SegmentLayout> segments;
};

Fixture build(const std::string& dir, int commits = 80) {
  Fixture f;
  auto s = open_ok(small_options(dir, kSegmentSize));
  if (!s) return f;
  uint64_t n = 0;
  for (int i = 0; i < commits; ++i) {
    std::vector<EventData> evs;
    for (int k = 0; k < 1 + i % 3; ++k) evs.push_back(make_event(n++));
    if (i % 5 == 4) {
      std::vector<StreamAppend> multi;
      multi.push_back(stream_append(kStreams[i % 4], ExpectedRevision::any(), {evs[0]}));
      evs.erase(evs.begin());
      evs.push_back(make_event(n++));
      multi.push_back(stream_append(kStreams[(i + 1) % 4], ExpectedRevision::any(), evs));
      auto r = s->append_multi(multi);
      EXPECT_TRUE(r.ok()) << r.status().to_string();
    } else {
      auto r = s->append(stream_append(kStreams[i % 4], ExpectedRevision::any(), evs));
      EXPECT_TRUE(r.ok()) << r.status().to_string();
    }
  }
  f.events = all_events(*s);
  EXPECT_TRUE(s->close().ok());
  for (const auto& p : segment_paths(dir)) f.segments.push_back(layout_of(p));
  return f;
}

std::string name_of(const std::string& path) { return std::filesystem::path(path).filename().string(); }

// verify reports the damage: ok == false, the file, an offset at or before the damaged byte, a problem.
void expect_verify_finds(const std::string& dir, const std::string& seg_name, uint64_t damaged_offset,
                         std::optional<uint64_t> exact_offset = std::nullopt, const std::string& problem_word = "") {
  auto v = verify_log(dir);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_FALSE(v->ok) << "verify did not notice the damage at " << seg_name << " offset " << damaged_offset;
  EXPECT_EQ(name_of(v->file), seg_name) << v->file << ": " << v->problem;
  EXPECT_LE(v->offset, damaged_offset) << v->problem;
  if (exact_offset) {
    EXPECT_EQ(v->offset, *exact_offset) << v->problem;
  }
  EXPECT_FALSE(v->problem.empty());
  if (!problem_word.empty()) {
    EXPECT_THAT(v->problem, HasSubstr(problem_word));
  }
}

void expect_corruption_naming(const Status& st, const std::string& seg_name, const std::string& what) {
  EXPECT_EQ(st.code(), ErrorCode::kCorruption) << what << ": " << st.to_string();
  EXPECT_THAT(st.message(), HasSubstr(seg_name)) << what;
  EXPECT_THAT(st.message(), HasSubstr("offset")) << what;
}

// Every read of every position either fails with kCorruption or returns exactly the original event; the
// positions in `must_fail` fail. Returns how many positions failed.
size_t sweep_positions(Store& s, const std::vector<RecordedEvent>& expected, uint64_t fail_lo, uint64_t fail_hi,
                       const std::string& seg_name) {
  size_t failed = 0;
  for (uint64_t p = 0; p < expected.size(); ++p) {
    auto r = s.read_position(p);
    if (r.ok()) {
      EXPECT_TRUE(same_event(*r, expected[p])) << "altered data returned at position " << p << ": " << describe(*r);
      EXPECT_FALSE(p >= fail_lo && p < fail_hi) << "position " << p << " is in the damaged commit but was returned";
    } else {
      ++failed;
      expect_corruption_naming(r.status(), seg_name, fmt::format("read_position({})", p));
    }
  }
  // Paged $all reads, forward and backward: pages that succeed hold only original events.
  for (uint64_t from = 0; from < expected.size(); from += 7) {
    for (Direction d : {Direction::kForward, Direction::kBackward}) {
      auto page = s.read_all(from, d, 7, Filter{});
      if (!page.ok()) {
        expect_corruption_naming(page.status(), seg_name, fmt::format("read_all({})", from));
        continue;
      }
      for (const auto& e : page->events)
        EXPECT_TRUE(same_event(e, expected[e.position])) << "altered data in read_all: " << describe(e);
    }
  }
  return failed;
}

// The first sealed segment with at least 3 frames, not the first segment (so that segments on both sides
// stay readable).
size_t pick_sealed(const Fixture& f) {
  for (size_t i = 1; i + 1 < f.segments.size(); ++i)
    if (f.segments[i].frames.size() >= 3) return i;
  ADD_FAILURE() << "no sealed segment with 3 frames";
  return 1;
}

TEST(BitFlip, PayloadOfSealedSegment) {
  TempDir t;
  const Fixture f = build(t.sub("orig"));
  ASSERT_GE(f.segments.size(), 4u);
  const size_t si = pick_sealed(f);
  const SegmentLayout& seg = f.segments[si];
  const FrameInfo& frame = seg.frames[1];
  const EventLoc* ev = nullptr;
  for (const auto& e : frame.events)
    if (e.data_size > 4) ev = &e;
  ASSERT_NE(ev, nullptr);
  const uint64_t flip_at = ev->data_offset + ev->data_size / 2;
  const std::string name = name_of(seg.path);
  const std::string dir = t.sub("d");
  copy_dir(t.sub("orig"), dir);
  flip_bit(dir + "/log/" + name, flip_at, 3);

  expect_verify_finds(dir, name, flip_at, frame.offset, "checksum");

  auto s = open_ok(small_options(dir, kSegmentSize));
  ASSERT_TRUE(s) << "sealed segments are not read on open: the store must open";
  ASSERT_EQ(s->head_position(), f.events.size());
  const RecordedEvent& damaged = f.events[ev->position];

  // Reads touching the damaged record fail, naming the file.
  expect_corruption_naming(s->read_position(ev->position).status(), name, "read_position");
  // The whole commit is unreadable (one body checksum covers it), not only the altered event.
  for (uint64_t p = frame.first_position; p < frame.first_position + frame.event_count; ++p)
    expect_corruption_naming(s->read_position(p).status(), name, fmt::format("read_position({})", p));
  expect_corruption_naming(s->read_all(0, Direction::kForward, 100000, Filter{}).status(), name, "read_all forward");
  expect_corruption_naming(s->read_all(std::nullopt, Direction::kBackward, 100000, Filter{}).status(), name,
                           "read_all backward");
  expect_corruption_naming(s->read_stream(damaged.stream, std::nullopt, Direction::kForward, 100000).status(), name,
                           "read_stream");
  expect_corruption_naming(s->read_event(damaged.id).status(), name, "read_event");
  Status scan = s->scan_all(0, Filter{}, [&](const EventView& v) {
    EXPECT_TRUE(same_event(v.to_owned(), f.events[v.position])) << "scan_all passed altered data at " << v.position;
    return true;
  });
  expect_corruption_naming(scan, name, "scan_all");

  // Undamaged records elsewhere still read: other segments, and the stream after the damaged revision.
  const uint64_t next_seg_first = f.segments[si + 1].first_position;
  auto tail = s->read_all(next_seg_first, Direction::kForward, 100000, Filter{});
  ASSERT_TRUE(tail.ok()) << tail.status().to_string();
  ASSERT_EQ(tail->events.size(), f.events.size() - next_seg_first);
  for (const auto& e : tail->events) EXPECT_TRUE(same_event(e, f.events[e.position]));
  auto early = s->read_all(0, Direction::kForward, static_cast<size_t>(seg.first_position), Filter{});
  ASSERT_TRUE(early.ok()) << early.status().to_string();
  EXPECT_EQ(early->events.size(), seg.first_position);
  auto last = s->read_position(f.events.size() - 1);
  ASSERT_TRUE(last.ok()) << last.status().to_string();

  const size_t failed = sweep_positions(*s, f.events, frame.first_position, frame.first_position + frame.event_count, name);
  EXPECT_GE(failed, frame.event_count);
  // Appends still work: the damage is in history, not in the tail.
  auto r = s->append(stream_append("acct-9", ExpectedRevision::no_stream(), {make_event(5000)}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->streams[0].first_position, f.events.size());
}

TEST(BitFlip, FrameHeaderOfSealedSegment) {
  TempDir t;
  const Fixture f = build(t.sub("orig"));
  ASSERT_GE(f.segments.size(), 4u);
  const size_t si = pick_sealed(f);
  const SegmentLayout& seg = f.segments[si];
  const FrameInfo& frame = seg.frames[1];
  const std::string name = name_of(seg.path);
  // header crc, frame size, body crc, type, flags, first position, event count, reserved, chain head.
  for (uint64_t byte : {0u, 2u, 4u, 5u, 8u, 12u, 14u, 16u, 17u, 24u, 28u, 32u, 47u, 63u}) {
    for (int bit : {0, 6}) {
      SCOPED_TRACE(fmt::format("frame header byte {} bit {}", byte, bit));
      const std::string dir = t.sub("d");
      copy_dir(t.sub("orig"), dir);
      const uint64_t flip_at = frame.offset + byte;
      flip_bit(dir + "/log/" + name, flip_at, bit);
      expect_verify_finds(dir, name, flip_at, frame.offset);
      auto s = open_ok(small_options(dir, kSegmentSize));
      ASSERT_TRUE(s);
      for (uint64_t p = frame.first_position; p < frame.first_position + frame.event_count; ++p)
        expect_corruption_naming(s->read_position(p).status(), name, fmt::format("read_position({})", p));
      expect_corruption_naming(s->read_all(0, Direction::kForward, 100000, Filter{}).status(), name, "read_all");
      const uint64_t next_seg_first = f.segments[si + 1].first_position;
      auto tail = s->read_all(next_seg_first, Direction::kForward, 100000, Filter{});
      ASSERT_TRUE(tail.ok()) << tail.status().to_string();
      EXPECT_EQ(tail->events.size(), f.events.size() - next_seg_first);
      sweep_positions(*s, f.events, frame.first_position, frame.first_position + frame.event_count, name);
      if (HasFailure()) return;
    }
  }
}

TEST(BitFlip, SegmentHeaderOfSealedSegment) {
  TempDir t;
  const Fixture f = build(t.sub("orig"));
  ASSERT_GE(f.segments.size(), 4u);
  for (size_t si : {size_t{0}, pick_sealed(f)}) {
    const SegmentLayout& seg = f.segments[si];
    const std::string name = name_of(seg.path);
    // magic, version, header size, checksum, first position, last time, chain before.
    for (uint64_t byte : {0u, 7u, 8u, 10u, 12u, 16u, 20u, 24u, 32u, 63u}) {
      SCOPED_TRACE(fmt::format("segment {} header byte {}", name, byte));
      const std::string dir = t.sub("d");
      copy_dir(t.sub("orig"), dir);
      flip_bit(dir + "/log/" + name, byte, 1);
      expect_verify_finds(dir, name, byte);
      // History damage, like a damaged commit in a sealed segment, must not take the whole store down:
      // the store opens, reads of this segment fail naming it, reads elsewhere work.
      auto s = open_store(small_options(dir, kSegmentSize));
      ASSERT_TRUE(s.ok()) << "a damaged header of a sealed segment made the whole store unopenable: "
                          << s.status().to_string();
      const uint64_t lo = seg.first_position;
      const uint64_t hi = f.segments[si + 1].first_position;
      for (uint64_t p = lo; p < hi; ++p)
        expect_corruption_naming((*s)->read_position(p).status(), name, fmt::format("read_position({})", p));
      expect_corruption_naming((*s)->read_all(0, Direction::kForward, 100000, Filter{}).status(), name, "read_all");
      auto tail = (*s)->read_all(hi, Direction::kForward, 100000, Filter{});
      ASSERT_TRUE(tail.ok()) << tail.status().to_string();
      EXPECT_EQ(tail->events.size(), f.events.size() - hi);
      if (lo > 0) {
        auto early = (*s)->read_all(0, Direction::kForward, static_cast<size_t>(lo), Filter{});
        ASSERT_TRUE(early.ok()) << early.status().to_string();
        EXPECT_EQ(early->events.size(), lo);
      }
      sweep_positions(**s, f.events, lo, hi, name);
      if (HasFailure()) return;
    }
  }
}

// The header of the last segment is damaged: its commits cannot be trusted or even located, so open
// refuses, naming the file, and changes nothing.
TEST(BitFlip, SegmentHeaderOfLastSegmentStopsOpen) {
  TempDir t;
  const Fixture f = build(t.sub("orig"));
  const std::string name = name_of(f.segments.back().path);
  for (uint64_t byte : {0u, 12u, 16u, 40u}) {
    SCOPED_TRACE(fmt::format("segment {} header byte {}", name, byte));
    const std::string dir = t.sub("d");
    copy_dir(t.sub("orig"), dir);
    const std::string path = dir + "/log/" + name;
    flip_bit(path, byte, 2);
    const std::string damaged = read_file(path);
    expect_verify_finds(dir, name, byte);
    auto s = open_store(small_options(dir, kSegmentSize));
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), ErrorCode::kCorruption) << s.status().to_string();
    EXPECT_THAT(s.status().message(), HasSubstr(name));
    EXPECT_EQ(read_file(path), damaged);
  }
}

// A complete commit in the tail of the last segment fails its checks: open refuses (changing nothing);
// open with repair cuts the log there and keeps the cut bytes under repair/.
class TailDamage : public ::testing::TestWithParam<std::tuple<bool, bool>> {};  // (last frame?, in header?)

TEST_P(TailDamage, OpenRefusesAndRepairCuts) {
  const auto [last_frame, in_header] = GetParam();
  TempDir t;
  const Fixture f = build(t.sub("orig"));
  const SegmentLayout& seg = f.segments.back();
  ASSERT_GE(seg.frames.size(), 2u) << "the last segment needs two commits";
  const FrameInfo& frame = last_frame ? seg.frames.back() : seg.frames.front();
  const uint64_t flip_at = in_header ? frame.offset + 20 : frame.events.back().record_offset + frame.events.back().record_size - 1;
  const std::string name = name_of(seg.path);
  const std::string dir = t.sub("d");
  copy_dir(t.sub("orig"), dir);
  const std::string path = dir + "/log/" + name;
  flip_bit(path, flip_at, 5);
  const std::string damaged = read_file(path);

  expect_verify_finds(dir, name, flip_at, frame.offset);

  auto s = open_store(small_options(dir, kSegmentSize));
  ASSERT_FALSE(s.ok()) << "a damaged complete commit in the tail must not be cut silently";
  EXPECT_EQ(s.status().code(), ErrorCode::kCorruption);
  EXPECT_THAT(s.status().message(), HasSubstr(name));
  EXPECT_THAT(s.status().message(), HasSubstr(fmt::format("offset {}", frame.offset)));
  EXPECT_EQ(read_file(path), damaged) << "a refused open changed the segment";
  EXPECT_FALSE(std::filesystem::exists(dir + "/repair"));

  EmbeddedOptions o = small_options(dir, kSegmentSize);
  o.repair = true;
  auto r = open_store(o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto& st = **r;
  ASSERT_EQ(st.head_position(), frame.first_position);
  std::vector<RecordedEvent> before(f.events.begin(), f.events.begin() + static_cast<ptrdiff_t>(frame.first_position));
  expect_events(st, before);
  // The cut bytes were kept.
  ASSERT_TRUE(std::filesystem::is_directory(dir + "/repair"));
  std::vector<std::string> kept;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/repair")) kept.push_back(e.path().string());
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_THAT(kept[0], HasSubstr(name));
  EXPECT_EQ(read_file(kept[0]), damaged.substr(frame.offset)) << "the saved bytes are not the cut bytes";
  EXPECT_EQ(file_size(path), frame.offset);
  // Appending continues at the cut, with the right revision.
  const std::string stream = "acct-1";
  std::optional<uint64_t> rev;
  for (const auto& e : before)
    if (e.stream == stream) rev = e.revision;
  ASSERT_TRUE(rev);
  auto a = st.append(stream_append(stream, ExpectedRevision::exact(*rev), {make_event(4242)}));
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->streams[0].first_position, frame.first_position);
  EXPECT_EQ(a->streams[0].first_revision, *rev + 1);
  ASSERT_TRUE(st.close().ok());
  (*r).reset();
  expect_verify_ok(dir, frame.first_position + 1);
}

INSTANTIATE_TEST_SUITE_P(LastSegment, TailDamage,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()), [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "LastCommit" : "EarlierCommit") +
                                  (std::get<1>(info.param) ? "Header" : "Payload");
                         });

// ---------------------------------------------------------------------------------------------------------
// Tampering that keeps every checksum valid.

void recompute_frame_crcs(std::string& bytes, uint64_t frame_offset) {
  auto* p = reinterpret_cast<uint8_t*>(bytes.data()) + frame_offset;
  const uint32_t size = log::load32(p + 4);
  log::store32(p + 8, log::crc32c(p + log::kFrameHeaderSize, size - log::kFrameHeaderSize));
  log::store32(p, log::crc32c(p + 4, log::kFrameHeaderSize - 4));
}

void recompute_digest(std::string& bytes, const EventLoc& e) {
  auto* base = reinterpret_cast<uint8_t*>(bytes.data());
  log::Sha256 sha;
  const log::Hash d = log::payload_digest(
      sha, base + e.salt_offset, std::string_view(bytes.data() + e.meta_offset, e.meta_size),
      std::string_view(bytes.data() + e.data_offset, e.data_size));
  std::memcpy(base + e.record_offset + 56, d.data(), 32);
}

struct Tamper : ::testing::Test {
  TempDir t;
  Fixture f;
  size_t si = 0;
  std::string name, dir, path, bytes;
  void SetUp() override {
    f = build(t.sub("orig"));
    ASSERT_GE(f.segments.size(), 4u);
    si = pick_sealed(f);
    name = name_of(f.segments[si].path);
    dir = t.sub("d");
    copy_dir(t.sub("orig"), dir);
    path = dir + "/log/" + name;
    bytes = read_file(path);
  }
  const FrameInfo& frame() const { return f.segments[si].frames[1]; }
  const EventLoc& event() const { return frame().events.front(); }
  void check_crcs_still_valid() {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    auto c = log::check_frame(p + frame().offset, bytes.size() - frame().offset, true);
    ASSERT_EQ(c.state, log::FrameState::kOk) << "the tampering should keep the checksums valid: " << c.problem;
  }
};

TEST_F(Tamper, DataChangedWithValidChecksumsBreaksTheDigest) {
  ASSERT_GT(event().data_size, 2u);
  const uint64_t at = event().data_offset + 1;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x01);
  recompute_frame_crcs(bytes, frame().offset);
  check_crcs_still_valid();
  write_file(path, bytes);
  expect_verify_finds(dir, name, at, event().record_offset, "digest");
}

TEST_F(Tamper, DataAndDigestChangedWithValidChecksumsBreaksTheChain) {
  const uint64_t at = event().data_offset + 1;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x01);
  recompute_digest(bytes, event());
  recompute_frame_crcs(bytes, frame().offset);
  check_crcs_still_valid();
  write_file(path, bytes);
  expect_verify_finds(dir, name, at, frame().offset, "chain");
}

TEST_F(Tamper, IdChangedWithValidChecksumsBreaksTheChain) {
  const uint64_t at = event().record_offset + 40;  // the event id
  bytes[at] = static_cast<char>(bytes[at] ^ 0x40);
  recompute_frame_crcs(bytes, frame().offset);
  check_crcs_still_valid();
  write_file(path, bytes);
  expect_verify_finds(dir, name, at, frame().offset, "chain");
}

TEST_F(Tamper, RevisionChangedWithValidChecksumsIsFound) {
  const uint64_t at = event().record_offset + 24;  // the revision
  bytes[at] = static_cast<char>(bytes[at] ^ 0x04);
  recompute_frame_crcs(bytes, frame().offset);
  check_crcs_still_valid();
  write_file(path, bytes);
  // Either the per-stream revision check or the chain notices; both name the place.
  expect_verify_finds(dir, name, at);
}

TEST_F(Tamper, CommitRewrittenWithItsOwnChainHeadBreaksTheNextLink) {
  // Change a byte, fix the digest, recompute this commit's chain head from the true previous head and
  // rewrite the checksums: the commit is self-consistent, but the next commit no longer follows from it.
  ASSERT_GE(f.segments[si].frames.size(), 3u);
  const uint64_t at = event().data_offset;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x02);
  recompute_digest(bytes, event());
  auto* base = reinterpret_cast<uint8_t*>(bytes.data());
  const FrameInfo& prev = f.segments[si].frames[0];
  log::Hash prev_head;
  std::memcpy(prev_head.data(), base + prev.offset + 32, 32);
  log::Sha256 sha;
  log::ChainHasher chain(sha);
  chain.begin(prev_head, base + frame().offset);
  for (const auto& e : frame().events) chain.add_event(base + e.record_offset);
  const log::Hash head = chain.finish();
  std::memcpy(base + frame().offset + 32, head.data(), 32);
  recompute_frame_crcs(bytes, frame().offset);
  check_crcs_still_valid();
  write_file(path, bytes);
  const FrameInfo& next = f.segments[si].frames[2];
  auto v = verify_log(dir);
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(name_of(v->file), name);
  EXPECT_EQ(v->offset, next.offset) << v->problem;
  EXPECT_THAT(v->problem, HasSubstr("chain"));
}

TEST_F(Tamper, SegmentChainBeforeChangedWithValidChecksumIsFound) {
  auto* base = reinterpret_cast<uint8_t*>(bytes.data());
  auto h = log::decode_segment_header(base, bytes.size());
  ASSERT_TRUE(h.ok());
  log::SegmentHeader changed = *h;
  changed.chain_before[5] ^= 0x80;
  log::encode_segment_header(changed, base);
  write_file(path, bytes);
  expect_verify_finds(dir, name, 32 + 5, std::nullopt, "chain");
}

}  // namespace
}  // namespace cairn::logtest
