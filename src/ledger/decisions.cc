#include "ledger/decisions.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ledger/vocabulary.h"

namespace cairn::ledger {
namespace {

using json = nlohmann::json;
namespace dom = simdjson::dom;

constexpr int kMaxCorrectionDepth = 64;  // corrections of corrections of ...: deeper chains are not followed

std::string str(dom::object o, std::string_view key) {
  std::string_view v;
  if (o.at_key(key).get(v)) return {};
  return std::string(v);
}

std::string raw(dom::object o, std::string_view key) {
  dom::element v;
  if (o.at_key(key).get(v) || v.is_null()) return {};
  return simdjson::minify(v);
}

std::string quote(std::string_view s) { return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace); }

// Writes "key":value pairs in the order given (callers give them sorted by bytes, as canonical JSON wants).
class ObjectWriter {
 public:
  ObjectWriter& str(std::string_view key, std::string_view v, bool omit_empty = true) {
    if (omit_empty && v.empty()) return *this;
    return raw(key, quote(v));
  }
  ObjectWriter& raw(std::string_view key, std::string_view json_text) {
    out_ += first_ ? "{" : ",";
    first_ = false;
    out_ += quote(key);
    out_ += ':';
    out_ += json_text.empty() ? "null" : json_text;
    return *this;
  }
  ObjectWriter& num(std::string_view key, uint64_t v) { return raw(key, std::to_string(v)); }
  ObjectWriter& boolean(std::string_view key, bool v) { return raw(key, v ? "true" : "false"); }
  std::string done() {
    out_ += first_ ? "{}" : "}";
    return std::move(out_);
  }

 private:
  std::string out_;
  bool first_ = true;
};

std::string time_text(int64_t ns) { return format_rfc3339_ns(ns); }

std::string proposal_data_json(const ProposalData& p) {
  ObjectWriter w;
  if (!p.alternatives_json.empty()) w.raw("alternatives", p.alternatives_json);
  w.str("app.input_ref", p.input_ref)
      .str("app.model.version", p.model_version)
      .str("app.prompt.template_id", p.template_id)
      .str("app.prompt.template_version", p.template_version)
      .str("gen_ai.provider.name", p.provider)
      .str("gen_ai.request.model", p.request_model)
      .str("gen_ai.response.model", p.response_model);
  if (!p.input_json.empty()) w.raw("input", p.input_json);
  w.str("proposal_kind", p.kind).raw("proposed_value", p.proposed_value_json).str("skill", p.skill);
  return w.done();
}

std::string decision_data_json(const DecisionData& d) {
  ObjectWriter w;
  if (!d.final_value_json.empty()) w.raw("final_value", d.final_value_json);
  w.str("outcome", d.outcome);
  if (d.presented_ns) w.str("presented_at", time_text(*d.presented_ns));
  w.str("reason_code", d.reason_code).str("reason_text", d.reason_text);
  return w.done();
}

std::string correction_data_json(const CorrectionData& c) {
  ObjectWriter w;
  w.str("corrects_event_id", c.corrects.to_string()).str("kind", c.retract ? "retract" : "amend");
  if (!c.replacement_json.empty()) w.raw("replacement", c.replacement_json);
  return w.done();
}

template <typename Data>
std::string source_json(const Source<Data>& s, const std::string& data_json) {
  return ObjectWriter()
      .raw("data", data_json)
      .str("id", s.id.to_string())
      .num("position", s.position)
      .str("recorded_at", time_text(s.recorded_ns))
      .done();
}

Result<dom::object> object_of(dom::parser& p, std::string_view text, const char* what) {
  dom::element e;
  if (p.parse(text.data(), text.size(), true).get(e)) return Status::invalid_argument(fmt::format("{}: not JSON", what));
  dom::object o;
  if (e.get(o)) return Status::invalid_argument(fmt::format("{}: not a JSON object", what));
  return o;
}

// One pass over the object's fields (at_key would scan them once per field looked for).
ProposalData proposal_from(dom::object o, bool keep_inputs) {
  ProposalData d;
  for (auto field : o) {
    const std::string_view k = field.key;
    std::string* target = nullptr;
    if (k == "proposal_kind") target = &d.kind;
    else if (k == "skill") target = &d.skill;
    else if (k == "gen_ai.request.model") target = &d.request_model;
    else if (k == "gen_ai.response.model") target = &d.response_model;
    else if (k == "gen_ai.provider.name") target = &d.provider;
    else if (k == "app.model.version") target = &d.model_version;
    else if (k == "app.prompt.template_id") target = &d.template_id;
    else if (k == "app.prompt.template_version") target = &d.template_version;
    else if (k == "app.input_ref") target = &d.input_ref;
    if (target) {
      std::string_view v;
      if (field.value.get(v) == simdjson::SUCCESS) target->assign(v);
      continue;
    }
    const bool value = k == "proposed_value", input = keep_inputs && k == "input",
               alternatives = keep_inputs && k == "alternatives";
    if ((value || input || alternatives) && !field.value.is_null())
      (value ? d.proposed_value_json : input ? d.input_json : d.alternatives_json) = simdjson::minify(field.value);
  }
  return d;
}

DecisionData decision_from(dom::object o) {
  DecisionData d;
  for (auto field : o) {
    const std::string_view k = field.key;
    std::string_view v;
    if (k == "final_value") {
      if (!field.value.is_null()) d.final_value_json = simdjson::minify(field.value);
    } else if (field.value.get(v) != simdjson::SUCCESS) {
      continue;
    } else if (k == "outcome") {
      d.outcome.assign(v);
    } else if (k == "presented_at") {
      if (auto t = parse_rfc3339_ns(v); t.ok()) d.presented_ns = *t;
    } else if (k == "reason_code") {
      d.reason_code.assign(v);
    } else if (k == "reason_text") {
      d.reason_text.assign(v);
    }
  }
  return d;
}

}  // namespace

std::string ProposalData::prompt_version() const {
  if (template_id.empty()) return {};
  return template_version.empty() ? template_id : template_id + "@" + template_version;
}

std::optional<int64_t> DecisionRecord::decision_ms() const {
  const DecisionData* d = decision_now();
  if (!d) return std::nullopt;
  // An amendment that does not repeat presented_at keeps the one the decision recorded.
  const int64_t from = d->presented_ns ? *d->presented_ns : decision->data.presented_ns.value_or(proposal.recorded_ns);
  return (decision->recorded_ns - from) / 1'000'000;
}

Result<ProposalData> parse_proposal(dom::parser& p, std::string_view text, bool keep_inputs) {
  auto o = object_of(p, text, "ai.proposal.made data");
  if (!o.ok()) return o.status();
  ProposalData d = proposal_from(*o, keep_inputs);
  if (d.proposed_value_json.empty()) return Status::invalid_argument("ai.proposal.made data: no proposed_value");
  return d;
}

Result<DecisionData> parse_decision(dom::parser& p, std::string_view text) {
  auto o = object_of(p, text, "human.decision.recorded data");
  if (!o.ok()) return o.status();
  DecisionData d = decision_from(*o);
  if (d.outcome.empty()) return Status::invalid_argument("human.decision.recorded data: no outcome");
  return d;
}

Result<CorrectionData> parse_correction(dom::parser& p, std::string_view text) {
  auto o = object_of(p, text, "correction.recorded data");
  if (!o.ok()) return o.status();
  CorrectionData c;
  auto id = Uuid::parse(str(*o, "corrects_event_id"));
  if (!id.ok()) return Status::invalid_argument("correction.recorded data: corrects_event_id is not a UUID");
  c.corrects = *id;
  const std::string kind = str(*o, "kind");
  if (kind != "retract" && kind != "amend") return Status::invalid_argument("correction.recorded data: bad kind");
  c.retract = kind == "retract";
  if (!c.retract) {
    c.replacement_json = raw(*o, "replacement");
    if (c.replacement_json.empty()) return Status::invalid_argument("correction.recorded data: no replacement");
  }
  return c;
}

DecisionFold::DecisionFold(FoldOptions options) : opt_(options) {
  by_id_.reserve(opt_.expected_proposals);
  owner_.reserve(2 * opt_.expected_proposals);
}

DecisionRecord& DecisionFold::add_record(std::string id) {
  if (auto it = by_id_.find(id); it != by_id_.end()) {  // restore() of a record seen before: replace it
    DecisionRecord& r = *it->second;
    owner_.erase(r.proposal.id);
    if (r.decision) owner_.erase(r.decision->id);
    for (const auto& c : r.corrections) owner_.erase(c.id);
    // Cleared field by field: proposal_id stays, the indexes view its bytes.
    r.proposal = {};
    r.decision.reset();
    r.corrections.clear();
    r.effective = {};
    return r;
  }
  DecisionRecord& r = records_.emplace_back();
  r.proposal_id = std::move(id);
  by_id_.emplace(r.proposal_id, &r);
  if (opt_.sorted) sorted_.emplace(r.proposal_id, &r);
  return r;
}

std::optional<LedgerFact> read_fact(dom::parser& parser, const EventView& e, bool keep_inputs) {
  if (e.content_type != ContentType::kJson) return std::nullopt;
  LedgerFact f;
  f.type = ledger_type(e.type);
  f.id = e.id;
  f.position = e.position;
  f.recorded_ns = e.recorded_ns;
  if (f.type == LedgerType::kProposalMade || f.type == LedgerType::kDecisionRecorded) {
    auto o = object_of(parser, e.data, "");
    if (!o.ok()) return std::nullopt;
    std::string_view id;
    if (o->at_key("proposal_id").get(id) || id.empty()) return std::nullopt;
    f.proposal_id.assign(id);
    if (f.type == LedgerType::kProposalMade) {
      f.proposal = proposal_from(*o, keep_inputs);
      if (f.proposal.proposed_value_json.empty()) return std::nullopt;
    } else {
      f.decision = decision_from(*o);
      if (f.decision.outcome.empty()) return std::nullopt;
    }
    return f;
  }
  if (f.type == LedgerType::kCorrectionRecorded) {
    auto c = parse_correction(parser, e.data);
    if (!c.ok()) return std::nullopt;
    f.correction = std::move(*c);
    return f;
  }
  return std::nullopt;
}

std::string DecisionFold::apply(const EventView& e) {
  auto f = read_fact(parser_, e, opt_.keep_inputs);
  if (!f) return {};
  return apply(std::move(*f));
}

std::string DecisionFold::apply(LedgerFact&& f) {
  if (f.type == LedgerType::kProposalMade) {
    if (by_id_.count(f.proposal_id)) return {};  // a proposal is made once: a second one is not this record's
    DecisionRecord& r = add_record(std::move(f.proposal_id));
    r.proposal = {f.id, f.position, f.recorded_ns, std::move(f.proposal)};
    owner_[f.id] = &r;
    refresh(r);
    return r.proposal_id;
  }
  if (f.type == LedgerType::kDecisionRecorded) {
    auto it = by_id_.find(f.proposal_id);
    if (it == by_id_.end() || it->second->decision) return {};  // one decision per proposal
    DecisionRecord& r = *it->second;
    r.decision = Source<DecisionData>{f.id, f.position, f.recorded_ns, std::move(f.decision)};
    owner_[f.id] = &r;
    refresh(r);
    return r.proposal_id;
  }
  if (f.type == LedgerType::kCorrectionRecorded) {
    auto owner = owner_.find(f.correction.corrects);
    if (owner == owner_.end()) return {};  // it corrects something else (feedback, a question): not a decision's
    DecisionRecord& r = *owner->second;
    r.corrections.push_back({f.id, f.position, f.recorded_ns, std::move(f.correction)});
    owner_[f.id] = &r;
    refresh(r);
    return r.proposal_id;
  }
  return {};
}

const DecisionRecord* DecisionFold::find(std::string_view proposal_id) const {
  auto it = by_id_.find(proposal_id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::vector<const DecisionRecord*> DecisionFold::sorted_after(std::string_view after, size_t limit) const {
  std::vector<const DecisionRecord*> out;
  for (auto it = after.empty() ? sorted_.begin() : sorted_.upper_bound(after); it != sorted_.end() && out.size() < limit; ++it)
    out.push_back(it->second);
  return out;
}

std::optional<CorrectionData> DecisionFold::effective_correction(const DecisionRecord& r, size_t index, int depth) const {
  const auto& self = r.corrections[index];
  CorrectionData data = self.data;
  bool voided = false;
  if (depth >= kMaxCorrectionDepth) return data;
  for (size_t j = index + 1; j < r.corrections.size(); ++j) {
    if (r.corrections[j].data.corrects != self.id) continue;
    auto c = effective_correction(r, j, depth + 1);
    if (!c) continue;
    if (c->retract) {
      voided = true;
      continue;
    }
    // An amendment of a correction replaces its kind and replacement; what it corrects stays.
    dom::parser p;
    auto amended = parse_correction(p, c->replacement_json);
    if (!amended.ok()) {
      // Without corrects_event_id in the replacement: read kind and replacement only.
      auto o = object_of(p, c->replacement_json, "");
      if (!o.ok()) continue;
      const std::string kind = str(*o, "kind");
      if (kind != "retract" && kind != "amend") continue;
      data.retract = kind == "retract";
      data.replacement_json = data.retract ? "" : raw(*o, "replacement");
      if (!data.retract && data.replacement_json.empty()) continue;
    } else {
      data.retract = amended->retract;
      data.replacement_json = amended->replacement_json;
    }
    voided = false;
  }
  if (voided) return std::nullopt;
  return data;
}

void DecisionFold::refresh(DecisionRecord& r) {
  if (r.corrections.empty()) {  // the common case, without building a new Effective
    Effective& e = r.effective;
    e.proposal_retracted = e.decision_retracted = false;
    e.decided = r.decision.has_value();
    e.amended_proposal.reset();
    e.amended_decision.reset();
    e.applied.clear();
    e.delta.reset();
  } else {
    refresh_corrected(r);
  }
  const DecisionData* d = r.decision_now();
  if (d && opt_.compute_deltas && !d->final_value_json.empty()) {
    try {
      r.effective.delta = compute_delta(json::parse(r.proposal_now().proposed_value_json), json::parse(d->final_value_json));
    } catch (const json::exception&) {
      // Values come from the log, where they were checked as JSON: unreachable unless the log is damaged.
      r.effective.delta.reset();
    }
  }
}

void DecisionFold::refresh_corrected(DecisionRecord& r) {
  Effective eff;
  bool have_decision = r.decision.has_value();
  for (size_t i = 0; i < r.corrections.size(); ++i) {
    const Uuid target = r.corrections[i].data.corrects;
    const bool on_proposal = target == r.proposal.id;
    const bool on_decision = r.decision && target == r.decision->id;
    if (!on_proposal && !on_decision) continue;  // a correction of a correction: applied through its target
    auto c = effective_correction(r, i, 0);
    if (!c) continue;
    eff.applied.push_back(r.corrections[i].id);
    if (on_proposal) {
      if (c->retract) {
        eff.proposal_retracted = true;
      } else if (auto d = parse_proposal(parser_, c->replacement_json, opt_.keep_inputs); d.ok()) {
        eff.amended_proposal = std::make_unique<ProposalData>(std::move(*d));
        eff.proposal_retracted = false;
      }
    } else {
      if (c->retract) {
        have_decision = false;
      } else if (auto d = parse_decision(parser_, c->replacement_json); d.ok()) {
        eff.amended_decision = std::make_unique<DecisionData>(std::move(*d));
        have_decision = true;
      }
    }
  }
  eff.decided = have_decision && !eff.proposal_retracted;
  eff.decision_retracted = r.decision.has_value() && !have_decision;
  if (!eff.decided) eff.amended_decision.reset();
  r.effective = std::move(eff);
}

std::string DecisionFold::record_json(const DecisionRecord& r) {
  std::string corrections = "[";
  for (size_t i = 0; i < r.corrections.size(); ++i) {
    if (i) corrections += ',';
    corrections += source_json(r.corrections[i], correction_data_json(r.corrections[i].data));
  }
  corrections += ']';
  const Effective& e = r.effective;
  const ProposalData& p = r.proposal_now();
  const DecisionData* d = r.decision_now();
  std::string applied = "[";
  for (size_t i = 0; i < e.applied.size(); ++i) applied += (i ? "," : "") + quote(e.applied[i].to_string());
  applied += ']';
  const auto ms = r.decision_ms();
  ObjectWriter eff;
  eff.raw("applied_corrections", applied)
      .boolean("decided", e.decided)
      .raw("decision_ms", ms ? std::to_string(*ms) : "")
      .boolean("decision_retracted", e.decision_retracted)
      .raw("delta", e.delta ? delta_json(*e.delta).dump(-1, ' ', false, json::error_handler_t::replace) : "")
      .raw("final_value", d ? d->final_value_json : "")
      .str("model", p.model(), false)
      .raw("outcome", d ? quote(d->outcome) : "")
      .str("prompt_version", p.prompt_version(), false)
      .boolean("proposal_retracted", e.proposal_retracted)
      .raw("proposed_value", p.proposed_value_json)
      .str("skill", p.skill, false);
  ObjectWriter w;
  w.raw("corrections", corrections)
      .raw("decision", r.decision ? source_json(*r.decision, decision_data_json(r.decision->data)) : "")
      .raw("effective", eff.done())
      .raw("proposal", source_json(r.proposal, proposal_data_json(r.proposal.data)))
      .str("proposal_id", r.proposal_id, false);
  return w.done();
}

Status DecisionFold::restore(std::string_view text) {
  auto o = object_of(parser_, text, "$ai.decisions state");
  if (!o.ok()) return Status::corruption(o.status().message());
  auto bad = [](std::string_view what) { return Status::corruption(fmt::format("$ai.decisions state: {}", what)); };
  // Sources only: what holds now is recomputed from them, exactly as when the events were first folded.
  auto source = [&](dom::object s, auto* out, auto&& parse_data) -> Status {
    auto id = Uuid::parse(str(s, "id"));
    uint64_t pos = 0;
    auto t = parse_rfc3339_ns(str(s, "recorded_at"));
    dom::object data;
    if (!id.ok() || s.at_key("position").get(pos) || !t.ok() || s.at_key("data").get(data)) return bad("a bad source");
    out->id = *id;
    out->position = pos;
    out->recorded_ns = *t;
    return parse_data(data, &out->data);
  };
  DecisionRecord r;
  r.proposal_id = str(*o, "proposal_id");
  if (r.proposal_id.empty()) return bad("no proposal_id");
  dom::object prop;
  if (o->at_key("proposal").get(prop)) return bad("no proposal");
  CAIRN_RETURN_IF_ERROR(source(prop, &r.proposal, [&](dom::object d, ProposalData* out) -> Status {
    *out = proposal_from(d, true);  // a state holds inputs only if its fold kept them
    return {};
  }));
  dom::element dec;
  if (o->at_key("decision").get(dec) == simdjson::SUCCESS && !dec.is_null()) {
    dom::object dobj;
    if (dec.get(dobj)) return bad("a bad decision");
    Source<DecisionData> d;
    CAIRN_RETURN_IF_ERROR(source(dobj, &d, [&](dom::object data, DecisionData* out) -> Status {
      *out = decision_from(data);
      return {};
    }));
    r.decision = std::move(d);
  }
  dom::array corr;
  if (o->at_key("corrections").get(corr)) return bad("no corrections");
  for (dom::element c : corr) {
    dom::object cobj;
    if (c.get(cobj)) return bad("a bad correction");
    Source<CorrectionData> s;
    CAIRN_RETURN_IF_ERROR(source(cobj, &s, [&](dom::object data, CorrectionData* out) -> Status {
      auto id = Uuid::parse(str(data, "corrects_event_id"));
      if (!id.ok()) return bad("a bad corrects_event_id");
      out->corrects = *id;
      out->retract = str(data, "kind") == "retract";
      out->replacement_json = raw(data, "replacement");
      return {};
    }));
    r.corrections.push_back(std::move(s));
  }
  DecisionRecord& slot = add_record(r.proposal_id);
  slot.proposal = std::move(r.proposal);
  slot.decision = std::move(r.decision);
  slot.corrections = std::move(r.corrections);
  owner_[slot.proposal.id] = &slot;
  if (slot.decision) owner_[slot.decision->id] = &slot;
  for (const auto& c : slot.corrections) owner_[c.id] = &slot;
  refresh(slot);
  return {};
}

}  // namespace cairn::ledger
