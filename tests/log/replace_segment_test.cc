// Log::replace_sealed_segment, the privacy purge's only way to write a sealed segment: it refuses the active
// segment, a segment of another log and a replacement whose header or size differ (the old file then stays
// in place, untouched); a valid replacement takes the old one's name and place for new readers while a
// reader holding the old segment keeps reading it; the log reopens with it.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <filesystem>

#include "base/file.h"
#include "log/log.h"
#include "log/record.h"
#include "log_test_util.h"
#include "testing/temp_dir.h"

namespace cairn::log {
namespace {

// Writes `commits` one-event commits, rolling after every `per_segment`, and returns the head.
Hash write_commits(Log& log, int commits, int per_segment) {
  CommitEncoder enc;
  Hash head{};
  std::array<uint8_t, kSaltSize> salt{};
  std::string pending;
  for (int i = 0; i < commits; ++i) {
    if (i > 0 && i % per_segment == 0) {
      EXPECT_TRUE(log.maybe_roll(i, head, 1, pending, /*force=*/true).ok());
    }
    const std::string data = "{\"n\":" + std::to_string(i) + "}";
    EventInput e;
    e.stream = "s";
    e.revision = static_cast<uint64_t>(i);
    e.id.bytes[0] = static_cast<uint8_t>(i + 1);
    e.type = "t";
    e.recorded_ns = 1;
    e.data = data;
    e.salt = salt.data();
    std::string frame;
    head = enc.encode(frame, static_cast<uint64_t>(i), std::span<const EventInput>(&e, 1), head);
    EXPECT_TRUE(log.write(frame).ok());
    EXPECT_TRUE(log.sync().ok());
    log.publish(log.active_segment(), log.active_offset(), static_cast<uint64_t>(i + 1));
  }
  return head;
}

LogOptions options() {
  LogOptions o;
  o.fs = base::posix_fs();
  o.segment_size = 1 << 20;
  return o;
}

TEST(ReplaceSealedSegment, RefusesWhatIsNotAReplacementAndSwapsWhatIs) {
  testing::TempDir dir;
  auto opened = Log::open(dir.path(), options());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  Log& log = **opened;
  write_commits(log, 9, 3);
  auto segs = log.segments();
  ASSERT_EQ(segs.size(), 3u);
  const std::string first_bytes = logtest::read_file(segs[0]->path());
  const std::string tmp = segs[0]->path() + ".purge.tmp";

  // The active segment, and a segment that is not this log's.
  logtest::write_file(tmp, first_bytes);
  EXPECT_EQ(log.replace_sealed_segment(segs.back(), tmp).status().code(), ErrorCode::kInvalidArgument);
  auto foreign = Segment::open(segs[1]->path(), 0);
  ASSERT_TRUE(foreign.ok());
  EXPECT_EQ(log.replace_sealed_segment(*foreign, tmp).status().code(), ErrorCode::kInvalidArgument);
  // A replacement of another size, or of another segment: refused, the old file untouched.
  logtest::write_file(tmp, first_bytes + "x");
  EXPECT_EQ(log.replace_sealed_segment(segs[0], tmp).status().code(), ErrorCode::kInvalidArgument);
  logtest::write_file(tmp, logtest::read_file(segs[1]->path()));
  EXPECT_FALSE(log.replace_sealed_segment(segs[0], tmp).ok());
  EXPECT_EQ(logtest::read_file(segs[0]->path()), first_bytes);

  // A valid one: same size and header, one data byte changed (CRCs not fixed: the log does not judge frames).
  std::string changed = first_bytes;
  const size_t at = changed.find("\"n\":0");
  ASSERT_NE(at, std::string::npos);
  changed[at + 4] = '7';
  logtest::write_file(tmp, changed);
  auto replaced = log.replace_sealed_segment(segs[0], tmp);
  ASSERT_TRUE(replaced.ok()) << replaced.status().to_string();
  EXPECT_FALSE(std::filesystem::exists(tmp));
  EXPECT_EQ(log.segments()[0], *replaced);
  EXPECT_EQ((*replaced)->path(), segs[0]->path());
  EXPECT_EQ((*replaced)->durable_size(), first_bytes.size());
  // The old mapping still shows the old bytes to whoever holds it; new readers see the new ones.
  EXPECT_EQ(std::memcmp(segs[0]->data() + at, "\"n\":0", 5), 0);
  EXPECT_EQ(std::memcmp((*replaced)->data() + at, "\"n\":7", 5), 0);
  EXPECT_EQ(log.segment_for(0), *replaced);
  segs.clear();
  replaced = Status::not_found("");
  opened->reset();
  auto again = Log::open(dir.path(), options());
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  ASSERT_EQ((*again)->segments().size(), 3u);
  EXPECT_EQ(std::memcmp((*again)->segments()[0]->data() + at, "\"n\":7", 5), 0);
}

}  // namespace
}  // namespace cairn::log
