// The ledger's queries over a real store and projection runtime (include/cairn/ledger.h): rates and exports
// against counts computed independently from the demo's own events; exports byte-identical at the same
// position after new events and after a rebuild; why on a deep chain with corrections; a correlation as
// known at past positions and times; the demo generator's determinism.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cairn/ledger.h"
#include "ledger/ai_projections.h"
#include "ledger/demo.h"
#include "store/store_helpers.h"
#include "testing/projections_fixture.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using nlohmann::json;
using testing::json_event;
using testing::TempDir;

constexpr int64_t kClock = 1'790'000'000'000'000'000;  // 2026-09-21: a fixed clock, so the demo is the same every run

class Queries : public testing::ProjectionsFixture {
 protected:
  void SetUp() override {
    open_store_now();
    open_projections_now();
  }
  void TearDown() override { close_all(/*expect_ok=*/true); }
  // Waits until a projection reflects the whole log.
  void settle(std::string_view name) {
    const uint64_t head = store_->head_position();
    if (head == 0) return;
    auto s = p_->state(name, std::string("-"), 0, head - 1, std::chrono::seconds(30));
    ASSERT_TRUE(s.ok()) << s.status().to_string();
  }
  std::pair<std::string, ExportManifest> run_export(ExportQuery q) {
    std::string out;
    auto m = ledger_export(*store_, q, [&](std::string_view c) {
      out.append(c);
      return true;
    });
    EXPECT_TRUE(m.ok()) << m.status().to_string();
    return {out, m.ok() ? *m : ExportManifest{}};
  }
  json rates(std::vector<std::string> by) {
    settle(ledger::kDecisionsProjection);
    RatesQuery q;
    q.by = std::move(by);
    auto r = ledger_rates(*p_, q);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? json::parse(*r) : json();
  }
  Uuid append(const std::string& stream, const std::string& type, const json& data, const json& meta = json::object()) {
    EventData e = json_event(type, data.dump(), meta.dump());
    e.id = Uuid::generate_v7();
    auto r = store_->append(testing::one(stream, ExpectedRevision::any(), {e}));
    EXPECT_TRUE(r.ok()) << r.status().to_string() << " " << data.dump();
    return *e.id;
  }

};

// The demo's history, judged independently of the fold: decisions by proposal, corrections applied.
struct Truth {
  struct P {
    std::string model, prompt, skill, outcome;  // outcome empty: undecided or retracted
    json proposed, final_value, alternatives;
    bool retracted = false;
  };
  std::map<std::string, P> proposals;
  std::map<std::string, std::string> decision_owner;  // decision event id -> proposal id
};

Truth truth_of(const ledger::DemoOptions& o) {
  ledger::DemoGenerator g(o);
  std::vector<StreamAppend> all;
  for (;;) {
    auto b = g.next_conversations(10);
    if (b.empty()) break;
    for (auto& a : b) all.push_back(std::move(a));
  }
  for (auto& a : g.corrections()) all.push_back(std::move(a));
  Truth t;
  for (const auto& a : all)
    for (const auto& e : a.events) {
      const json d = json::parse(e.data);
      if (e.type == "ai.proposal.made") {
        auto& p = t.proposals[d["proposal_id"]];
        p.model = d["gen_ai.response.model"];
        p.prompt = d["app.prompt.template_id"].get<std::string>() + "@" + d["app.prompt.template_version"].get<std::string>();
        p.skill = d["skill"];
        p.proposed = d["proposed_value"];
        p.alternatives = d.value("alternatives", json());
      } else if (e.type == "human.decision.recorded") {
        auto& p = t.proposals[d["proposal_id"]];
        p.outcome = d["outcome"];
        p.final_value = d.value("final_value", json());
        t.decision_owner[e.id->to_string()] = d["proposal_id"];
      } else if (e.type == "correction.recorded") {
        auto& p = t.proposals[t.decision_owner.at(d["corrects_event_id"])];
        if (d["kind"] == "retract") {
          p.retracted = true;
          p.outcome.clear();
        } else {
          p.outcome = d["replacement"]["outcome"];
          p.final_value = d["replacement"].value("final_value", json());
        }
      }
    }
  return t;
}

TEST_F(Queries, RatesMatchCountsComputedFromTheEvents) {
  ledger::DemoOptions o{.seed = 11, .conversations = 150, .clock_ns = kClock};
  auto s = ledger::write_demo(*store_, o);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_GT(s->amendments + s->retractions, 0u);
  const Truth t = truth_of(o);
  std::map<std::string, std::map<std::string, uint64_t>> want;  // group -> counts
  for (const auto& [id, p] : t.proposals) {
    auto& c = want[p.model + "|" + p.prompt + "|" + p.skill];
    ++c["proposals"];
    if (!p.outcome.empty()) {
      ++c[p.outcome];
      ++c["decided"];
    }
  }
  const json r = rates({"model", "prompt_version", "skill"});
  ASSERT_EQ(r["groups"].size(), want.size()) << r.dump();
  uint64_t decided = 0;
  for (const auto& g : r["groups"]) {
    const std::string key = g["group"]["model"].get<std::string>() + "|" + g["group"]["prompt_version"].get<std::string>() + "|" +
                            g["group"]["skill"].get<std::string>();
    ASSERT_TRUE(want.count(key)) << key;
    auto& c = want[key];
    EXPECT_EQ(g["proposals"], c["proposals"]) << key;
    EXPECT_EQ(g["decided"], c["decided"]) << key;
    for (const char* o2 : {"accepted", "edited", "rejected", "expired"}) EXPECT_EQ(g[o2], c[o2]) << key << " " << o2;
    if (c["decided"] > 0) {
      EXPECT_DOUBLE_EQ(g["acceptance_rate"].get<double>(), static_cast<double>(c["accepted"]) / c["decided"]);
    }
    decided += c["decided"];
  }
  EXPECT_EQ(r["total"]["decided"], decided);
  // By day only: one day (the demo is written now), the same totals.
  const json by_day = rates({"day"});
  ASSERT_EQ(by_day["groups"].size(), 1u);
  EXPECT_EQ(by_day["groups"][0]["decided"], decided);
  // Bad dimensions and days are refused, naming the parameter.
  RatesQuery bad;
  bad.by = {"tenant"};
  EXPECT_EQ(ledger_rates(*p_, bad).status().code(), ErrorCode::kInvalidArgument);
  bad.by = {"day", "day"};
  EXPECT_EQ(ledger_rates(*p_, bad).status().code(), ErrorCode::kInvalidArgument);
  RatesQuery since;
  since.since = "2026-13-01";
  EXPECT_NE(ledger_rates(*p_, since).status().message().find("since"), std::string::npos);
  since.since = "2200-01-01";
  auto none = ledger_rates(*p_, since);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(json::parse(*none)["total"]["decided"], 0);
}

TEST_F(Queries, ExportsMatchTheDecisionsAndAreByteIdenticalAtOnePosition) {
  ledger::DemoOptions o{.seed = 12, .conversations = 120, .clock_ns = kClock};
  ASSERT_TRUE(ledger::write_demo(*store_, o).ok());
  const Truth t = truth_of(o);
  uint64_t accepted = 0, edited = 0, rejected = 0, expired = 0, retracted = 0, pref = 0;
  for (const auto& [id, p] : t.proposals) {
    if (p.retracted) ++retracted;
    if (p.outcome == "accepted") {
      ++accepted;
      if (p.alternatives.is_array())
        for (const auto& a : p.alternatives) pref += a != p.final_value;
    }
    if (p.outcome == "edited") {
      ++edited;
      pref += p.final_value != p.proposed;
    }
    if (p.outcome == "rejected") ++rejected;
    if (p.outcome == "expired") ++expired;
  }
  const uint64_t head = store_->head_position();
  std::map<ExportFormat, std::string> first;
  for (ExportFormat f : {ExportFormat::kSft, ExportFormat::kSftPromptCompletion, ExportFormat::kPreference, ExportFormat::kKto,
                         ExportFormat::kOpenAiSft, ExportFormat::kOpenAiPreference}) {
    ExportQuery q;
    q.format = f;
    auto [bytes, m] = run_export(q);
    EXPECT_EQ(m.as_of_position, head - 1);
    EXPECT_EQ(m.accepted, accepted);
    EXPECT_EQ(m.edited, edited);
    EXPECT_EQ(m.rejected, rejected);
    EXPECT_EQ(m.expired, expired);
    EXPECT_EQ(m.retracted, retracted);
    EXPECT_EQ(m.bytes, bytes.size());
    uint64_t lines = 0, label_true = 0;
    std::istringstream in(bytes);
    for (std::string line; std::getline(in, line);) {
      ++lines;
      const json row = json::parse(line);  // every line parses
      switch (f) {
        case ExportFormat::kSft:
        case ExportFormat::kOpenAiSft: {
          ASSERT_GE(row["messages"].size(), 2u);
          EXPECT_EQ(row["messages"].back()["role"], "assistant");
          EXPECT_EQ(row["messages"][0]["role"], "system");
          EXPECT_EQ(row["messages"].back().contains("weight"), f == ExportFormat::kOpenAiSft);
          break;
        }
        case ExportFormat::kSftPromptCompletion:
          EXPECT_EQ(row["completion"].size(), 1u);
          break;
        case ExportFormat::kPreference:
          EXPECT_NE(row["chosen"], row["rejected"]);
          EXPECT_EQ(row["prompt"].back()["role"], "user");
          break;
        case ExportFormat::kKto:
          label_true += row["label"].get<bool>();
          break;
        case ExportFormat::kOpenAiPreference:
          EXPECT_TRUE(row["input"]["messages"].is_array());
          EXPECT_NE(row["preferred_output"], row["non_preferred_output"]);
          break;
      }
    }
    EXPECT_EQ(lines, m.rows);
    if (f == ExportFormat::kSft || f == ExportFormat::kOpenAiSft || f == ExportFormat::kSftPromptCompletion) {
      EXPECT_EQ(lines, accepted + edited);
    }
    if (f == ExportFormat::kKto) {
      EXPECT_EQ(lines, accepted + rejected + 2 * edited);
      EXPECT_EQ(label_true, accepted + edited);
    }
    if (f == ExportFormat::kPreference || f == ExportFormat::kOpenAiPreference) {
      EXPECT_EQ(lines, pref);
    }
    first[f] = bytes;
  }
  // New events (another demo, with its own corrections of earlier decisions... of its own) arrive:
  ASSERT_TRUE(ledger::write_demo(*store_, ledger::DemoOptions{.seed = 13, .conversations = 40, .clock_ns = kClock}).ok());
  for (const auto& [f, bytes] : first) {
    ExportQuery q;
    q.format = f;
    q.as_of = head - 1;
    auto [again, m] = run_export(q);
    EXPECT_EQ(again, bytes) << export_format_name(f);
    ExportQuery now;
    now.format = f;
    EXPECT_GT(run_export(now).first.size(), bytes.size());
  }
  // A rebuild of the ledger's projection changes nothing: the same digest, the same export.
  settle(ledger::kDecisionsProjection);
  auto before = p_->digest(ledger::kDecisionsProjection, 0);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(p_->rebuild(ledger::kDecisionsProjection, 0).ok());
  for (int i = 0; i < 600; ++i) {
    auto st = p_->status(ledger::kDecisionsProjection, 0);
    if (st.ok() && !st->rebuild) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto verify = p_->verify(ledger::kDecisionsProjection, 0);
  ASSERT_TRUE(verify.ok()) << verify.status().to_string();
  EXPECT_TRUE(verify->equal);
  auto after = p_->digest(ledger::kDecisionsProjection, 0);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->sha256_hex, before->sha256_hex);
  ExportQuery q;
  q.format = ExportFormat::kSft;
  q.as_of = head - 1;
  EXPECT_EQ(run_export(q).first, first[ExportFormat::kSft]);
  // After a restart from checkpoints, the states are the same too.
  ASSERT_TRUE(p_->close().ok());
  open_projections_now();
  settle(ledger::kDecisionsProjection);
  auto reopened = p_->digest(ledger::kDecisionsProjection, 0);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(reopened->sha256_hex, after->sha256_hex);
}

TEST_F(Queries, ExportFiltersAndWhatIsLeftOut) {
  const json meta = {{"actor", {{"kind", "human"}, {"id", "u"}}}};
  auto proposal = [&](const std::string& pid, const std::string& model, const json& input_field) {
    json d = {{"proposal_id", pid}, {"proposal_kind", "draft"}, {"skill", "reply"}, {"gen_ai.request.model", model},
              {"proposed_value", "draft of " + pid}};
    d.update(input_field);
    return append("s-" + pid, "ai.proposal.made", d, meta);
  };
  auto decide = [&](const std::string& pid, const std::string& outcome) {
    json d = {{"proposal_id", pid}, {"outcome", outcome}};
    if (outcome == "accepted") d["final_value"] = "draft of " + pid;
    if (outcome == "edited") d["final_value"] = "edited draft of " + pid;
    return append("s-" + pid, "human.decision.recorded", d, meta);
  };
  proposal("keep", "m-a", {{"input", "UNIQUE-KEPT-INPUT"}});
  decide("keep", "edited");
  proposal("gone", "m-a", {{"input", "UNIQUE-RETRACTED-INPUT"}});
  const Uuid gone = decide("gone", "accepted");
  append("s-gone", "correction.recorded", {{"corrects_event_id", gone.to_string()}, {"kind", "retract"}, {"reason_text", "wrong ticket"}}, meta);
  proposal("ref", "m-a", {{"app.input_ref", "sha256:abc"}});
  decide("ref", "accepted");
  proposal("other", "m-b", {{"input", {{"messages", {{{"role", "user"}, {"parts", {{{"type", "text"}, {"content", "UNIQUE-PARTS"}}}}}}}}}});
  decide("other", "accepted");
  proposal("open", "m-a", {{"input", "never decided"}});

  ExportQuery q;
  q.format = ExportFormat::kSft;
  auto [bytes, m] = run_export(q);
  EXPECT_NE(bytes.find("UNIQUE-KEPT-INPUT"), std::string::npos);
  EXPECT_EQ(bytes.find("UNIQUE-RETRACTED-INPUT"), std::string::npos);  // a retracted decision is not a training row
  EXPECT_NE(bytes.find("UNIQUE-PARTS"), std::string::npos);            // OpenTelemetry-style parts become the content
  EXPECT_EQ(m.rows, 2u);
  EXPECT_EQ(m.retracted, 1u);
  EXPECT_EQ(m.without_input, 1u);
  EXPECT_EQ(m.undecided, 1u);
  const json first = json::parse(bytes.substr(0, bytes.find('\n')));
  EXPECT_EQ(first, json::parse(R"({"messages":[{"role":"user","content":"UNIQUE-KEPT-INPUT"},
                                                {"role":"assistant","content":"edited draft of keep"}]})"));
  q.model = "m-b";
  auto [only_b, mb] = run_export(q);
  EXPECT_EQ(mb.rows, 1u);
  EXPECT_NE(only_b.find("UNIQUE-PARTS"), std::string::npos);
  EXPECT_NE(mb.to_json().find(R"("filters":{"model":"m-b"})"), std::string::npos) << mb.to_json();
  q.model.reset();
  q.since_ns = kClock * 2;
  EXPECT_EQ(run_export(q).second.rows, 0u);
  q.since_ns.reset();
  q.as_of = store_->head_position();
  std::string sink;
  EXPECT_EQ(ledger_export(*store_, q, [&](std::string_view) { return true; }).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(parse_export_format("jsonl").status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(Queries, WhyFollowsATwentyEventChainBackToItsRootWithCorrections) {
  const json meta_base = {{"correlation_id", "case-1"}, {"actor", {{"kind", "ai_agent"}, {"id", "a"}}}};
  auto with_cause = [&](const Uuid& c) {
    json m = meta_base;
    m["causation_id"] = c.to_string();
    return m;
  };
  std::vector<Uuid> chain;
  chain.push_back(append("case-1", "ai.question.asked", {{"question", "why?"}}, meta_base));
  // Nine rounds of skill -> proposal, the last decided: 1 + 18 + 1 = 20 events on the chain.
  for (int i = 0; i < 9; ++i) {
    chain.push_back(append("case-1", "ai.skill.executed", {{"skill", "s" + std::to_string(i)}}, with_cause(chain.back())));
    chain.push_back(append("case-1", "ai.proposal.made",
                           {{"proposal_id", "p" + std::to_string(i)}, {"proposal_kind", "plan"}, {"skill", "s"},
                            {"gen_ai.request.model", "m"}, {"input", "x"}, {"proposed_value", {{"step", i}}}},
                           with_cause(chain.back())));
  }
  json human = {{"correlation_id", "case-1"}, {"causation_id", chain.back().to_string()}, {"actor", {{"kind", "human"}, {"id", "h"}}}};
  chain.push_back(append("case-1", "human.decision.recorded", {{"proposal_id", "p8"}, {"outcome", "edited"}, {"final_value", {{"step", 80}}}}, human));
  ASSERT_EQ(chain.size(), 20u);
  const uint64_t decided_at = store_->head_position() - 1;
  // Unrelated traffic in between, and a correlation peer not on the chain.
  append("other", "test.noise", {{"n", 1}});
  append("case-1", "feedback.given", {{"target", "p8"}, {"name", "thumb"}, {"value", true}, {"source_kind", "end_user"}}, meta_base);
  const Uuid amend = append("case-1", "correction.recorded",
                            {{"corrects_event_id", chain.back().to_string()}, {"kind", "amend"}, {"reason_text", "later"},
                             {"replacement", {{"proposal_id", "p8"}, {"outcome", "accepted"}, {"final_value", {{"step", 8}}}}}},
                            with_cause(chain.back()));
  const uint64_t amended_at = store_->head_position() - 1;
  const Uuid undo = append("ops", "correction.recorded", {{"corrects_event_id", amend.to_string()}, {"kind", "retract"}, {"reason_text", "oops"}});

  auto w = ledger_why(*store_, *p_, chain.back());
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  const json j = json::parse(*w);
  ASSERT_EQ(j["chain"].size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(j["chain"][i]["id"], chain[i].to_string()) << i;
  EXPECT_EQ(j["root_id"], chain.front().to_string());
  EXPECT_TRUE(j["chain"][0]["caused_by"].is_null());
  EXPECT_EQ(j["chain"][19]["caused_by"]["via"], "causation_id");
  EXPECT_TRUE(j["chain_stop"].is_null());
  ASSERT_EQ(j["corrections"].size(), 2u);  // the amendment, and the retraction of the amendment
  EXPECT_EQ(j["corrections"][0]["id"], amend.to_string());
  EXPECT_EQ(j["corrections"][1]["id"], undo.to_string());
  EXPECT_EQ(j["corrections"][1]["corrects"], amend.to_string());
  EXPECT_EQ(j["correlation"]["id"], "case-1");
  EXPECT_EQ(j["correlation"]["count"], 22u);  // the chain, the feedback and the amendment (not "other", not "ops")
  // The amendment was retracted: the decision stands as first recorded.
  bool found = false;
  for (const auto& p : j["proposals"])
    if (p["proposal_id"] == "p8") {
      found = true;
      EXPECT_EQ(p["effective"]["outcome"], "edited");
      EXPECT_EQ(p["effective"]["final_value"], json({{"step", 80}}));
    }
  EXPECT_TRUE(found);

  // A decision without a causation id is traced to its proposal by proposal_id; a correction without one to
  // the event it corrects; an outside causation id ends the chain.
  append("x", "ai.proposal.made", {{"proposal_id", "px"}, {"proposal_kind", "plan"}, {"skill", "s"}, {"gen_ai.request.model", "m"},
                                   {"input", "x"}, {"proposed_value", 1}},
         {{"causation_id", "ext-req-77"}});
  const Uuid dx = append("x", "human.decision.recorded", {{"proposal_id", "px"}, {"outcome", "rejected"}});
  const Uuid cx = append("x", "correction.recorded", {{"corrects_event_id", dx.to_string()}, {"kind", "retract"}, {"reason_text", "r"}});
  auto wx = ledger_why(*store_, *p_, cx);
  ASSERT_TRUE(wx.ok());
  const json jx = json::parse(*wx);
  ASSERT_EQ(jx["chain"].size(), 3u);
  EXPECT_EQ(jx["chain"][1]["caused_by"]["via"], "proposal_id");
  EXPECT_EQ(jx["chain"][2]["caused_by"]["via"], "corrects_event_id");
  EXPECT_EQ(jx["chain_stop"]["reason"], "unresolved");
  EXPECT_EQ(jx["chain_stop"]["reference"], "ext-req-77");
  EXPECT_TRUE(jx["correlation"].is_null());

  EXPECT_EQ(ledger_why(*store_, *p_, Uuid::generate_v7()).status().code(), ErrorCode::kNotFound);

  // A decision whose causation id comes from outside the store still leads to its proposal; feedback
  // without target_kind names a proposal (the vocabulary's default); a decision written under another
  // correlation still shows in the proposal's state.
  append("y", "ai.proposal.made", {{"proposal_id", "py"}, {"proposal_kind", "plan"}, {"skill", "s"}, {"gen_ai.request.model", "m"},
                                   {"input", "x"}, {"proposed_value", 1}},
         {{"correlation_id", "flow-y"}});
  const Uuid dy = append("y-review", "human.decision.recorded", {{"proposal_id", "py"}, {"outcome", "accepted"}, {"final_value", 1}},
                         {{"causation_id", "ticket-system-42"}, {"correlation_id", "review-queue"}});
  const Uuid fy = append("y", "feedback.given", {{"target", "py"}, {"name", "thumb"}, {"value", true}, {"source_kind", "end_user"}},
                         {{"correlation_id", "flow-y"}});
  auto wy = ledger_why(*store_, *p_, dy);
  ASSERT_TRUE(wy.ok());
  const json jy = json::parse(*wy);
  ASSERT_EQ(jy["chain"].size(), 2u);
  EXPECT_EQ(jy["chain"][1]["caused_by"]["via"], "proposal_id");
  EXPECT_EQ(jy["chain"][1]["caused_by"]["external_causation_id"], "ticket-system-42");
  auto wf = ledger_why(*store_, *p_, fy);
  ASSERT_TRUE(wf.ok());
  const json jf = json::parse(*wf);
  ASSERT_EQ(jf["chain"].size(), 2u);
  EXPECT_EQ(jf["chain"][1]["caused_by"]["via"], "target");
  ASSERT_EQ(jf["proposals"].size(), 1u);
  EXPECT_EQ(jf["proposals"][0]["effective"]["outcome"], "accepted");  // decided under "review-queue", not "flow-y"

  // The flow as known at past positions.
  auto at = [&](std::optional<uint64_t> pos) {
    auto c = ledger_correlation(*store_, *p_, "case-1", AsOf{pos, std::nullopt});
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return json::parse(*c);
  };
  auto p8 = [](const json& c) {
    for (const auto& p : c["proposals"])
      if (p["proposal_id"] == "p8") return p["effective"];
    return json();
  };
  EXPECT_FALSE(p8(at(decided_at - 1))["decided"].get<bool>());
  EXPECT_EQ(at(decided_at - 1)["count"], 19u);
  EXPECT_EQ(p8(at(decided_at))["outcome"], "edited");
  EXPECT_EQ(p8(at(amended_at))["outcome"], "accepted");  // the amendment, before its retraction
  EXPECT_EQ(p8(at(std::nullopt))["outcome"], "edited");  // now: the amendment is retracted
  EXPECT_EQ(at(amended_at)["events"].back()["corrected_by"].size(), 0u);
  EXPECT_EQ(at(std::nullopt)["corrections"].size(), 2u);
  // By time: after everything.
  auto by_time = ledger_correlation(*store_, *p_, "case-1", AsOf{std::nullopt, kClock * 2});
  ASSERT_TRUE(by_time.ok());
  EXPECT_EQ(json::parse(*by_time)["count"], 22u);
  auto before_all = ledger_correlation(*store_, *p_, "case-1", AsOf{std::nullopt, 1});
  ASSERT_TRUE(before_all.ok());
  EXPECT_EQ(json::parse(*before_all)["count"], 0u);
  EXPECT_EQ(ledger_correlation(*store_, *p_, "nope", AsOf{}).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(ledger_correlation(*store_, *p_, "case-1", AsOf{store_->head_position(), std::nullopt}).status().code(),
            ErrorCode::kInvalidArgument);
}

TEST_F(Queries, TheDemoIsDeterministicAndWritingItTwiceIsARetry) {
  const ledger::DemoOptions o{.seed = 5, .conversations = 30, .clock_ns = kClock};
  ledger::DemoGenerator a(o), b(o), c(ledger::DemoOptions{.seed = 6, .conversations = 30, .clock_ns = kClock});
  auto flat = [](ledger::DemoGenerator& g) {
    std::string out;
    for (;;) {
      auto batch = g.next_conversations(7);
      if (batch.empty()) break;
      for (const auto& ap : batch)
        for (const auto& e : ap.events) out += ap.stream + e.id->to_string() + e.type + e.metadata + e.data + "\n";
    }
    for (const auto& ap : g.corrections())
      for (const auto& e : ap.events) out += ap.stream + e.id->to_string() + e.type + e.metadata + e.data + "\n";
    return out;
  };
  const std::string ta = flat(a);
  EXPECT_EQ(ta, flat(b));
  EXPECT_NE(ta, flat(c));
  // Two models, two prompt versions per skill, every outcome.
  for (const char* s : {"acme-large", "acme-fast", "\"triage\"", "\"reply\"", "\"3\"", "\"4\"", "\"7\"", "\"8\"", "accepted", "edited",
                        "rejected", "expired", "feedback.given", "correction.recorded", "alternatives"})
    EXPECT_NE(ta.find(s), std::string::npos) << s;
  auto first = ledger::write_demo(*store_, o);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  const uint64_t head = store_->head_position();
  EXPECT_EQ(head, first->events);
  auto again = ledger::write_demo(*store_, o);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(store_->head_position(), head);
}

}  // namespace
}  // namespace cairn
