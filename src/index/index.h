// The derived indexes: stream -> (revision -> position), event type -> positions, event id -> position,
// and a sparse position -> segment offset map. All rebuildable from the log (`cairn reindex`).
//
// Shape: an in-memory memtable of recent entries plus immutable sorted run files on disk (mapped, binary
// searched), listed in index/MANIFEST with the position they cover up to. When the memtable holds
// memtable_limit events it is frozen and written as a run by a background thread; adjacent runs of similar
// size are merged, so there are O(log n) runs. Heap memory is bounded by the memtable; runs live in the
// page cache. Keys are 64-bit hashes (XXH3) of names and ids, so a lookup returns candidates that the
// caller confirms against the log record: collisions cost a read, never a wrong answer.
// Durability: the index is never needed to recover the log. A run and the manifest are written with
// temp + fsync + rename + directory fsync; a crash loses at most the memtable, which is replayed from the
// log after indexed_through() on open.
// Thread safety: add() from one thread at a time (the store's syncer, in log order); lookups from any
// thread; close() once.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cairn/event.h"
#include "cairn/status.h"
#include "base/file.h"
#include "base/mutex.h"

namespace cairn::index {

struct StreamEntry {
  uint64_t key;  // hash of the stream name
  uint64_t revision;
  uint64_t position;
};
struct KeyPos {
  uint64_t key;    // hash of the type or id; for the sparse map, the frame's first position
  uint64_t value;  // a position; for the sparse map, the frame's offset in its segment
};

uint64_t hash_name(std::string_view name);
uint64_t hash_id(const Uuid& id);

// Everything one group of commits adds. Positions of a batch are above those of every earlier batch.
struct IndexBatch {
  std::vector<StreamEntry> streams;
  std::vector<KeyPos> types;
  std::vector<KeyPos> ids;
  std::vector<KeyPos> sparse;
  uint64_t end_position = 0;  // every position below this is now in the index
  void clear() {
    streams.clear();
    types.clear();
    ids.clear();
    sparse.clear();
  }
};

class Run;
struct Memtable;

struct IndexStats {
  uint64_t runs = 0;
  uint64_t memtable_events = 0;
  uint64_t indexed_through = 0;
  uint64_t run_bytes = 0;
};

class Index {
 public:
  // Opens dir/index. If the manifest or a run is missing or damaged, the index starts empty (and is rebuilt
  // from the log by the caller's replay); rebuilt() tells.
  // (Not analysed: fills the guarded fields of an index no other thread can see yet, without mu_.)
  static Result<std::unique_ptr<Index>> open(const std::string& dir, base::FileSystem* fs, uint64_t memtable_limit,
                                             bool read_only) CAIRN_NO_THREAD_SAFETY_ANALYSIS;
  ~Index();

  uint64_t indexed_through() const;
  bool rebuilt() const { return rebuilt_; }
  // Discards everything (runs and manifest): used when the log ends before indexed_through().
  Status reset();

  void add(const IndexBatch& batch);

  // Stream entries with key and revision in [lo, hi], ordered by (revision, position).
  void stream_range(uint64_t key, uint64_t lo, uint64_t hi, std::vector<StreamEntry>* out) const;
  // The highest revision recorded under key, if any (a candidate: may belong to a colliding stream).
  std::optional<uint64_t> max_revision(uint64_t key) const;
  // Positions recorded under an id key (candidates).
  void id_positions(uint64_t key, std::vector<uint64_t>* out) const;
  // Stream keys in ascending order after `after` (all if absent), at most `limit` of them, each with the
  // positions of its revision-0 entries: the first event of each stream that hashes to that key.
  void stream_keys(std::optional<uint64_t> after, size_t limit,
                   std::vector<std::pair<uint64_t, std::vector<uint64_t>>>* out) const;
  // Positions of a type key in [lo, hi], ascending, at most limit (from the low end when forward).
  void type_positions(uint64_t key, uint64_t lo, uint64_t hi, bool forward, size_t limit,
                      std::vector<uint64_t>* out) const;
  // The greatest sparse entry with first position in [segment_first, position]: (position, offset).
  std::optional<KeyPos> sparse_floor(uint64_t segment_first, uint64_t position) const;

  IndexStats stats() const;
  // Waits for background work, writes the memtable as a run, stops the thread.
  Status close();

 private:
  Index() = default;
  void flusher_loop();
  Status write_run_from(const Memtable& m, uint64_t from, uint64_t to, std::shared_ptr<Run>* out);
  Status merge_tail_runs();
  Status write_manifest(uint64_t through, const std::vector<std::shared_ptr<Run>>& runs);
  void freeze_locked() CAIRN_REQUIRES(mu_);
  // The flusher's wait conditions, read under flush_mu_ (each takes mu_ shared for frozen_, in the lock order).
  bool flush_caught_up_locked() const CAIRN_REQUIRES(flush_mu_);  // add()'s back-off may stop waiting
  bool flush_work_locked() const CAIRN_REQUIRES(flush_mu_);       // the flusher has work, or must stop

  std::string dir_;
  base::FileSystem* fs_ = nullptr;
  uint64_t memtable_limit_ = 0;
  bool read_only_ = false;
  bool rebuilt_ = false;

  mutable base::SharedMutex mu_;  // guards the four fields below
  std::unique_ptr<Memtable> active_ CAIRN_GUARDED_BY(mu_);
  std::shared_ptr<const Memtable> frozen_ CAIRN_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Run>> runs_ CAIRN_GUARDED_BY(mu_);
  uint64_t indexed_through_ CAIRN_GUARDED_BY(mu_) = 0;  // covered by runs

  // flush_mu_ guards stop_ and background_error_, and orders the hand-over of frozen_ to the flusher. Lock
  // order: flush_mu_ before mu_, never the other way round.
  base::Mutex flush_mu_;
  std::condition_variable flush_cv_;    // work for the flusher
  std::condition_variable flushed_cv_;  // a frozen memtable became a run (or the flusher stopped)
  bool stop_ CAIRN_GUARDED_BY(flush_mu_) = false;
  Status background_error_ CAIRN_GUARDED_BY(flush_mu_);
  std::thread flusher_;
};

}  // namespace cairn::index
