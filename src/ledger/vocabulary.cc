#include "ledger/vocabulary.h"

#include <initializer_list>

#include <fmt/format.h>
#include <simdjson.h>

namespace cairn::ledger {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

// One object being checked and how errors name it ("events[0].data").
class Fields {
 public:
  Fields(object o, std::string path) : o_(o), path_(std::move(path)) {}

  std::optional<element> get(std::string_view key) const {
    element v;
    if (o_.at_key(key).get(v) != simdjson::SUCCESS || v.is_null()) return std::nullopt;
    return v;
  }
  std::string at(std::string_view key) const { return fmt::format("{}.{}", path_, key); }
  Status missing(std::string_view key, std::string_view what) const {
    return Status::invalid_event(fmt::format("{}: required ({})", at(key), what));
  }

  // A non-empty string; out gets it.
  Status string(std::string_view key, bool required, std::string* out = nullptr) const {
    auto v = get(key);
    if (!v) return required ? missing(key, "a non-empty string") : Status();
    std::string_view s;
    if (v->get(s) || s.empty()) return Status::invalid_event(fmt::format("{}: must be a non-empty string", at(key)));
    if (out) out->assign(s);
    return {};
  }
  Status one_of(std::string_view key, bool required, std::initializer_list<std::string_view> values,
                std::string* out = nullptr) const {
    std::string s;
    CAIRN_RETURN_IF_ERROR(string(key, required, &s));
    if (s.empty()) return {};
    for (auto v : values)
      if (v == s) {
        if (out) *out = s;
        return {};
      }
    std::string list;
    for (auto v : values) list += (list.empty() ? "" : ", ") + std::string(v);
    return Status::invalid_event(fmt::format("{}: '{}' is not one of {}", at(key), s.substr(0, 64), list));
  }
  Status number(std::string_view key, bool integer) const {
    auto v = get(key);
    if (!v) return {};
    const element_type t = v->type();
    const bool is_int = t == element_type::INT64 || t == element_type::UINT64;
    if (!(is_int || t == element_type::DOUBLE) || (integer && !is_int))
      return Status::invalid_event(fmt::format("{}: must be a {}", at(key), integer ? "non-negative integer" : "non-negative number"));
    double d = 0;
    if (t == element_type::INT64) d = static_cast<double>(v->get_int64().value_unsafe());
    else if (t == element_type::DOUBLE) d = v->get_double().value_unsafe();
    if (d < 0) return Status::invalid_event(fmt::format("{}: must not be negative", at(key)));
    return {};
  }
  Status boolean(std::string_view key) const {
    auto v = get(key);
    if (v && !v->is_bool()) return Status::invalid_event(fmt::format("{}: must be true or false", at(key)));
    return {};
  }
  Status time(std::string_view key) const {
    std::string s;
    CAIRN_RETURN_IF_ERROR(string(key, false, &s));
    if (!s.empty() && !parse_rfc3339_ns(s).ok())
      return Status::invalid_event(fmt::format("{}: '{}' is not an RFC 3339 time", at(key), s.substr(0, 64)));
    return {};
  }
  Status is(std::string_view key, element_type type, const char* name, bool required) const {
    auto v = get(key);
    if (!v) return required ? missing(key, name) : Status();
    if (v->type() != type) return Status::invalid_event(fmt::format("{}: must be {}", at(key), name));
    return {};
  }
  // An array whose items are objects with a required string field.
  Status objects_with(std::string_view key, std::string_view field) const {
    auto v = get(key);
    if (!v) return {};
    simdjson::dom::array a;
    if (v->get(a)) return Status::invalid_event(fmt::format("{}: must be an array", at(key)));
    size_t i = 0;
    for (element item : a) {
      object o;
      if (item.get(o)) return Status::invalid_event(fmt::format("{}[{}]: must be an object", at(key), i));
      CAIRN_RETURN_IF_ERROR(Fields(o, fmt::format("{}[{}]", at(key), i)).string(field, true));
      ++i;
    }
    return {};
  }
  Status uuid(std::string_view key, bool required, std::optional<Uuid>* out) const {
    std::string s;
    CAIRN_RETURN_IF_ERROR(string(key, required, &s));
    if (s.empty()) return {};
    auto id = Uuid::parse(s);
    if (!id.ok()) return Status::invalid_event(fmt::format("{}: '{}' is not an event id (a UUID)", at(key), s.substr(0, 64)));
    *out = *id;
    return {};
  }

 private:
  object o_;
  std::string path_;
};

Status check_proposal(const Fields& f, References* r) {
  CAIRN_RETURN_IF_ERROR(f.string("proposal_id", true, &r->proposal_id));
  CAIRN_RETURN_IF_ERROR(f.one_of("proposal_kind", true, {"draft", "classification", "extraction", "plan", "tool_call", "other"}));
  CAIRN_RETURN_IF_ERROR(f.string("skill", true));
  CAIRN_RETURN_IF_ERROR(f.string("gen_ai.request.model", true));
  for (const char* k : {"gen_ai.provider.name", "gen_ai.response.model", "app.model.version", "app.prompt.template_id",
                        "app.prompt.template_version", "app.input_ref", "reasoning", "gen_ai.response.id"})
    CAIRN_RETURN_IF_ERROR(f.string(k, false));
  if (f.get("app.prompt.template_version") && !f.get("app.prompt.template_id"))
    return f.missing("app.prompt.template_id", "a template version needs the template's id");
  if (!f.get("input") && !f.get("app.input_ref"))
    return Status::invalid_event(fmt::format("{}: required: the input, inline (input) or by reference (app.input_ref)",
                                             f.at("input")));
  if (!f.get("proposed_value")) return f.missing("proposed_value", "the value a human reviews");
  CAIRN_RETURN_IF_ERROR(f.objects_with("output_messages", "role"));
  CAIRN_RETURN_IF_ERROR(f.objects_with("tool_calls", "name"));
  CAIRN_RETURN_IF_ERROR(f.is("alternatives", element_type::ARRAY, "an array", false));
  for (const char* k : {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"}) CAIRN_RETURN_IF_ERROR(f.number(k, true));
  CAIRN_RETURN_IF_ERROR(f.number("app.latency_ms", false));
  CAIRN_RETURN_IF_ERROR(f.is("app.cost", element_type::OBJECT, "an object {currency, amount}", false));
  if (auto cost = f.get("app.cost")) {
    Fields c(cost->get_object().value_unsafe(), f.at("app.cost"));
    CAIRN_RETURN_IF_ERROR(c.string("currency", true));
    if (!c.get("amount")) return c.missing("amount", "a non-negative number");
    CAIRN_RETURN_IF_ERROR(c.number("amount", false));
  }
  return {};
}

Status check_decision(const Fields& f, const Fields& meta, References* r) {
  CAIRN_RETURN_IF_ERROR(f.string("proposal_id", true, &r->proposal_id));
  std::string outcome;
  CAIRN_RETURN_IF_ERROR(f.one_of("outcome", true, {"accepted", "edited", "rejected", "expired"}, &outcome));
  const bool final_needed = outcome == "accepted" || outcome == "edited";
  if (final_needed && !f.get("final_value"))
    return f.missing("final_value", fmt::format("the value that took effect, for outcome {}", outcome));
  if (!final_needed && f.get("final_value"))
    return Status::invalid_event(fmt::format("{}: a {} proposal has no final value", f.at("final_value"), outcome));
  for (const char* k : {"reason_code", "reason_text"}) CAIRN_RETURN_IF_ERROR(f.string(k, false));
  CAIRN_RETURN_IF_ERROR(f.time("presented_at"));
  if (outcome == "expired") {
    std::string kind;
    if (auto actor = meta.get("actor"); actor && actor->is_object())
      (void)Fields(actor->get_object().value_unsafe(), meta.at("actor")).string("kind", false, &kind);
    if (kind != "system")
      return Status::invalid_event(fmt::format("{}: an expired decision is recorded by the system: metadata.actor.kind "
                                               "must be system",
                                               f.at("outcome")));
  }
  return {};
}

Status check_feedback(const Fields& f, References* r) {
  std::string target, kind = "proposal";
  CAIRN_RETURN_IF_ERROR(f.string("target", true, &target));
  CAIRN_RETURN_IF_ERROR(f.one_of("target_kind", false, {"proposal", "event", "conversation"}, &kind));
  if (kind.empty()) kind = "proposal";
  if (kind == "proposal") r->feedback_proposal_id = target;
  if (kind == "event") {
    auto id = Uuid::parse(target);
    if (!id.ok())
      return Status::invalid_event(fmt::format("{}: '{}' is not an event id (a UUID), as target_kind event needs",
                                               f.at("target"), target.substr(0, 64)));
    r->feedback_event = *id;
  }
  CAIRN_RETURN_IF_ERROR(f.string("name", true));
  auto v = f.get("value");
  if (!v) return f.missing("value", "a number, a label, true/false or a text");
  if (v->is_object() || v->is_array())
    return Status::invalid_event(fmt::format("{}: must be a number, a string or true/false", f.at("value")));
  CAIRN_RETURN_IF_ERROR(
      f.one_of("source_kind", true, {"end_user", "reviewer", "llm_judge", "code", "implicit", "outcome"}));
  CAIRN_RETURN_IF_ERROR(f.string("comment", false));
  return {};
}

Status check_correction(const Fields& f, References* r) {
  CAIRN_RETURN_IF_ERROR(f.uuid("corrects_event_id", true, &r->corrects));
  std::string kind;
  CAIRN_RETURN_IF_ERROR(f.one_of("kind", true, {"retract", "amend"}, &kind));
  if (kind == "amend") {
    CAIRN_RETURN_IF_ERROR(f.is("replacement", element_type::OBJECT, "an object (the amended data)", true));
    r->replacement = simdjson::minify(*f.get("replacement"));
  }
  if (kind == "retract" && f.get("replacement"))
    return Status::invalid_event(fmt::format("{}: a retraction has no replacement", f.at("replacement")));
  for (const char* k : {"reason_code", "reason_text"}) CAIRN_RETURN_IF_ERROR(f.string(k, false));
  if (!f.get("reason_code") && !f.get("reason_text"))
    return f.missing("reason_text", "why the correction is made: reason_code, reason_text or both");
  return {};
}

// The rules of one type's data (the metadata is needed by rules on the actor).
Status check_data(LedgerType t, std::string_view type_name, const std::string& data_text, std::string_view data_path,
                  const Fields& meta, References* out) {
  thread_local simdjson::dom::parser parser;
  object data;
  if (parser.parse(data_text).get(data))
    return Status::invalid_event(fmt::format("{}: must be a JSON object (the data of {} events)", data_path, type_name));
  const Fields f(data, std::string(data_path));
  References& r = *out;
  switch (t) {
    case LedgerType::kQuestionAsked:
      CAIRN_RETURN_IF_ERROR(f.string("question", true));
      for (const char* k : {"question_id", "channel"}) CAIRN_RETURN_IF_ERROR(f.string(k, false));
      break;
    case LedgerType::kSkillExecuted:
      CAIRN_RETURN_IF_ERROR(f.string("skill", true));
      CAIRN_RETURN_IF_ERROR(f.string("skill_version", false));
      CAIRN_RETURN_IF_ERROR(f.one_of("status", false, {"ok", "error"}));
      CAIRN_RETURN_IF_ERROR(f.number("duration_ms", false));
      CAIRN_RETURN_IF_ERROR(f.string("error", false));
      break;
    case LedgerType::kProposalMade: CAIRN_RETURN_IF_ERROR(check_proposal(f, &r)); break;
    case LedgerType::kDecisionRecorded: CAIRN_RETURN_IF_ERROR(check_decision(f, meta, &r)); break;
    case LedgerType::kFeedbackGiven: CAIRN_RETURN_IF_ERROR(check_feedback(f, &r)); break;
    case LedgerType::kPathChosen: {
      std::string choice;
      CAIRN_RETURN_IF_ERROR(f.string("choice", true, &choice));
      CAIRN_RETURN_IF_ERROR(f.string("reason_text", false));
      if (auto options = f.get("options")) {
        simdjson::dom::array a;
        if (options->get(a)) return Status::invalid_event(fmt::format("{}: must be an array of strings", f.at("options")));
        bool found = false;
        for (element o : a) {
          std::string_view s;
          if (o.get(s)) return Status::invalid_event(fmt::format("{}: must be an array of strings", f.at("options")));
          found = found || s == choice;
        }
        if (!found)
          return Status::invalid_event(fmt::format("{}: '{}' is not among the options", f.at("choice"), choice.substr(0, 64)));
      }
      break;
    }
    case LedgerType::kCorrectionRecorded: CAIRN_RETURN_IF_ERROR(check_correction(f, &r)); break;
    case LedgerType::kNone: break;
  }
  return {};
}

}  // namespace

LedgerType ledger_type(std::string_view t) {
  if (t == "ai.question.asked") return LedgerType::kQuestionAsked;
  if (t == "ai.skill.executed") return LedgerType::kSkillExecuted;
  if (t == "ai.proposal.made") return LedgerType::kProposalMade;
  if (t == "human.decision.recorded") return LedgerType::kDecisionRecorded;
  if (t == "feedback.given") return LedgerType::kFeedbackGiven;
  if (t == "ai.path.chosen") return LedgerType::kPathChosen;
  if (t == "correction.recorded") return LedgerType::kCorrectionRecorded;
  return LedgerType::kNone;
}

Result<References> check_event(const EventData& e, std::string_view what) {
  References r;
  r.type = ledger_type(e.type);
  thread_local simdjson::dom::parser meta_parser;
  object meta_obj;
  const std::string meta_text = e.metadata.empty() ? std::string("{}") : e.metadata;
  if (meta_parser.parse(meta_text).get(meta_obj))  // validated before: only an object gets here
    return Status::invalid_event(fmt::format("{}.metadata: must be a JSON object", what));
  Fields meta(meta_obj, fmt::format("{}.metadata", what));
  // A causation id in UUID form names an event: it must exist (checked by the store).
  std::string causation;
  if (meta.get("causation_id")) (void)meta.string("causation_id", false, &causation);
  if (!causation.empty())
    if (auto id = Uuid::parse(causation); id.ok()) r.causation = *id;
  if (r.type == LedgerType::kNone) return r;

  if (e.content_type != ContentType::kJson)
    return Status::invalid_event(fmt::format("{}.content_type: {} events are JSON", what, e.type));
  CAIRN_RETURN_IF_ERROR(check_data(r.type, e.type, e.data, fmt::format("{}.data", what), meta, &r));
  return r;
}

Status check_amendment(const References& correction, std::string_view corrected_type, std::string_view corrected_data,
                       std::string_view correction_metadata, std::string_view what) {
  const LedgerType t = ledger_type(corrected_type);
  if (t == LedgerType::kNone || correction.replacement.empty()) return {};
  thread_local simdjson::dom::parser meta_parser;
  object meta_obj;
  const std::string meta_text = correction_metadata.empty() ? std::string("{}") : std::string(correction_metadata);
  if (meta_parser.parse(meta_text).get(meta_obj))
    return Status::invalid_event(fmt::format("{}.metadata: must be a JSON object", what));
  const Fields meta(meta_obj, fmt::format("{}.metadata", what));
  References replaced, original;
  CAIRN_RETURN_IF_ERROR(check_data(t, corrected_type, correction.replacement, fmt::format("{}.data.replacement", what),
                                   meta, &replaced));
  if ((t == LedgerType::kProposalMade || t == LedgerType::kDecisionRecorded) &&
      check_data(t, corrected_type, std::string(corrected_data), "corrected", meta, &original).ok() &&
      original.proposal_id != replaced.proposal_id)
    return Status::invalid_event(fmt::format("{}.data.replacement.proposal_id: an amendment keeps the corrected {}'s "
                                             "proposal ('{}'); it cannot move it to another",
                                             what, t == LedgerType::kProposalMade ? "proposal" : "decision",
                                             original.proposal_id.substr(0, 64)));
  return {};
}

}  // namespace cairn::ledger
