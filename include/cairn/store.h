// The store API: the one interface every backend implements (the embedded log, PostgreSQL).
//
// Durability: when append() returns ok, the events are durable. Embedded, per EmbeddedOptions::durability:
// with Durability::kFsync (the default) they were written and fdatasync'ed before the call returned, and a
// crash at any later moment cannot lose them; with Durability::kNone nothing is synced (tests and
// benchmarks only). PostgreSQL: the primary committed them (synchronous_commit is never off; docs/scaling.md).
// If a write or sync ever fails, the store is poisoned: every later append fails with kPoisoned and the
// first error's message, and nothing more is acknowledged (a failed fsync is never retried).
//
// Visibility: readers and subscribers only ever see durable events, in position order, with no gaps.
// There is no update and no delete: a correction is a new event.
//
// Thread safety: a Store may be used from any number of threads at once. Concurrent appends are grouped
// into one write and one sync (group commit). Only one process may open a data directory for writing.
// Lifetime: the Store owns its files and threads; destroying it closes it (like close()).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cairn/data_keys.h"
#include "cairn/event.h"
#include "cairn/maintenance.h"
#include "cairn/metrics.h"
#include "cairn/status.h"
#include "cairn/subscription.h"

namespace cairn {

enum class Durability : uint8_t {
  kFsync,  // every acknowledged append has been fdatasync'ed (default)
  kNone,   // no sync at all: a power loss may lose acknowledged appends. Tests and benchmarks only.
};
std::string_view durability_name(Durability d);

struct Limits {
  uint32_t max_event_bytes = 1u << 20;        // type + metadata + data of one event
  uint32_t max_append_bytes = 16u << 20;      // all events of one append call
  uint32_t max_events_per_append = 100'000;
};

// What every backend takes.
struct StoreOptions {
  Limits limits;
  // Personal data (docs/privacy.md): the subject key store's directory, kept outside the data directory,
  // and the master key (32 bytes, standard base64; Cairn never writes it). Without both, an append that
  // declares personal parts (metadata.privacy) is refused.
  std::string key_store_dir;
  std::string master_key;
};

// The embedded store: one process owns a local data directory (docs/format.md).
struct EmbeddedOptions : StoreOptions {
  std::string dir;                            // data directory; created if missing (unless read_only)
  Durability durability = Durability::kFsync;
  uint64_t segment_size = 128ull << 20;       // a segment is sealed once it reaches this size
  uint64_t index_memtable_events = 500'000;   // events kept in memory before the index is flushed to disk
  bool repair = false;  // on open, cut a corrupt tail instead of refusing (a copy of the cut bytes is kept)
  bool read_only = false;  // open without writing anything (no recovery cut, no appends)
};

// The PostgreSQL backend (docs/scaling.md): the events live in the database.
struct PostgresOptions : StoreOptions {
  // A libpq connection string or postgres:// URI of the primary, as a role that `cairn pg init` made a
  // member of cairn_writer.
  std::string connection;
  // A streaming replica of that primary: reads and subscriptions are served from it.
  std::string read_replica;
  size_t pool = 8;  // connections for reads (appends use one more, subscriptions' waits none)
  // How long a subscription waits out a database that does not answer (a restart, a failover, the network):
  // it keeps its cursor and retries, its next() returning empty batches meanwhile, and fails with
  // kUnavailable only once the database has been away this long without a break.
  std::chrono::milliseconds outage_timeout{60'000};
};

// Which backend open_store opens, with its settings.
using Options = std::variant<EmbeddedOptions, PostgresOptions>;

// The settings every backend shares, of either alternative.
inline const StoreOptions& common_options(const Options& o) {
  return std::visit([](const auto& b) -> const StoreOptions& { return b; }, o);
}
inline StoreOptions& common_options(Options& o) {
  return std::visit([](auto& b) -> StoreOptions& { return b; }, o);
}

// The optimistic concurrency check of one stream append.
struct ExpectedRevision {
  enum class Kind : uint8_t { kAny, kNoStream, kExists, kExact };
  Kind kind = Kind::kAny;
  uint64_t revision = 0;  // for kExact: the revision of the stream's last event

  static ExpectedRevision any() { return {Kind::kAny, 0}; }
  static ExpectedRevision no_stream() { return {Kind::kNoStream, 0}; }
  static ExpectedRevision exists() { return {Kind::kExists, 0}; }
  static ExpectedRevision exact(uint64_t r) { return {Kind::kExact, r}; }
  std::string to_string() const;  // "any", "no_stream", "exists" or the number
};

struct StreamAppend {
  std::string stream;  // 1-256 bytes of UTF-8, no control characters, may not start with '$'
  ExpectedRevision expected;
  std::vector<EventData> events;  // at least one
};

struct StreamAppendResult {
  std::string stream;
  uint64_t first_position = 0;
  uint64_t last_position = 0;
  uint64_t first_revision = 0;
  uint64_t last_revision = 0;  // the stream's new revision
};

struct AppendResult {
  std::vector<StreamAppendResult> streams;  // in request order
  bool replayed = false;  // true when this was an idempotent retry answered from the original append
};

enum class Direction : uint8_t { kForward, kBackward };

// Which events a read or subscription of $all passes. Empty fields do not filter. All set fields must match.
struct Filter {
  std::vector<std::string> types;  // exact event types (any of)
  std::string type_prefix;
  std::string stream_prefix;
  std::string category;            // stream category (part of the stream name before the first '-')

  bool empty() const { return types.empty() && type_prefix.empty() && stream_prefix.empty() && category.empty(); }
  bool matches(std::string_view stream, std::string_view type) const;
};

struct ReadPage {
  std::vector<RecordedEvent> events;
  // Where the next page starts (a position for $all, a revision for a stream); absent at the end.
  std::optional<uint64_t> next;
};

struct StreamInfo {
  std::string stream;
  uint64_t last_revision = 0;  // the stream's revision (its last event's revision); events = last_revision + 1
  uint64_t last_position = 0;
  uint64_t first_position = 0;
};

// A page of the stream catalog. Streams come in a stable order (by the hash of their name), not by name
// or creation; `next` continues after this page.
struct StreamListing {
  std::vector<StreamInfo> streams;
  std::optional<std::string> next;
};

// What the store holds (Store::stats); the engine's counters are Store::metrics (metrics.h).
struct StoreStats {
  uint64_t events = 0;         // == head position: positions 0..events-1 exist
  uint64_t commits = 0;        // commits recovered or written since open
  uint64_t segments = 0;       // log segment files (embedded store)
  uint64_t log_bytes = 0;      // bytes of log on disk (embedded store)
  std::string chain_head_hex;  // SHA-256 chain head after the last durable commit (embedded store)
  Durability durability = Durability::kFsync;
};

using EventVisitor = std::function<bool(const EventView&)>;  // return false to stop
// The answer of an asynchronous append: what the blocking call would have returned.
using AppendCallback = std::function<void(Result<AppendResult>)>;
using StoredEventVisitor = std::function<bool(const StoredEventView&)>;

// One event of an import: everything the export kept, so that importing an export into an empty store
// reproduces the same positions, revisions, ids, times, payload digests and chain head.
struct ImportEvent {
  std::string stream;  // may be a reserved '$' stream: imports restore what a store wrote
  uint64_t revision = 0;
  Uuid id;
  std::string type;
  int64_t recorded_ns = 0;
  ContentType content_type = ContentType::kJson;
  std::string metadata;
  std::string data;
  std::array<uint8_t, 16> digest_salt{};
  bool sealed_parts = false;  // data holds sealed personal parts (its digest covers their redactable form)
};

// What forgetting a data subject did (Store::forget, docs/privacy.md).
struct ForgetResult {
  std::string subject_id;       // the subject's keyed hash ("hs:…"): the only form in which it is recorded
  size_t keys_destroyed = 0;    // 0 when it was forgotten before (a second forget changes nothing)
  uint64_t affected_events = 0; // events holding parts of this subject, now unreadable
  uint64_t position = 0;        // of its privacy.subject.forgotten event in $privacy
  bool already = false;         // it had been forgotten before: the result of that earlier forget
};

// What a purge of forgotten personal parts did (Store::purge, docs/privacy.md "Purge compaction").
struct PurgeResult {
  uint64_t segments_scanned = 0;    // sealed segments read
  uint64_t segments_rewritten = 0;  // of those, the ones that held forgotten parts
  uint64_t events = 0;              // events with parts purged by this run
  uint64_t parts = 0;               // parts purged by this run
  uint64_t bytes_scanned = 0;       // bytes of sealed segments read
  uint64_t bytes_replaced = 0;      // ciphertext bytes overwritten (by markers and padding)
  std::vector<std::string> subjects;  // keyed hashes ("hs:…") of the subjects whose parts were purged
  uint64_t verified_through = 0;    // the sealed segments hold positions [0, verified_through)
  std::string chain_head_before;    // hex: the chain head at verified_through, verified before the rewrite
  std::string chain_head_after;     // hex: the same, verified again after it (always equal on success)
  std::optional<uint64_t> position; // of the privacy.purge.completed event, when anything was purged
  double seconds = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Appends events to one stream, all or nothing.
  virtual Result<AppendResult> append(StreamAppend request) = 0;
  // Appends to several streams in one atomic commit, each with its own expected revision.
  virtual Result<AppendResult> append_multi(std::vector<StreamAppend> requests) = 0;

  // The same appends without a thread waiting for them: `done` runs exactly once, with what append() or
  // append_multi() would have returned, and with the same guarantee: an ok result only once the events
  // are durable. It runs either before the call returns (input refused up front, or a backend that
  // answers in the calling thread) or later on a thread of the store that also completes other appends,
  // so it must be quick and must not block: hand the answer to your own executor. It may call
  // append_async again, never the blocking append. The default runs the blocking call, then `done`.
  virtual void append_async(StreamAppend request, AppendCallback done) { done(append(std::move(request))); }
  virtual void append_multi_async(std::vector<StreamAppend> requests, AppendCallback done) {
    done(append_multi(std::move(requests)));
  }

  // Right to be forgotten (docs/privacy.md): destroys every key of the subject (durably: from then on every
  // copy of its parts, backups included, is unreadable), then appends privacy.subject.forgotten to $privacy
  // (the subject only as its keyed hash, the reason, the actor, the counts). kNotFound if the subject never
  // had personal data here; a second forget returns the first one's result with already = true. Needs a key
  // store (kInvalidArgument otherwise). actor: {"kind", "id"} JSON, or empty.
  virtual Result<ForgetResult> forget(std::string_view subject, std::string_view reason, std::string_view actor_json) = 0;
  // The physical purge: seals the active segment, verifies the sealed segments (digests and chain), rewrites
  // each one that holds parts of forgotten subjects with those parts replaced by their purged markers (same
  // sizes), verifies each copy on its own (same chain head, or kCorruption and the old segment kept) before
  // it is synced and renamed over the old one (a crash leaves the old or the new, both whole), and records
  // privacy.purge.completed in $privacy when anything was purged. Appends and reads go on meanwhile. progress: (bytes done, bytes to do).
  // The only writer of sealed segments. Needs a key store.
  virtual Result<PurgeResult> purge(std::string_view actor_json, const std::function<void(uint64_t, uint64_t)>& progress) = 0;
  // The keyed hash ("hs:…") under which the store records a data subject. Needs a key store.
  virtual Result<std::string> subject_id(std::string_view subject) const = 0;
  // Verifies every durable commit (what cairn verify checks, on the open store): the report's chain head is
  // the head after the last durable commit at the time of the call.
  virtual Result<VerifyReport> verify_chain() = 0;

  // A page of one stream. from_revision absent: the start (forward) or the end (backward).
  virtual Result<ReadPage> read_stream(std::string_view stream, std::optional<uint64_t> from_revision,
                                       Direction direction, size_t limit) = 0;
  // A page of $all. from_position absent: the start (forward) or the end (backward).
  virtual Result<ReadPage> read_all(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                                    const Filter& filter) = 0;
  // Visits $all forward from a position without copying (the fast path for scans, exports and projections).
  virtual Status scan_all(uint64_t from_position, const Filter& filter, const EventVisitor& visit) = 0;
  // The same scan, but every event exactly as written to the log: personal parts stay sealed (exports and
  // backups, which must never hold them in clear). Every other read returns them opened, or redacted once
  // their subject was forgotten (docs/privacy.md).
  virtual Status scan_stored(uint64_t from_position, const Filter& filter, const StoredEventVisitor& visit) = 0;

  virtual Result<RecordedEvent> read_position(uint64_t position) = 0;
  virtual Result<RecordedEvent> read_event(const Uuid& id) = 0;
  virtual Result<StreamInfo> stream_info(std::string_view stream) = 0;
  // Every stream, paged: `after` is a previous page's `next` (absent: from the start). Streams whose name
  // starts with prefix only, if one is given.
  virtual Result<StreamListing> list_streams(std::optional<std::string> after, size_t limit,
                                             std::string_view prefix) = 0;

  // Catch-up then live subscriptions; see subscription.h.
  virtual Result<std::unique_ptr<Subscription>> subscribe_all(uint64_t from_position, Filter filter) = 0;
  virtual Result<std::unique_ptr<Subscription>> subscribe_stream(std::string stream, uint64_t from_revision) = 0;

  // Appends one exported commit as one commit: revisions must continue each stream exactly, times must not
  // go back, ids must be new. Returns the first position. Same durability as append().
  virtual Result<uint64_t> import_commit(std::vector<ImportEvent> events) = 0;

  // Keys for derived data at rest (projection state files), held in the store's key store: nullptr when the
  // store has no key store (then nothing personal is stored and derived data is kept in clear).
  virtual DataKeys* data_keys() { return nullptr; }

  // The next position to be assigned == the number of durable events.
  virtual uint64_t head_position() const = 0;
  virtual StoreStats stats() const = 0;
  // The engine's counters since open (index, group commit, fdatasync, purge), for monitoring.
  virtual StoreMetrics metrics() const = 0;

  // Stops accepting appends, waits for in-flight ones, flushes the index, releases the directory.
  virtual Status close() = 0;
};

// Opens the backend options name: the embedded store in EmbeddedOptions::dir (creating it if needed,
// recovering a torn tail), or the PostgreSQL backend (its schema made by `cairn pg init`).
Result<std::unique_ptr<Store>> open_store(const Options& options);

}  // namespace cairn
