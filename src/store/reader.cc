#include "store/reader.h"

#include <algorithm>

#include <fmt/format.h>

namespace cairn::store {

using log::FrameRef;

namespace {
// Where to start looking for `position` in `seg`: the sparse index entry at or before it.
uint64_t start_offset(const index::Index& index, const log::Segment& seg, uint64_t position) {
  auto e = index.sparse_floor(seg.first_position(), position);
  return e ? e->value : log::kSegmentHeaderSize;
}
}  // namespace

Status LogReader::locate(uint64_t position, FrameRef* ref, const uint8_t** frame) const {
  auto seg = log_.segment_for(position);
  if (!seg) return Status::not_found(fmt::format("position {} does not exist (the log ends at {})", position, durable_end()));
  bool found = false;
  Status st = log_.visit_frames(seg, start_offset(index_, *seg, position), durable_end(),
                                [&](const FrameRef& r, const uint8_t* f) {
                                  if (position >= r.header.first_position + r.header.event_count) return true;
                                  *ref = r;
                                  *frame = f;
                                  found = position >= r.header.first_position;
                                  return false;
                                });
  CAIRN_RETURN_IF_ERROR(st);
  if (!found)
    return Status::corruption(fmt::format("{}: no commit holds position {} below the durable end {}", seg->path(),
                                          position, durable_end()));
  return log::Log::check_frame_body(*ref, *frame);
}

Status LogReader::scan(uint64_t from, uint64_t end, const ViewFn& visit) const {
  end = std::min(end, durable_end());
  if (from >= end) return {};
  auto seg = log_.segment_for(from);
  if (!seg) return {};
  Status inner;
  bool stop = false;
  Status st = log_.visit_frames(seg, start_offset(index_, *seg, from), end, [&](const FrameRef& r, const uint8_t* f) {
    const auto& h = r.header;
    if (h.first_position + h.event_count <= from) return true;
    inner = log::Log::check_frame_body(r, f);
    if (!inner.ok()) return false;
    inner = log::for_each_event(h, f + log::kFrameHeaderSize, [&](const StoredEventView& v, const uint8_t*, uint32_t) {
      if (v.position < from) return true;
      if (v.position >= end || !visit(v)) {
        stop = true;
        return false;
      }
      return true;
    });
    return inner.ok() && !stop;
  });
  CAIRN_RETURN_IF_ERROR(st);
  return inner;
}

Status LogReader::scan_backward(uint64_t from, uint64_t floor, const ViewFn& visit) const {
  const uint64_t end = durable_end();
  if (end == 0 || floor > from) return {};
  uint64_t cur = std::min(from, end - 1);
  for (;;) {
    auto seg = log_.segment_for(cur);
    if (!seg) return {};
    auto e = index_.sparse_floor(seg->first_position(), cur);
    const uint64_t block_first = e ? e->key : seg->first_position();
    const uint64_t offset = e ? e->value : log::kSegmentHeaderSize;
    // The views point into the mapped segment, which `seg` keeps alive while they are used.
    std::vector<StoredEventView> block;
    Status inner;
    Status st = log_.visit_frames(seg, offset, cur + 1, [&](const FrameRef& r, const uint8_t* f) {
      inner = log::Log::check_frame_body(r, f);
      if (!inner.ok()) return false;
      inner = log::for_each_event(r.header, f + log::kFrameHeaderSize, [&](const StoredEventView& v, const uint8_t*, uint32_t) {
        if (v.position > cur) return false;
        if (v.position >= floor) block.push_back(v);
        return true;
      });
      return inner.ok();
    });
    CAIRN_RETURN_IF_ERROR(st);
    CAIRN_RETURN_IF_ERROR(inner);
    for (auto it = block.rbegin(); it != block.rend(); ++it)
      if (!visit(*it)) return {};
    if (block_first <= floor || block_first == 0) return {};
    cur = block_first - 1;
  }
}

Status LogReader::read_positions(std::span<const uint64_t> positions, const ViewFn& visit) const {
  FrameRef ref;
  const uint8_t* frame = nullptr;
  const uint8_t* rec = nullptr;  // next record in the current frame
  uint64_t rec_pos = 0;          // its position
  for (uint64_t p : positions) {
    const bool in_frame = frame && p >= ref.header.first_position &&
                          p < ref.header.first_position + ref.header.event_count && p >= rec_pos;
    if (!in_frame) {
      CAIRN_RETURN_IF_ERROR(locate(p, &ref, &frame));
      rec = frame + log::kFrameHeaderSize;
      rec_pos = ref.header.first_position;
    }
    const uint8_t* frame_end = frame + ref.header.frame_size;
    StoredEventView v;
    for (;;) {
      uint32_t size = 0;
      CAIRN_RETURN_IF_ERROR(log::decode_event(rec, static_cast<size_t>(frame_end - rec), rec_pos, &v, &size));
      v.commit_position = ref.header.first_position;
      rec += size;
      ++rec_pos;
      if (v.position == p) break;
    }
    if (!visit(v)) return {};
  }
  return {};
}

Result<RecordedEvent> LogReader::read_position(uint64_t position) const {
  RecordedEvent out;
  const uint64_t ps[1] = {position};
  CAIRN_RETURN_IF_ERROR(read_positions(ps, [&](const EventView& v) {
    out = v.to_owned();
    return false;
  }));
  return out;
}

Result<std::optional<LogReader::StreamTip>> LogReader::stream_tip(std::string_view stream, uint64_t end) const {
  const uint64_t key = index::hash_name(stream);
  auto top = index_.max_revision(key);
  if (!top) return std::optional<StreamTip>{};
  // Almost always the first candidate is the stream's; a colliding stream only widens the search window.
  uint64_t hi = *top;
  std::vector<index::StreamEntry> entries;
  for (;;) {
    const uint64_t lo = hi >= 63 ? hi - 63 : 0;
    entries.clear();
    index_.stream_range(key, lo, hi, &entries);
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      if (it->position >= end) continue;
      auto ev = read_position(it->position);
      if (!ev.ok()) return ev.status();
      if (ev->stream == stream) return std::optional<StreamTip>(StreamTip{ev->revision, ev->position});
    }
    if (lo == 0) return std::optional<StreamTip>{};
    hi = lo - 1;
  }
}

Status LogReader::stream_events(std::string_view stream, uint64_t lo, uint64_t hi, uint64_t end,
                                const ViewFn& visit) const {
  std::vector<index::StreamEntry> entries;
  index_.stream_range(index::hash_name(stream), lo, hi, &entries);
  std::vector<uint64_t> positions;
  positions.reserve(entries.size());
  for (const auto& e : entries)
    if (e.position < end) positions.push_back(e.position);
  std::sort(positions.begin(), positions.end());  // a stream's revisions rise with its positions
  return read_positions(positions, [&](const EventView& v) { return v.stream != stream || visit(v); });
}

Result<std::optional<RecordedEvent>> LogReader::find_by_id(const Uuid& id, uint64_t end) const {
  std::vector<uint64_t> positions;
  index_.id_positions(index::hash_id(id), &positions);
  std::sort(positions.begin(), positions.end());
  for (uint64_t p : positions) {
    if (p >= end) continue;
    auto ev = read_position(p);
    if (!ev.ok()) return ev.status();
    if (ev->id == id) return std::optional<RecordedEvent>(std::move(*ev));
  }
  return std::optional<RecordedEvent>{};
}

}  // namespace cairn::store
