// The seam between the store and the domain modules that shape what it stores (docs/architecture.md).
//
// The store knows streams, revisions, ids and bytes. Rules about what an event means (the AI ledger's
// vocabulary and references, personal parts sealed under subject keys, later schemas) live in modules that
// implement the interfaces below; the composition root (runtime/compose.h) hands them to a backend at open,
// and both backends run them the same way, so they refuse the same input with the same errors.
//
// One append goes through: the store's own validation, then for each event in request order every policy
// whose applies() holds gets check(); ids and salts are assigned; each checked event gets transform() (which
// may rewrite its data and metadata and say what its digest covers); after_transform() sees the whole append;
// reserve() runs just before the append is submitted and finish() after its outcome. A policy that applies
// to no event of an append costs that append one applies() call per event and nothing more.
//
// Ownership: the backend owns its policies (Extensions) for its lifetime. Thread safety: applies() and
// begin() are called from any number of appending threads at once; a Run belongs to one append (one thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/data_keys.h"
#include "cairn/event.h"
#include "cairn/status.h"
#include "cairn/store.h"

namespace cairn::log {
class Segment;
}  // namespace cairn::log
namespace cairn::base {
class FileSystem;
}  // namespace cairn::base

namespace cairn::store {

// What a backend lets a policy look up while it checks an append (durable events only).
class PolicyHost {
 public:
  virtual ~PolicyHost() = default;
  // The durable event with this id, if any.
  virtual Result<std::optional<RecordedEvent>> find_durable(const Uuid& id) = 0;
  virtual bool exists(const Uuid& id) = 0;
  // Visits the durable events of these types from `from` on, in position order, for a policy that keeps an
  // index derived from the log.
  virtual Status scan_types(uint64_t from, const std::vector<std::string>& types, const EventVisitor& visit) = 0;
  // True when other processes append to the same log (PostgreSQL): an index a policy keeps in memory is then
  // never complete, and must be caught up before each check and held until the append's outcome.
  virtual bool shared_log() const = 0;
};

// How one event changed under transform(): the record flags it gets, and the text its payload digest covers
// instead of the stored data (the format fixes which, docs/format.md).
struct Transformed {
  uint8_t flags = 0;
  std::optional<std::string> digest_data;
};

class AppendPolicy {
 public:
  // One append's work for this policy: made only for an append with an event the policy applies to.
  class Run {
   public:
    virtual ~Run() = default;
    // Event j of requests[i] (`what` names it in errors: "events[2]" or "appends[1].events[0]"). The events
    // before it in the append already passed.
    virtual Status check(const std::vector<StreamAppend>& requests, size_t i, size_t j, const std::string& what) = 0;
    // The same event once it has its id; may rewrite its data and metadata. Called in the same order.
    virtual Status transform(EventData& /*event*/, const std::string& /*what*/, Transformed* /*out*/) { return {}; }
    // Once every event was transformed: `bytes` is the append's size before transform, `grown` what the
    // transforms added.
    virtual Status after_transform(uint64_t /*bytes*/, uint64_t /*grown*/) { return {}; }
    // Just before submit, with every id assigned: may refuse the append (nothing was written). `events` is
    // every event of the append in request order, the ones this policy did not check too.
    virtual Status reserve(const std::vector<const EventData*>& /*events*/) { return {}; }
    // The append's outcome, after a successful reserve(): its result when it is durable, else null.
    virtual void finish(const AppendResult* /*durable*/) {}
  };

  virtual ~AppendPolicy() = default;
  // Cheap: does this policy have anything to do for this event? A plain event pays only this call.
  virtual bool applies(const EventData& event) const = 0;
  virtual std::unique_ptr<Run> begin(PolicyHost& host, const Limits& limits) = 0;
  // An import restores history as written: a policy that keeps an index records its events, and judges
  // nothing. Called before the import's commit is written; the run's finish() gets its outcome (a non-null
  // result with no streams when it is durable). Null: nothing to do.
  virtual std::unique_ptr<Run> begin_import(const std::vector<ImportEvent>& /*events*/) { return nullptr; }
};

// What a purge of one sealed segment did (the store then puts the copy in place).
struct SegmentPurgeOutcome {
  bool rewritten = false;      // false: nothing forgotten in it, no file written
  uint64_t events = 0;
  uint64_t parts = 0;
  uint64_t bytes_replaced = 0;
  std::vector<std::string> subjects;
};

// The read side of sealed personal parts, and the operations the Store API offers on them (forget, purge):
// implemented by the privacy module when the store has a key store. Thread-safe.
class SealedParts {
 public:
  virtual ~SealedParts() = default;
  // An event's stored data with every sealed part opened, or redacted once its subject was forgotten.
  virtual Result<std::string> open_data(const Uuid& id, std::string_view stored_data) const = 0;
  virtual DataKeys* data_keys() = 0;
  virtual Result<std::string> subject_id(std::string_view subject) const = 0;
  // Store::forget: destroys the subject's keys, then records the forget through `store`. Callers serialize.
  virtual Result<ForgetResult> forget(Store& store, std::string_view subject, std::string_view reason,
                                      std::string_view actor_json) = 0;
  // The purged copy of the first `size` bytes of a sealed segment, written to tmp_path (see privacy/purge.h).
  virtual Result<SegmentPurgeOutcome> purge_segment(const log::Segment& segment, uint64_t size, base::FileSystem* fs,
                                                    const std::string& tmp_path, bool sync,
                                                    const std::function<void(uint64_t)>& progress) const = 0;
  // One event's stored data with every forgotten part replaced by its purged marker (same length).
  virtual Result<std::string> purge_parts(std::string_view stored_data, size_t* purged,
                                          std::vector<std::string>* key_ids) const = 0;
  // Records the finished purge in $privacy through `store`: the record's position.
  virtual Result<uint64_t> record_purge(Store& store, std::string data, std::string_view actor_json) = 0;
};

// Everything a backend runs besides storage, handed over at open.
struct Extensions {
  std::vector<std::shared_ptr<AppendPolicy>> policies;  // run in this order
  std::shared_ptr<SealedParts> sealed;                  // null: no key store (nothing personal is stored)
};

}  // namespace cairn::store
