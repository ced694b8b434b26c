// The ledger's reference rules, checked on append against what exists:
//   - a causation id in UUID form, a correction's corrects_event_id and a feedback's event target name an
//     event that is durable already or comes earlier in the same append;
//   - a proposal id is made once; a decision names a proposal made earlier (durable, or earlier in the same
//     append), and a proposal is decided once (a change of mind is a correction.recorded);
//   - feedback on a proposal names one made earlier.
// An idempotent retry (the same event id again) passes, so the store can answer it as a replay.
//
// The index (proposal id -> its event, and its decision) is derived from the log: load() builds it at open.
// Concurrency: check_and_reserve() holds proposals and decisions of an append in flight so that two
// concurrent appends cannot both make the same proposal or decide it twice; finish() then records them
// (the append was durable) or lets them go (it failed). Thread-safe.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cairn/event.h"
#include "cairn/status.h"
#include "base/mutex.h"
#include "ledger/vocabulary.h"

namespace cairn::ledger {

struct PendingEvent {
  Uuid id;
  References refs;
  std::string what;  // how errors name it: "events[2]" or "appends[1].events[0]"
};

class ReferenceIndex {
 public:
  // Records one durable event (used by load() and finish()). Called by LedgerPolicy::catch_up without mu_:
  // the policy's index_mu_ orders it with every other writer of the index, which the analysis cannot see
  // (hence no analysis here; record_locked is the checked body).
  void record(const Uuid& id, const References& refs) CAIRN_NO_THREAD_SAFETY_ANALYSIS;

  // Checks an append's events in order; on success, holds what they make until finish().
  // exists(id) tells whether a durable event has that id; it is called before the index's lock is taken.
  Status check_and_reserve(const std::vector<PendingEvent>& events, const std::function<bool(const Uuid&)>& exists);
  // The append of these (reserved) events ended: durable (record them) or not (release them).
  void finish(const std::vector<PendingEvent>& events, bool durable);

 private:
  struct Proposal {
    Uuid made_by;
    bool decided = false;
    Uuid decided_by;
  };
  void record_locked(const Uuid& id, const References& refs) CAIRN_REQUIRES(mu_);

  mutable base::Mutex mu_;  // guards proposals_ and the in-flight map below; held only for map operations
  std::unordered_map<std::string, Proposal> proposals_ CAIRN_GUARDED_BY(mu_);
  // Proposal id -> the event of an append in flight, and how many appends carry it (a retry sent while the
  // first attempt is still in flight carries the same event: the writer answers it as a replay).
  struct InFlight {
    Uuid id;
    int appends = 0;
  };
  std::unordered_map<std::string, InFlight> making_ CAIRN_GUARDED_BY(mu_);
  std::unordered_map<std::string, InFlight> deciding_ CAIRN_GUARDED_BY(mu_);
};

}  // namespace cairn::ledger
