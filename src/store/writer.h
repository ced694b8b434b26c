// The single writer and its group commit, in two pipelined stages.
//
// Callers (any thread) hand in validated appends. The writer thread takes every request queued at that
// moment (a group), checks expected revisions and idempotency against the log plus everything written
// before it (including groups not yet synced), encodes one commit frame per request and writes the group
// with one write(). It then hands the group to the syncer thread and starts on the next group while the
// syncer runs one fdatasync for every group handed over so far, adds them to the index, publishes the new
// durable end, and only then answers their requests — every request, including those that failed a check
// or were answered as idempotent retries, since such answers may rest on commits not yet durable.
// A request that fails its checks changes nothing and does not disturb the others in its group.
// If a write or a sync fails, the log is poisoned: the groups not yet answered and every later request fail
// (frames written but never acknowledged may still be found in the log after a restart, whole).
// Asynchronous appends (submit_async) take the same path; their callback runs on the syncer thread at the
// moment a blocking caller would have been woken, so it must be quick (the store's contract, store.h).
// Thread safety: submit()/submit_async()/import() from any thread; stop() once, from the owner.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <semaphore>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cairn/store.h"
#include "base/mutex.h"
#include "index/index.h"
#include "log/log.h"
#include "store/reader.h"

namespace cairn::store {

// A validated stream append plus what the caller's thread prepared for it: ids (generated where absent)
// and one random payload-digest salt per event.
struct PreparedAppend {
  StreamAppend append;
  std::vector<bool> id_supplied;
  std::vector<std::array<uint8_t, log::kSaltSize>> salts;
  std::vector<log::Hash> digests;  // payload digests, computed in the caller's thread
  std::vector<uint8_t> flags;      // record flags (log::kEventFlagSealedParts); empty: none
};

class Writer {
 public:
  Writer(log::Log& log, index::Index& index, const LogReader& reader, std::function<void()> on_publish);
  ~Writer();

  Result<AppendResult> submit(std::vector<PreparedAppend> appends);
  // Queues the appends and returns at once. done runs exactly once: on the syncer thread once the group is
  // durable (or failed), or in this thread before the call returns when the writer is closed.
  void submit_async(std::vector<PreparedAppend> appends, AppendCallback done);
  Result<uint64_t> import(std::vector<ImportEvent> events);
  // Seals the active segment (when it holds a commit) and starts the next one, in log order with appends:
  // on return, every append acknowledged before the call is in a sealed segment (the privacy purge rewrites
  // only those).
  Status roll();
  // Finishes what is queued, then refuses everything with kClosed.
  void stop();

  uint64_t commits() const;
  // Adds this writer's counters and histograms to `s` (appended_*, syncs, groups).
  void fill_metrics(StoreMetrics* s) const;

  struct Existing;  // what an event with a reused id looks like (for idempotency checks)

 private:
  struct Request {
    std::vector<PreparedAppend>* appends = nullptr;
    std::vector<ImportEvent>* imports = nullptr;
    bool roll = false;
    size_t bytes = 0;
    Status status;
    AppendResult result;
    uint64_t import_position = 0;
    // Released by the writer when the request is answered: each caller is woken alone, not the herd.
    std::binary_semaphore done{0};
    // An asynchronous append instead: the request owns its appends, and answering it runs the callback
    // and deletes it (answer()).
    std::vector<PreparedAppend> owned;
    AppendCallback on_answer;
  };
  struct Tentative;  // the effects of the group so far (revisions and ids not yet durable)
  // A written group on its way to the syncer.
  struct Written {
    std::vector<Request*> requests;
    index::IndexBatch batch;
    std::shared_ptr<log::Segment> segment;  // where its last frame ended
    uint64_t end_offset = 0;
    uint64_t end_position = 0;
    size_t commits = 0;
    uint64_t events = 0;
    uint64_t bytes = 0;
    Status failed;  // set when the writer already knows it failed (the log was poisoned)
  };

  void run();
  void run_syncer();
  std::unique_ptr<Written> process_group(std::vector<Request*>& group);
  // One append of the group: a retry of an earlier append (its ids exist), or new events planned into inputs.
  Status plan_append(Request& r, Tentative& t, std::vector<log::EventInput>* inputs);
  using FoundIds = std::vector<std::vector<std::optional<Existing>>>;  // per append, per event
  Status find_existing(const std::vector<PreparedAppend>& appends, const Tentative& t, FoundIds* found, size_t* existing);
  Status answer_retry(Request& r, const FoundIds& found);
  Status plan_new_events(Request& r, Tentative& t, std::vector<log::EventInput>* inputs);
  Status plan_import(Request& r, Tentative& t, std::vector<log::EventInput>* inputs);
  Result<std::optional<uint64_t>> current_revision(const std::string& stream, const Tentative& t);
  // The stream's revision as this request sees it: its own earlier parts first, then the group and the log.
  Result<std::optional<uint64_t>> revision_in_request(const std::string& stream,
                                                      const std::unordered_map<std::string, uint64_t>& local,
                                                      const Tentative& t);
  Status wait(Request& r);
  bool enqueue(Request* r);  // false when stopping: the request was not queued
  static void answer(Request* r);

  log::Log& log_;
  index::Index& index_;
  const LogReader& reader_;
  std::function<void()> on_publish_;

  // The request queue: mu_ guards queue_ and stopping_ (callers enqueue, the writer thread takes whole
  // groups). Never held while writing or syncing. Taken before sync_mu_ when both are needed.
  base::Mutex mu_;
  std::condition_variable queue_cv_;
  std::deque<Request*> queue_ CAIRN_GUARDED_BY(mu_);
  bool stopping_ CAIRN_GUARDED_BY(mu_) = false;

  // Writer-thread state: touched by the writer thread only, so no lock.
  uint64_t next_position_ = 0;
  log::Hash chain_head_{};
  int64_t last_time_ns_ = 0;
  // Stream revisions written recently, including groups not yet synced; only cleared while nothing is in
  // flight, because the index (the fallback) knows only synced commits.
  std::unordered_map<std::string, uint64_t> revision_cache_;
  std::unique_ptr<std::unordered_map<Uuid, Existing, UuidHash>> unsynced_ids_;  // supplied ids not yet published
  log::CommitEncoder encoder_;
  std::string pending_;
  std::atomic<uint64_t> commits_{0};
  // Monitoring, written by the syncer thread only, read by fill_metrics() from any thread.
  std::atomic<uint64_t> appended_events_{0};
  std::atomic<uint64_t> appended_bytes_{0};
  std::array<std::atomic<uint64_t>, 11> sync_buckets_{};
  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> sync_nanos_{0};
  std::array<std::atomic<uint64_t>, 10> group_buckets_{};
  std::atomic<uint64_t> groups_{0};

  // The hand-over to the syncer: sync_mu_ guards written_ and writer_done_ (in_flight_ is atomic, read
  // without it).
  base::Mutex sync_mu_;
  std::condition_variable sync_cv_;       // work for the syncer
  std::condition_variable sync_room_cv_;  // room for the writer
  std::deque<std::unique_ptr<Written>> written_ CAIRN_GUARDED_BY(sync_mu_);
  std::atomic<uint64_t> in_flight_{0};  // groups written and not yet answered
  bool writer_done_ CAIRN_GUARDED_BY(sync_mu_) = false;

  std::thread thread_;
  std::thread syncer_;
};

}  // namespace cairn::store
