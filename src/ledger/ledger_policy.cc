#include "ledger/ledger_policy.h"

#include <algorithm>
#include <optional>

#include "ledger/vocabulary.h"

namespace cairn::ledger {
namespace {

// A correction that amends an earlier event must fit it: the corrected event comes earlier in the same
// append, or is durable already (events that exist nowhere are the reference rules' concern).
Status check_amendment(const std::vector<StreamAppend>& requests, size_t i, size_t j, const References& refs,
                       const std::string& what, store::PolicyHost& host) {
  const EventData& correction = requests[i].events[j];
  for (size_t a = 0; a <= i; ++a)
    for (size_t b = 0; b < (a == i ? j : requests[a].events.size()); ++b)
      if (const EventData& e = requests[a].events[b]; e.id && *e.id == *refs.corrects)
        return ledger::check_amendment(refs, e.type, e.data, correction.metadata, what);
  auto found = host.find_durable(*refs.corrects);
  if (!found.ok()) return found.status();
  if (!*found) return {};
  return ledger::check_amendment(refs, (*found)->type, (*found)->data, correction.metadata, what);
}

bool indexed_type(LedgerType t) { return t == LedgerType::kProposalMade || t == LedgerType::kDecisionRecorded; }

}  // namespace

class LedgerPolicy::LedgerRun final : public store::AppendPolicy::Run {
 public:
  LedgerRun(LedgerPolicy& policy, store::PolicyHost& host) : policy_(policy), host_(host) {}

  Status check(const std::vector<StreamAppend>& requests, size_t i, size_t j, const std::string& what) override {
    auto refs = check_event(requests[i].events[j], what);
    if (!refs.ok()) return refs.status();
    needed_ = needed_ || refs->any() || refs->type == LedgerType::kProposalMade;
    if (refs->corrects && !refs->replacement.empty())
      CAIRN_RETURN_IF_ERROR(check_amendment(requests, i, j, *refs, what, host_));
    checked_.push_back({Uuid{}, std::move(*refs), what});
    return {};
  }

  Status transform(EventData& event, const std::string&, store::Transformed*) override {
    checked_[transformed_++].id = *event.id;
    return {};
  }

  Status reserve(const std::vector<const EventData*>& events) override {
    if (!needed_) return {};
    // Every event of the append, in order: an event this policy did not check may still be referred to.
    size_t c = 0;
    for (const EventData* e : events) {
      if (c < checked_.size() && checked_[c].id == *e->id)
        pending_.push_back(std::move(checked_[c++]));
      else
        pending_.push_back({*e->id, References{}, ""});
    }
    base::UniqueLock lock(policy_.index_mu_);
    CAIRN_RETURN_IF_ERROR(policy_.catch_up(host_));
    if (!host_.shared_log()) lock.unlock();  // the index's own lock is enough once it is loaded
    CAIRN_RETURN_IF_ERROR(policy_.references_.check_and_reserve(pending_, [this](const Uuid& id) { return host_.exists(id); }));
    held_ = std::move(lock.native());
    reserved_ = true;
    return {};
  }

  // Not analysed: index_mu_ is held from reserve() to here through held_ (on a shared log), across calls,
  // which the analysis cannot follow; through_ is written only when held_ owns the lock.
  void finish(const AppendResult* durable) override CAIRN_NO_THREAD_SAFETY_ANALYSIS {
    if (!reserved_) return;
    policy_.references_.finish(pending_, durable != nullptr);
    if (held_.owns_lock() && durable && !durable->streams.empty())
      policy_.through_ = std::max(policy_.through_, durable->streams.back().last_position + 1);
    if (held_.owns_lock()) held_.unlock();
  }

 private:
  LedgerPolicy& policy_;
  store::PolicyHost& host_;
  std::vector<PendingEvent> checked_;  // the events this policy applied to, in request order
  size_t transformed_ = 0;
  std::vector<PendingEvent> pending_;  // every event of the append, for the reference rules
  bool needed_ = false;    // some event refers to others (or makes a proposal)
  bool reserved_ = false;
  std::unique_lock<std::mutex> held_;  // on a shared log: index_mu_, until the outcome
};

bool LedgerPolicy::applies(const EventData& event) const {
  if (ledger_type(event.type) != LedgerType::kNone) return true;
  // Any other event may name its cause (metadata.causation_id). A key may be spelled with escapes, which
  // only a parse resolves: metadata holding one is checked too.
  const std::string_view m = event.metadata;
  return m.find("causation") != std::string_view::npos || m.find("\\u") != std::string_view::npos;
}

std::unique_ptr<store::AppendPolicy::Run> LedgerPolicy::begin(store::PolicyHost& host, const Limits&) {
  return std::make_unique<LedgerRun>(*this, host);
}

Status LedgerPolicy::catch_up(store::PolicyHost& host) {
  // The index is loaded on the first append that needs it, so that opening never reads history.
  if (loaded_ && !host.shared_log()) return {};
  uint64_t last = through_;
  bool any = false;
  CAIRN_RETURN_IF_ERROR(host.scan_types(through_, {"ai.proposal.made", "human.decision.recorded"}, [&](const EventView& v) {
    EventData d{v.id, std::string(v.type), v.content_type, std::string(v.metadata), std::string(v.data)};
    auto refs = check_event(d, "event");
    if (refs.ok()) references_.record(v.id, *refs);  // events from before the rules: not references
    last = v.position;
    any = true;
    return true;
  }));
  if (any) through_ = std::max(through_, last + 1);
  loaded_ = true;
  return {};
}

// Imports restore history as it was written: its ledger events are recorded, not judged again. Before the
// index is loaded, the load will read these from the log.
class LedgerPolicy::ImportRun final : public store::AppendPolicy::Run {
 public:
  ImportRun(LedgerPolicy& policy, std::vector<PendingEvent> events) : policy_(policy), events_(std::move(events)) {}
  Status check(const std::vector<StreamAppend>&, size_t, size_t, const std::string&) override { return {}; }
  void finish(const AppendResult* durable) override {
    base::MutexLock g(policy_.index_mu_);
    if (durable && policy_.loaded_) policy_.references_.finish(events_, true);
  }

 private:
  LedgerPolicy& policy_;
  std::vector<PendingEvent> events_;
};

std::unique_ptr<store::AppendPolicy::Run> LedgerPolicy::begin_import(const std::vector<ImportEvent>& events) {
  std::vector<PendingEvent> recorded;
  for (const auto& e : events) {
    if (!indexed_type(ledger_type(e.type))) continue;
    auto refs = check_event(EventData{e.id, e.type, e.content_type, e.metadata, e.data}, "event");
    if (refs.ok()) recorded.push_back({e.id, std::move(*refs), ""});
  }
  return std::make_unique<ImportRun>(*this, std::move(recorded));
}

}  // namespace cairn::ledger
