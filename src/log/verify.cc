// cairn::verify_log: the whole-log integrity walk behind `cairn verify`.
#include <dirent.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>

#include "cairn/maintenance.h"
#include "base/file.h"
#include "log/record.h"
#include "log/segment.h"
#include "log/verify.h"

namespace cairn {

namespace {

struct Walker {
  VerifyReport r;
  log::Hash chain{};
  uint64_t next_position = 0;
  int64_t last_time = 0;
  std::unordered_map<std::string, uint64_t> revisions;
  bool standalone = false;  // one segment on its own: a stream's first revision in it may be any
  log::Sha256 digest_sha;
  log::Sha256 chain_sha;

  bool fail(const std::string& file, uint64_t offset, std::optional<uint64_t> position, std::string problem) {
    r.ok = false;
    r.file = file;
    r.offset = offset;
    r.position = position;
    r.problem = std::move(problem);
    return false;
  }

  bool frame(const log::Segment& seg, uint64_t offset, const log::FrameHeader& h, const uint8_t* f) {
    if (h.first_position != next_position)
      return fail(seg.path(), offset, h.first_position,
                  fmt::format("commit starts at position {}, expected {} (positions must be dense)", h.first_position,
                              next_position));
    log::ChainHasher hasher(chain_sha);
    hasher.begin(chain, f);
    bool ok = true;
    Status st = log::for_each_event(h, f + log::kFrameHeaderSize, [&](const StoredEventView& v, const uint8_t* rec, uint32_t) {
      const uint64_t rec_offset = offset + static_cast<uint64_t>(rec - f);
      auto [it, fresh] = revisions.try_emplace(std::string(v.stream), v.revision);
      if (fresh ? (v.revision != 0 && !standalone) : v.revision != it->second + 1) {
        ok = fail(seg.path(), rec_offset, v.position,
                  fmt::format("stream '{}' jumps to revision {} (expected {})", v.stream, v.revision,
                              fresh ? 0 : it->second + 1));
        return false;
      }
      it->second = v.revision;
      if (v.recorded_ns < last_time) {
        ok = fail(seg.path(), rec_offset, v.position, "recorded time goes back");
        return false;
      }
      last_time = v.recorded_ns;
      if (v.payload_removed) {
        ++r.removed_payloads;
      } else {
        const log::Hash d = log::event_digest(digest_sha, reinterpret_cast<const uint8_t*>(v.digest_salt.data()),
                                              v.metadata, v.data, v.sealed_parts);
        if (std::memcmp(d.data(), rec + 56, 32) != 0) {
          ok = fail(seg.path(), rec_offset, v.position, "payload does not match its digest");
          return false;
        }
      }
      hasher.add_event(rec);
      ++r.events;
      return true;
    });
    if (!st.ok()) return fail(seg.path(), offset, h.first_position, st.message());
    if (!ok) return false;
    const log::Hash head = hasher.finish();
    if (head != h.chain_head)
      return fail(seg.path(), offset, h.first_position,
                  "hash chain broken: the commit's chain head does not follow from the previous one and its events");
    chain = head;
    next_position += h.event_count;
    ++r.commits;
    return true;
  }
};

}  // namespace

Result<VerifyReport> verify_log(const std::string& dir, const ProgressFn& progress) {
  const std::string log_dir = dir + "/log";
  if (!base::path_exists(log_dir)) return Status::not_found(dir + " holds no Cairn log (no log/ folder)");
  auto lock = base::lock_data_dir(dir);
  if (!lock.ok()) return lock.status();
  struct Unlock {
    int fd;
    ~Unlock() { base::unlock_data_dir(fd); }
  } unlock{*lock};

  std::vector<uint64_t> firsts;
  if (DIR* d = ::opendir(log_dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      uint64_t first = 0;
      if (log::parse_segment_file_name(e->d_name, &first)) firsts.push_back(first);
    }
    ::closedir(d);
  } else {
    return Status::io_error(fmt::format("cannot list {}", log_dir));
  }
  std::sort(firsts.begin(), firsts.end());
  std::vector<log::SegmentExtent> segs;
  for (uint64_t first : firsts) {
    const std::string path = log_dir + "/" + log::segment_file_name(first);
    auto s = log::Segment::open(path, 0);
    if (!s.ok()) {
      VerifyReport r;
      r.ok = false;
      r.file = path;
      r.problem = s.status().message();
      return r;
    }
    const uint64_t size = (*s)->file_size_at_open();
    segs.push_back({std::move(*s), size});
  }
  return log::verify_segments(segs, /*allow_torn_tail=*/true, progress);
}

namespace log {

namespace {

VerifyReport walk(const std::vector<SegmentExtent>& segs, bool allow_torn_tail, bool standalone, const ProgressFn& progress) {
  Walker w;
  if (standalone && !segs.empty()) {
    const SegmentHeader& h = segs[0].segment->header();
    w.standalone = true;
    w.chain = h.chain_before;
    w.next_position = h.first_position;
    w.last_time = h.last_time_before;
  }
  uint64_t total = 0;
  for (const auto& e : segs) total += e.size;
  uint64_t done = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& seg = *segs[i].segment;
    const bool last = i + 1 == segs.size();
    const auto& hdr = seg.header();
    if (!seg.header_error().ok()) {
      w.fail(seg.path(), 0, std::nullopt, seg.header_error().message());
      return w.r;
    }
    if (hdr.first_position != w.next_position) {
      w.fail(seg.path(), 16, hdr.first_position,
             fmt::format("segment starts at position {}, expected {}", hdr.first_position, w.next_position));
      return w.r;
    }
    if (hdr.chain_before != w.chain) {
      w.fail(seg.path(), 32, hdr.first_position, "segment header's chain head differs from the previous segment's last");
      return w.r;
    }
    ++w.r.segments;
    const uint64_t size = segs[i].size;
    uint64_t offset = log::kSegmentHeaderSize;
    for (;;) {
      log::FrameCheck c = log::check_frame(seg.data() + offset, size - offset, true);
      if (c.state == log::FrameState::kEnd) break;
      if (c.state == log::FrameState::kTorn && last && allow_torn_tail) {
        w.r.torn_tail_bytes = size - offset;
        break;
      }
      if (c.state != log::FrameState::kOk) {
        w.fail(seg.path(), offset, w.next_position,
               c.state == log::FrameState::kTorn ? "incomplete commit inside a sealed segment: " + c.problem : c.problem);
        return w.r;
      }
      if (!w.frame(seg, offset, c.header, seg.data() + offset)) return w.r;
      offset += c.header.frame_size;
      if (progress && (w.r.commits & 1023) == 0) progress(done + offset, total);
    }
    done += size;
    w.r.bytes += offset;
    if (progress) progress(done, total);
  }
  w.r.streams = w.revisions.size();
  w.r.chain_head_hex = log::hex(w.chain);
  return w.r;
}

}  // namespace

VerifyReport verify_segments(const std::vector<SegmentExtent>& segs, bool allow_torn_tail, const ProgressFn& progress) {
  return walk(segs, allow_torn_tail, /*standalone=*/false, progress);
}

VerifyReport verify_segment_alone(const SegmentExtent& seg, const ProgressFn& progress) {
  return walk({seg}, /*allow_torn_tail=*/false, /*standalone=*/true, progress);
}

Result<std::string> segment_end_head(const SegmentExtent& seg) {
  Hash head = seg.segment->header().chain_before;
  uint64_t offset = kSegmentHeaderSize;
  while (offset < seg.size) {
    const FrameCheck c = check_frame(seg.segment->data() + offset, seg.size - offset, /*check_body=*/false);
    if (c.state == FrameState::kEnd) break;
    if (c.state != FrameState::kOk)
      return Status::corruption(fmt::format("{} offset {}: {}", seg.segment->path(), offset, c.problem));
    head = c.header.chain_head;
    offset += c.header.frame_size;
  }
  return hex(head);
}

}  // namespace log
}  // namespace cairn
