// Helpers shared by the log test suites (torn tails, corruption, fault injection): building small stores
// with known content, walking the frames of a segment file, copying data directories and altering bytes.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "log/crc32c.h"
#include "log/record.h"
#include "log/segment.h"
#include "store/embedded_store.h"

namespace cairn::logtest {

// ---------------------------------------------------------------------------------------------------------
// Files.

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline void truncate_file(const std::string& path, uint64_t size) {
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size)), 0) << "truncate " << path;
}

inline uint64_t file_size(const std::string& path) { return std::filesystem::file_size(path); }

inline void flip_bit(const std::string& path, uint64_t offset, int bit) {
  std::string b = read_file(path);
  ASSERT_LT(offset, b.size());
  b[offset] = static_cast<char>(static_cast<uint8_t>(b[offset]) ^ (1u << bit));
  write_file(path, b);
}

// A recursive copy of a data directory (the store must be closed).
inline void copy_dir(const std::string& from, const std::string& to) {
  std::filesystem::remove_all(to);
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

inline std::vector<std::string> segment_paths(const std::string& dir) {
  std::vector<std::pair<uint64_t, std::string>> found;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/log")) {
    uint64_t first = 0;
    if (log::parse_segment_file_name(e.path().filename().string(), &first)) found.emplace_back(first, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Frames of a segment file, walked with the codec (independently of the store).

struct EventLoc {
  uint64_t position = 0;
  uint64_t record_offset = 0;  // in the file
  uint32_t record_size = 0;
  uint64_t data_offset = 0;    // first byte of the data in the file
  uint32_t data_size = 0;
  uint64_t meta_offset = 0;
  uint32_t meta_size = 0;
  uint64_t salt_offset = 0;
};

struct FrameInfo {
  uint64_t offset = 0;
  uint32_t size = 0;
  uint64_t first_position = 0;
  uint32_t event_count = 0;
  std::vector<EventLoc> events;
};

struct SegmentLayout {
  std::string path;
  uint64_t first_position = 0;
  uint64_t file_size = 0;
  uint64_t end = 0;  // offset after the last whole frame
  std::vector<FrameInfo> frames;
};

inline SegmentLayout layout_of(const std::string& path) {
  SegmentLayout l;
  l.path = path;
  const std::string b = read_file(path);
  l.file_size = b.size();
  const auto* p = reinterpret_cast<const uint8_t*>(b.data());
  auto h = log::decode_segment_header(p, b.size());
  EXPECT_TRUE(h.ok()) << path << ": " << h.status().to_string();
  if (!h.ok()) return l;
  l.first_position = h->first_position;
  uint64_t off = log::kSegmentHeaderSize;
  for (;;) {
    log::FrameCheck c = log::check_frame(p + off, b.size() - off, true);
    if (c.state != log::FrameState::kOk) break;
    FrameInfo f;
    f.offset = off;
    f.size = c.header.frame_size;
    f.first_position = c.header.first_position;
    f.event_count = c.header.event_count;
    const uint8_t* body = p + off + log::kFrameHeaderSize;
    Status st = log::for_each_event(c.header, body, [&](const StoredEventView& v, const uint8_t* rec, uint32_t size) {
      EventLoc e;
      e.position = v.position;
      e.record_offset = static_cast<uint64_t>(rec - p);
      e.record_size = size;
      e.data_offset = static_cast<uint64_t>(reinterpret_cast<const uint8_t*>(v.data.data()) - p);
      e.data_size = static_cast<uint32_t>(v.data.size());
      e.meta_offset = static_cast<uint64_t>(reinterpret_cast<const uint8_t*>(v.metadata.data()) - p);
      e.meta_size = static_cast<uint32_t>(v.metadata.size());
      e.salt_offset = static_cast<uint64_t>(reinterpret_cast<const uint8_t*>(v.digest_salt.data()) - p);
      f.events.push_back(e);
      return true;
    });
    EXPECT_TRUE(st.ok()) << st.to_string();
    l.frames.push_back(std::move(f));
    off += c.header.frame_size;
  }
  l.end = off;
  return l;
}

// ---------------------------------------------------------------------------------------------------------
// Events with known content.

// Deterministic, distinct content for the n-th event of a test; sizes vary with n.
inline EventData make_event(uint64_t n, size_t pad = 0) {
  EventData e;
  Uuid id;
  for (int i = 0; i < 16; ++i) id.bytes[i] = static_cast<uint8_t>((n * 131 + i * 17 + 1) & 0xff);
  id.bytes[0] = static_cast<uint8_t>(n & 0xff);
  id.bytes[1] = static_cast<uint8_t>((n >> 8) & 0xff);
  id.bytes[15] = 0xA5;
  e.id = id;
  e.type = fmt::format("Test.Happened{}", n % 3);
  if (n % 4 == 3) {
    e.content_type = ContentType::kBinary;
    e.data.resize(20 + n % 50 + pad);
    for (size_t i = 0; i < e.data.size(); ++i) e.data[i] = static_cast<char>((n * 7 + i * 13) & 0xff);
  } else {
    e.content_type = ContentType::kJson;
    e.data = fmt::format(R"({{"n":{},"text":"{}"}})", n, std::string(n % 40 + pad, static_cast<char>('a' + n % 26)));
  }
  if (n % 2 == 0) e.metadata = fmt::format(R"({{"correlation_id":"corr-{}"}})", n);
  return e;
}

inline EmbeddedOptions small_options(const std::string& dir, uint64_t segment_size = 4096,
                             Durability durability = Durability::kNone) {
  EmbeddedOptions o;
  o.dir = dir;
  o.durability = durability;
  o.segment_size = segment_size;
  return o;
}

inline std::unique_ptr<Store> open_ok(const EmbeddedOptions& o) {
  auto s = open_store(o);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

inline std::vector<RecordedEvent> all_events(Store& s) {
  std::vector<RecordedEvent> out;
  Status st = s.scan_all(0, Filter{}, [&](const EventView& v) {
    out.push_back(v.to_owned());
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.to_string();
  return out;
}

inline bool same_event(const RecordedEvent& a, const RecordedEvent& b) {
  return a.position == b.position && a.stream == b.stream && a.revision == b.revision && a.id == b.id &&
         a.type == b.type && a.recorded_ns == b.recorded_ns && a.content_type == b.content_type &&
         a.metadata == b.metadata && a.data == b.data && a.payload_removed == b.payload_removed;
}

inline std::string describe(const RecordedEvent& e) {
  return fmt::format("pos {} stream {} rev {} id {} type {} meta {}B data {}B", e.position, e.stream, e.revision,
                     e.id.to_string(), e.type, e.metadata.size(), e.data.size());
}

// Checks that the store holds exactly `expected` (positions 0..n-1), byte for byte.
inline void expect_events(Store& s, const std::vector<RecordedEvent>& expected) {
  auto got = all_events(s);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_TRUE(same_event(got[i], expected[i])) << "got " << describe(got[i]) << "\nwant " << describe(expected[i]);
}

inline StreamAppend stream_append(std::string stream, ExpectedRevision expected, std::vector<EventData> events) {
  StreamAppend a;
  a.stream = std::move(stream);
  a.expected = expected;
  a.events = std::move(events);
  return a;
}

inline void expect_verify_ok(const std::string& dir, uint64_t events) {
  auto r = verify_log(dir);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->ok) << r->file << " offset " << r->offset << ": " << r->problem;
  EXPECT_EQ(r->events, events);
}

}  // namespace cairn::logtest
