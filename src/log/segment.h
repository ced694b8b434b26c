// One segment file of the log, mapped read-only into memory for readers.
//
// Ownership: a Segment owns its file descriptor and mapping; it is shared (shared_ptr) between the log and
// readers, so a reader's view stays valid even if the log moves on. The mapping may be larger than the
// file (the active segment grows under it); readers never touch bytes at or past durable_size(), which the
// single writer advances only after those bytes were written and synced.
// Thread safety: all const methods are safe from any thread; set_durable_size() is for the writer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "cairn/status.h"
#include "log/record.h"

namespace cairn::log {

class Segment {
 public:
  // Maps the file at path; map_capacity (0: the file's size) must cover every byte it will ever hold.
  // With tolerate_bad_header, a damaged segment header does not fail the open: the segment is kept (first
  // position from its file name) with header_error() set, so the rest of the log stays readable and every
  // read that needs this segment fails with that error.
  static Result<std::shared_ptr<Segment>> open(const std::string& path, uint64_t map_capacity,
                                               bool tolerate_bad_header = false);
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  const std::string& path() const { return path_; }
  std::string name() const;  // file name without directory
  const SegmentHeader& header() const { return header_; }
  const Status& header_error() const { return header_error_; }
  uint64_t first_position() const { return header_.first_position; }
  const uint8_t* data() const { return map_; }
  uint64_t file_size_at_open() const { return file_size_; }
  uint64_t capacity() const { return capacity_; }

  uint64_t durable_size() const { return durable_size_.load(std::memory_order_acquire); }
  void set_durable_size(uint64_t n) { durable_size_.store(n, std::memory_order_release); }
  // Only ever moves forward: publications of earlier commits may arrive after a roll sealed the segment.
  void raise_durable_size(uint64_t n) {
    uint64_t cur = durable_size_.load(std::memory_order_relaxed);
    while (cur < n && !durable_size_.compare_exchange_weak(cur, n, std::memory_order_release)) {
    }
  }

 private:
  Segment() = default;
  std::string path_;
  int fd_ = -1;
  uint8_t* map_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t file_size_ = 0;
  SegmentHeader header_;
  Status header_error_;
  std::atomic<uint64_t> durable_size_{0};
};

// "00000000000000001234.seg" for first position 1234 (the file name inside log/).
std::string segment_file_name(uint64_t first_position);
// Parses a segment file name; false if it is not one.
bool parse_segment_file_name(const std::string& name, uint64_t* first_position);

}  // namespace cairn::log
