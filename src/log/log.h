// The segmented append-only log: recovery on open, the writer's append/sync/roll, and frame lookup for
// readers.
//
// Durability contract: write() hands whole commit frames to the OS; sync() makes everything written before
// it was called durable (fdatasync of the active segment; a roll first syncs the segment it seals, then
// creates the next one durably). The caller publishes a durable end only after sync() returned ok. If any
// write or sync fails, the Log is poisoned and refuses every further write and sync: the state of the file
// after a failed fsync is unknown, so nothing more may be acknowledged from it.
// Threads: the store's writer thread calls maybe_roll() and write(); its syncer thread calls sync() and
// publish() concurrently with them (the active file is swapped under a lock, and synced outside it).
// Recovery: an incomplete tail frame is cut; a complete frame that fails a check in the tail is corruption
// (open fails naming file and offset), unless repair is set, in which case the cut bytes are saved to
// repair/ first. Sealed segments are not scanned on open (verify does that).
// Thread safety: writer methods from one thread only; reader methods from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cairn/status.h"
#include "base/file.h"
#include "base/mutex.h"
#include "log/record.h"
#include "log/segment.h"

namespace cairn::log {

inline constexpr uint64_t kSparseStride = 16 * 1024;  // one position->offset index entry per 16 KiB of log

// True when a frame at `offset` of `size` bytes must get a sparse position index entry: the first frame of
// a segment, and every frame that crosses a kSparseStride boundary. Stateless so that replay agrees.
inline bool frame_needs_sparse_entry(uint64_t offset, uint64_t size) {
  return offset == kSegmentHeaderSize || offset / kSparseStride != (offset + size) / kSparseStride;
}

struct LogOptions {
  base::FileSystem* fs = nullptr;
  uint64_t segment_size = 128ull << 20;
  uint64_t max_commit_bytes = 17ull << 20;  // the largest frame a commit can produce (the store computes it from its limits)
  bool read_only = false;
  bool repair = false;
  bool sync = true;  // false with durability none: nothing is ever synced
  // Read-only opens while a writer holds the directory: the writer's last published durable end (from
  // log/HEAD), so that a reader in another process never sees a commit that was written but not yet synced.
  uint64_t max_position = UINT64_MAX;
};

// log/HEAD: 8 bytes, little-endian, the durable end the writer last published. A hint for readers in other
// processes, never synced and never trusted by recovery (the log is the truth).
Result<uint64_t> read_head_hint(const std::string& dir);

struct FrameRef {
  std::shared_ptr<Segment> segment;
  uint64_t offset = 0;
  FrameHeader header;
};

class Log {
 public:
  static Result<std::unique_ptr<Log>> open(const std::string& dir, const LogOptions& options);
  ~Log();

  // --- state ---
  uint64_t durable_end() const { return durable_end_.load(std::memory_order_acquire); }
  const Hash& recovered_chain_head() const { return chain_head_; }
  int64_t recovered_last_time_ns() const { return last_time_ns_; }
  uint64_t recovered_commits() const { return recovered_commits_; }
  const std::string& dir() const { return dir_; }
  std::vector<std::shared_ptr<Segment>> segments() const;
  std::shared_ptr<Segment> segment_for(uint64_t position) const;  // null if position >= durable end
  uint64_t total_bytes() const;

  // --- readers ---
  // Visits durable frames from (segment, offset) onward, across segments, while visit returns true.
  // Frames are header-checked; body checks are the visitor's to ask for (check_frame_body).
  Status visit_frames(std::shared_ptr<Segment> segment, uint64_t offset, uint64_t end_position,
                      const std::function<bool(const FrameRef&, const uint8_t* frame)>& visit,
                      bool ignore_header_error = false) const;
  // Checks a frame's body CRC and record sizes; the error names file, offset and positions.
  static Status check_frame_body(const FrameRef& ref, const uint8_t* frame);

  // --- the writer thread ---
  Status poisoned() const;
  // Where the next write lands: the active segment and the offset in it (writer thread only).
  uint64_t active_offset() const { return active_file_->size(); }
  std::shared_ptr<Segment> active_segment() const;
  // Rolls to a new segment first when the active one is full (or, with force, not empty) and holds at least
  // one commit. `pending` bytes not yet written are written to the old segment before the roll.
  Status maybe_roll(uint64_t next_position, const Hash& chain_head, int64_t last_time_ns, std::string& pending,
                    bool force = false);
  Status write(const std::string& bytes);
  // --- the privacy purge (the only writer of sealed segments) ---
  // Puts `replacement` (a complete, synced file in log/, named *.tmp) in place of the sealed segment `old`:
  // rename over it, sync the directory (also with durability none), map the new file, and swap it in for readers. The replacement must
  // hold the same frames at the same offsets (the purge keeps every size), so indexes stay valid. Readers
  // holding the old segment keep its mapping until they let go. Any thread; one purge at a time.
  Result<std::shared_ptr<Segment>> replace_sealed_segment(const std::shared_ptr<Segment>& old, const std::string& replacement);

  // --- the syncer thread ---
  Status sync();
  // Makes commits up to `durable_end` (ending at `end_offset` of `segment`) visible to readers: only after
  // a sync() that began after they were written (or with durability none). Calls come in log order.
  void publish(const std::shared_ptr<Segment>& segment, uint64_t end_offset, uint64_t durable_end);

 private:
  Log() = default;
  Status recover_tail();
  Status create_segment(uint64_t first_position, const Hash& chain_before, int64_t last_time_before);
  Status poison(Status s);
  void write_head_hint();

  std::string dir_;
  std::string log_dir_;
  LogOptions options_;
  // segments_mu_ guards segments_ (shared: readers looking up a position; exclusive: a new or replaced
  // segment). file_mu_ guards the pointer active_file_: the syncer copies it under the lock and syncs outside
  // it, so the writer thread (its only writer, which reads it without the lock) never frees a file mid-sync.
  // The two are never held together.
  mutable base::SharedMutex segments_mu_;
  std::vector<std::shared_ptr<Segment>> segments_ CAIRN_GUARDED_BY(segments_mu_);
  // Replaced only by the writer thread, under file_mu_. Not CAIRN_GUARDED_BY: the writer thread reads it
  // without the lock, which the analysis cannot tell from a race.
  std::shared_ptr<base::WritableFile> active_file_;
  mutable base::Mutex file_mu_;
  std::atomic<uint64_t> durable_end_{0};
  Hash chain_head_{};
  int64_t last_time_ns_ = 0;
  uint64_t recovered_commits_ = 0;
  mutable base::Mutex poison_mu_;  // guards poison_ (the first failure's status); poisoned_ is its lock-free flag
  Status poison_ CAIRN_GUARDED_BY(poison_mu_);
  std::atomic<bool> poisoned_{false};
  int head_fd_ = -1;
};

}  // namespace cairn::log
