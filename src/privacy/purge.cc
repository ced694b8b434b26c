#include "privacy/purge.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "log/crc32c.h"
#include "log/record.h"
#include "privacy/personal.h"

namespace cairn::privacy {
namespace {

struct Change {
  uint64_t record = 0;     // offset of the record in the segment
  uint64_t data = 0;       // offset of its data
  std::string purged;      // the new data (same length)
};

struct FrameChanges {
  uint64_t offset = 0;
  uint32_t size = 0;
  std::vector<Change> changes;
};

}  // namespace

Result<SegmentPurge> purge_segment(const log::Segment& segment, uint64_t size, const KeyStore& keys,
                                   base::FileSystem* fs, const std::string& tmp_path, bool sync,
                                   const std::function<void(uint64_t scanned)>& progress) {
  SegmentPurge out;
  const uint8_t* base = segment.data();
  std::vector<FrameChanges> frames;
  std::vector<std::string> key_ids;
  uint64_t offset = log::kSegmentHeaderSize;
  uint64_t last_report = 0;
  while (offset < size) {
    const log::FrameCheck c = log::check_frame(base + offset, size - offset, /*check_body=*/true);
    if (c.state == log::FrameState::kEnd) break;
    if (c.state != log::FrameState::kOk)
      return Status::corruption(fmt::format("{} offset {}: {} (the purge rewrites only whole, intact segments; run cairn verify)",
                                            segment.path(), offset, c.problem));
    FrameChanges fc{offset, c.header.frame_size, {}};
    Status failed;
    Status st = log::for_each_event(c.header, base + offset + log::kFrameHeaderSize,
                                    [&](const EventView& v, const uint8_t* rec, uint32_t) {
      if (!v.sealed_parts || v.payload_removed) return true;
      size_t n = 0;
      auto purged = purge_parts(keys, v.data, &n, &key_ids);
      if (!purged.ok()) {
        failed = Status(purged.status().code(),
                        fmt::format("{} position {}: {}", segment.path(), v.position, purged.status().message()));
        return false;
      }
      if (n == 0) return true;
      if (purged->size() != v.data.size()) {
        failed = Status::corruption(fmt::format("{} position {}: a purge would change the record's size", segment.path(), v.position));
        return false;
      }
      out.parts += n;
      ++out.events;
      for (size_t i = 0; i < v.data.size(); ++i) out.bytes_replaced += (*purged)[i] != v.data[i] ? 1 : 0;
      fc.changes.push_back({static_cast<uint64_t>(rec - base), static_cast<uint64_t>(reinterpret_cast<const uint8_t*>(v.data.data()) - base),
                            std::move(*purged)});
      return true;
    });
    if (!failed.ok()) return failed;
    if (!st.ok()) return Status::corruption(fmt::format("{} offset {}: {}", segment.path(), offset, st.message()));
    if (!fc.changes.empty()) frames.push_back(std::move(fc));
    offset += c.header.frame_size;
    if (progress && offset - last_report >= (4u << 20)) {
      progress(offset);
      last_report = offset;
    }
  }
  if (progress) progress(offset);
  if (frames.empty()) return out;
  for (const std::string& k : key_ids) {
    std::string subject = k.substr(0, k.find('/'));
    if (std::find(out.subjects.begin(), out.subjects.end(), subject) == out.subjects.end()) out.subjects.push_back(std::move(subject));
  }

  // The copy: untouched byte ranges straight from the mapping, changed frames rebuilt in a buffer.
  CAIRN_RETURN_IF_ERROR(fs->remove(tmp_path));
  auto file = fs->create_file(tmp_path);
  if (!file.ok()) return file.status();
  uint64_t copied = 0;
  std::string frame;
  for (const FrameChanges& fc : frames) {
    CAIRN_RETURN_IF_ERROR((*file)->append(base + copied, fc.offset - copied));
    frame.assign(reinterpret_cast<const char*>(base + fc.offset), fc.size);
    uint8_t* f = reinterpret_cast<uint8_t*>(frame.data());
    for (const Change& ch : fc.changes) {
      f[ch.record - fc.offset + 4] |= static_cast<uint8_t>(log::kEventFlagSealedParts | log::kEventFlagSealedPartsPurged);
      std::memcpy(f + (ch.data - fc.offset), ch.purged.data(), ch.purged.size());
    }
    log::store32(f + 8, log::crc32c(f + log::kFrameHeaderSize, fc.size - log::kFrameHeaderSize));
    log::store32(f, log::crc32c(f + 4, log::kFrameHeaderSize - 4));
    CAIRN_RETURN_IF_ERROR((*file)->append(f, fc.size));
    copied = fc.offset + fc.size;
  }
  CAIRN_RETURN_IF_ERROR((*file)->append(base + copied, size - copied));
  if (sync) CAIRN_RETURN_IF_ERROR((*file)->sync());
  out.rewritten = true;
  return out;
}

}  // namespace cairn::privacy
