// Projections: state derived from the log by pure reducers, checkpointed, rebuildable and provable.
//
// A projection (name, version) folds the events that pass its source filter through a reducer,
// (state, event) -> state, optionally one state per partition key. Reducers are Lua (run in a sandbox with
// no I/O, clock or randomness, and per-event instruction and memory limits) or C++ (ReducerEngine, below).
//
// Durability: a projection's state is derived data. It is checkpointed to its own files (state and position
// together, written to a temporary file, synced and renamed), so a crash resumes from the last checkpoint
// without applying an event twice or skipping one; losing every checkpoint only costs a rebuild.
// Definitions are events in the reserved $projections stream: registering returns once that event is durable.
//
// Thread safety: Projections may be used from any thread. Each projection version runs on its own thread;
// queries are answered between its batches and always say which position the state reflects.
// Lifetime: a Projections must be closed (or destroyed) before the Store it reads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/event.h"
#include "cairn/status.h"
#include "cairn/store.h"

namespace cairn {

// Where a partitioned projection takes each event's key from. Events without the key are skipped.
enum class PartitionBy : uint8_t {
  kNone,      // one state for the whole projection
  kStream,    // the stream name
  kCategory,  // the stream category (the part of the name before the first '-')
  kMetadata,  // a field of the metadata object, by dotted path (e.g. "actor.id")
  kData,      // a field of the data object (JSON events only), by dotted path (e.g. "user_id")
};
std::string_view partition_by_name(PartitionBy by);
Result<PartitionBy> parse_partition_by(std::string_view name);

struct Partitioning {
  PartitionBy by = PartitionBy::kNone;
  std::string field;  // the dotted path, for kMetadata and kData
};

struct ProjectionLimits {
  uint64_t instructions_per_event = 10'000'000;  // Lua VM instructions one event may take
  uint64_t memory_bytes = 512ull << 20;          // the Lua heap of one projection version
};

struct ProjectionDefinition {
  std::string name;       // 1-100 bytes of [a-z0-9_.-], starting with a letter or digit
  uint32_t version = 1;   // 1, 2, ...: a new version builds side by side, then takes over (blue/green)
  Filter source;          // which events; reserved '$' streams are never passed to user projections
  Partitioning partition;
  std::string lua;        // the reducer's source (Lua projections)
  ProjectionLimits limits;
  uint64_t snapshot_every = 100'000;  // log positions between snapshots kept for as-of queries (0: none)
  std::string description;
  // Registration only, not part of the definition: start a new version from the active version's state
  // and position instead of from position 0 (for a fixed reducer whose state shape did not change).
  bool resume = false;
};

// The state of one projection version: partitions keyed by byte strings ("" when unpartitioned), each a JSON
// value. The runtime drives one engine from one thread at a time. An engine for C++ reducers can be written
// directly or with CppReducerEngine below.
class ReducerEngine {
 public:
  virtual ~ReducerEngine() = default;
  // Folds one event into partition `key`. An error is a fault: the runtime stops the projection at this
  // event and restores the last good state (the engine's state after a failed apply is not used again).
  virtual Status apply(std::string_view key, const EventView& event) = 0;
  // Canonical JSON of one partition (object keys sorted by bytes, no spaces); nullopt if it does not exist.
  virtual Result<std::optional<std::string>> state_json(std::string_view key) = 0;
  // Partition keys after `after` in byte order, at most limit of them.
  virtual std::vector<std::string> keys(std::string_view after, size_t limit) const = 0;
  virtual size_t partitions() const = 0;
  // Sets one partition from canonical JSON written by state_json (checkpoint and snapshot restore).
  virtual Status restore(std::string_view key, std::string_view json) = 0;
  // Checks that nothing outside the partition states changed (Lua: tables made when the code loaded).
  // Called after every batch; an error is a fault, which the runtime traces to the first event that caused it.
  virtual Status check_purity() { return {}; }
};
using EngineFactory = std::function<Result<std::unique_ptr<ReducerEngine>>()>;

// ReducerEngine::keys for an engine whose partitions are a sorted map keyed by string (with std::less<>).
template <typename Map>
std::vector<std::string> map_keys_after(const Map& parts, std::string_view after, size_t limit) {
  std::vector<std::string> out;
  for (auto it = after.empty() ? parts.begin() : parts.upper_bound(after); it != parts.end() && out.size() < limit; ++it)
    out.push_back(it->first);
  return out;
}

// A C++ reducer over a typed state. apply must be pure: the same events always give the same state.
template <typename State>
struct CppReducer {
  std::function<State()> init = [] { return State{}; };
  std::function<Status(State&, const EventView&)> apply;
  std::function<std::string(const State&)> to_json;            // canonical JSON of a state
  std::function<Result<State>(std::string_view)> from_json;    // the inverse of to_json
};

template <typename State>
class CppReducerEngine final : public ReducerEngine {
 public:
  explicit CppReducerEngine(CppReducer<State> r) : r_(std::move(r)) {}
  Status apply(std::string_view key, const EventView& event) override {
    auto it = parts_.find(key);
    if (it == parts_.end()) it = parts_.emplace(std::string(key), r_.init()).first;
    return r_.apply(it->second, event);
  }
  Result<std::optional<std::string>> state_json(std::string_view key) override {
    auto it = parts_.find(key);
    if (it == parts_.end()) return std::optional<std::string>();
    return std::optional<std::string>(r_.to_json(it->second));
  }
  std::vector<std::string> keys(std::string_view after, size_t limit) const override {
    return map_keys_after(parts_, after, limit);
  }
  size_t partitions() const override { return parts_.size(); }
  Status restore(std::string_view key, std::string_view json) override {
    auto s = r_.from_json(json);
    if (!s.ok()) return s.status();
    parts_.insert_or_assign(std::string(key), std::move(*s));
    return {};
  }

 private:
  CppReducer<State> r_;
  std::map<std::string, State, std::less<>> parts_;
};

template <typename State>
EngineFactory make_cpp_engine(CppReducer<State> r) {
  return [r]() -> Result<std::unique_ptr<ReducerEngine>> { return std::unique_ptr<ReducerEngine>(new CppReducerEngine<State>(r)); };
}

// Where a C++ projection comes from: registered by the embedding program at every start (code cannot be
// stored in the log; the registration is still recorded in $projections for the audit trail).
struct CppProjection {
  std::string name;
  uint32_t version = 1;
  Filter source;
  Partitioning partition;
  EngineFactory engine;
  uint64_t snapshot_every = 100'000;
  std::string description;
};

struct ProjectionFault {
  uint64_t position = 0;  // the event the reducer failed on; the state reflects the events before it
  Uuid event_id;
  std::string stream;
  std::string type;
  std::string message;
  int64_t at_ns = 0;
};

struct RebuildProgress {
  uint64_t position = 0;   // the rebuild has applied everything below this
  uint64_t target = 0;     // the head when it was last measured
  double events_per_second = 0;
  double eta_seconds = 0;  // at the current rate; 0 once caught up
};

// A replay running now for a query of a version (a verify or an as-of state), with how far it got.
struct ReplayProgress {
  std::string kind;       // "verify" or "as_of"
  uint64_t position = 0;  // it has replayed every event below this
  uint64_t target = 0;    // and replays up to (not including) this position
  double seconds = 0;     // since it started
};

enum class ProjectionPhase : uint8_t { kCatchingUp, kLive, kFaulted, kStopped };
std::string_view projection_phase_name(ProjectionPhase p);

struct ProjectionStatus {
  std::string name;
  uint32_t version = 0;
  bool active = false;       // the version that queries by name are answered from
  std::string language;      // "lua", "c++" or "builtin"
  ProjectionDefinition definition;  // lua is empty for C++ and built-in projections
  ProjectionPhase phase = ProjectionPhase::kCatchingUp;
  uint64_t position = 0;     // the state reflects every event below this position
  uint64_t head = 0;         // the store's head when measured
  uint64_t lag = 0;          // head - position
  double events_per_second = 0;  // events looked at per second, recently
  uint64_t events_applied = 0;   // since this process started the version
  uint64_t partitions = 0;
  uint64_t checkpoint_position = 0;  // the last durable checkpoint
  std::optional<ProjectionFault> fault;
  std::optional<RebuildProgress> rebuild;  // while a rebuild of this version runs in the background
  std::optional<ProjectionFault> rebuild_fault;  // the last background rebuild stopped on this reducer error
  std::vector<ReplayProgress> replays;  // verify and as-of replays of this version running now
  std::string detail;  // why a stopped version is not running
  int64_t registered_ns = 0;
};

// A projection's state (or one partition of it) and the position it reflects.
struct ProjectionState {
  std::string name;
  uint32_t version = 0;
  uint64_t position = 0;
  std::optional<std::string> key;  // the partition asked for
  bool found = false;              // false: no such partition (yet)
  std::string json;                // canonical JSON; for a whole partitioned projection: {key: state, ...}
};

struct PartitionPage {
  std::string name;
  uint32_t version = 0;
  uint64_t position = 0;
  std::vector<std::string> keys;
  std::optional<std::string> next;
};

// The canonical digest of a state: SHA-256 over the lines [key,state]\n of every partition in key order
// (key a JSON string, state canonical JSON), the same lines a state file holds.
struct ProjectionDigest {
  std::string name;
  uint32_t version = 0;
  uint64_t position = 0;
  uint64_t partitions = 0;
  std::string sha256_hex;
};

struct ProjectionVerifyReport {
  std::string name;
  uint32_t version = 0;
  uint64_t position = 0;  // both states reflect the events below this position
  bool equal = false;
  std::string live_digest;
  std::string rebuilt_digest;
  uint64_t partitions = 0;
  struct Difference {
    std::string key;
    std::optional<std::string> live;     // canonical JSON; absent: the live state has no such partition
    std::optional<std::string> rebuilt;
  };
  std::vector<Difference> differences;  // the first ones, in key order
};

struct AsOf {
  std::optional<uint64_t> position;  // the state after the event at this position (and all before it)
  std::optional<int64_t> time_ns;    // the state after every event recorded at or before this time
};

struct ProjectionsOptions {
  std::string dir;  // checkpoints and snapshots; created if missing
  bool builtins = true;  // run the built-ins: $streams, $types and the AI ledger's $ai.decisions and $ai.lineage
  size_t batch_events = 4096;  // events applied between two chances for queries to read the state
  std::chrono::milliseconds checkpoint_interval{5000};  // at most this long between checkpoints while busy
  uint64_t checkpoint_events = 1'000'000;  // or after this many events, whichever comes first
};

class Projections {
 public:
  virtual ~Projections() = default;

  // Registers a Lua projection: version 1 of a new name, or the next version of an existing one (built side
  // by side; queries move to it atomically once it has caught up). Registering an identical definition
  // again is a no-op. The definition is appended to $projections before the call returns.
  virtual Result<ProjectionStatus> define(ProjectionDefinition def) = 0;
  // Starts a C++ projection (see CppProjection); call again at every start of the embedding program.
  virtual Result<ProjectionStatus> define_cpp(CppProjection def) = 0;

  virtual std::vector<ProjectionStatus> list() = 0;
  // version 0: the active version.
  virtual Result<ProjectionStatus> status(std::string_view name, uint32_t version = 0) = 0;
  virtual std::vector<ProjectionStatus> versions(std::string_view name) = 0;

  // The state now, or once it reflects wait_for (the state includes the event at that position), waiting
  // at most timeout (kTimeout after it).
  virtual Result<ProjectionState> state(std::string_view name, std::optional<std::string> key, uint32_t version,
                                        std::optional<uint64_t> wait_for, std::chrono::milliseconds timeout) = 0;
  virtual Result<PartitionPage> partitions(std::string_view name, std::optional<std::string> after, size_t limit,
                                           uint32_t version) = 0;
  // The state as of a past position or time, computed by replay from the nearest snapshot.
  virtual Result<ProjectionState> state_as_of(std::string_view name, std::optional<std::string> key, AsOf as_of,
                                              uint32_t version) = 0;
  virtual Result<ProjectionDigest> digest(std::string_view name, uint32_t version) = 0;

  // Replays from position 0 to the live state's position into a fresh state and compares the digests.
  virtual Result<ProjectionVerifyReport> verify(std::string_view name, uint32_t version, size_t max_differences = 10) = 0;
  // Rebuilds from position 0 in the background; the current state keeps serving until the rebuild has
  // caught up, then the rebuilt one replaces it atomically. A reducer error stops the rebuild
  // (ProjectionStatus::rebuild_fault) and leaves the current state serving; since reducers are pure, a
  // faulted version is fixed by registering a new version, not by rebuilding it.
  virtual Result<ProjectionStatus> rebuild(std::string_view name, uint32_t version) = 0;
  // Makes an existing version the active one now (e.g. to go back to an older version).
  virtual Result<ProjectionStatus> activate(std::string_view name, uint32_t version) = 0;
  // Stops and forgets a version (not the active one while others exist) and removes its files.
  virtual Status drop(std::string_view name, uint32_t version) = 0;

  // Stops every projection thread after writing a final checkpoint.
  virtual Status close() = 0;
};

// Opens the projection runtime over a store: reads $projections, resumes every projection from its last
// checkpoint, starts the built-ins. The store must outlive the returned object.
Result<std::unique_ptr<Projections>> open_projections(Store& store, ProjectionsOptions options);

}  // namespace cairn
