// The AI decision ledger's queries (docs/ai-ledger.md): lineage ("why did we do it this way?"), a flow as
// of a past moment, decision rates, and reproducible training exports. The vocabulary itself is checked by
// the store on append (docs/ai-events.md).
//
// All of them read the log and the built-in projections $ai.decisions and $ai.lineage; they never write.
// why() and correlation() first wait (up to LedgerOptions::wait) for $ai.lineage (and why() also for
// $ai.decisions) to reflect every event durable when the call began, so an answer never misses an event
// acknowledged before the question.
// Thread safety: every function may be called from any thread. Lifetime: the Store and Projections passed
// in must outlive the call.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/event.h"
#include "cairn/projection.h"
#include "cairn/status.h"
#include "cairn/store.h"

namespace cairn {

struct LedgerOptions {
  std::chrono::milliseconds wait{5000};  // how long to wait for $ai.lineage / $ai.decisions to catch up
  size_t max_chain = 1000;              // causal steps followed back before stopping
  size_t max_correlated = 1000;         // events of one correlation listed
};

// The causal chain of an event back to its root, its correlation's events, and what corrects any of them,
// as one JSON object (the layout is in docs/ai-ledger.md#why). kNotFound if no event has this id.
Result<std::string> ledger_why(Store& store, Projections& projections, const Uuid& event_id, LedgerOptions options = {});

// Every event of a correlation (metadata.correlation_id) known at a position or time, with the corrections
// known then applied and the state of its proposals then, as one JSON object. No as_of: now.
Result<std::string> ledger_correlation(Store& store, Projections& projections, std::string_view correlation_id,
                                       AsOf as_of, LedgerOptions options = {});

// Decision rates from $ai.decisions. by: any of model, prompt_version, skill, day (in that order of
// grouping as given); since/until: days "YYYY-MM-DD" (inclusive). One JSON object with a row per group.
struct RatesQuery {
  std::vector<std::string> by;
  std::optional<std::string> since, until;
  std::optional<std::string> model, skill, prompt_version;  // keep only these slices
};
Result<std::string> ledger_rates(Projections& projections, const RatesQuery& query);

// Training exports (docs/ai-ledger.md#training-exports).
enum class ExportFormat : uint8_t {
  kSft,                    // TRL conversational language modeling: {"messages":[..., assistant final]}
  kSftPromptCompletion,    // TRL prompt-completion: {"prompt":[...],"completion":[assistant final]}
  kPreference,             // TRL preference, explicit prompt: {"prompt","chosen","rejected"}
  kKto,                    // TRL unpaired preference: {"prompt","completion","label"}
  kOpenAiSft,              // OpenAI chat fine-tuning: {"messages":[...]}
  kOpenAiPreference,       // OpenAI preference (DPO): {"input":{"messages"},"preferred_output","non_preferred_output"}
};
Result<ExportFormat> parse_export_format(std::string_view name);
std::string_view export_format_name(ExportFormat f);

struct ExportQuery {
  ExportFormat format = ExportFormat::kSft;
  std::optional<uint64_t> as_of;             // the last position included; default: the head when it starts
  std::optional<std::string> model;          // gen_ai.response.model or gen_ai.request.model
  std::optional<std::string> skill;
  std::optional<std::string> prompt_version; // "template_id@version", or the version alone
  std::optional<int64_t> since_ns, until_ns;  // the decision's recorded_at, inclusive
};

struct ExportManifest {
  std::string format;
  ExportQuery query;
  uint64_t as_of_position = 0;   // every event at or below it is reflected, none after it
  uint64_t rows = 0;
  uint64_t bytes = 0;
  std::string sha256_hex;        // of the exported bytes
  // Decided proposals that passed the filters, by effective outcome, and what was left out and why.
  uint64_t accepted = 0, edited = 0, rejected = 0, expired = 0;
  uint64_t retracted = 0;        // decisions or proposals retracted: left out
  uint64_t undecided = 0;        // proposals without a decision: left out
  uint64_t without_input = 0;    // decided, but the input is only a reference (app.input_ref): left out
  uint64_t redacted = 0;         // decided, but a forgotten subject's part is in its input or values: left out
  std::string to_json() const;   // canonical, deterministic: the same export gives the same manifest
};

// Streams the export to sink in chunks (each a whole number of lines); a false return stops it
// (kClosed). The bytes depend only on the log up to as_of and the query.
Result<ExportManifest> ledger_export(Store& store, const ExportQuery& query,
                                     const std::function<bool(std::string_view chunk)>& sink);

}  // namespace cairn
