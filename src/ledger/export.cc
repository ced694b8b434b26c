// ledger_export (include/cairn/ledger.h): training rows from decided proposals, with corrections applied,
// as of one log position. The rows are a pure function of the log up to that position and the query: the
// log is immutable, the fold (ledger/decisions.h) is deterministic and the rows keep the log's bytes for
// every value, so the same query at the same position gives the same bytes.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <thread>

#include <fmt/format.h>
#include <simdjson.h>

#include "cairn/ledger.h"
#include "base/mutex.h"
#include "base/text.h"
#include "codec/event_json.h"
#include "ledger/decisions.h"
#include "log/sha256.h"

namespace cairn {
namespace {

namespace dom = simdjson::dom;
using base::append_json_string;

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
void prompt_messages(dom::parser& parser, const std::string& input_json, std::string& out) {
  out.clear();
  dom::element in;
  if (input_json.empty() || parser.parse(input_json).get(in)) return;
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
}

// A proposed or final value as assistant text: a string as it is, other JSON as its text in the log.
std::string_view value_text(dom::parser& parser, const std::string& value_json) {
  if (value_json.empty() || value_json[0] != '"') return value_json;  // minified: a string starts with its quote
  dom::element v;
  std::string_view s;
  if (parser.parse(value_json).get(v) == simdjson::SUCCESS && v.get(s) == simdjson::SUCCESS) return s;
  return value_json;
}

bool matches_proposal(const ExportQuery& q, const ledger::ProposalData& p) {
  if (q.model && *q.model != p.model() && *q.model != p.request_model) return false;
  if (q.skill && *q.skill != p.skill) return false;
  if (q.prompt_version && *q.prompt_version != p.prompt_version() && *q.prompt_version != p.template_version) return false;
  return true;
}

bool matches_time(const ExportQuery& q, int64_t decided_ns) {
  return !(q.since_ns && decided_ns < *q.since_ns) && !(q.until_ns && decided_ns > *q.until_ns);
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
  out += fmt::format(",\"counts\":{{\"accepted\":{},\"edited\":{},\"expired\":{},\"redacted\":{},\"rejected\":{},\"retracted\":{},"
                     "\"undecided\":{},\"without_input\":{}}}",
                     accepted, edited, expired, redacted, rejected, retracted, undecided, without_input);
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

namespace {

// Turns decided records into rows; one per thread (each has its own parser and buffers).
class Renderer {
 public:
  explicit Renderer(const ExportQuery& q) : q_(q) {}

  struct Counts {
    uint64_t rows = 0, accepted = 0, edited = 0, rejected = 0, expired = 0, retracted = 0, undecided = 0, without_input = 0,
             redacted = 0;
    void add(const Counts& o) {
      rows += o.rows, accepted += o.accepted, edited += o.edited, rejected += o.rejected, expired += o.expired;
      retracted += o.retracted, undecided += o.undecided, without_input += o.without_input, redacted += o.redacted;
    }
  };

  // Appends the rows of records [begin, end) to out.
  void render(const std::deque<ledger::DecisionRecord>& records, size_t begin, size_t end, std::string& out, Counts& c) {
    for (size_t i = begin; i < end; ++i) render_one(records[i], out, c);
  }

 private:
  void open_prompt(std::string& out, const char* head) {
    out += head;
    out += prompt_;
    out += ']';
  }
  static void assistant_array(std::string& out, const char* key, std::string_view content) {
    out += key;
    out += "[{\"role\":\"assistant\",\"content\":";
    append_json_string(out, content);
    out += "}]";
  }
  static void end_row(std::string& out, Counts& c) {
    out += "}\n";
    ++c.rows;
  }

  void render_one(const ledger::DecisionRecord& r, std::string& out, Counts& c) {
    const ledger::Effective& e = r.effective;
    const ledger::ProposalData& p = r.proposal_now();
    if (e.proposal_retracted || e.decision_retracted) {
      if (matches_proposal(q_, p) && (!r.decision || matches_time(q_, r.decision->recorded_ns))) ++c.retracted;
      return;
    }
    const ledger::DecisionData* d = r.decision_now();
    if (!d) {
      if (matches_proposal(q_, p)) ++c.undecided;
      return;
    }
    if (!matches_proposal(q_, p) || !matches_time(q_, r.decision->recorded_ns)) return;
    // A forgotten subject's parts read as redaction markers: such a row would teach the marker, or half a
    // conversation; it is left out (docs/privacy.md).
    constexpr std::string_view kRedacted = "\"$cairn.redacted\"";
    if (p.input_json.find(kRedacted) != std::string::npos || p.proposed_value_json.find(kRedacted) != std::string::npos ||
        d->final_value_json.find(kRedacted) != std::string::npos) {
      ++c.redacted;
      return;
    }
    prompt_messages(parser_, p.input_json, prompt_);
    if (prompt_.empty()) {
      ++c.without_input;
      return;
    }
    const std::string& outcome = d->outcome;
    if (outcome == "accepted") ++c.accepted;
    else if (outcome == "edited") ++c.edited;
    else if (outcome == "rejected") ++c.rejected;
    else ++c.expired;
    const bool has_final = outcome == "accepted" || outcome == "edited";
    proposed_.assign(value_text(parser_, p.proposed_value_json));  // the parser's strings live until its next parse
    final_.assign(has_final ? value_text(parser_, d->final_value_json) : std::string_view());
    switch (q_.format) {
      case ExportFormat::kSft:
      case ExportFormat::kOpenAiSft:
        if (has_final) {
          out += "{\"messages\":[";
          out += prompt_;
          out += ",{\"role\":\"assistant\",\"content\":";
          append_json_string(out, final_);
          if (q_.format == ExportFormat::kOpenAiSft) out += ",\"weight\":1";
          out += "}]";
          end_row(out, c);
        }
        break;
      case ExportFormat::kSftPromptCompletion:
        if (has_final) {
          open_prompt(out, "{\"prompt\":[");
          assistant_array(out, ",\"completion\":", final_);
          end_row(out, c);
        }
        break;
      case ExportFormat::kPreference:
      case ExportFormat::kOpenAiPreference: {
        // Edited: the human's final over the AI's proposal. Accepted with alternatives shown: the accepted
        // value over each alternative not chosen.
        std::vector<std::string> rejected;
        if (outcome == "edited" && final_ != proposed_) rejected.push_back(proposed_);
        if (outcome == "accepted" && !p.alternatives_json.empty()) {
          dom::element alts;
          dom::array arr;
          if (parser_.parse(p.alternatives_json).get(alts) == simdjson::SUCCESS && alts.get(arr) == simdjson::SUCCESS)
            for (dom::element a : arr) {
              std::string_view sv;
              std::string text = a.get(sv) == simdjson::SUCCESS ? std::string(sv) : simdjson::minify(a);
              if (text != final_) rejected.push_back(std::move(text));
            }
        }
        for (const auto& bad : rejected) {
          if (q_.format == ExportFormat::kPreference) {
            open_prompt(out, "{\"prompt\":[");
            assistant_array(out, ",\"chosen\":", final_);
            assistant_array(out, ",\"rejected\":", bad);
          } else {
            open_prompt(out, "{\"input\":{\"messages\":[");
            out += '}';
            assistant_array(out, ",\"preferred_output\":", final_);
            assistant_array(out, ",\"non_preferred_output\":", bad);
          }
          end_row(out, c);
        }
        break;
      }
      case ExportFormat::kKto:
        if (outcome == "accepted" || outcome == "rejected" || outcome == "edited") {
          open_prompt(out, "{\"prompt\":[");
          assistant_array(out, ",\"completion\":", proposed_);
          out += outcome == "accepted" ? ",\"label\":true" : ",\"label\":false";
          end_row(out, c);
        }
        if (outcome == "edited") {
          open_prompt(out, "{\"prompt\":[");
          assistant_array(out, ",\"completion\":", final_);
          out += ",\"label\":true";
          end_row(out, c);
        }
        break;
    }
  }

  const ExportQuery& q_;
  dom::parser parser_;
  std::string prompt_, proposed_, final_;  // reused row after row
};

// Reads the ledger's events on a thread of its own and hands them over in batches (bounded: the reader
// never gets more than a few batches ahead of the fold).
class FactReader {
 public:
  using Batch = std::vector<ledger::LedgerFact>;
  FactReader(Store& store, uint64_t last) : thread_([this, &store, last] { run(store, last); }) {}
  ~FactReader() {
    {
      base::MutexLock g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // The next batch; empty at the end.
  Batch next() {
    base::UniqueLock g(mu_);
    while (queue_.empty() && !done_) cv_.wait(g.native());
    if (queue_.empty()) return {};
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return b;
  }
  Status status() {
    base::MutexLock g(mu_);
    return status_;
  }

 private:
  static constexpr size_t kBatch = 4096, kMaxQueued = 4;
  void run(Store& store, uint64_t last) {
    dom::parser parser;
    Batch batch;
    auto push = [&]() -> bool {
      base::UniqueLock g(mu_);
      while (queue_.size() >= kMaxQueued && !stop_) cv_.wait(g.native());
      if (stop_) return false;
      queue_.push_back(std::move(batch));
      batch = Batch();
      cv_.notify_all();
      return true;
    };
    // No type filter in the scan: every event's position is seen, so the scan stops right after `last`.
    Status st = store.scan_all(0, Filter{}, [&](const EventView& e) {
      if (e.position > last) return false;
      const ledger::LedgerType t = ledger::ledger_type(e.type);
      if (t != ledger::LedgerType::kProposalMade && t != ledger::LedgerType::kDecisionRecorded &&
          t != ledger::LedgerType::kCorrectionRecorded)
        return true;
      if (auto fact = ledger::read_fact(parser, e, /*keep_inputs=*/true)) batch.push_back(std::move(*fact));
      return batch.size() < kBatch || push();
    });
    if (!batch.empty()) push();
    base::MutexLock g(mu_);
    status_ = st;
    done_ = true;
    cv_.notify_all();
  }
  base::Mutex mu_;  // guards queue_, done_, stop_ and status_ (the hand-over between the reader and the fold)
  std::condition_variable cv_;
  std::deque<Batch> queue_ CAIRN_GUARDED_BY(mu_);
  bool done_ CAIRN_GUARDED_BY(mu_) = false;
  bool stop_ CAIRN_GUARDED_BY(mu_) = false;
  Status status_ CAIRN_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace

Result<ExportManifest> ledger_export(Store& store, const ExportQuery& q, const std::function<bool(std::string_view)>& sink) {
  const uint64_t head = store.head_position();
  if (q.as_of && *q.as_of >= head)
    return Status::invalid_argument(fmt::format("as_of: position {} is not in the log yet (the head is {})", *q.as_of, head));
  if (q.since_ns && q.until_ns && *q.since_ns > *q.until_ns)
    return Status::invalid_argument("since: after until");
  ExportManifest m;
  m.format = std::string(export_format_name(q.format));
  m.query = q;
  // A size hint: a proposal and its decision take two of the four or so events of a typical flow.
  const size_t hint = std::min<uint64_t>(q.as_of.value_or(head) / 4, 1u << 22);
  ledger::DecisionFold fold(ledger::FoldOptions{.keep_inputs = true, .compute_deltas = false, .sorted = false, .expected_proposals = hint});
  if (head > 0) {
    // Two steps on two threads: reading the events' JSON, and folding them in log order.
    m.as_of_position = q.as_of.value_or(head - 1);
    FactReader reader(store, m.as_of_position);
    for (auto batch = reader.next(); !batch.empty(); batch = reader.next())
      for (auto& fact : batch) fold.apply(std::move(fact));
    CAIRN_RETURN_IF_ERROR(reader.status());
  }

  // Rows in the order the proposals were made (the fold's arrival order: log order), rendered block by
  // block, two blocks at a time on two threads, and written in order.
  constexpr size_t kBlock = 8192;
  const auto& records = fold.in_arrival_order();
  log::Sha256 sha;
  Renderer::Counts counts;
  Renderer mine(q), other(q);
  std::string a, b;
  auto write = [&](std::string& out) -> bool {
    if (out.empty()) return true;
    sha.update(out);
    m.bytes += out.size();
    const bool more = sink(out);
    out.clear();
    return more;
  };
  for (size_t begin = 0; begin < records.size(); begin += 2 * kBlock) {
    const size_t mid = std::min(records.size(), begin + kBlock), end = std::min(records.size(), begin + 2 * kBlock);
    Renderer::Counts ca, cb;
    std::thread second;
    if (mid < end) second = std::thread([&] { other.render(records, mid, end, b, cb); });
    mine.render(records, begin, mid, a, ca);
    if (second.joinable()) second.join();
    counts.add(ca);
    counts.add(cb);
    if (!write(a) || !write(b)) return Status(ErrorCode::kClosed, "the export's reader went away");
  }
  m.rows = counts.rows;
  m.accepted = counts.accepted;
  m.edited = counts.edited;
  m.rejected = counts.rejected;
  m.expired = counts.expired;
  m.retracted = counts.retracted;
  m.undecided = counts.undecided;
  m.without_input = counts.without_input;
  m.redacted = counts.redacted;
  m.sha256_hex = log::hex(sha.final());
  return m;
}

}  // namespace cairn
