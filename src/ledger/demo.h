// A deterministic generator of AI-product history for demos, tests and benchmarks (docs/ai-ledger.md#demo):
// support conversations in streams "conv-<seed>-<n>", each with a customer's question, the router's
// choice, a triage proposal (JSON: queue, priority, tags; alternatives shown sometimes) and a reply draft
// (text), from two models and two prompt template versions; human decisions (accepted, edited with
// plausible edits, rejected, expired by the system) whose rates differ by model and prompt version;
// feedback from end users and an LLM judge; and, after all conversations, late corrections (amendments and
// retractions of some decisions).
//
// The same seed and clock give the same events, byte for byte (ids included), so writing them twice is an
// idempotent retry. The clock only sets presented_at (when the human saw a proposal: clock minus the
// simulated review time). Not thread-safe: one generator per thread.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cairn/status.h"
#include "cairn/store.h"

namespace cairn::ledger {

struct DemoOptions {
  uint64_t seed = 1;
  uint64_t conversations = 100;
  int64_t clock_ns = 0;                 // 0: now
  uint32_t conversations_per_append = 32;  // conversations written in one atomic append (append_multi)
  double correction_share = 0.04;       // decisions corrected late, of all decisions
};

struct DemoSummary {
  uint64_t conversations = 0, events = 0, proposals = 0, decisions = 0;
  uint64_t accepted = 0, edited = 0, rejected = 0, expired = 0;  // as first decided, before corrections
  uint64_t feedback = 0, amendments = 0, retractions = 0;
  uint64_t first_position = 0, last_position = 0;
};

class DemoGenerator {
 public:
  explicit DemoGenerator(DemoOptions options);
  // The appends of the next n conversations (fewer at the end); empty once every conversation was made.
  std::vector<StreamAppend> next_conversations(uint64_t n);
  // The late corrections, once every conversation was made: one append per corrected conversation.
  std::vector<StreamAppend> corrections();
  const DemoSummary& summary() const { return summary_; }

 private:
  struct Decided {
    Uuid decision_id;
    std::string stream, proposal_id, outcome, final_value;  // final_value: JSON text
    std::string correlation;
  };
  StreamAppend conversation(uint64_t n);
  Uuid next_id();
  uint64_t roll(uint64_t n) { return rng_() % n; }
  double unit() { return static_cast<double>(rng_() >> 11) / 9007199254740992.0; }
  DemoOptions opt_;
  std::mt19937_64 rng_;
  uint64_t made_ = 0;
  uint64_t ids_ = 0;
  std::vector<Decided> decided_;  // a sample of decisions, candidates for late corrections
  DemoSummary summary_;
};

// Writes the whole history: conversations in appends of opt.conversations_per_append, then the corrections.
Result<DemoSummary> write_demo(Store& store, const DemoOptions& options);

}  // namespace cairn::ledger
