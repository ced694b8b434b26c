// ledger_why and ledger_correlation (include/cairn/ledger.h): lineage read from the log, found through the
// $ai.lineage projection.
#include <algorithm>
#include <set>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "cairn/ledger.h"
#include "codec/event_json.h"
#include "ledger/ai_projections.h"
#include "ledger/decisions.h"
#include "ledger/vocabulary.h"

namespace cairn {
namespace {

using json = nlohmann::json;

class Lineage {
 public:
  Lineage(Store& store, Projections& projections, LedgerOptions opt) : store_(store), p_(projections), opt_(opt) {}

  // Waits until $ai.lineage reflects every event durable now.
  Status catch_up() {
    const uint64_t head = store_.head_position();
    if (head == 0) return {};
    auto s = p_.state(ledger::kLineageProjection, std::string("proposal:"), 0, head - 1, opt_.wait);
    if (!s.ok() && s.status().code() == ErrorCode::kTimeout)
      return Status(ErrorCode::kTimeout, fmt::format("the lineage projection has not caught up with position {} within {} ms; try again",
                                                     head - 1, opt_.wait.count()));
    return s.ok() ? Status() : s.status();
  }

  Result<std::vector<uint64_t>> positions(const std::string& key) {
    auto s = p_.state(ledger::kLineageProjection, key, 0, std::nullopt, opt_.wait);
    if (!s.ok()) return s.status();
    std::vector<uint64_t> out;
    if (!s->found) return out;
    simdjson::dom::parser parser;
    simdjson::dom::element e;
    simdjson::dom::array a;
    if (parser.parse(s->json).get(e) || e["positions"].get(a)) return Status::corruption("$ai.lineage: a bad state");
    for (simdjson::dom::element v : a) {
      uint64_t n = 0;
      if (v.get(n)) return Status::corruption("$ai.lineage: a bad position");
      out.push_back(n);
    }
    return out;
  }

  Result<RecordedEvent> at(uint64_t position) { return store_.read_position(position); }

  // The event this one follows from, and how: its causation id, else what its type names (a decision's
  // proposal, a correction's corrected event, a feedback's target).
  struct Parent {
    std::optional<RecordedEvent> event;
    std::string relation;     // "causation_id", "proposal_id", "corrects_event_id", "target"
    std::string unresolved;   // a reference that names nothing here (an outside id, or a missing event)
    std::string external_cause;  // a causation id from outside the store, when the type led further back
  };
  // A causation id names the parent; when it names nothing here (an id from outside the store), what the
  // event's type names is tried next, so that a decision still leads to its proposal.
  Result<Parent> parent_of(const RecordedEvent& e) {
    simdjson::dom::parser parser;
    simdjson::dom::element m;
    std::string_view cause;
    if (!e.metadata.empty() && parser.parse(e.metadata).get(m) == simdjson::SUCCESS &&
        m["causation_id"].get(cause) == simdjson::SUCCESS && !cause.empty()) {
      Parent by_cause;
      by_cause.relation = "causation_id";
      auto p = by_id(cause, std::move(by_cause));
      if (!p.ok() || p->event) return p;
      auto typed = parent_by_type(e, parser);
      if (!typed.ok()) return typed.status();
      if (!typed->event) return p;
      typed->external_cause = p->unresolved;
      return typed;
    }
    return parent_by_type(e, parser);
  }

  Result<Parent> parent_by_type(const RecordedEvent& e, simdjson::dom::parser& parser) {
    Parent out;
    const ledger::LedgerType t = ledger::ledger_type(e.type);
    simdjson::dom::element d;
    if (e.content_type != ContentType::kJson || parser.parse(e.data).get(d)) return out;
    std::string_view v;
    if (t == ledger::LedgerType::kDecisionRecorded && d["proposal_id"].get(v) == simdjson::SUCCESS) {
      out.relation = "proposal_id";
      return by_proposal(std::string(v), std::move(out));
    }
    if (t == ledger::LedgerType::kCorrectionRecorded && d["corrects_event_id"].get(v) == simdjson::SUCCESS) {
      out.relation = "corrects_event_id";
      return by_id(v, std::move(out));
    }
    if (t == ledger::LedgerType::kFeedbackGiven) {
      std::string_view kind = "proposal";  // the vocabulary's default
      if (d["target"].get(v)) return out;
      if (d["target_kind"].get(kind) && d["target_kind"].error() != simdjson::NO_SUCH_FIELD) return out;
      out.relation = "target";
      if (kind == "proposal") return by_proposal(std::string(v), std::move(out));
      if (kind == "event") return by_id(v, std::move(out));
    }
    return out;
  }

  Result<std::vector<RecordedEvent>> corrections_of(const Uuid& id) {
    auto pos = positions("corrected:" + id.to_string());
    if (!pos.ok()) return pos.status();
    std::vector<RecordedEvent> out;
    for (uint64_t p : *pos) {
      auto ev = at(p);
      if (!ev.ok()) return ev.status();
      out.push_back(std::move(*ev));
    }
    return out;
  }

  // The corrections of an event, and of those corrections, depth first, in log order at each level.
  Status collect_corrections(const Uuid& id, std::optional<uint64_t> up_to, std::optional<int64_t> up_to_ns,
                             std::set<uint64_t>& seen, json& out) {
    auto cs = corrections_of(id);
    if (!cs.ok()) return cs.status();
    for (auto& c : *cs) {
      if ((up_to && c.position > *up_to) || (up_to_ns && c.recorded_ns > *up_to_ns)) continue;
      if (!seen.insert(c.position).second) continue;
      json entry = json::parse(codec::event_json(c));
      entry["corrects"] = id.to_string();
      out.push_back(std::move(entry));
      CAIRN_RETURN_IF_ERROR(collect_corrections(c.id, up_to, up_to_ns, seen, out));
    }
    return {};
  }

 private:
  Result<Parent> by_proposal(const std::string& proposal_id, Parent out) {
    auto pos = positions("proposal:" + proposal_id);
    if (!pos.ok()) return pos.status();
    if (pos->empty()) {
      out.unresolved = proposal_id;
      return out;
    }
    auto ev = at(pos->front());
    if (!ev.ok()) return ev.status();
    out.event = std::move(*ev);
    return out;
  }
  Result<Parent> by_id(std::string_view text, Parent out) {
    auto id = Uuid::parse(text);
    if (!id.ok()) {
      out.unresolved = std::string(text);
      return out;
    }
    auto ev = store_.read_event(*id);
    if (!ev.ok()) {
      if (ev.status().code() != ErrorCode::kNotFound) return ev.status();
      out.unresolved = id->to_string();
      return out;
    }
    out.event = std::move(*ev);
    return out;
  }

  Store& store_;
  Projections& p_;
  LedgerOptions opt_;
};

std::string correlation_of(const RecordedEvent& e) {
  simdjson::dom::parser parser;
  simdjson::dom::element m;
  std::string_view cid;
  if (e.metadata.empty() || parser.parse(e.metadata).get(m) || m["correlation_id"].get(cid)) return {};
  return std::string(cid);
}

json event_object(const RecordedEvent& e) { return json::parse(codec::event_json(e)); }

// The proposals among some events, folded with the corrections among them: what held at that point.
json proposals_of(const std::vector<RecordedEvent>& events) {
  ledger::DecisionFold fold(ledger::FoldOptions{.keep_inputs = false, .compute_deltas = true});
  std::vector<const RecordedEvent*> sorted;
  for (const auto& e : events) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->position < b->position; });
  for (auto* e : sorted) fold.apply(e->view());
  json out = json::array();
  for (const auto& r : fold.in_arrival_order()) out.push_back(json::parse(ledger::DecisionFold::record_json(r)));
  return out;
}

}  // namespace

Result<std::string> ledger_why(Store& store, Projections& projections, const Uuid& event_id, LedgerOptions options) {
  Lineage lin(store, projections, options);
  auto target = store.read_event(event_id);
  if (!target.ok()) return target.status();
  CAIRN_RETURN_IF_ERROR(lin.catch_up());
  const uint64_t head = store.head_position();

  // Back along the chain to its root.
  struct Link {
    RecordedEvent event;
    std::string via;       // how this event names the one before it on the chain
    std::string external;  // its causation id, when that names nothing in the store and `via` was used instead
  };
  std::vector<Link> chain;
  std::unordered_set<uint64_t> on_chain{target->position};
  RecordedEvent cur = *target;
  json stop = nullptr;
  for (size_t steps = 0;; ++steps) {
    if (steps >= options.max_chain) {
      stop = {{"reason", "max_chain"}, {"detail", fmt::format("stopped after {} steps", options.max_chain)}};
      break;
    }
    auto parent = lin.parent_of(cur);
    if (!parent.ok()) return parent.status();
    if (!parent->event) {
      if (!parent->unresolved.empty())
        stop = {{"reason", "unresolved"}, {"relation", parent->relation}, {"reference", parent->unresolved}};
      break;
    }
    if (!on_chain.insert(parent->event->position).second || parent->event->position >= cur.position) {
      // References only point back (the store checks it on append); anything else is history written
      // before the rules or imported: stop rather than loop.
      stop = {{"reason", "not_earlier"}, {"relation", parent->relation}, {"reference", parent->event->id.to_string()}};
      break;
    }
    chain.push_back({cur, parent->relation, parent->external_cause});
    cur = std::move(*parent->event);
  }
  chain.push_back({cur, "", ""});
  std::reverse(chain.begin(), chain.end());

  json out;
  out["event_id"] = event_id.to_string();
  out["head_position"] = head;
  json jchain = json::array();
  for (size_t i = 0; i < chain.size(); ++i) {
    json e = event_object(chain[i].event);
    if (i == 0) {
      e["caused_by"] = nullptr;
    } else {
      e["caused_by"] = {{"event_id", chain[i - 1].event.id.to_string()}, {"via", chain[i].via}};
      if (!chain[i].external.empty()) e["caused_by"]["external_causation_id"] = chain[i].external;
    }
    jchain.push_back(std::move(e));
  }
  out["chain"] = std::move(jchain);
  out["root_id"] = chain.front().event.id.to_string();
  out["chain_stop"] = stop;

  // What corrects any event of the chain (and corrections of those corrections).
  json corrections = json::array();
  std::set<uint64_t> seen;
  for (const auto& link : chain) CAIRN_RETURN_IF_ERROR(lin.collect_corrections(link.event.id, std::nullopt, std::nullopt, seen, corrections));
  out["corrections"] = std::move(corrections);

  // The flow: every event sharing the correlation of the target (or of its chain's nearest event that has one).
  std::string cid = correlation_of(*target);
  for (auto it = chain.rbegin(); cid.empty() && it != chain.rend(); ++it) cid = correlation_of(it->event);
  json corr = nullptr;
  std::vector<RecordedEvent> flow;
  if (!cid.empty()) {
    auto pos = lin.positions("correlation:" + cid);
    if (!pos.ok()) return pos.status();
    json events = json::array();
    for (size_t i = 0; i < pos->size() && i < options.max_correlated; ++i) {
      auto ev = lin.at((*pos)[i]);
      if (!ev.ok()) return ev.status();
      events.push_back(event_object(*ev));
      flow.push_back(std::move(*ev));
    }
    corr = {{"id", cid}, {"count", pos->size()}, {"truncated", pos->size() > options.max_correlated}, {"events", std::move(events)}};
  }
  out["correlation"] = std::move(corr);

  // The proposals on the chain or in the flow, with their decisions and corrections, as they stand now:
  // their records in $ai.decisions, which sees every decision and correction wherever it was written.
  std::vector<std::string> ids;  // in order of first mention
  auto mention = [&](const RecordedEvent& e) {
    const ledger::LedgerType t = ledger::ledger_type(e.type);
    if (t != ledger::LedgerType::kProposalMade && t != ledger::LedgerType::kDecisionRecorded) return;
    simdjson::dom::parser parser;
    simdjson::dom::element d;
    std::string_view id;
    if (e.content_type != ContentType::kJson || parser.parse(e.data).get(d) || d["proposal_id"].get(id)) return;
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.emplace_back(id);
  };
  for (const auto& link : chain) mention(link.event);
  for (const auto& e : flow) mention(e);
  json proposals = json::array();
  if (!ids.empty()) {
    auto caught_up = projections.state(ledger::kDecisionsProjection, std::string("-"), 0, head - 1, options.wait);
    if (!caught_up.ok()) return caught_up.status();
    for (const auto& id : ids) {
      auto st = projections.state(ledger::kDecisionsProjection, "proposal:" + id, 0, std::nullopt, options.wait);
      if (!st.ok()) return st.status();
      if (st->found) proposals.push_back(json::parse(st->json));
    }
  }
  out["proposals"] = std::move(proposals);
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> ledger_correlation(Store& store, Projections& projections, std::string_view correlation_id,
                                       AsOf as_of, LedgerOptions options) {
  if (correlation_id.empty()) return Status::invalid_argument("correlation id: required");
  Lineage lin(store, projections, options);
  CAIRN_RETURN_IF_ERROR(lin.catch_up());
  const uint64_t head = store.head_position();
  if (as_of.position && *as_of.position >= head)
    return Status::invalid_argument(fmt::format("as_of: position {} is not in the log yet (the head is {})", *as_of.position, head));
  auto pos = lin.positions("correlation:" + std::string(correlation_id));
  if (!pos.ok()) return pos.status();
  if (pos->empty())
    return Status::not_found(fmt::format("no event carries correlation_id '{}'", correlation_id.substr(0, 200)));
  // The cut: the last position included.
  std::optional<uint64_t> cut = as_of.position;
  std::vector<RecordedEvent> members;
  json events = json::array();
  bool truncated = false;
  uint64_t count = 0;
  for (uint64_t p : *pos) {
    if (cut && p > *cut) break;
    auto ev = lin.at(p);
    if (!ev.ok()) return ev.status();
    if (as_of.time_ns && ev->recorded_ns > *as_of.time_ns) break;  // recorded_at never decreases along the log
    ++count;
    if (members.size() >= options.max_correlated) {
      truncated = true;
      continue;
    }
    members.push_back(std::move(*ev));
  }
  // Corrections known at the cut, of any member (and of those corrections).
  json corrections = json::array();
  std::set<uint64_t> seen;
  for (const auto& m : members) {
    json e = event_object(m);
    json mine = json::array();
    std::set<uint64_t> local;
    CAIRN_RETURN_IF_ERROR(lin.collect_corrections(m.id, cut ? cut : std::optional<uint64_t>(head - 1), as_of.time_ns, local, mine));
    json ids = json::array();
    for (const auto& c : mine) {
      ids.push_back(c["id"]);
      if (seen.insert(c["position"].get<uint64_t>()).second) corrections.push_back(c);
    }
    e["corrected_by"] = std::move(ids);
    events.push_back(std::move(e));
  }
  std::vector<RecordedEvent> involved = members;
  for (const auto& c : corrections) {
    auto ev = store.read_position(c["position"].get<uint64_t>());
    if (ev.ok()) involved.push_back(std::move(*ev));
  }
  std::sort(involved.begin(), involved.end(), [](const auto& a, const auto& b) { return a.position < b.position; });
  involved.erase(std::unique(involved.begin(), involved.end(), [](const auto& a, const auto& b) { return a.position == b.position; }),
                 involved.end());
  json out;
  out["correlation_id"] = std::string(correlation_id);
  out["as_of"] = as_of.position ? json{{"position", *as_of.position}}
                 : as_of.time_ns ? json{{"time", format_rfc3339_ns(*as_of.time_ns)}}
                                 : json{{"position", head == 0 ? json(nullptr) : json(head - 1)}};
  out["count"] = count;
  out["truncated"] = truncated;
  out["events"] = std::move(events);
  out["corrections"] = std::move(corrections);
  out["proposals"] = proposals_of(involved);
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace cairn
