// One running projection version: a thread that catches up from its last checkpoint, then follows live
// appends, applying each event that passes the source filter to its engine, and checkpoints as it goes.
//
// The position is the next event to look at: the state reflects every event below it. State and position
// are checkpointed together (state_file.h), so a restart resumes without applying an event twice or
// skipping one. A reducer error on event P is a fault: the runner stops at P, records it, and restores the
// state it had before P (last checkpoint plus replay), which stays queryable.
// Thread safety: all public methods may be called from any thread. Queries (with_state) take the state lock;
// the thread holds it while it applies events, but hands it over between any two events as soon as a query
// waits, so a query waits for at most the one event being reduced, never for a batch. status(), position()
// and faulted() take no lock the reducer holds: they never wait for it. Lifetime: must not outlive the Store.
// State files are sealed under the directory's data key when spec.keys is set (state_file.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <simdjson.h>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "base/file.h"
#include "base/mutex.h"
#include "project/state_file.h"

namespace cairn::project {

struct RunnerSpec {
  std::string name;
  uint32_t version = 1;
  Filter source;
  Partitioning partition;
  bool include_reserved = false;  // pass events of '$' streams (built-ins only)
  EngineFactory factory;
  std::string dir;             // this runner's state files
  uint64_t snapshot_every = 0;
  size_t batch_events = 4096;
  DataKeys* keys = nullptr;    // seal state files under a data key of this directory (a store with a key store)
  std::chrono::milliseconds checkpoint_interval{5000};
  uint64_t checkpoint_events = 1'000'000;
};

struct RunnerStatus {
  ProjectionPhase phase = ProjectionPhase::kCatchingUp;
  uint64_t position = 0;
  uint64_t head = 0;
  double events_per_second = 0;
  uint64_t events_applied = 0;
  uint64_t partitions = 0;
  uint64_t checkpoint_position = 0;
  std::optional<ProjectionFault> fault;
};

// The partition key of an event, or nullopt when the event has none (it is then skipped).
class KeyExtractor {
 public:
  explicit KeyExtractor(Partitioning p);
  std::optional<std::string_view> key(const EventView& e);

 private:
  Partitioning p_;
  std::vector<std::string> path_;
  std::string scratch_;
  simdjson::dom::parser parser_;
};

// Applies the events in [from, to) that spec passes to engine, as a runner would (for as-of, verify and
// restores). A reducer error is returned as kFaulted naming the event.
// With only_key, applies only the events of that partition (partitions are independent of each other).
// progress, if given, is set to the position below which every event was replayed, as it goes.
Status replay_range(Store& store, const RunnerSpec& spec, ReducerEngine& engine, uint64_t from, uint64_t to,
                    std::optional<std::string_view> only_key = std::nullopt, std::atomic<uint64_t>* progress = nullptr);

class Runner {
 public:
  Runner(Store& store, base::FileSystem* fs, RunnerSpec spec);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Loads the newest valid state file (or starts empty) and starts the thread.
  Status start();
  // Stops the thread; with checkpoint, writes a final checkpoint first.
  void stop(bool checkpoint);

  // Calls f with the engine and the position its state reflects, under the state lock.
  Status with_state(const std::function<Status(ReducerEngine&, uint64_t position)>& f);
  // Waits until the state reflects `position` (position_ > it): kFaulted if the runner faulted first,
  // kClosed if it was stopped, kTimeout otherwise.
  Status wait_past(uint64_t position, std::chrono::milliseconds timeout);
  RunnerStatus status() const;
  uint64_t position() const { return position_.load(); }
  bool faulted() const { return faulted_.load(); }
  const RunnerSpec& spec() const { return spec_; }

 private:
  void run();
  Status load() CAIRN_REQUIRES(state_mu_);
  // Applies one event; false on a fault (recorded in *fault).
  bool process(const EventView& v, Status* fault) CAIRN_REQUIRES(state_mu_);
  void catch_up(uint64_t head);
  void follow();
  void on_fault(const EventView& v, const Status& st) CAIRN_REQUIRES(state_mu_);
  // `end`: the position after the events applied since the last checkpoint (the batch that showed the problem).
  void locate_fault(const Status& detected, uint64_t end) CAIRN_REQUIRES(state_mu_);
  // After a batch, under state_mu_: the purity check, then the position (end) published, a snapshot if due and
  // waiting queries woken. false: the check failed and the fault was located instead.
  bool finish_batch(base::UniqueLock& lock, uint64_t end) CAIRN_REQUIRES(state_mu_);
  void serve_checkpoint() CAIRN_REQUIRES(state_mu_);
  void set_fault(ProjectionFault f) CAIRN_REQUIRES(state_mu_);
  // Under state_mu_ (lock holds it), which it drops while writing the state file.
  Status checkpoint_locked(base::UniqueLock& lock, bool snapshot) CAIRN_REQUIRES(state_mu_);
  void maybe_checkpoint();
  bool snapshot_due() const;
  void update_rate();
  // Between two events: lets waiting queries read the state, which then reflects every event below next.
  // Under state_mu_ (lock holds it), which it hands to the waiting queries and takes back.
  void yield_to_queries(base::UniqueLock& lock, uint64_t next) CAIRN_REQUIRES(state_mu_);
  void publish_partitions() CAIRN_REQUIRES(state_mu_);

  Store& store_;
  base::FileSystem* fs_;
  RunnerSpec spec_;
  KeyExtractor keys_;
  std::unique_ptr<ReducerEngine> engine_ CAIRN_GUARDED_BY(state_mu_);

  mutable base::Mutex state_mu_;  // engine_
  std::condition_variable position_cv_;
  std::atomic<int> waiting_queries_{0};  // with_state callers waiting for state_mu_
  base::Mutex queries_mu_;  // guards no data: yield_to_queries waits on queries_cv_ under it
  std::condition_variable queries_cv_;   // the last waiting query got the state lock
  mutable base::Mutex fault_mu_;  // fault_ (written under state_mu_ too; never held while reducing)
  std::atomic<uint64_t> partitions_{0};
  std::optional<StateKey> key_;  // the directory's data key (spec_.keys set)
  std::atomic<uint64_t> position_{0};
  std::atomic<uint64_t> checkpoint_position_{0};
  std::atomic<uint64_t> applied_{0};
  std::atomic<bool> faulted_{false};
  std::atomic<bool> live_{false};
  std::optional<ProjectionFault> fault_ CAIRN_GUARDED_BY(fault_mu_);
  uint64_t applied_since_checkpoint_ = 0;
  std::chrono::steady_clock::time_point last_checkpoint_;
  std::chrono::steady_clock::duration last_checkpoint_cost_{};  // how long the last state file took
  uint64_t next_snapshot_ = 0;

  std::atomic<double> rate_{0};
  uint64_t rate_position_ = 0;
  std::chrono::steady_clock::time_point rate_since_;

  base::Mutex sub_mu_;  // guards sub_ (replaced by the runner thread, cancelled by stop() from another)
  std::unique_ptr<Subscription> sub_ CAIRN_GUARDED_BY(sub_mu_);
  std::atomic<bool> stop_{false};
  bool final_checkpoint_ = false;
  base::Mutex wake_mu_;  // guards no data: the runner's back-off waits on wake_cv_ under it, and stop() wakes it
  std::condition_variable wake_cv_;
  std::thread thread_;
};

}  // namespace cairn::project
