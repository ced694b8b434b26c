// The decision fold (src/ledger/decisions.cc): proposals paired with decisions, corrections applied in log
// order (amend, retract, retract-then-amend, corrections of corrections, retracted proposals), deltas
// computed from what holds, and the checkpoint form restoring to the same record.
#include <gtest/gtest.h>

#include <deque>

#include <nlohmann/json.hpp>

#include "ledger/decisions.h"

namespace cairn::ledger {
namespace {

using nlohmann::json;

Uuid id_of(int n) {
  Uuid u;
  u.bytes[15] = static_cast<uint8_t>(n);
  u.bytes[14] = static_cast<uint8_t>(n >> 8);
  u.bytes[6] = 0x40;
  u.bytes[8] = 0x80;
  return u;
}

class Fold : public ::testing::Test {
 protected:
  // Feeds one event at the next position; the strings live as long as the test.
  std::string add(int id, const char* type, const json& data) {
    auto& d = datas_.emplace_back(data.dump());
    EventView v;
    v.position = next_++;
    v.stream = "s";
    v.id = id_of(id);
    v.type = type;
    v.recorded_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(v.position) * 1'000'000'000;
    v.data = d;
    return fold_.apply(v);
  }
  std::string proposal(int id, const std::string& pid, const json& value) {
    return add(id, "ai.proposal.made", {{"proposal_id", pid}, {"proposal_kind", "draft"}, {"skill", "reply"},
                                        {"gen_ai.request.model", "m"}, {"gen_ai.response.model", "m-1"},
                                        {"app.prompt.template_id", "t"}, {"app.prompt.template_version", "2"},
                                        {"input", "q"}, {"proposed_value", value}});
  }
  std::string decision(int id, const std::string& pid, const std::string& outcome, const json& final_value = nullptr) {
    json d = {{"proposal_id", pid}, {"outcome", outcome}};
    if (!final_value.is_null()) d["final_value"] = final_value;
    return add(id, "human.decision.recorded", d);
  }
  std::string amend(int id, int target, const json& replacement) {
    return add(id, "correction.recorded", {{"corrects_event_id", id_of(target).to_string()}, {"kind", "amend"},
                                           {"replacement", replacement}, {"reason_text", "r"}});
  }
  std::string retract(int id, int target) {
    return add(id, "correction.recorded", {{"corrects_event_id", id_of(target).to_string()}, {"kind", "retract"}, {"reason_text", "r"}});
  }
  const Effective& eff(const std::string& pid) { return fold_.find(pid)->effective; }
  const DecisionRecord& rec(const std::string& pid) { return *fold_.find(pid); }

  DecisionFold fold_{FoldOptions{.keep_inputs = true, .compute_deltas = true}};
  std::deque<std::string> datas_;
  uint64_t next_ = 0;
};

TEST_F(Fold, ProposalThenDecision) {
  EXPECT_EQ(proposal(1, "p", "a b c"), "p");
  EXPECT_FALSE(eff("p").decided);
  EXPECT_EQ(decision(2, "p", "edited", "a x c"), "p");
  const Effective& e = eff("p");
  ASSERT_TRUE(e.decided);
  EXPECT_EQ(rec("p").decision_now()->outcome, "edited");
  EXPECT_EQ(rec("p").decision_now()->final_value_json, "\"a x c\"");
  ASSERT_TRUE(e.delta);
  EXPECT_EQ(e.delta->edit_distance, 1u);
  EXPECT_EQ(rec("p").proposal_now().model(), "m-1");
  EXPECT_EQ(rec("p").proposal_now().prompt_version(), "t@2");
  EXPECT_EQ(fold_.find("p")->decision_ms(), 1000);  // one second between the two events, no presented_at
}

TEST_F(Fold, OtherTypesAndUnknownReferencesAreIgnored) {
  EXPECT_EQ(add(1, "ai.question.asked", {{"question", "q"}}), "");
  EXPECT_EQ(decision(2, "nope", "rejected"), "");  // no such proposal
  EXPECT_EQ(retract(3, 99), "");                    // corrects something that is not a decision's
  EXPECT_EQ(fold_.size(), 0u);
}

TEST_F(Fold, ASecondProposalOrDecisionIsNotThisRecords) {
  proposal(1, "p", "v");
  EXPECT_EQ(proposal(2, "p", "w"), "");
  decision(3, "p", "accepted", "v");
  EXPECT_EQ(decision(4, "p", "rejected"), "");
  EXPECT_EQ(rec("p").decision_now()->outcome, "accepted");
  EXPECT_EQ(rec("p").proposal_now().proposed_value_json, "\"v\"");
}

TEST_F(Fold, AnAmendmentReplacesTheDecision) {
  proposal(1, "p", json{{"q", "billing"}});
  decision(2, "p", "accepted", json{{"q", "billing"}});
  EXPECT_EQ(amend(3, 2, {{"proposal_id", "p"}, {"outcome", "edited"}, {"final_value", {{"q", "shipping"}}}}), "p");
  const Effective& e = eff("p");
  EXPECT_EQ(rec("p").decision_now()->outcome, "edited");
  EXPECT_EQ(e.applied, std::vector<Uuid>{id_of(3)});
  ASSERT_TRUE(e.delta);
  EXPECT_EQ(e.delta->changed_paths, std::vector<std::string>{"/q"});
}

TEST_F(Fold, ARetractionDropsTheDecisionAndALaterAmendmentBringsItBack) {
  proposal(1, "p", "v");
  decision(2, "p", "rejected");
  retract(3, 2);
  EXPECT_FALSE(eff("p").decided);
  EXPECT_TRUE(eff("p").decision_retracted);
  EXPECT_FALSE(eff("p").delta);
  amend(4, 2, {{"proposal_id", "p"}, {"outcome", "accepted"}, {"final_value", "v"}});
  EXPECT_TRUE(eff("p").decided);
  EXPECT_FALSE(eff("p").decision_retracted);
  EXPECT_EQ(rec("p").decision_now()->outcome, "accepted");
}

TEST_F(Fold, RetractingARetractionRestoresTheDecision) {
  proposal(1, "p", "v");
  decision(2, "p", "edited", "w");
  retract(3, 2);
  EXPECT_FALSE(eff("p").decided);
  EXPECT_EQ(retract(4, 3), "p");  // the correction of a correction belongs to the same record
  EXPECT_TRUE(eff("p").decided);
  EXPECT_EQ(rec("p").decision_now()->outcome, "edited");
  EXPECT_EQ(eff("p").applied, std::vector<Uuid>{});  // the retraction no longer applies
}

TEST_F(Fold, AmendingAnAmendmentChangesWhatItSays) {
  proposal(1, "p", "v");
  decision(2, "p", "accepted", "v");
  amend(3, 2, {{"proposal_id", "p"}, {"outcome", "edited"}, {"final_value", "v w"}});
  amend(4, 3, {{"corrects_event_id", id_of(2).to_string()}, {"kind", "amend"},
               {"replacement", {{"proposal_id", "p"}, {"outcome", "rejected"}}}, {"reason_text", "r"}});
  EXPECT_EQ(rec("p").decision_now()->outcome, "rejected");
  EXPECT_TRUE(rec("p").decision_now()->final_value_json.empty());
  // An amendment that turns the correction into a retraction.
  amend(5, 3, {{"corrects_event_id", id_of(2).to_string()}, {"kind", "retract"}, {"reason_text", "r"}});
  EXPECT_FALSE(eff("p").decided);
}

TEST_F(Fold, ARetractedProposalDropsOutAndAnAmendedOneChangesTheDelta) {
  proposal(1, "p", "a b");
  decision(2, "p", "edited", "a b c");
  EXPECT_EQ(eff("p").delta->edit_distance, 1u);
  amend(3, 1, {{"proposal_id", "p"}, {"proposal_kind", "draft"}, {"skill", "reply"}, {"gen_ai.request.model", "m2"},
               {"input", "q"}, {"proposed_value", "a b c"}});
  EXPECT_EQ(eff("p").delta->edit_distance, 0u);
  EXPECT_EQ(rec("p").proposal_now().model(), "m2");
  retract(4, 1);
  EXPECT_TRUE(eff("p").proposal_retracted);
  EXPECT_FALSE(eff("p").decided);
}

TEST_F(Fold, PresentedAtSetsTheTimeToDecision) {
  proposal(1, "p", "v");
  add(2, "human.decision.recorded",
      {{"proposal_id", "p"}, {"outcome", "accepted"}, {"final_value", "v"}, {"presented_at", "2023-11-14T22:13:00Z"}});
  // The decision was recorded at 1'700'000'001 s = 2023-11-14T22:13:21Z.
  EXPECT_EQ(fold_.find("p")->decision_ms(), 21'000);
}

TEST_F(Fold, TheCheckpointFormRestoresTheSameRecord) {
  proposal(1, "p", json{{"q", "billing"}, {"tags", {"a"}}});
  decision(2, "p", "edited", json{{"q", "billing"}, {"tags", {"a", "b"}}});
  amend(3, 2, {{"proposal_id", "p"}, {"outcome", "edited"}, {"final_value", {{"q", "x"}}}});
  retract(4, 3);
  proposal(5, "q", "text here");
  const std::string p = DecisionFold::record_json(*fold_.find("p"));
  const std::string q = DecisionFold::record_json(*fold_.find("q"));
  EXPECT_TRUE(json::parse(p).is_object());
  DecisionFold other(FoldOptions{.keep_inputs = true, .compute_deltas = true});
  ASSERT_TRUE(other.restore(p).ok());
  ASSERT_TRUE(other.restore(q).ok());
  EXPECT_EQ(DecisionFold::record_json(*other.find("p")), p);
  EXPECT_EQ(DecisionFold::record_json(*other.find("q")), q);
  // Restoring a record again replaces it (and its index entries): the same record, not a second one.
  ASSERT_TRUE(other.restore(p).ok());
  EXPECT_EQ(other.size(), 2u);
  EXPECT_EQ(DecisionFold::record_json(*other.find("p")), p);
  EXPECT_FALSE(other.restore("{}").ok());
  EXPECT_FALSE(other.restore("not json").ok());
}

TEST_F(Fold, RecordJsonLayout) {
  proposal(1, "p", "a b");
  decision(2, "p", "edited", "a c");
  const json j = json::parse(DecisionFold::record_json(*fold_.find("p")));
  EXPECT_EQ(j["proposal_id"], "p");
  EXPECT_EQ(j["proposal"]["id"], id_of(1).to_string());
  EXPECT_EQ(j["proposal"]["data"]["proposed_value"], "a b");
  EXPECT_EQ(j["decision"]["data"]["outcome"], "edited");
  EXPECT_EQ(j["effective"]["outcome"], "edited");
  EXPECT_EQ(j["effective"]["final_value"], "a c");
  EXPECT_EQ(j["effective"]["delta"]["format"], "words");
  EXPECT_EQ(j["effective"]["model"], "m-1");
  EXPECT_EQ(j["effective"]["prompt_version"], "t@2");
  EXPECT_EQ(j["effective"]["decision_ms"], 1000);
  EXPECT_TRUE(j["corrections"].empty());
}

}  // namespace
}  // namespace cairn::ledger
