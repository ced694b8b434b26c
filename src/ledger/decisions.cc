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

ProposalData proposal_from(dom::object o, bool keep_inputs) {
  ProposalData d;
  d.kind = str(o, "proposal_kind");
  d.skill = str(o, "skill");
  d.request_model = str(o, "gen_ai.request.model");
  d.response_model = str(o, "gen_ai.response.model");
  d.provider = str(o, "gen_ai.provider.name");
  d.model_version = str(o, "app.model.version");
  d.template_id = str(o, "app.prompt.template_id");
  d.template_version = str(o, "app.prompt.template_version");
  d.proposed_value_json = raw(o, "proposed_value");
  d.input_ref = str(o, "app.input_ref");
  if (keep_inputs) {
    d.input_json = raw(o, "input");
    d.alternatives_json = raw(o, "alternatives");
  }
  return d;
}

DecisionData decision_from(dom::object o) {
  DecisionData d;
  d.outcome = str(o, "outcome");
  d.final_value_json = raw(o, "final_value");
  std::string presented = str(o, "presented_at");
  if (!presented.empty())
    if (auto t = parse_rfc3339_ns(presented); t.ok()) d.presented_ns = *t;
  d.reason_code = str(o, "reason_code");
  d.reason_text = str(o, "reason_text");
  return d;
}

}  // namespace

std::string ProposalData::prompt_version() const {
  if (template_id.empty()) return {};
  return template_version.empty() ? template_id : template_id + "@" + template_version;
}

std::optional<int64_t> DecisionRecord::decision_ms() const {
  if (!effective.decided || !decision) return std::nullopt;
  const int64_t from = effective.decision.presented_ns.value_or(proposal.recorded_ns);
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

std::string DecisionFold::apply(const EventView& e) {
  if (e.content_type != ContentType::kJson) return {};
  const LedgerType t = ledger_type(e.type);
  if (t == LedgerType::kProposalMade) {
    auto o = object_of(parser_, e.data, "");
    if (!o.ok()) return {};
    const std::string id = str(*o, "proposal_id");
    if (id.empty() || records_.count(id)) return {};  // a proposal is made once: a second one is not this record's
    ProposalData d = proposal_from(*o, opt_.keep_inputs);
    if (d.proposed_value_json.empty()) return {};
    DecisionRecord& r = records_[id];
    r.proposal_id = id;
    r.proposal = {e.id, e.position, e.recorded_ns, std::move(d)};
    owner_[e.id] = id;
    refresh(r);
    return id;
  }
  if (t == LedgerType::kDecisionRecorded) {
    auto o = object_of(parser_, e.data, "");
    if (!o.ok()) return {};
    const std::string id = str(*o, "proposal_id");
    auto it = records_.find(id);
    if (it == records_.end() || it->second.decision) return {};  // one decision per proposal
    DecisionData d = decision_from(*o);
    if (d.outcome.empty()) return {};
    it->second.decision = Source<DecisionData>{e.id, e.position, e.recorded_ns, std::move(d)};
    owner_[e.id] = id;
    refresh(it->second);
    return id;
  }
  if (t == LedgerType::kCorrectionRecorded) {
    auto c = parse_correction(parser_, e.data);
    if (!c.ok()) return {};
    auto owner = owner_.find(c->corrects);
    if (owner == owner_.end()) return {};  // it corrects something else (feedback, a question): not a decision's
    const std::string id = owner->second;
    DecisionRecord& r = records_.find(id)->second;
    r.corrections.push_back({e.id, e.position, e.recorded_ns, std::move(*c)});
    owner_[e.id] = id;
    refresh(r);
    return id;
  }
  return {};
}

const DecisionRecord* DecisionFold::find(std::string_view proposal_id) const {
  auto it = records_.find(proposal_id);
  return it == records_.end() ? nullptr : &it->second;
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
  Effective eff;
  eff.proposal = r.proposal.data;
  bool have_decision = r.decision.has_value();
  if (have_decision) eff.decision = r.decision->data;
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
        eff.proposal = std::move(*d);
        eff.proposal_retracted = false;
      }
    } else {
      if (c->retract) {
        have_decision = false;
      } else if (auto d = parse_decision(parser_, c->replacement_json); d.ok()) {
        eff.decision = std::move(*d);
        have_decision = true;
      }
    }
  }
  eff.decided = have_decision && !eff.proposal_retracted;
  eff.decision_retracted = r.decision.has_value() && !have_decision;
  if (!eff.decided) eff.decision = {};
  if (eff.decided && opt_.compute_deltas && !eff.decision.final_value_json.empty()) {
    try {
      eff.delta = compute_delta(json::parse(eff.proposal.proposed_value_json), json::parse(eff.decision.final_value_json));
    } catch (const json::exception&) {
      // Values come from the log, where they were checked as JSON: unreachable unless the log is damaged.
      eff.delta.reset();
    }
  }
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
      .raw("final_value", e.decision.final_value_json)
      .str("model", e.proposal.model(), false)
      .raw("outcome", e.decided ? quote(e.decision.outcome) : "")
      .str("prompt_version", e.proposal.prompt_version(), false)
      .boolean("proposal_retracted", e.proposal_retracted)
      .raw("proposed_value", e.proposal.proposed_value_json)
      .str("skill", e.proposal.skill, false);
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
  owner_[r.proposal.id] = r.proposal_id;
  if (r.decision) owner_[r.decision->id] = r.proposal_id;
  for (const auto& c : r.corrections) owner_[c.id] = r.proposal_id;
  const std::string key = r.proposal_id;
  DecisionRecord& slot = records_.insert_or_assign(key, std::move(r)).first->second;
  refresh(slot);
  return {};
}

}  // namespace cairn::ledger
