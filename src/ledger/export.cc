// ledger_export (include/cairn/ledger.h): training rows from decided proposals, with corrections applied,
// as of one log position. The rows are a pure function of the log up to that position and the query: the
// log is immutable, the fold (ledger/decisions.h) is deterministic and the rows keep the log's bytes for
// every value, so the same query at the same position gives the same bytes.
#include <algorithm>

#include <fmt/format.h>
#include <simdjson.h>

#include "cairn/ledger.h"
#include "codec/event_json.h"
#include "ledger/decisions.h"
#include "log/sha256.h"

namespace cairn {
namespace {

namespace dom = simdjson::dom;
using codec::append_json_string;

constexpr size_t kChunkBytes = 1 << 20;

// Message content as text: strings as they are; OpenTelemetry-style parts joined (their text content);
// anything else as its JSON text.
std::string content_text(dom::element c) {
  std::string_view s;
  if (c.get(s) == simdjson::SUCCESS) return std::string(s);
  return simdjson::minify(c);
}

void append_message(std::string& out, std::string_view role, std::string_view content) {
  out += "{\"role\":";
  append_json_string(out, role);
  out += ",\"content\":";
  append_json_string(out, content);
  out += '}';
}

// The prompt as chat messages, without the brackets: "{...},{...}". Empty if the input has no usable form.
std::string prompt_messages(dom::parser& parser, const std::string& input_json) {
  dom::element in;
  if (input_json.empty() || parser.parse(input_json).get(in)) return {};
  std::string out;
  auto add_messages = [&](dom::array msgs) {
    for (dom::element m : msgs) {
      std::string_view role;
      if (m["role"].get(role)) continue;
      std::string content;
      dom::element c;
      dom::array parts;
      if (m["content"].get(c) == simdjson::SUCCESS) {
        content = content_text(c);
      } else if (m["parts"].get(parts) == simdjson::SUCCESS) {
        for (dom::element p : parts) {
          dom::element pc;
          if (p["content"].get(pc) == simdjson::SUCCESS) content += content_text(pc);
        }
      }
      if (!out.empty()) out += ',';
      append_message(out, role, content);
    }
  };
  std::string_view text;
  dom::array arr;
  dom::object obj;
  if (in.get(text) == simdjson::SUCCESS) {
    append_message(out, "user", text);
  } else if (in.get(arr) == simdjson::SUCCESS) {
    add_messages(arr);
  } else if (in.get(obj) == simdjson::SUCCESS) {
    std::string_view system;
    if (obj["system_instructions"].get(system) == simdjson::SUCCESS || obj["system"].get(system) == simdjson::SUCCESS)
      append_message(out, "system", system);
    if (obj["messages"].get(arr) == simdjson::SUCCESS) {
      add_messages(arr);
    } else {
      if (!out.empty()) out += ',';
      append_message(out, "user", simdjson::minify(in));
    }
  }
  return out;
}

// A proposed or final value as assistant text: a string as it is, other JSON as its text in the log.
std::string value_text(dom::parser& parser, const std::string& value_json) {
  dom::element v;
  std::string_view s;
  if (parser.parse(value_json).get(v) == simdjson::SUCCESS && v.get(s) == simdjson::SUCCESS) return std::string(s);
  return value_json;
}

std::string assistant(std::string_view content, bool weight = false) {
  std::string out = "{\"role\":\"assistant\",\"content\":";
  append_json_string(out, content);
  if (weight) out += ",\"weight\":1";
  out += '}';
  return out;
}

bool matches(const ExportQuery& q, const ledger::DecisionRecord& r) {
  const ledger::ProposalData& p = r.effective.proposal;
  if (q.model && *q.model != p.model() && *q.model != p.request_model) return false;
  if (q.skill && *q.skill != p.skill) return false;
  if (q.prompt_version && *q.prompt_version != p.prompt_version() && *q.prompt_version != p.template_version) return false;
  const int64_t t = r.decision->recorded_ns;
  if (q.since_ns && t < *q.since_ns) return false;
  if (q.until_ns && t > *q.until_ns) return false;
  return true;
}

}  // namespace

Result<ExportFormat> parse_export_format(std::string_view name) {
  for (ExportFormat f : {ExportFormat::kSft, ExportFormat::kSftPromptCompletion, ExportFormat::kPreference, ExportFormat::kKto,
                         ExportFormat::kOpenAiSft, ExportFormat::kOpenAiPreference})
    if (export_format_name(f) == name) return f;
  return Status::invalid_argument(fmt::format(
      "format: '{}' is not one of sft, sft-prompt-completion, preference, kto, openai-sft, openai-preference", name.substr(0, 64)));
}

std::string_view export_format_name(ExportFormat f) {
  switch (f) {
    case ExportFormat::kSft: return "sft";
    case ExportFormat::kSftPromptCompletion: return "sft-prompt-completion";
    case ExportFormat::kPreference: return "preference";
    case ExportFormat::kKto: return "kto";
    case ExportFormat::kOpenAiSft: return "openai-sft";
    case ExportFormat::kOpenAiPreference: return "openai-preference";
  }
  return "?";
}

std::string ExportManifest::to_json() const {
  std::string out = "{\"as_of_position\":" + std::to_string(as_of_position);
  out += ",\"bytes\":" + std::to_string(bytes);
  out += fmt::format(",\"counts\":{{\"accepted\":{},\"edited\":{},\"expired\":{},\"rejected\":{},\"retracted\":{},\"undecided\":{},\"without_input\":{}}}",
                     accepted, edited, expired, rejected, retracted, undecided, without_input);
  out += ",\"filters\":{";
  bool first = true;
  auto add = [&](std::string_view k, const std::optional<std::string>& v) {
    if (!v) return;
    out += first ? "" : ",";
    first = false;
    append_json_string(out, k);
    out += ':';
    append_json_string(out, *v);
  };
  add("model", query.model);
  add("prompt_version", query.prompt_version);
  add("since", query.since_ns ? std::optional<std::string>(format_rfc3339_ns(*query.since_ns)) : std::nullopt);
  add("skill", query.skill);
  add("until", query.until_ns ? std::optional<std::string>(format_rfc3339_ns(*query.until_ns)) : std::nullopt);
  out += "},\"format\":";
  append_json_string(out, format);
  out += ",\"rows\":" + std::to_string(rows);
  out += ",\"sha256\":";
  append_json_string(out, sha256_hex);
  out += ",\"vocabulary_version\":\"1\"}";
  return out;
}

Result<ExportManifest> ledger_export(Store& store, const ExportQuery& q, const std::function<bool(std::string_view)>& sink) {
  const uint64_t head = store.head_position();
  if (q.as_of && *q.as_of >= head)
    return Status::invalid_argument(fmt::format("as_of: position {} is not in the log yet (the head is {})", *q.as_of, head));
  if (q.since_ns && q.until_ns && *q.since_ns > *q.until_ns)
    return Status::invalid_argument("since: after until");
  ExportManifest m;
  m.format = std::string(export_format_name(q.format));
  m.query = q;
  ledger::DecisionFold fold(ledger::FoldOptions{.keep_inputs = true, .compute_deltas = false});
  if (head > 0) {
    const uint64_t last = q.as_of.value_or(head - 1);
    m.as_of_position = last;
    Filter f;
    f.types = {"ai.proposal.made", "human.decision.recorded", "correction.recorded"};
    CAIRN_RETURN_IF_ERROR(store.scan_all(0, f, [&](const EventView& e) {
      if (e.position > last) return false;
      fold.apply(e);
      return true;
    }));
  }
  // Rows in the order the proposals were made.
  std::vector<const ledger::DecisionRecord*> order;
  order.reserve(fold.size());
  for (const auto& [id, r] : fold.records()) order.push_back(&r);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->proposal.position < b->proposal.position; });

  log::Sha256 sha;
  std::string chunk;
  dom::parser parser;
  auto flush = [&]() -> bool {
    if (chunk.empty()) return true;
    sha.update(chunk);
    m.bytes += chunk.size();
    const bool more = sink(chunk);
    chunk.clear();
    return more;
  };
  auto line = [&](std::string&& row) {
    chunk += row;
    chunk += '\n';
    ++m.rows;
  };
  for (const ledger::DecisionRecord* r : order) {
    const ledger::Effective& e = r->effective;
    if (e.proposal_retracted || e.decision_retracted) {
      if (r->decision && matches(q, *r)) ++m.retracted;
      continue;
    }
    if (!e.decided) {
      ++m.undecided;
      continue;
    }
    if (!matches(q, *r)) continue;
    const std::string prompt = prompt_messages(parser, e.proposal.input_json);
    if (prompt.empty()) {
      ++m.without_input;
      continue;
    }
    const std::string& outcome = e.decision.outcome;
    if (outcome == "accepted") ++m.accepted;
    else if (outcome == "edited") ++m.edited;
    else if (outcome == "rejected") ++m.rejected;
    else ++m.expired;
    const bool has_final = outcome == "accepted" || outcome == "edited";
    const std::string proposed = value_text(parser, e.proposal.proposed_value_json);
    const std::string final_text = has_final ? value_text(parser, e.decision.final_value_json) : std::string();
    switch (q.format) {
      case ExportFormat::kSft:
      case ExportFormat::kOpenAiSft:
        if (has_final)
          line("{\"messages\":[" + prompt + "," + assistant(final_text, q.format == ExportFormat::kOpenAiSft) + "]}");
        break;
      case ExportFormat::kSftPromptCompletion:
        if (has_final) line("{\"prompt\":[" + prompt + "],\"completion\":[" + assistant(final_text) + "]}");
        break;
      case ExportFormat::kPreference:
      case ExportFormat::kOpenAiPreference: {
        // Edited: the human's final over the AI's proposal. Accepted with alternatives shown: the accepted
        // value over each alternative not chosen.
        std::vector<std::string> rejected;
        if (outcome == "edited" && final_text != proposed) rejected.push_back(proposed);
        if (outcome == "accepted" && !e.proposal.alternatives_json.empty()) {
          dom::element alts;
          dom::array arr;
          if (parser.parse(e.proposal.alternatives_json).get(alts) == simdjson::SUCCESS && alts.get(arr) == simdjson::SUCCESS)
            for (dom::element a : arr) {
              std::string_view s;
              std::string text = a.get(s) == simdjson::SUCCESS ? std::string(s) : simdjson::minify(a);
              if (text != final_text) rejected.push_back(std::move(text));
            }
        }
        for (const auto& bad : rejected) {
          if (q.format == ExportFormat::kPreference)
            line("{\"prompt\":[" + prompt + "],\"chosen\":[" + assistant(final_text) + "],\"rejected\":[" + assistant(bad) + "]}");
          else
            line("{\"input\":{\"messages\":[" + prompt + "]},\"preferred_output\":[" + assistant(final_text) +
                 "],\"non_preferred_output\":[" + assistant(bad) + "]}");
        }
        break;
      }
      case ExportFormat::kKto:
        if (outcome == "accepted" || outcome == "rejected" || outcome == "edited")
          line("{\"prompt\":[" + prompt + "],\"completion\":[" + assistant(proposed) + "],\"label\":" +
               (outcome == "accepted" ? "true" : "false") + "}");
        if (outcome == "edited")
          line("{\"prompt\":[" + prompt + "],\"completion\":[" + assistant(final_text) + "],\"label\":true}");
        break;
    }
    if (chunk.size() >= kChunkBytes && !flush()) return Status(ErrorCode::kClosed, "the export's reader went away");
  }
  if (!flush()) return Status(ErrorCode::kClosed, "the export's reader went away");
  m.sha256_hex = log::hex(sha.final());
  return m;
}

}  // namespace cairn
