#include "ledger/ai_projections.h"

#include <cstring>
#include <map>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "ledger/decisions.h"
#include "ledger/vocabulary.h"

namespace cairn::ledger {
namespace {

using json = nlohmann::json;
constexpr std::string_view kProposalPrefix = "proposal:";
constexpr std::string_view kSlicePrefix = "slice:";
constexpr int64_t kDayNs = 86'400'000'000'000;

std::string day_of(int64_t ns) { return format_rfc3339_ns(ns - ((ns % kDayNs) + kDayNs) % kDayNs).substr(0, 10); }

std::string slice_key(const std::string& day, const ProposalData& p) {
  return json::array({day, p.model(), p.prompt_version(), p.skill}).dump(-1, ' ', false, json::error_handler_t::replace);
}

struct Cell {
  uint64_t proposals = 0, accepted = 0, edited = 0, rejected = 0, expired = 0;
  uint64_t distance_ppm_sum = 0, distance_count = 0;
  int64_t decision_ms_sum = 0;
  uint64_t decision_ms_count = 0;
  bool empty() const {
    return proposals == 0 && accepted == 0 && edited == 0 && rejected == 0 && expired == 0 && distance_count == 0 &&
           decision_ms_count == 0;
  }
};

// What one proposal adds to the slices.
struct Contribution {
  bool counted = false;       // false for a retracted proposal
  std::string made_cell;      // the proposal's day
  std::string decided_cell;   // the decision's day; empty if undecided
  std::string outcome;
  std::optional<uint32_t> ppm;
  std::optional<int64_t> ms;
};

class DecisionsEngine final : public ReducerEngine {
 public:
  DecisionsEngine() : fold_(FoldOptions{.keep_inputs = false, .compute_deltas = true, .sorted = true}) {}

  Status apply(std::string_view, const EventView& e) override {
    const std::string id = fold_.apply(e);
    if (!id.empty()) recount(id);
    return {};
  }

  Result<std::optional<std::string>> state_json(std::string_view key) override {
    if (key.starts_with(kProposalPrefix)) {
      const DecisionRecord* r = fold_.find(key.substr(kProposalPrefix.size()));
      if (!r) return std::optional<std::string>();
      return std::optional<std::string>(DecisionFold::record_json(*r));
    }
    if (key.starts_with(kSlicePrefix)) {
      auto it = cells_.find(key.substr(kSlicePrefix.size()));
      if (it == cells_.end()) return std::optional<std::string>();
      return std::optional<std::string>(cell_json(it->first, it->second));
    }
    return std::optional<std::string>();
  }

  std::vector<std::string> keys(std::string_view after, size_t limit) const override {
    std::vector<std::string> out;
    // "proposal:" keys sort before "slice:" keys.
    if (after < kProposalPrefix || after.starts_with(kProposalPrefix)) {
      const std::string_view from = after.starts_with(kProposalPrefix) ? after.substr(kProposalPrefix.size()) : "";
      for (const DecisionRecord* r : fold_.sorted_after(from, limit)) out.push_back(std::string(kProposalPrefix) + r->proposal_id);
    }
    auto cit = cells_.begin();
    if (after >= kSlicePrefix) {
      if (after.starts_with(kSlicePrefix)) cit = cells_.upper_bound(after.substr(kSlicePrefix.size()));
      else cit = cells_.end();
    }
    for (; cit != cells_.end() && out.size() < limit; ++cit) out.push_back(std::string(kSlicePrefix) + cit->first);
    return out;
  }

  size_t partitions() const override { return fold_.size() + cells_.size(); }

  Status restore(std::string_view key, std::string_view text) override {
    if (key.starts_with(kSlicePrefix)) return {};  // derived from the proposals, recomputed below
    if (!key.starts_with(kProposalPrefix)) return Status::corruption(fmt::format("$ai.decisions: an unknown partition '{}'", key.substr(0, 100)));
    CAIRN_RETURN_IF_ERROR(fold_.restore(text));
    recount(std::string(key.substr(kProposalPrefix.size())));
    return {};
  }

 private:
  static std::string cell_json(const std::string& key, const Cell& c) {
    json k = json::parse(key);
    json j = {{"day", k[0]}, {"model", k[1]}, {"prompt_version", k[2]}, {"skill", k[3]},
              {"proposals", c.proposals}, {"accepted", c.accepted}, {"edited", c.edited}, {"rejected", c.rejected},
              {"expired", c.expired}, {"edit_distance_ppm_sum", c.distance_ppm_sum},
              {"edit_distance_count", c.distance_count}, {"decision_ms_sum", c.decision_ms_sum},
              {"decision_ms_count", c.decision_ms_count}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  Contribution contribution_of(const DecisionRecord& r) const {
    Contribution c;
    const Effective& e = r.effective;
    if (e.proposal_retracted) return c;
    c.counted = true;
    const ProposalData& p = r.proposal_now();
    c.made_cell = slice_key(day_of(r.proposal.recorded_ns), p);
    if (const DecisionData* d = r.decision_now()) {
      c.decided_cell = slice_key(day_of(r.decision->recorded_ns), p);
      c.outcome = d->outcome;
      if (d->outcome == "accepted") c.ppm = 0;
      else if (e.delta) c.ppm = e.delta->normalized_ppm;
      c.ms = r.decision_ms();
    }
    return c;
  }

  void add(const Contribution& c, int sign) {
    if (!c.counted) return;
    auto bump = [&](uint64_t& v) { v = sign > 0 ? v + 1 : v - 1; };
    auto touch = [&](const std::string& key, auto&& f) {
      Cell& cell = cells_[key];
      f(cell);
      if (cell.empty()) cells_.erase(key);
    };
    touch(c.made_cell, [&](Cell& cell) { bump(cell.proposals); });
    if (c.decided_cell.empty()) return;
    touch(c.decided_cell, [&](Cell& cell) {
      if (c.outcome == "accepted") bump(cell.accepted);
      else if (c.outcome == "edited") bump(cell.edited);
      else if (c.outcome == "rejected") bump(cell.rejected);
      else if (c.outcome == "expired") bump(cell.expired);
      if (c.ppm) {
        cell.distance_ppm_sum = sign > 0 ? cell.distance_ppm_sum + *c.ppm : cell.distance_ppm_sum - *c.ppm;
        bump(cell.distance_count);
      }
      if (c.ms) {
        cell.decision_ms_sum += sign * *c.ms;
        bump(cell.decision_ms_count);
      }
    });
  }

  void recount(const std::string& id) {
    const DecisionRecord* r = fold_.find(id);
    if (!r) return;
    auto it = contributions_.find(id);
    if (it != contributions_.end()) add(it->second, -1);
    Contribution c = contribution_of(*r);
    add(c, +1);
    contributions_[id] = std::move(c);
  }

  DecisionFold fold_;
  std::unordered_map<std::string, Contribution> contributions_;
  std::map<std::string, Cell, std::less<>> cells_;
};

class LineageEngine final : public ReducerEngine {
 public:
  Status apply(std::string_view, const EventView& e) override {
    if (!e.metadata.empty() && memmem(e.metadata.data(), e.metadata.size(), "correlation_id", 14) != nullptr) {
      simdjson::dom::element m;
      std::string_view cid;
      if (parser_.parse(e.metadata.data(), e.metadata.size()).get(m) == simdjson::SUCCESS &&
          m["correlation_id"].get(cid) == simdjson::SUCCESS && !cid.empty())
        parts_[key("correlation:", cid)].push_back(e.position);
    }
    const LedgerType t = ledger_type(e.type);
    if (t == LedgerType::kCorrectionRecorded || t == LedgerType::kProposalMade) {
      simdjson::dom::element d;
      if (parser_.parse(e.data.data(), e.data.size()).get(d)) return {};
      std::string_view v;
      if (t == LedgerType::kCorrectionRecorded) {
        if (d["corrects_event_id"].get(v) == simdjson::SUCCESS) {
          auto id = Uuid::parse(v);
          if (id.ok()) parts_[key("corrected:", id->to_string())].push_back(e.position);
        }
      } else if (d["proposal_id"].get(v) == simdjson::SUCCESS && !v.empty()) {
        auto& p = parts_[key("proposal:", v)];
        if (p.empty()) p.push_back(e.position);  // the first one made it; a later one was refused or imported
      }
    }
    return {};
  }

  Result<std::optional<std::string>> state_json(std::string_view k) override {
    auto it = parts_.find(k);
    if (it == parts_.end()) return std::optional<std::string>();
    std::string out = "{\"positions\":[";
    for (size_t i = 0; i < it->second.size(); ++i) out += fmt::format("{}{}", i ? "," : "", it->second[i]);
    out += "]}";
    return std::optional<std::string>(std::move(out));
  }

  std::vector<std::string> keys(std::string_view after, size_t limit) const override {
    return map_keys_after(parts_, after, limit);
  }
  size_t partitions() const override { return parts_.size(); }

  Status restore(std::string_view k, std::string_view text) override {
    simdjson::dom::element e;
    simdjson::dom::array a;
    if (parser_.parse(text.data(), text.size(), true).get(e) || e["positions"].get(a))
      return Status::corruption("$ai.lineage: a state lacks its positions");
    std::vector<uint64_t> v;
    for (simdjson::dom::element p : a) {
      uint64_t n = 0;
      if (p.get(n)) return Status::corruption("$ai.lineage: a bad position");
      v.push_back(n);
    }
    parts_.insert_or_assign(std::string(k), std::move(v));
    return {};
  }

 private:
  const std::string& key(std::string_view prefix, std::string_view v) {
    scratch_.assign(prefix);
    scratch_.append(v);
    return scratch_;
  }
  simdjson::dom::parser parser_;
  std::map<std::string, std::vector<uint64_t>, std::less<>> parts_;
  std::string scratch_;
};

}  // namespace

EngineFactory decisions_engine_factory() {
  return []() -> Result<std::unique_ptr<ReducerEngine>> { return std::unique_ptr<ReducerEngine>(new DecisionsEngine()); };
}
EngineFactory lineage_engine_factory() {
  return []() -> Result<std::unique_ptr<ReducerEngine>> { return std::unique_ptr<ReducerEngine>(new LineageEngine()); };
}

Filter decisions_source() {
  Filter f;
  f.types = {"ai.proposal.made", "human.decision.recorded", "correction.recorded"};
  return f;
}

}  // namespace cairn::ledger
