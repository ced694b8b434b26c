// The AI ledger over HTTP and the CLI: an invalid ledger event is 422 invalid_event naming the field (and
// nothing is appended), a valid question -> proposal -> decision -> feedback flow is 201 each, and the offline
// `cairn append` exits 2 with the message.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
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

namespace {

std::string read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return "";
  std::string s;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  std::fclose(f);
  return s;
}

// The ledger's queries over HTTP: why, correlations, rates and the streamed export (whose bytes match its
// manifest and the offline CLI's file), the roles and scopes they need, and their errors.
TEST(LedgerHttp, WhyRatesCorrelationsAndExportsOverHttpAndTheCli) {
  cairn::testing::TempDir dir;
  const std::string data = dir.sub("data");
  // The demo history, written offline before the server starts.
  auto demo = cli_split("ai demo --seed 3 --conversations 60 --clock 2026-11-01T12:00:00Z --durability none --json --data " + data);
  ASSERT_EQ(demo.code, 0) << demo.err;
  const json summary = json::parse(demo.out);
  EXPECT_EQ(summary["conversations"], 60);
  Cairnd d(data, {"--durability", "none"});
  const int p = d.port();
  const std::string& k = d.key();

  // Rates: every decision counted once, by model.
  auto r = call(p, http::verb::get, "/v1/ai/rates?by=model&since=2000-01-01", k);
  ASSERT_EQ(r.status, 200) << r.body;
  uint64_t decided = 0;
  for (const auto& g : r.field("groups")) decided += g["decided"].get<uint64_t>();
  EXPECT_EQ(decided, summary["decisions"].get<uint64_t>() - summary["retractions"].get<uint64_t>());
  EXPECT_EQ(r.field("groups").size(), 2u);
  r = call(p, http::verb::get, "/v1/ai/rates?by=colour", k);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("by: 'colour'"), std::string::npos) << r.body;

  // Export: streamed rows hash to what the manifest says, at the manifest's position.
  r = call(p, http::verb::get, "/v1/ai/export/manifest?format=kto", k);
  ASSERT_EQ(r.status, 200) << r.body;
  const json manifest = r.j();
  const std::string as_of = std::to_string(manifest["as_of_position"].get<uint64_t>());
  auto rows = call(p, http::verb::get, "/v1/ai/export?format=kto&as_of=" + as_of, k);
  ASSERT_EQ(rows.status, 200);
  EXPECT_EQ(rows.body.size(), manifest["bytes"].get<uint64_t>());
  EXPECT_EQ(std::count(rows.body.begin(), rows.body.end(), '\n'), manifest["rows"].get<int64_t>());
  for (const auto& [q, field] : std::vector<std::pair<std::string, std::string>>{
           {"format=nope", "format"}, {"", "format"}, {"format=sft&as_of=999999999", "as_of"}, {"format=sft&since=yesterday", "since"},
           {"format=sft&colour=red", "colour"}}) {
    auto bad = call(p, http::verb::get, "/v1/ai/export?" + q, k);
    EXPECT_EQ(bad.status, 400) << q << " " << bad.body;
    EXPECT_NE(bad.body.find(field + ":"), std::string::npos) << q << " " << bad.body;
  }

  // The CLI against the server and offline give the same file; new events do not change it at that position.
  const std::string remote_out = dir.sub("remote.jsonl");
  auto e = cli_split("ai export --format kto --out " + remote_out + " --url http://127.0.0.1:" + std::to_string(p) + " --key " + k);
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(read_file(remote_out), rows.body);
  EXPECT_EQ(json::parse(read_file(remote_out + ".manifest.json")), manifest);
  auto more = call(p, http::verb::post, "/v1/streams/late", k, body({event("ai.question.asked", {{"question", "one more"}})}));
  ASSERT_EQ(more.status, 201) << more.body;

  // why: the last decision of conversation 0, with its chain back to the question.
  auto ev = call(p, http::verb::get, "/v1/streams/conv-3-0?direction=backward&limit=20", k);
  ASSERT_EQ(ev.status, 200);
  std::string decision_id;
  for (const auto& x : ev.field("events"))
    if (x["type"] == "human.decision.recorded" && decision_id.empty()) decision_id = x["id"];
  ASSERT_FALSE(decision_id.empty());
  r = call(p, http::verb::get, "/v1/why/" + decision_id, k);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.field("chain")[0]["type"], "ai.question.asked");
  EXPECT_EQ(r.field("chain").back()["id"], decision_id);
  EXPECT_EQ(r.field("correlation")["id"], "conv-3-0");
  EXPECT_EQ(call(p, http::verb::get, "/v1/why/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", k).status, 404);
  EXPECT_EQ(call(p, http::verb::get, "/v1/why/not-a-uuid", k).status, 400);
  EXPECT_EQ(call(p, http::verb::post, "/v1/why/" + decision_id, k, "{}").status, 405);
  auto tree = cli_split("why " + decision_id + " --url http://127.0.0.1:" + std::to_string(p) + " --key " + k);
  ASSERT_EQ(tree.code, 0) << tree.err;
  EXPECT_TRUE(contains(tree.out, "ai.question.asked")) << tree.out;
  EXPECT_TRUE(contains(tree.out, "<= this event")) << tree.out;
  EXPECT_TRUE(contains(tree.out, "correlation conv-3-0")) << tree.out;

  // Correlations as of a position and a time.
  r = call(p, http::verb::get, "/v1/correlations/conv-3-0?as_of=0", k);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.field("count"), 1);
  r = call(p, http::verb::get, "/v1/correlations/conv-3-0?as_of=2000-01-01T00:00:00Z", k);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.field("count"), 0);
  EXPECT_EQ(call(p, http::verb::get, "/v1/correlations/conv-3-0?as_of=soon", k).status, 400);
  EXPECT_EQ(call(p, http::verb::get, "/v1/correlations/nobody", k).status, 404);

  // Roles and scopes: a reader may ask, a key scoped to streams may not (the answers span streams).
  auto make_key = [&](const std::string& b) {
    auto kr = call(p, http::verb::post, "/v1/keys", k, b);
    EXPECT_EQ(kr.status, 201) << kr.body;
    return kr.j().value("key", std::string());
  };
  const std::string reader = make_key(R"({"role":"reader"})");
  const std::string scoped = make_key(R"({"role":"admin","streams":["conv-"]})");
  EXPECT_EQ(call(p, http::verb::get, "/v1/ai/rates", reader).status, 200);
  for (const std::string& t : std::vector<std::string>{"/v1/ai/rates", "/v1/why/" + decision_id, "/v1/correlations/conv-3-0", "/v1/ai/export?format=sft",
                              "/v1/ai/export/manifest?format=sft"}) {
    auto s = call(p, http::verb::get, t, scoped);
    EXPECT_EQ(s.status, 403) << t << " " << s.body;
    EXPECT_EQ(call(p, http::verb::get, t).status, 401) << t;
  }
  ASSERT_EQ(d.stop(SIGTERM), 0);

  // Offline, at the same position: the same bytes.
  const std::string local_out = dir.sub("local.jsonl");
  e = cli_split("ai export --format kto --as-of " + as_of + " --out " + local_out + " --data " + data);
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(read_file(local_out), rows.body);
  auto rates = cli_split("ai rates --by model,prompt_version --data " + data);
  ASSERT_EQ(rates.code, 0) << rates.err;
  EXPECT_TRUE(contains(rates.out, "acme-large-2026-10-01")) << rates.out;
  EXPECT_TRUE(contains(rates.out, "total")) << rates.out;
  auto bad = cli_split("ai export --format sft --out " + local_out + " --as-of 99999999 --data " + data);
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_TRUE(contains(bad.err, "as_of")) << bad.err;
}

}  // namespace
