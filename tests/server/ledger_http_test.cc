// The AI ledger over HTTP and the CLI: an invalid ledger event is 422 invalid_event naming the field (and
// nothing is appended), a valid question -> proposal -> decision -> feedback flow is 201 each, and the offline
// `cairn append` exits 2 with the message.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "harness.h"
#include "testing/temp_dir.h"

namespace {

using namespace cairn::server_test;

uint64_t head(int port) { return call(port, http::verb::get, "/health").j()["head_position"].get<uint64_t>(); }

json event(const std::string& type, json data, json metadata = nullptr) {
  json e = {{"type", type}, {"data", std::move(data)}};
  if (!metadata.is_null()) e["metadata"] = std::move(metadata);
  return e;
}
std::string body(std::vector<json> events) { return json{{"events", events}}.dump(); }

json proposal(const std::string& id) {
  return {{"proposal_id", id}, {"proposal_kind", "draft"}, {"skill", "reply"}, {"gen_ai.request.model", "m-1"},
          {"input", "mail"}, {"proposed_value", "Dear customer"}};
}

TEST(LedgerHttp, InvalidLedgerEventsAre422NamingTheFieldAndNothingIsAppended) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path(), {"--durability", "none"});
  const int p = d.port();
  const std::string& k = d.key();
  ASSERT_EQ(head(p), 0u);

  json no_kind = proposal("p-1");
  no_kind.erase("proposal_kind");
  struct Bad {
    std::string body;
    std::string field;
  };
  const std::vector<Bad> bads = {
      {body({event("ai.proposal.made", no_kind)}), "events[0].data.proposal_kind"},
      {body({event("ai.question.asked", json::object())}), "events[0].data.question"},
      {body({event("human.decision.recorded", {{"proposal_id", "p-1"}, {"outcome", "maybe"}})}), "events[0].data.outcome"},
      {body({event("note", json::object()), event("human.decision.recorded", {{"proposal_id", "p-1"}, {"outcome", "accepted"}})}),
       "events[1].data.final_value"},
      {body({event("feedback.given", {{"target", "c"}, {"target_kind", "conversation"}, {"name", "n"}, {"value", 1},
                                      {"source_kind", "boss"}})}),
       "events[0].data.source_kind"},
      {body({event("ai.path.chosen", {{"choice", "c"}, {"options", {"a", "b"}}})}), "events[0].data.choice"},
      {body({event("correction.recorded", {{"corrects_event_id", "x"}, {"kind", "retract"}, {"reason_text", "r"}})}),
       "events[0].data.corrects_event_id"},
      {body({event("ai.skill.executed", "just text")}), "events[0].data"},
      // References: a decision on a proposal never made, a correction of a missing event, a causation id.
      {body({event("human.decision.recorded", {{"proposal_id", "p-none"}, {"outcome", "rejected"}})}),
       "events[0].data.proposal_id"},
      {body({event("correction.recorded", {{"corrects_event_id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"},
                                           {"kind", "retract"}, {"reason_text", "r"}})}),
       "events[0].data.corrects_event_id"},
      {body({event("note", json::object(), {{"causation_id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}})}),
       "events[0].metadata.causation_id"},
  };
  for (const auto& b : bads) {
    auto r = call(p, http::verb::post, "/v1/streams/conv-1", k, b.body);
    EXPECT_EQ(r.status, 422) << b.body << " -> " << r.body;
    EXPECT_EQ(r.j()["error"]["code"], "invalid_event") << r.body;
    const std::string message = r.j()["error"]["message"].is_string() ? r.j()["error"]["message"].get<std::string>() : "";
    EXPECT_EQ(message.rfind(b.field + ":", 0), 0u) << "should name " << b.field << ": " << r.body;
  }
  // A binary ledger event.
  auto r = call(p, http::verb::post, "/v1/streams/conv-1", k,
                R"({"events":[{"type":"ai.question.asked","content_type":"application/octet-stream","data":"AAEC"}]})");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("events[0].content_type"), std::string::npos) << r.body;
  // In a transaction the field is named by its append.
  json tx = {{"appends",
              {{{"stream", "conv-1"}, {"events", {event("ai.question.asked", {{"question", "q"}})}}},
               {{"stream", "conv-2"}, {"events", {event("ai.question.asked", {{"question", 5}})}}}}}};
  r = call(p, http::verb::post, "/v1/transactions", k, tx.dump());
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.j()["error"]["code"], "invalid_event") << r.body;
  EXPECT_NE(r.body.find("appends[1].events[0].data.question"), std::string::npos) << r.body;

  EXPECT_EQ(head(p), 0u);
  EXPECT_EQ(call(p, http::verb::get, "/v1/streams/conv-1", k).status, 404);
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

TEST(LedgerHttp, AValidFlowIsCreatedAndASecondDecisionIsRefused) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path(), {"--durability", "none"});
  const int p = d.port();
  const std::string& k = d.key();
  const std::string s = "/v1/streams/conv-9";
  auto r = call(p, http::verb::post, s, k, body({event("ai.question.asked", {{"question", "Refund?"}, {"channel", "chat"}})}));
  ASSERT_EQ(r.status, 201) << r.body;
  r = call(p, http::verb::post, s, k, body({event("ai.proposal.made", proposal("p-9"))}));
  ASSERT_EQ(r.status, 201) << r.body;
  r = call(p, http::verb::get, s + "?direction=backward&limit=1", k);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string proposal_event = r.j()["events"][0]["id"];
  r = call(p, http::verb::post, s, k,
           body({event("human.decision.recorded", {{"proposal_id", "p-9"}, {"outcome", "edited"}, {"final_value", "Dear Ann"}},
                       {{"actor", {{"kind", "human"}, {"id", "ann"}}}, {"causation_id", proposal_event}})}));
  ASSERT_EQ(r.status, 201) << r.body;
  r = call(p, http::verb::post, s, k,
           body({event("feedback.given", {{"target", "p-9"}, {"name", "useful"}, {"value", true}, {"source_kind", "reviewer"}})}));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(head(p), 4u);

  // A second decision: 422, naming the proposal and pointing at correction.recorded.
  r = call(p, http::verb::post, s, k,
           body({event("human.decision.recorded", {{"proposal_id", "p-9"}, {"outcome", "rejected"}})}));
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.j()["error"]["code"], "invalid_event");
  EXPECT_NE(r.body.find("correction.recorded"), std::string::npos) << r.body;
  // A retry of the same decision (same id) is a replay: 200.
  const std::string did = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c";
  ASSERT_EQ(call(p, http::verb::post, s, k, body({event("ai.proposal.made", proposal("p-10"))})).status, 201);
  json dec = event("human.decision.recorded", {{"proposal_id", "p-10"}, {"outcome", "rejected"}});
  dec["id"] = did;
  r = call(p, http::verb::post, s, k, body({dec}));
  ASSERT_EQ(r.status, 201) << r.body;
  r = call(p, http::verb::post, s, k, body({dec}));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(head(p), 6u);
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

TEST(LedgerHttp, OfflineCliAppendOfAnInvalidLedgerEventExits2) {
  cairn::testing::TempDir dir;
  const std::string data = " --data " + shell_quote(dir.sub("data")) + " --durability none";
  auto r = cli_split("append conv-1 ai.proposal.made " +
                     shell_quote(R"({"proposal_id":"p-1","skill":"s","gen_ai.request.model":"m","input":"i","proposed_value":1})") +
                     data);
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "invalid_event")) << r.err;
  EXPECT_TRUE(contains(r.err, "events[0].data.proposal_kind")) << r.err;
  r = cli_split("append conv-1 human.decision.recorded " + shell_quote(R"({"proposal_id":"p-1","outcome":"accepted"})") + data);
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "events[0].data.final_value")) << r.err;
  // A reference error exits 2 too.
  r = cli_split("append conv-1 human.decision.recorded " + shell_quote(R"({"proposal_id":"p-1","outcome":"rejected"})") + data);
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_TRUE(contains(r.err, "events[0].data.proposal_id")) << r.err;
  // Nothing was appended.
  r = cli_split("read conv-1 --data " + shell_quote(dir.sub("data")));
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.out + r.err, "does not exist")) << r.out << r.err;
  // A valid one passes.
  r = cli_split("append conv-1 ai.question.asked " + shell_quote(R"({"question":"q"})") + data);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
}

}  // namespace
