// Pairs each AI proposal with its human decision and the corrections of either, in log order
// (docs/ai-ledger.md#deltas): the one piece of logic behind the $ai.decisions projection, the rates, the
// training exports and the as-of view of a correlation, so that all of them agree.
//
// Corrections (correction.recorded) apply in log order: an amendment replaces the corrected event's data, a
// retraction voids it; a later amendment after a retraction brings it back with the new data. A correction
// may itself be amended (its kind and replacement change) or retracted (it stops applying). A retracted
// proposal drops out entirely; a retracted decision leaves its proposal undecided.
// Values (proposed_value, final_value, input) are kept as the minified JSON text the log holds.
//
// apply() must see events in log order. Not thread-safe: one fold per thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/hash/hash.h>
#include <simdjson.h>

#include "cairn/event.h"
#include "cairn/status.h"
#include "ledger/delta.h"
#include "ledger/vocabulary.h"

namespace cairn::ledger {

// The parts of an ai.proposal.made a decision record needs. Strings are empty when absent; *_json fields
// hold minified JSON text.
struct ProposalData {
  std::string kind, skill, request_model, response_model, provider, model_version, template_id, template_version;
  std::string proposed_value_json;
  std::string input_json;         // kept only by folds made with keep_inputs
  std::string input_ref;
  std::string alternatives_json;  // kept only by folds made with keep_inputs
  // Slicing: the model that answered (gen_ai.response.model), else the one asked for.
  const std::string& model() const { return response_model.empty() ? request_model : response_model; }
  // "template_id@template_version", "template_id", or "" without a template.
  std::string prompt_version() const;
};

struct DecisionData {
  std::string outcome;           // accepted, edited, rejected, expired
  std::string final_value_json;  // empty for rejected and expired
  std::optional<int64_t> presented_ns;
  std::string reason_code, reason_text;
};

struct CorrectionData {
  Uuid corrects;
  bool retract = false;
  std::string replacement_json;  // amend: the replacement data (an object)
};

template <typename Data>
struct Source {
  Uuid id;
  uint64_t position = 0;
  int64_t recorded_ns = 0;
  Data data;
};

// What holds now, after every correction seen. The data that holds is the recorded data unless an
// amendment replaced it (DecisionRecord::proposal_now / decision_now pick the right one).
struct Effective {
  bool proposal_retracted = false;
  bool decided = false;             // a decision stands (not retracted)
  bool decision_retracted = false;  // a decision was made and then retracted
  // On the heap: amendments are rare, and records are many (an export holds millions; keep them small).
  std::unique_ptr<ProposalData> amended_proposal;
  std::unique_ptr<DecisionData> amended_decision;
  std::vector<Uuid> applied;        // the corrections that apply, in log order
  std::optional<Delta> delta;       // accepted and edited decisions, when the fold computes deltas
};

struct DecisionRecord {
  std::string proposal_id;
  Source<ProposalData> proposal;
  std::optional<Source<DecisionData>> decision;
  std::vector<Source<CorrectionData>> corrections;  // of the proposal, the decision or these corrections
  Effective effective;

  const ProposalData& proposal_now() const { return effective.amended_proposal ? *effective.amended_proposal : proposal.data; }
  // The decision that stands, or null (none made, or retracted, or its proposal retracted).
  const DecisionData* decision_now() const {
    if (!effective.decided) return nullptr;
    return effective.amended_decision ? effective.amended_decision.get() : &decision->data;
  }
  // Time to decision in milliseconds: the decision's recorded_at minus presented_at (the standing data's,
  // else the one first recorded), or minus the proposal's recorded_at without either. Only for a standing
  // decision.
  std::optional<int64_t> decision_ms() const;
};

// What one ledger event says, read from its data: the first of the fold's two steps. Reading is the costly
// part (JSON) and needs no state, so it can run on another thread than the fold.
struct LedgerFact {
  LedgerType type = LedgerType::kNone;
  Uuid id;
  uint64_t position = 0;
  int64_t recorded_ns = 0;
  std::string proposal_id;  // proposals and decisions
  ProposalData proposal;
  DecisionData decision;
  CorrectionData correction;
};
// nullopt for events the fold ignores (other types, binary, data that breaks the vocabulary).
std::optional<LedgerFact> read_fact(simdjson::dom::parser& parser, const EventView& e, bool keep_inputs);

struct FoldOptions {
  bool keep_inputs = false;     // keep input and alternatives (training exports)
  bool compute_deltas = false;  // compute the delta of accepted and edited decisions ($ai.decisions)
  bool sorted = false;          // keep an index of proposal ids in byte order (sorted_after)
  size_t expected_proposals = 0;  // a size hint for the indexes
};

class DecisionFold {
 public:
  explicit DecisionFold(FoldOptions options = {});
  DecisionFold(const DecisionFold&) = delete;
  DecisionFold& operator=(const DecisionFold&) = delete;

  // Folds one event in; events of other types are ignored. Returns the id of the proposal whose record
  // changed, or "" if none did. Data that breaks the vocabulary (events written before the rules, or
  // imported) is skipped, not an error: the fold is a view of the log, and the log is what it is.
  std::string apply(const EventView& e);
  // The second step on its own: folds a fact read by read_fact (in log order, like apply).
  std::string apply(LedgerFact&& fact);

  const DecisionRecord* find(std::string_view proposal_id) const;
  size_t size() const { return records_.size(); }
  // Every record in the order its proposal arrived: log order, for a fold that only applied events.
  const std::deque<DecisionRecord>& in_arrival_order() const { return records_; }
  // Records whose proposal id comes after `after` in byte order, at most limit (FoldOptions::sorted).
  std::vector<const DecisionRecord*> sorted_after(std::string_view after, size_t limit) const;

  // Canonical JSON of one record (its sources and what holds now), and the inverse, for checkpoints.
  static std::string record_json(const DecisionRecord& r);
  Status restore(std::string_view json);

 private:
  DecisionRecord& add_record(std::string id);
  void refresh(DecisionRecord& r);
  void refresh_corrected(DecisionRecord& r);
  std::optional<CorrectionData> effective_correction(const DecisionRecord& r, size_t index, int depth) const;
  FoldOptions opt_;
  simdjson::dom::parser parser_;
  std::deque<DecisionRecord> records_;  // stable addresses: the indexes below point into it
  // Millions of entries in an export: open addressing (abseil) instead of std::unordered_map's node per entry.
  absl::flat_hash_map<std::string_view, DecisionRecord*> by_id_;  // keys view the records' proposal_id
  std::map<std::string_view, DecisionRecord*, std::less<>> sorted_;  // with FoldOptions::sorted
  // UuidHash passes bytes through unmixed, which suits node-based maps; open addressing wants them mixed.
  struct MixedUuidHash {
    size_t operator()(const Uuid& u) const {
      uint64_t a, b;
      std::memcpy(&a, u.bytes.data(), 8);
      std::memcpy(&b, u.bytes.data() + 8, 8);
      return absl::HashOf(a, b);
    }
  };
  absl::flat_hash_map<Uuid, DecisionRecord*, MixedUuidHash> owner_;  // event id -> the record it belongs to
};

// Parsers of one event's data into the parts above (exposed for tests and amendments).
Result<ProposalData> parse_proposal(simdjson::dom::parser& p, std::string_view json, bool keep_inputs);
Result<DecisionData> parse_decision(simdjson::dom::parser& p, std::string_view json);
Result<CorrectionData> parse_correction(simdjson::dom::parser& p, std::string_view json);

}  // namespace cairn::ledger
