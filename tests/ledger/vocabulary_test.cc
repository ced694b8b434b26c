// The AI ledger's vocabulary (src/ledger/vocabulary.cc), checked through Store::append the way clients meet
// it: a minimal valid event of every type is accepted; every rule's violation (a required field missing, a
// wrong type, a value outside an enum, each conditional rule) is refused with kInvalidEvent whose message
// starts with the exact field path ("events[0].data.outcome: ..."), and nothing is written. Types outside
// the vocabulary are not checked.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/store.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using nlohmann::json;
using testing::json_event;
using testing::one;

// Minimal valid data of every ledger type. The decision names proposal "p-base" and the correction the event
// `corrects`; the fixture makes both exist.
json question() { return {{"question", "Which plan fits?"}}; }
json skill() { return {{"skill", "summarize"}}; }
json proposal(const std::string& id = "p-new") {
  return {{"proposal_id", id}, {"proposal_kind", "draft"}, {"skill", "reply"}, {"gen_ai.request.model", "m-1"},
          {"input", "the customer's mail"}, {"proposed_value", "Dear customer"}};
}
json decision(const std::string& proposal_id = "p-base") { return {{"proposal_id", proposal_id}, {"outcome", "rejected"}}; }
json feedback() {
  return {{"target", "conv-7"}, {"target_kind", "conversation"}, {"name", "helpful"}, {"value", 1},
          {"source_kind", "end_user"}};
}
json path_chosen() { return {{"choice", "b"}}; }
json correction(const std::string& corrects) {
  return {{"corrects_event_id", corrects}, {"kind", "retract"}, {"reason_text", "wrong customer"}};
}

bool starts_with_path(const std::string& message, const std::string& path) {
  return message.rfind(path + ":", 0) == 0;
}

class Vocabulary : public ::testing::Test {
 protected:
  void SetUp() override {
    s_ = *open_store(testing::small_options(dir_.path()));
    auto r = s_->append(one("seed-1", ExpectedRevision::any(),
                            {json_event("ai.proposal.made", proposal("p-base").dump()), json_event("note", "{}")}));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    auto read = s_->read_stream("seed-1", 0, Direction::kForward, 10);
    ASSERT_TRUE(read.ok());
    ASSERT_EQ(read->events.size(), 2u);
    corrects_ = read->events[1].id.to_string();
  }

  // Appends one event of `type` with this data (and metadata) to a fresh stream; expects success.
  void accepted(const std::string& type, const json& data, const std::string& metadata = "",
                const std::string& label = "") {
    const uint64_t head = s_->head_position();
    auto r = s_->append(one("ok-" + std::to_string(++n_), ExpectedRevision::any(), {json_event(type, data.dump(), metadata)}));
    ASSERT_TRUE(r.ok()) << type << " " << label << " " << data.dump() << ": " << r.status().to_string();
    EXPECT_EQ(s_->head_position(), head + 1) << label;
  }

  // Appends one event; expects kInvalidEvent naming `path` first, and nothing written.
  void refused(const std::string& type, const json& data, const std::string& path, const std::string& metadata = "",
               const std::string& label = "") {
    refused_raw(type, data.dump(), path, metadata, label);
  }
  void refused_raw(const std::string& type, const std::string& data, const std::string& path,
                   const std::string& metadata = "", const std::string& label = "") {
    const uint64_t head = s_->head_position();
    const std::string chain = s_->stats().chain_head_hex;
    auto r = s_->append(one("bad-" + std::to_string(++n_), ExpectedRevision::any(), {json_event(type, data, metadata)}));
    ASSERT_FALSE(r.ok()) << type << " " << label << " " << data << " was accepted";
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidEvent) << label << ": " << r.status().to_string();
    EXPECT_TRUE(starts_with_path(r.status().message(), path))
        << label << ": the message should name " << path << ": " << r.status().message();
    EXPECT_EQ(s_->head_position(), head) << label;
    EXPECT_EQ(s_->stats().chain_head_hex, chain) << label;
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> s_;
  std::string corrects_;
  int n_ = 0;
};

// One violation: a change of a valid event's data, and the field the error must name.
struct Case {
  std::string label;
  std::function<void(json&)> change;
  std::string path;  // after "events[0]."
};

void erase(json& j, const std::string& k) { j.erase(k); }

TEST_F(Vocabulary, EveryTypeAcceptsAMinimalEvent) {
  accepted("ai.question.asked", question());
  accepted("ai.skill.executed", skill());
  accepted("ai.proposal.made", proposal());
  accepted("human.decision.recorded", decision());
  accepted("feedback.given", feedback());
  accepted("ai.path.chosen", path_chosen());
  accepted("correction.recorded", correction(corrects_));
  EXPECT_EQ(s_->head_position(), 2u + 7u);
}

TEST_F(Vocabulary, FullEventsWithEveryOptionalFieldAreAccepted) {
  accepted("ai.question.asked", {{"question", "q"}, {"question_id", "q-1"}, {"channel", "chat"}});
  accepted("ai.skill.executed", {{"skill", "s"}, {"skill_version", "1.2"}, {"status", "ok"}, {"duration_ms", 12.5}});
  accepted("ai.skill.executed", {{"skill", "s"}, {"status", "error"}, {"error", "timeout"}, {"duration_ms", 0}});
  json p = proposal("p-full");
  p.erase("input");
  p["app.input_ref"] = "blob://in/1";  // the input by reference instead of inline
  p["proposal_kind"] = "tool_call";
  p["gen_ai.provider.name"] = "openai";
  p["gen_ai.response.model"] = "m-1-2025";
  p["gen_ai.response.id"] = "resp-1";
  p["app.model.version"] = "7";
  p["app.prompt.template_id"] = "tpl";
  p["app.prompt.template_version"] = "3";
  p["reasoning"] = "because";
  p["proposed_value"] = {{"to", "x"}, {"amount", 3}};  // any JSON value
  p["output_messages"] = json::array({{{"role", "assistant"}, {"content", "hi"}}});
  p["tool_calls"] = json::array({{{"name", "lookup"}, {"arguments", json::object()}}});
  p["alternatives"] = json::array({"a", 2});
  p["gen_ai.usage.input_tokens"] = 120;
  p["gen_ai.usage.output_tokens"] = 0;
  p["app.latency_ms"] = 812.5;
  p["app.cost"] = {{"currency", "EUR"}, {"amount", 0.0042}};
  accepted("ai.proposal.made", p);
  for (const char* kind : {"draft", "classification", "extraction", "plan", "tool_call", "other"}) {
    json q = proposal(std::string("p-kind-") + kind);
    q["proposal_kind"] = kind;
    accepted("ai.proposal.made", q, "", kind);
  }

  accepted("human.decision.recorded", {{"proposal_id", "p-kind-draft"}, {"outcome", "accepted"}, {"final_value", "Dear customer"}});
  accepted("human.decision.recorded",
           {{"proposal_id", "p-kind-plan"}, {"outcome", "edited"}, {"final_value", {{"to", "y"}}},
            {"reason_code", "tone"}, {"reason_text", "too formal"}, {"presented_at", "2026-01-02T03:04:05.123456789Z"}});
  accepted("human.decision.recorded", {{"proposal_id", "p-kind-other"}, {"outcome", "expired"}},
           R"({"actor":{"kind":"system","id":"expirer"}})");

  json f = feedback();
  for (json v : {json(0.5), json("good"), json(true), json(false)}) {
    f["value"] = v;
    accepted("feedback.given", f, "", v.dump());
  }
  accepted("feedback.given", {{"target", "p-full"}, {"name", "n"}, {"value", 1}, {"source_kind", "reviewer"}});  // default: a proposal
  accepted("feedback.given", {{"target", "p-full"}, {"target_kind", "proposal"}, {"name", "n"}, {"value", 1},
                              {"source_kind", "llm_judge"}, {"comment", "fine"}});
  accepted("feedback.given", {{"target", corrects_}, {"target_kind", "event"}, {"name", "n"}, {"value", "x"},
                              {"source_kind", "code"}});
  for (const char* sk : {"end_user", "reviewer", "llm_judge", "code", "implicit", "outcome"}) {
    json g = feedback();
    g["source_kind"] = sk;
    accepted("feedback.given", g, "", sk);
  }

  accepted("ai.path.chosen", {{"choice", "b"}, {"options", {"a", "b"}}, {"reason_text", "cheaper"}});
  // null counts as absent: optional fields may be null; a feedback value may be an empty string.
  accepted("ai.question.asked", {{"question", "q"}, {"channel", nullptr}, {"question_id", nullptr}});
  accepted("ai.path.chosen", {{"choice", "b"}, {"options", nullptr}});
  accepted("human.decision.recorded", {{"proposal_id", "p-kind-classification"}, {"outcome", "rejected"},
                                       {"final_value", nullptr}, {"reason_code", nullptr}});
  json empty_value = feedback();
  empty_value["value"] = "";
  accepted("feedback.given", empty_value);

  accepted("correction.recorded", {{"corrects_event_id", corrects_}, {"kind", "retract"}, {"reason_code", "dup"}});
  accepted("correction.recorded", {{"corrects_event_id", corrects_}, {"kind", "amend"}, {"replacement", {{"a", 1}}},
                                   {"reason_code", "typo"}, {"reason_text", "fixed"}});
}

TEST_F(Vocabulary, QuestionAndSkillRules) {
  const std::vector<Case> question_cases = {
      {"question missing", [](json& j) { erase(j, "question"); }, "data.question"},
      {"question null", [](json& j) { j["question"] = nullptr; }, "data.question"},
      {"question empty", [](json& j) { j["question"] = ""; }, "data.question"},
      {"question number", [](json& j) { j["question"] = 5; }, "data.question"},
      {"question object", [](json& j) { j["question"] = {{"text", "q"}}; }, "data.question"},
      {"question_id number", [](json& j) { j["question_id"] = 5; }, "data.question_id"},
      {"channel array", [](json& j) { j["channel"] = json::array(); }, "data.channel"},
  };
  for (const auto& c : question_cases) {
    json d = question();
    c.change(d);
    refused("ai.question.asked", d, "events[0]." + c.path, "", c.label);
  }
  const std::vector<Case> skill_cases = {
      {"skill missing", [](json& j) { erase(j, "skill"); }, "data.skill"},
      {"skill number", [](json& j) { j["skill"] = 1; }, "data.skill"},
      {"skill_version number", [](json& j) { j["skill_version"] = 1; }, "data.skill_version"},
      {"status outside enum", [](json& j) { j["status"] = "maybe"; }, "data.status"},
      {"status upper case", [](json& j) { j["status"] = "OK"; }, "data.status"},
      {"status bool", [](json& j) { j["status"] = true; }, "data.status"},
      {"duration string", [](json& j) { j["duration_ms"] = "12"; }, "data.duration_ms"},
      {"duration negative", [](json& j) { j["duration_ms"] = -1; }, "data.duration_ms"},
      {"duration negative double", [](json& j) { j["duration_ms"] = -0.5; }, "data.duration_ms"},
      {"error number", [](json& j) { j["error"] = 500; }, "data.error"},
  };
  for (const auto& c : skill_cases) {
    json d = skill();
    c.change(d);
    refused("ai.skill.executed", d, "events[0]." + c.path, "", c.label);
  }
}

TEST_F(Vocabulary, ProposalRules) {
  std::vector<Case> cases = {
      {"proposal_id missing", [](json& j) { erase(j, "proposal_id"); }, "data.proposal_id"},
      {"proposal_id number", [](json& j) { j["proposal_id"] = 7; }, "data.proposal_id"},
      {"proposal_kind missing", [](json& j) { erase(j, "proposal_kind"); }, "data.proposal_kind"},
      {"proposal_kind outside enum", [](json& j) { j["proposal_kind"] = "guess"; }, "data.proposal_kind"},
      {"proposal_kind number", [](json& j) { j["proposal_kind"] = 1; }, "data.proposal_kind"},
      {"skill missing", [](json& j) { erase(j, "skill"); }, "data.skill"},
      {"skill empty", [](json& j) { j["skill"] = ""; }, "data.skill"},
      {"model missing", [](json& j) { erase(j, "gen_ai.request.model"); }, "data.gen_ai.request.model"},
      {"model number", [](json& j) { j["gen_ai.request.model"] = 4; }, "data.gen_ai.request.model"},
      {"input and input_ref missing", [](json& j) { erase(j, "input"); }, "data.input"},
      {"input null", [](json& j) { j["input"] = nullptr; }, "data.input"},
      {"proposed_value missing", [](json& j) { erase(j, "proposed_value"); }, "data.proposed_value"},
      {"template version without its id", [](json& j) { j["app.prompt.template_version"] = "3"; }, "data.app.prompt.template_id"},
      {"output_messages object", [](json& j) { j["output_messages"] = json::object(); }, "data.output_messages"},
      {"output_messages item not object", [](json& j) { j["output_messages"] = {"hi"}; }, "data.output_messages[0]"},
      {"output_messages item without role",
       [](json& j) { j["output_messages"] = json::array({{{"role", "user"}}, {{"content", "x"}}}); },
       "data.output_messages[1].role"},
      {"tool_calls item without name", [](json& j) { j["tool_calls"] = json::array({json::object()}); }, "data.tool_calls[0].name"},
      {"tool_calls string", [](json& j) { j["tool_calls"] = "lookup"; }, "data.tool_calls"},
      {"alternatives object", [](json& j) { j["alternatives"] = json::object(); }, "data.alternatives"},
      {"input tokens double", [](json& j) { j["gen_ai.usage.input_tokens"] = 1.5; }, "data.gen_ai.usage.input_tokens"},
      {"input tokens negative", [](json& j) { j["gen_ai.usage.input_tokens"] = -3; }, "data.gen_ai.usage.input_tokens"},
      {"input tokens string", [](json& j) { j["gen_ai.usage.input_tokens"] = "3"; }, "data.gen_ai.usage.input_tokens"},
      {"output tokens double", [](json& j) { j["gen_ai.usage.output_tokens"] = 2.0; }, "data.gen_ai.usage.output_tokens"},
      {"latency string", [](json& j) { j["app.latency_ms"] = "fast"; }, "data.app.latency_ms"},
      {"latency negative", [](json& j) { j["app.latency_ms"] = -0.1; }, "data.app.latency_ms"},
      {"cost number", [](json& j) { j["app.cost"] = 0.3; }, "data.app.cost"},
      {"cost without currency", [](json& j) { j["app.cost"] = {{"amount", 1}}; }, "data.app.cost.currency"},
      {"cost without amount", [](json& j) { j["app.cost"] = {{"currency", "EUR"}}; }, "data.app.cost.amount"},
      {"cost amount negative", [](json& j) { j["app.cost"] = {{"currency", "EUR"}, {"amount", -1}}; }, "data.app.cost.amount"},
      {"cost amount string", [](json& j) { j["app.cost"] = {{"currency", "EUR"}, {"amount", "1"}}; }, "data.app.cost.amount"},
  };
  for (const char* k : {"gen_ai.provider.name", "gen_ai.response.model", "app.model.version", "app.prompt.template_id",
                        "app.prompt.template_version", "app.input_ref", "reasoning", "gen_ai.response.id"}) {
    cases.push_back({std::string(k) + " number", [k](json& j) {
                       j["app.prompt.template_id"] = "tpl";  // so that a template version alone is not the error
                       j[k] = 1;
                     },
                     std::string("data.") + k});
    cases.push_back({std::string(k) + " empty", [k](json& j) {
                       j["app.prompt.template_id"] = "tpl";
                       j[k] = "";
                     },
                     std::string("data.") + k});
  }
  for (const auto& c : cases) {
    json d = proposal("p-rule");
    c.change(d);
    refused("ai.proposal.made", d, "events[0]." + c.path, "", c.label);
  }
  // None of the refused ones made the proposal: it can still be made.
  accepted("ai.proposal.made", proposal("p-rule"));
}

TEST_F(Vocabulary, DecisionRules) {
  const std::vector<Case> cases = {
      {"proposal_id missing", [](json& j) { erase(j, "proposal_id"); }, "data.proposal_id"},
      {"proposal_id empty", [](json& j) { j["proposal_id"] = ""; }, "data.proposal_id"},
      {"outcome missing", [](json& j) { erase(j, "outcome"); }, "data.outcome"},
      {"outcome outside enum", [](json& j) { j["outcome"] = "maybe"; }, "data.outcome"},
      {"outcome number", [](json& j) { j["outcome"] = 1; }, "data.outcome"},
      {"accepted without final_value", [](json& j) { j["outcome"] = "accepted"; }, "data.final_value"},
      {"edited without final_value", [](json& j) { j["outcome"] = "edited"; }, "data.final_value"},
      {"accepted with null final_value",
       [](json& j) {
         j["outcome"] = "accepted";
         j["final_value"] = nullptr;
       },
       "data.final_value"},
      {"rejected with final_value", [](json& j) { j["final_value"] = "x"; }, "data.final_value"},
      {"reason_code number", [](json& j) { j["reason_code"] = 3; }, "data.reason_code"},
      {"reason_text empty", [](json& j) { j["reason_text"] = ""; }, "data.reason_text"},
      {"presented_at not a time", [](json& j) { j["presented_at"] = "yesterday"; }, "data.presented_at"},
      {"presented_at number", [](json& j) { j["presented_at"] = 1700000000; }, "data.presented_at"},
  };
  for (const auto& c : cases) {
    json d = decision();
    c.change(d);
    refused("human.decision.recorded", d, "events[0]." + c.path, "", c.label);
  }
  // expired: only the system records it, and it has no final value.
  json expired = decision();
  expired["outcome"] = "expired";
  refused("human.decision.recorded", expired, "events[0].data.outcome", "", "expired without an actor");
  refused("human.decision.recorded", expired, "events[0].data.outcome", R"({"actor":{"kind":"human","id":"ann"}})",
          "expired by a human");
  refused("human.decision.recorded", expired, "events[0].data.outcome", R"({"actor":{"kind":"service","id":"svc"}})",
          "expired by a service");
  refused("human.decision.recorded", expired, "events[0].data.outcome", R"({"correlation_id":"c"})",
          "expired, metadata without actor");
  json expired_with_value = expired;
  expired_with_value["final_value"] = "x";
  refused("human.decision.recorded", expired_with_value, "events[0].data.final_value",
          R"({"actor":{"kind":"system","id":"expirer"}})", "expired with a final value");
  // None of the refused ones decided p-base.
  accepted("human.decision.recorded", expired, R"({"actor":{"kind":"system","id":"expirer"}})");
}

TEST_F(Vocabulary, FeedbackRules) {
  const std::vector<Case> cases = {
      {"target missing", [](json& j) { erase(j, "target"); }, "data.target"},
      {"target number", [](json& j) { j["target"] = 5; }, "data.target"},
      {"target_kind outside enum", [](json& j) { j["target_kind"] = "user"; }, "data.target_kind"},
      {"target_kind empty", [](json& j) { j["target_kind"] = ""; }, "data.target_kind"},
      {"event target not a UUID", [](json& j) { j["target_kind"] = "event"; }, "data.target"},
      {"name missing", [](json& j) { erase(j, "name"); }, "data.name"},
      {"name number", [](json& j) { j["name"] = 1; }, "data.name"},
      {"value missing", [](json& j) { erase(j, "value"); }, "data.value"},
      {"value null", [](json& j) { j["value"] = nullptr; }, "data.value"},
      {"value object", [](json& j) { j["value"] = {{"score", 1}}; }, "data.value"},
      {"value array", [](json& j) { j["value"] = {1, 2}; }, "data.value"},
      {"source_kind missing", [](json& j) { erase(j, "source_kind"); }, "data.source_kind"},
      {"source_kind outside enum", [](json& j) { j["source_kind"] = "boss"; }, "data.source_kind"},
      {"comment number", [](json& j) { j["comment"] = 1; }, "data.comment"},
  };
  for (const auto& c : cases) {
    json d = feedback();
    c.change(d);
    refused("feedback.given", d, "events[0]." + c.path, "", c.label);
  }
}

TEST_F(Vocabulary, PathChosenRules) {
  const std::vector<Case> cases = {
      {"choice missing", [](json& j) { erase(j, "choice"); }, "data.choice"},
      {"choice number", [](json& j) { j["choice"] = 2; }, "data.choice"},
      {"choice not among options", [](json& j) { j["options"] = {"a", "c"}; }, "data.choice"},
      {"options empty", [](json& j) { j["options"] = json::array(); }, "data.choice"},
      {"options not an array", [](json& j) { j["options"] = "a,b"; }, "data.options"},
      {"options not strings", [](json& j) { j["options"] = {"b", 2}; }, "data.options"},
      {"reason_text number", [](json& j) { j["reason_text"] = 1; }, "data.reason_text"},
  };
  for (const auto& c : cases) {
    json d = path_chosen();
    c.change(d);
    refused("ai.path.chosen", d, "events[0]." + c.path, "", c.label);
  }
}

TEST_F(Vocabulary, CorrectionRules) {
  const std::vector<Case> cases = {
      {"corrects_event_id missing", [](json& j) { erase(j, "corrects_event_id"); }, "data.corrects_event_id"},
      {"corrects_event_id not a UUID", [](json& j) { j["corrects_event_id"] = "event-12"; }, "data.corrects_event_id"},
      {"corrects_event_id number", [](json& j) { j["corrects_event_id"] = 12; }, "data.corrects_event_id"},
      {"kind missing", [](json& j) { erase(j, "kind"); }, "data.kind"},
      {"kind outside enum", [](json& j) { j["kind"] = "delete"; }, "data.kind"},
      {"amend without replacement", [](json& j) { j["kind"] = "amend"; }, "data.replacement"},
      {"amend with an array replacement",
       [](json& j) {
         j["kind"] = "amend";
         j["replacement"] = {1, 2};
       },
       "data.replacement"},
      {"amend with a string replacement",
       [](json& j) {
         j["kind"] = "amend";
         j["replacement"] = "new";
       },
       "data.replacement"},
      {"retract with replacement", [](json& j) { j["replacement"] = {{"a", 1}}; }, "data.replacement"},
      {"no reason", [](json& j) { erase(j, "reason_text"); }, "data.reason_text"},
      {"reason_code number", [](json& j) { j["reason_code"] = 3; }, "data.reason_code"},
      {"reason_text empty", [](json& j) { j["reason_text"] = ""; }, "data.reason_text"},
  };
  for (const auto& c : cases) {
    json d = correction(corrects_);
    c.change(d);
    refused("correction.recorded", d, "events[0]." + c.path, "", c.label);
  }
}

TEST_F(Vocabulary, LedgerDataIsAJsonObject) {
  for (const char* type : {"ai.question.asked", "ai.skill.executed", "ai.proposal.made", "human.decision.recorded",
                           "feedback.given", "ai.path.chosen", "correction.recorded"}) {
    for (const char* data : {"[]", "\"text\"", "42", "null", "true"})
      refused_raw(type, data, "events[0].data", "", std::string(type) + " " + data);
    // Not JSON at all: application/octet-stream is refused for a ledger type.
    EventData bin;
    bin.type = type;
    bin.content_type = ContentType::kBinary;
    bin.data = "{\"question\":\"q\"}";
    const uint64_t head = s_->head_position();
    auto r = s_->append(one("bin-1", ExpectedRevision::any(), {bin}));
    ASSERT_FALSE(r.ok()) << type;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidEvent) << r.status().to_string();
    EXPECT_TRUE(starts_with_path(r.status().message(), "events[0].content_type")) << r.status().message();
    EXPECT_EQ(s_->head_position(), head);
  }
}

TEST_F(Vocabulary, TypesOutsideTheVocabularyAreNotChecked) {
  for (const char* type : {"ai.proposal.made.v2", "AI.PROPOSAL.MADE", "ai.proposal", "human.decision", "feedback",
                           "correction.recorded ", "x.ai.question.asked", "order.placed"}) {
    accepted(type, json::object(), "", type);
    accepted(type, {{"outcome", "maybe"}, {"proposal_id", 5}}, "", type);
  }
  // Binary content for a type outside the vocabulary is fine too.
  EventData bin;
  bin.type = "blob";
  bin.content_type = ContentType::kBinary;
  bin.data = std::string("\x00\x01", 2);
  EXPECT_TRUE(s_->append(one("bin-2", ExpectedRevision::any(), {bin})).ok());
}

TEST_F(Vocabulary, TheErrorNamesTheEventByIndexAndTheAppendIsAllOrNothing) {
  const uint64_t head = s_->head_position();
  json bad = decision();
  bad["outcome"] = "maybe";
  auto r = s_->append(one("mixed-1", ExpectedRevision::any(),
                          {json_event("note", "{}"), json_event("ai.question.asked", question().dump()),
                           json_event("human.decision.recorded", bad.dump())}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidEvent);
  EXPECT_TRUE(starts_with_path(r.status().message(), "events[2].data.outcome")) << r.status().message();
  EXPECT_EQ(s_->head_position(), head);
  EXPECT_EQ(s_->stream_info("mixed-1").status().code(), ErrorCode::kNotFound);

  // append_multi: "appends[i].events[j]...".
  json bad_feedback = feedback();
  bad_feedback["source_kind"] = "boss";
  r = s_->append_multi({one("multi-a", ExpectedRevision::any(), {json_event("ai.question.asked", question().dump())}),
                        one("multi-b", ExpectedRevision::any(),
                            {json_event("note", "{}"), json_event("feedback.given", bad_feedback.dump())})});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidEvent);
  EXPECT_TRUE(starts_with_path(r.status().message(), "appends[1].events[1].data.source_kind")) << r.status().message();
  EXPECT_EQ(s_->head_position(), head);
  json bad_proposal = proposal();
  bad_proposal["app.cost"] = {{"amount", 1}};
  r = s_->append_multi({one("multi-a", ExpectedRevision::any(), {json_event("ai.proposal.made", bad_proposal.dump())}),
                        one("multi-b", ExpectedRevision::any(), {json_event("note", "{}")})});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(starts_with_path(r.status().message(), "appends[0].events[0].data.app.cost.currency")) << r.status().message();
  EventData bin;
  bin.type = "ai.path.chosen";
  bin.content_type = ContentType::kBinary;
  bin.data = "x";
  r = s_->append_multi({one("multi-a", ExpectedRevision::any(), {json_event("note", "{}")}),
                        one("multi-b", ExpectedRevision::any(), {json_event("note", "{}"), json_event("note", "{}"), bin})});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidEvent);
  EXPECT_TRUE(starts_with_path(r.status().message(), "appends[1].events[2].content_type")) << r.status().message();
  EXPECT_EQ(s_->head_position(), head);

  // A valid multi-stream append of ledger events passes.
  r = s_->append_multi({one("multi-a", ExpectedRevision::any(), {json_event("ai.question.asked", question().dump())}),
                        one("multi-b", ExpectedRevision::any(), {json_event("feedback.given", feedback().dump())})});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(s_->head_position(), head + 2);
}

TEST_F(Vocabulary, GenericErrorsStayInvalidArgument) {
  // The generic rules come first and keep their code: bad JSON data of a ledger type, bad metadata.
  auto r = s_->append(one("g-1", ExpectedRevision::any(), {json_event("ai.question.asked", "{\"question\":")}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << r.status().to_string();
  r = s_->append(one("g-1", ExpectedRevision::any(),
                     {json_event("human.decision.recorded", decision().dump(), R"({"actor":{"kind":"robot"}})")}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << r.status().to_string();
  EXPECT_EQ(s_->head_position(), 2u);
}

}  // namespace
}  // namespace cairn
