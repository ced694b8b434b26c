// What every backend does to an append before it reaches storage, in the caller's thread: validation
// (names, JSON, metadata, limits), the AI ledger's per-event rules, ids (UUIDv7 where absent), a random
// digest salt per event, sealing of declared personal parts, and the payload digests.
// Both the embedded writer and the PostgreSQL backend take its output, so both refuse the same input with
// the same errors. Thread-safe (keys may be shared; everything else is the caller's).
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "cairn/store.h"
#include "ledger/references.h"
#include "privacy/keystore.h"
#include "store/writer.h"

namespace cairn::store {

struct PreparedBatch {
  std::vector<PreparedAppend> appends;
  std::vector<ledger::PendingEvent> ledger_events;  // one per event, ids filled in
  bool has_references = false;  // some event refers to others (or makes a proposal): check before writing
};

// Looks up a durable event by id (for a correction's amendment rules).
using FindEventFn = std::function<Result<std::optional<RecordedEvent>>(const Uuid&)>;

// multi: errors name "appends[i]."; reserved: '$' streams and types are allowed (Cairn's own appends).
Result<PreparedBatch> prepare_appends(std::vector<StreamAppend> requests, bool multi, bool reserved, const Limits& limits,
                                      privacy::KeyStore* keys, const FindEventFn& find_durable);

}  // namespace cairn::store
