#include "ledger/references.h"

#include <unordered_set>

#include <fmt/format.h>

namespace cairn::ledger {
namespace {
// Client values quoted in errors are cut, as everywhere in the API.
std::string_view cut(std::string_view v) { return v.substr(0, 64); }
}  // namespace

void ReferenceIndex::record(const Uuid& id, const References& refs) { record_locked(id, refs); }

void ReferenceIndex::record_locked(const Uuid& id, const References& refs) {
  if (refs.type == LedgerType::kProposalMade) {
    proposals_.try_emplace(refs.proposal_id, Proposal{id, false, Uuid{}});
  } else if (refs.type == LedgerType::kDecisionRecorded) {
    auto it = proposals_.find(refs.proposal_id);
    if (it != proposals_.end() && !it->second.decided) {
      it->second.decided = true;
      it->second.decided_by = id;
    }
  }
}

Status ReferenceIndex::check_and_reserve(const std::vector<PendingEvent>& events,
                                         const std::function<bool(const Uuid&)>& exists) {
  // Durable events only ever become more: look them up before taking the lock, which other appends wait on.
  std::unordered_set<Uuid, UuidHash> in_append, durable;
  for (const auto& e : events) in_append.insert(e.id);
  for (const auto& e : events)
    for (const auto& id : {e.refs.causation, e.refs.corrects, e.refs.feedback_event})
      if (id && !in_append.count(*id) && exists(*id)) durable.insert(*id);
  base::MutexLock g(mu_);
  std::unordered_set<Uuid, UuidHash> earlier_ids;
  std::unordered_map<std::string, Uuid> made_here, decided_here;
  std::vector<std::pair<std::unordered_map<std::string, InFlight>*, std::string>> retries_in_flight;
  std::unordered_set<std::string> retried_here;  // proposals this append makes again while the first attempt flies
  auto known_event = [&](const Uuid& id) { return earlier_ids.count(id) > 0 || durable.count(id) > 0; };
  auto proposal_known = [&](const std::string& p) CAIRN_REQUIRES(mu_) {  // called below, under mu_
    return made_here.count(p) > 0 || retried_here.count(p) > 0 || proposals_.count(p) > 0;
  };

  for (const auto& e : events) {
    const References& r = e.refs;
    if (r.causation && !known_event(*r.causation))
      return Status::invalid_event(fmt::format("{}.metadata.causation_id: no earlier event has id {} (a causation id "
                                               "in UUID form names an event of this store)",
                                               e.what, r.causation->to_string()));
    if (r.corrects && !known_event(*r.corrects))
      return Status::invalid_event(fmt::format("{}.data.corrects_event_id: no earlier event has id {}", e.what,
                                               r.corrects->to_string()));
    if (r.feedback_event && !known_event(*r.feedback_event))
      return Status::invalid_event(fmt::format("{}.data.target: no earlier event has id {}", e.what,
                                               r.feedback_event->to_string()));
    if (!r.feedback_proposal_id.empty() && !proposal_known(r.feedback_proposal_id))
      return Status::invalid_event(fmt::format("{}.data.target: no proposal '{}' was made before (give target_kind "
                                               "event or conversation for other targets)",
                                               e.what, cut(r.feedback_proposal_id)));
    if (r.type == LedgerType::kProposalMade) {
      const std::string& p = r.proposal_id;
      auto it = proposals_.find(p);
      const bool retry = it != proposals_.end() && it->second.made_by == e.id;
      auto flying = making_.find(p);
      const bool retry_in_flight = flying != making_.end() && flying->second.id == e.id;
      if (!retry && !retry_in_flight && (it != proposals_.end() || made_here.count(p) || flying != making_.end()))
        return Status::invalid_event(fmt::format("{}.data.proposal_id: proposal '{}' was made already; a proposal is "
                                                 "made once",
                                                 e.what, cut(p)));
      if (retry_in_flight) {
        retries_in_flight.emplace_back(&making_, p);
        retried_here.insert(p);
      } else if (!retry) {
        made_here.emplace(p, e.id);
      }
    } else if (r.type == LedgerType::kDecisionRecorded) {
      const std::string& p = r.proposal_id;
      auto it = proposals_.find(p);
      if (it == proposals_.end() && !made_here.count(p) && !retried_here.count(p))
        return Status::invalid_event(fmt::format("{}.data.proposal_id: no proposal '{}' was made before this decision{}",
                                                 e.what, cut(p), making_.count(p) ? " (its append is still in flight)" : ""));
      const bool retry = it != proposals_.end() && it->second.decided && it->second.decided_by == e.id;
      auto flying = deciding_.find(p);
      const bool retry_in_flight = flying != deciding_.end() && flying->second.id == e.id;
      if (!retry && !retry_in_flight &&
          ((it != proposals_.end() && it->second.decided) || decided_here.count(p) || flying != deciding_.end()))
        return Status::invalid_event(fmt::format("{}.data.proposal_id: proposal '{}' is decided already; a change of "
                                                 "mind is a correction.recorded naming the decision",
                                                 e.what, cut(p)));
      if (retry_in_flight) retries_in_flight.emplace_back(&deciding_, p);
      else if (!retry) decided_here.emplace(p, e.id);
    }
    earlier_ids.insert(e.id);
  }
  for (auto& [p, id] : made_here) making_[p] = InFlight{id, 1};
  for (auto& [p, id] : decided_here) deciding_[p] = InFlight{id, 1};
  for (auto& [map, p] : retries_in_flight) ++(*map)[p].appends;
  return {};
}

void ReferenceIndex::finish(const std::vector<PendingEvent>& events, bool durable) {
  base::MutexLock g(mu_);
  for (const auto& e : events) {
    const References& r = e.refs;
    auto release = [&](std::unordered_map<std::string, InFlight>& m) {
      if (auto it = m.find(r.proposal_id); it != m.end() && it->second.id == e.id && --it->second.appends == 0) m.erase(it);
    };
    if (r.type == LedgerType::kProposalMade) release(making_);
    else if (r.type == LedgerType::kDecisionRecorded) release(deciding_);
    if (durable) record_locked(e.id, r);
  }
}

}  // namespace cairn::ledger
