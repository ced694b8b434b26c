// Reads over the log and its indexes, for the store's readers and for the writer's checks.
//
// Every event returned comes from a frame whose body checksum was verified on this read: a damaged record
// is reported as kCorruption naming file, offset and positions, never returned. Index answers are only
// candidates: each is confirmed against the record it points at (names, ids), so hash collisions and stale
// index entries cannot produce a wrong answer. Nothing at or past `end` (a durable position) is read.
// Thread safety: const and safe from any thread; views passed to visitors live only during the call.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string_view>

#include "cairn/event.h"
#include "index/index.h"
#include "log/log.h"

namespace cairn::store {

// Return false to stop. Every view the reader passes is a StoredEventView (scan_stored casts back to it):
// the fast paths take the base type, so scan_all hands its visitor through without another wrapper.
using ViewFn = std::function<bool(const EventView&)>;

class LogReader {
 public:
  LogReader(const log::Log& log, const index::Index& index) : log_(log), index_(index) {}

  uint64_t durable_end() const { return log_.durable_end(); }

  // Events with position in [from, end), ascending.
  Status scan(uint64_t from, uint64_t end, const ViewFn& visit) const;
  // Events at ascending positions in [from, end) that the frames hold, visited backward from `from`
  // down to (and including) `floor`.
  Status scan_backward(uint64_t from, uint64_t floor, const ViewFn& visit) const;
  // Events at the given ascending positions (all below end).
  Status read_positions(std::span<const uint64_t> positions, const ViewFn& visit) const;
  Result<RecordedEvent> read_position(uint64_t position) const;

  struct StreamTip {
    uint64_t revision = 0;
    uint64_t position = 0;
  };
  Result<std::optional<StreamTip>> stream_tip(std::string_view stream, uint64_t end) const;
  // Events of one stream with revision in [lo, hi], in revision order.
  Status stream_events(std::string_view stream, uint64_t lo, uint64_t hi, uint64_t end, const ViewFn& visit) const;
  Result<std::optional<RecordedEvent>> find_by_id(const Uuid& id, uint64_t end) const;

 private:
  // The frame holding `position` (position < durable end), body checked.
  Status locate(uint64_t position, log::FrameRef* ref, const uint8_t** frame) const;

  const log::Log& log_;
  const index::Index& index_;
};

}  // namespace cairn::store
