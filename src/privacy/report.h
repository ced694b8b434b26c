// `cairn privacy report SUBJECT` and GET /v1/privacy/subjects/{subject}/report (docs/privacy.md): what a
// forget of one subject touched and the proof that the log stayed intact.
//
// The report, as JSON: the subject's keyed hash; its forget (position, time, reason, actor, keys destroyed);
// its events (count, how many are purged, unreadable awaiting a purge, or readable because written after the
// forget, by type, and the first `max_events` of them by position); the AI ledger events among them (whose
// rows training exports leave out from the forget on); the projections (whether every rebuild the forget
// asked for has finished); the purges that dropped its parts with the chain heads each verified before and
// after; and a verification of the whole log now. Reads only. Thread-safe as the Store is.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cairn/status.h"
#include "cairn/store.h"

namespace cairn::privacy {

// Which event types are the AI ledger's: the caller passes ledger::is_ledger_type, so that privacy does not
// depend on the ledger (docs/architecture.md).
using TypePredicate = std::function<bool(std::string_view type)>;

// subject_id: the keyed hash ("hs:…"; Store::subject_id gives it). projections_dir: the projection runtime's
// directory (DATA/projections), or "" when there is none.
Result<nlohmann::ordered_json> subject_report(Store& store, std::string_view subject_id, const std::string& projections_dir,
                                              const TypePredicate& is_ledger_type, size_t max_events = 1000);

// What a purge did, as the API and the CLI show it.
nlohmann::ordered_json purge_result_json(const PurgeResult& r);

}  // namespace cairn::privacy
