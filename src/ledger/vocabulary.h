// The AI decision ledger's event vocabulary (docs/ai-events.md): the rules each type's data must follow,
// checked on append before anything is written, and the references each event makes, which the store then
// checks against what exists (ledger/references.h).
//
// Types: ai.question.asked, ai.skill.executed, ai.proposal.made, human.decision.recorded, feedback.given,
// ai.path.chosen, correction.recorded. Field names follow the OpenTelemetry GenAI conventions where one
// exists (flat attribute keys such as "gen_ai.request.model"), "app." where none does.
// Every violation is kInvalidEvent naming the field ("events[0].data.outcome: ..."). Stateless, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cairn/event.h"
#include "cairn/status.h"

namespace cairn::ledger {

// The vocabulary's version, as in docs/ai-events.md and the schema files under docs/schemas/.
inline constexpr std::string_view kVocabularyVersion = "1";

enum class LedgerType : uint8_t {
  kNone,  // not a ledger type: only the generic rules apply
  kQuestionAsked,
  kSkillExecuted,
  kProposalMade,
  kDecisionRecorded,
  kFeedbackGiven,
  kPathChosen,
  kCorrectionRecorded,
};
LedgerType ledger_type(std::string_view event_type);
inline bool is_ledger_type(std::string_view event_type) { return ledger_type(event_type) != LedgerType::kNone; }

// What an event refers to, for the existence and order checks.
struct References {
  LedgerType type = LedgerType::kNone;
  std::string proposal_id;              // a proposal made (kProposalMade) or decided (kDecisionRecorded)
  std::optional<Uuid> corrects;         // correction.recorded: the event it corrects
  std::optional<Uuid> causation;        // metadata.causation_id, when it is a UUID (then it names an event)
  std::string feedback_proposal_id;     // feedback.given on a proposal
  std::optional<Uuid> feedback_event;   // feedback.given on an event
  std::string replacement;              // correction.recorded with kind amend: the replacement data (JSON)
  bool any() const {
    return !proposal_id.empty() || corrects || causation || !feedback_proposal_id.empty() || feedback_event;
  }
};

// Checks a ledger type's data and metadata rules and returns its references. For other types, returns
// only the metadata's causation reference. `what` names the event in errors ("events[2]").
Result<References> check_event(const EventData& e, std::string_view what);

// An amendment's replacement must be valid data of the corrected event's type, and keep a corrected proposal's
// or decision's proposal_id. `what` names the correction event.
Status check_amendment(const References& correction, std::string_view corrected_type, std::string_view corrected_data,
                       std::string_view correction_metadata, std::string_view what);

}  // namespace cairn::ledger
