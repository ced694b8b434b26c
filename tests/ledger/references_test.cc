// The AI ledger's reference rules (src/ledger/references.cc) through the Store API: a proposal is made once;
// a decision names a proposal made earlier and a proposal is decided once; corrections, feedback on an event
// and causation ids in UUID form name an earlier event; feedback on a proposal names one made earlier.
// Idempotent retries pass as replays, the index is rebuilt on open and by imports, concurrent deciders cannot
// both win, and a failed append lets its reservations go.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/store.h"
#include "base/file.h"
#include "runtime/compose.h"
#include "store/embedded_store.h"
#include "store/store_helpers.h"
#include "testing/gate_fs.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using nlohmann::json;
using testing::json_event;
using testing::one;
using testing::TempDir;

EventData proposal(const std::string& id, std::optional<Uuid> event_id = std::nullopt) {
  json d = {{"proposal_id", id}, {"proposal_kind", "classification"}, {"skill", "triage"},
            {"gen_ai.request.model", "m-1"}, {"input", "ticket 7"}, {"proposed_value", "billing"}};
  EventData e = json_event("ai.proposal.made", d.dump());
  e.id = event_id;
  return e;
}
EventData decision(const std::string& proposal_id, std::optional<Uuid> event_id = std::nullopt,
                   const std::string& outcome = "accepted") {
  json d = {{"proposal_id", proposal_id}, {"outcome", outcome}};
  if (outcome == "accepted" || outcome == "edited") d["final_value"] = "billing";
  EventData e = json_event("human.decision.recorded", d.dump(), R"({"actor":{"kind":"human","id":"ann"}})");
  e.id = event_id;
  return e;
}
EventData correction(const Uuid& corrects) {
  // An amendment carries the whole new data of the corrected event (here: a decision on p-1).
  json d = {{"corrects_event_id", corrects.to_string()},
            {"kind", "amend"},
            {"replacement", {{"proposal_id", "p-1"}, {"outcome", "rejected"}}},
            {"reason_text", "changed my mind"}};
  return json_event("correction.recorded", d.dump());
}
EventData feedback(const std::string& target, const std::string& kind = "") {
  json d = {{"target", target}, {"name", "correct"}, {"value", true}, {"source_kind", "reviewer"}};
  if (!kind.empty()) d["target_kind"] = kind;
  return json_event("feedback.given", d.dump());
}
EventData with_id(EventData e, const Uuid& id) {
  e.id = id;
  return e;
}
EventData caused_by(EventData e, const std::string& causation) {
  e.metadata = json{{"causation_id", causation}}.dump();
  return e;
}

bool starts_with_path(const std::string& message, const std::string& path) { return message.rfind(path + ":", 0) == 0; }

std::unique_ptr<Store> open_ok(const EmbeddedOptions& o) {
  auto s = open_store(o);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  return s.ok() ? std::move(*s) : nullptr;
}

// The id of the last event of a stream.
Uuid last_id(Store& s, const std::string& stream) {
  auto page = s.read_stream(stream, std::nullopt, Direction::kBackward, 1);
  EXPECT_TRUE(page.ok()) << page.status().to_string();
  return page.ok() && !page->events.empty() ? page->events[0].id : Uuid{};
}

// Expects kInvalidEvent naming `path` first and nothing written.
void expect_refused(Store& s, const Result<AppendResult>& r, uint64_t head, const std::string& path,
                    const std::string& mentions = "") {
  ASSERT_FALSE(r.ok()) << "accepted; expected refusal at " << path;
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidEvent) << r.status().to_string();
  EXPECT_TRUE(starts_with_path(r.status().message(), path)) << "expected " << path << ": " << r.status().message();
  if (!mentions.empty()) {
    EXPECT_NE(r.status().message().find(mentions), std::string::npos) << r.status().message();
  }
  EXPECT_EQ(s.head_position(), head);
}

class References : public ::testing::Test {
 protected:
  void SetUp() override { s_ = open_ok(testing::small_options(dir_.path())); }
  Result<AppendResult> add(const std::string& stream, std::vector<EventData> events,
                           ExpectedRevision expected = ExpectedRevision::any()) {
    return s_->append(one(stream, expected, std::move(events)));
  }
  void reopen() {
    ASSERT_TRUE(s_->close().ok());
    s_.reset();
    s_ = open_ok(testing::small_options(dir_.path()));
    ASSERT_NE(s_, nullptr);
  }
  TempDir dir_;
  std::unique_ptr<Store> s_;
};

TEST_F(References, ADecisionNeedsAnEarlierProposal) {
  auto r = add("d-1", {decision("p-1")});
  expect_refused(*s_, r, 0, "events[0].data.proposal_id", "p-1");
  ASSERT_TRUE(add("p-1", {proposal("p-1")}).ok());
  r = add("d-1", {decision("p-1")});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(s_->head_position(), 2u);
}

TEST_F(References, ProposalAndDecisionInOneAppendInOrder) {
  auto r = add("conv-1", {json_event("ai.question.asked", R"({"question":"q"})"), proposal("p-1"), decision("p-1")});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // Decision first: refused, naming the decision.
  r = add("conv-2", {json_event("note", "{}"), decision("p-2"), proposal("p-2")});
  expect_refused(*s_, r, 3, "events[1].data.proposal_id", "p-2");
  // The refused append made nothing: p-2 can be made now, and decided.
  ASSERT_TRUE(add("conv-2", {proposal("p-2")}).ok());
  ASSERT_TRUE(add("conv-2", {decision("p-2")}).ok());
  // Across streams of one append_multi, order counts the same way.
  r = s_->append_multi({one("m-a", ExpectedRevision::any(), {proposal("p-3")}),
                        one("m-b", ExpectedRevision::any(), {decision("p-3")})});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const uint64_t head = s_->head_position();
  r = s_->append_multi({one("m-a", ExpectedRevision::any(), {decision("p-4")}),
                        one("m-b", ExpectedRevision::any(), {proposal("p-4")})});
  expect_refused(*s_, r, head, "appends[0].events[0].data.proposal_id", "p-4");
  // Two decisions of one proposal in the same append.
  r = add("conv-5", {proposal("p-5"), decision("p-5"), decision("p-5", std::nullopt, "rejected")});
  expect_refused(*s_, r, head, "events[2].data.proposal_id", "correction.recorded");
}

TEST_F(References, AProposalIsMadeOnce) {
  ASSERT_TRUE(add("p-1", {proposal("p-1")}).ok());
  auto r = add("p-1-again", {proposal("p-1")});
  expect_refused(*s_, r, 1, "events[0].data.proposal_id", "p-1");
  r = add("p-2", {proposal("p-2"), proposal("p-2")});
  expect_refused(*s_, r, 1, "events[1].data.proposal_id", "p-2");
  r = s_->append_multi({one("m-a", ExpectedRevision::any(), {proposal("p-3")}),
                        one("m-b", ExpectedRevision::any(), {proposal("p-3")})});
  expect_refused(*s_, r, 1, "appends[1].events[0].data.proposal_id", "p-3");
  // None of them made p-2 or p-3.
  ASSERT_TRUE(add("p-2", {proposal("p-2")}).ok());
  ASSERT_TRUE(add("p-3", {proposal("p-3")}).ok());
}

TEST_F(References, AProposalIsDecidedOnce) {
  ASSERT_TRUE(add("p-1", {proposal("p-1")}).ok());
  ASSERT_TRUE(add("d-1", {decision("p-1")}).ok());
  for (const char* outcome : {"accepted", "edited", "rejected"}) {
    auto r = add("d-1", {decision("p-1", std::nullopt, outcome)});
    expect_refused(*s_, r, 2, "events[0].data.proposal_id", "correction.recorded");
  }
  // An expired decision by the system is a decision too.
  EventData expired = decision("p-1", std::nullopt, "expired");
  expired.metadata = R"({"actor":{"kind":"system","id":"expirer"}})";
  expect_refused(*s_, add("d-1", {expired}), 2, "events[0].data.proposal_id", "decided already");
  // The change of mind is a correction naming the decision: that passes.
  auto r = add("d-1", {correction(last_id(*s_, "d-1"))});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
}

// An amendment's replacement is valid data of the corrected event's type, and keeps its proposal.
TEST_F(References, AnAmendmentIsValidDataOfTheCorrectedType) {
  ASSERT_TRUE(add("p-1", {proposal("p-1")}).ok());
  ASSERT_TRUE(add("p-2", {proposal("p-2")}).ok());
  ASSERT_TRUE(add("d-1", {decision("p-1")}).ok());
  const Uuid d1 = last_id(*s_, "d-1");
  auto amend = [&](json replacement) {
    json d = {{"corrects_event_id", d1.to_string()}, {"kind", "amend"}, {"replacement", replacement},
              {"reason_text", "changed my mind"}};
    return json_event("correction.recorded", d.dump());
  };
  expect_refused(*s_, add("d-1", {amend({{"proposal_id", "p-1"}})}), 3, "events[0].data.replacement.outcome");
  expect_refused(*s_, add("d-1", {amend({{"proposal_id", "p-1"}, {"outcome", "edited"}})}), 3,
                 "events[0].data.replacement.final_value");
  expect_refused(*s_, add("d-1", {amend({{"proposal_id", "p-2"}, {"outcome", "rejected"}})}), 3,
                 "events[0].data.replacement.proposal_id", "'p-1'");
  auto r = add("d-1", {amend({{"proposal_id", "p-1"}, {"outcome", "edited"}, {"final_value", "better"}})});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // The corrected decision earlier in the same append is found there.
  const Uuid d3 = Uuid::generate_v7();
  ASSERT_TRUE(add("p-3", {proposal("p-3")}).ok());
  json bad = {{"corrects_event_id", d3.to_string()}, {"kind", "amend"}, {"replacement", {{"proposal_id", "p-3"}}},
              {"reason_text", "x"}};
  expect_refused(*s_, add("d-3", {with_id(decision("p-3"), d3), json_event("correction.recorded", bad.dump())}), 5,
                 "events[1].data.replacement.outcome");
}

TEST_F(References, ARetryIsAReplay) {
  const Uuid pid = Uuid::generate_v7(), did = Uuid::generate_v7();
  auto r = add("p-1", {proposal("p-1", pid)});
  ASSERT_TRUE(r.ok());
  auto again = add("p-1", {proposal("p-1", pid)});
  ASSERT_TRUE(again.ok()) << "a retried proposal: " << again.status().to_string();
  EXPECT_TRUE(again->replayed);
  r = add("d-1", {decision("p-1", did)});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FALSE(r->replayed);
  for (int i = 0; i < 3; ++i) {
    again = add("d-1", {decision("p-1", did)});
    ASSERT_TRUE(again.ok()) << "a retried decision: " << again.status().to_string();
    EXPECT_TRUE(again->replayed);
    EXPECT_EQ(again->streams[0].first_position, r->streams[0].first_position);
  }
  EXPECT_EQ(s_->head_position(), 2u);
  // A different decision (another id) is still refused.
  expect_refused(*s_, add("d-1", {decision("p-1")}), 2, "events[0].data.proposal_id", "correction.recorded");

  // A retry of an append that made and decided a proposal together.
  const Uuid p2 = Uuid::generate_v7(), d2 = Uuid::generate_v7();
  r = add("pd-2", {proposal("p-2", p2), decision("p-2", d2)});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  again = add("pd-2", {proposal("p-2", p2), decision("p-2", d2)});
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(s_->head_position(), 4u);

  // Still replays after a restart (the index knows which event decided).
  reopen();
  again = add("d-1", {decision("p-1", did)});
  ASSERT_TRUE(again.ok()) << "a retried decision after reopen: " << again.status().to_string();
  EXPECT_TRUE(again->replayed);
  again = add("pd-2", {proposal("p-2", p2), decision("p-2", d2)});
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(s_->head_position(), 4u);
}

TEST_F(References, TheRulesHoldAfterReopen) {
  ASSERT_TRUE(add("p-1", {proposal("p-1")}).ok());
  ASSERT_TRUE(add("d-1", {decision("p-1")}).ok());
  ASSERT_TRUE(add("p-2", {proposal("p-2")}).ok());
  reopen();
  expect_refused(*s_, add("d-1", {decision("p-1")}), 3, "events[0].data.proposal_id", "correction.recorded");
  expect_refused(*s_, add("p-1", {proposal("p-1")}), 3, "events[0].data.proposal_id", "made already");
  expect_refused(*s_, add("p-2", {proposal("p-2")}), 3, "events[0].data.proposal_id", "made already");
  auto r = add("d-2", {decision("p-2")});  // made before the restart, decided after
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(add("fb", {feedback("p-2")}).ok());
  // Once more, with the decision of p-2 from the previous run.
  reopen();
  expect_refused(*s_, add("d-2", {decision("p-2")}), 5, "events[0].data.proposal_id", "correction.recorded");
  expect_refused(*s_, add("d-3", {decision("p-3")}), 5, "events[0].data.proposal_id", "p-3");
}

TEST_F(References, TheIndexIsRebuiltFromManyProposals) {
  // More proposals than one page of the rebuild (10'000 events per page).
  const int n = 10'050;
  std::vector<EventData> batch;
  for (int i = 0; i < n; ++i) {
    batch.push_back(proposal("bulk-" + std::to_string(i)));
    if (batch.size() == 2000 || i == n - 1) {
      auto r = add("bulk", std::move(batch));
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      batch.clear();
    }
  }
  ASSERT_TRUE(add("d", {decision("bulk-0"), decision("bulk-10049")}).ok());
  reopen();
  const uint64_t head = s_->head_position();
  ASSERT_EQ(head, static_cast<uint64_t>(n) + 2);
  expect_refused(*s_, add("x", {proposal("bulk-10040")}), head, "events[0].data.proposal_id", "made already");
  expect_refused(*s_, add("x", {proposal("bulk-3")}), head, "events[0].data.proposal_id", "made already");
  expect_refused(*s_, add("x", {decision("bulk-10049")}), head, "events[0].data.proposal_id", "decided already");
  expect_refused(*s_, add("x", {decision("bulk-0")}), head, "events[0].data.proposal_id", "decided already");
  auto r = add("x", {decision("bulk-10030"), decision("bulk-9999"), decision("bulk-5")});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
}

TEST_F(References, CorrectionsNameAnEarlierEvent) {
  ASSERT_TRUE(add("s-1", {json_event("note", "{}")}).ok());
  const Uuid earlier = last_id(*s_, "s-1");
  const Uuid unknown = Uuid::generate_v7();
  expect_refused(*s_, add("c-1", {correction(unknown)}), 1, "events[0].data.corrects_event_id", unknown.to_string());
  auto r = add("c-1", {correction(earlier)});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // An event earlier in the same append.
  const Uuid here = Uuid::generate_v7();
  r = add("c-2", {with_id(json_event("note", "{}"), here), correction(here)});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // ... but not a later one, nor itself.
  const Uuid later = Uuid::generate_v7();
  expect_refused(*s_, add("c-3", {correction(later), with_id(json_event("note", "{}"), later)}), 4,
                 "events[0].data.corrects_event_id");
  const Uuid self = Uuid::generate_v7();
  expect_refused(*s_, add("c-3", {with_id(correction(self), self)}), 4, "events[0].data.corrects_event_id");
  // In append_multi, an event of an earlier stream append counts as earlier.
  const Uuid other = Uuid::generate_v7();
  r = s_->append_multi({one("m-a", ExpectedRevision::any(), {with_id(json_event("note", "{}"), other)}),
                        one("m-b", ExpectedRevision::any(), {correction(other)})});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const Uuid other2 = Uuid::generate_v7();
  r = s_->append_multi({one("m-a", ExpectedRevision::any(), {correction(other2)}),
                        one("m-b", ExpectedRevision::any(), {with_id(json_event("note", "{}"), other2)})});
  expect_refused(*s_, r, 6, "appends[0].events[0].data.corrects_event_id");
}

TEST_F(References, CausationIdsInUuidFormNameAnEvent) {
  ASSERT_TRUE(add("s-1", {json_event("note", "{}")}).ok());
  const Uuid earlier = last_id(*s_, "s-1");
  const Uuid missing = Uuid::generate_v7();
  // Any type, ledger or not.
  expect_refused(*s_, add("s-2", {caused_by(json_event("order.placed", "{}"), missing.to_string())}), 1,
                 "events[0].metadata.causation_id", missing.to_string());
  expect_refused(*s_, add("s-2", {caused_by(json_event("ai.question.asked", R"({"question":"q"})"), missing.to_string())}),
                 1, "events[0].metadata.causation_id");
  expect_refused(*s_, add("s-2", {json_event("note", "{}"), caused_by(json_event("note", "{}"), missing.to_string())}), 1,
                 "events[1].metadata.causation_id");
  // Upper case is a UUID too.
  std::string upper = missing.to_string();
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  expect_refused(*s_, add("s-2", {caused_by(json_event("note", "{}"), upper)}), 1, "events[0].metadata.causation_id");

  ASSERT_TRUE(add("s-2", {caused_by(json_event("order.placed", "{}"), earlier.to_string())}).ok());
  ASSERT_TRUE(add("s-2", {caused_by(json_event("ai.question.asked", R"({"question":"q"})"), earlier.to_string())}).ok());
  // Not a UUID: not checked.
  for (const char* c : {"cmd-42", "", "12345678-1234-1234-1234-12345678901z", "not a uuid at all"})
    ASSERT_TRUE(add("s-3", {caused_by(json_event("note", "{}"), c)}).ok()) << c;
  // Earlier in the same append.
  const Uuid here = Uuid::generate_v7();
  ASSERT_TRUE(add("s-4", {with_id(json_event("note", "{}"), here), caused_by(json_event("note", "{}"), here.to_string())}).ok());
  const uint64_t head = s_->head_position();
  const Uuid later = Uuid::generate_v7();
  expect_refused(*s_, add("s-4", {caused_by(json_event("note", "{}"), later.to_string()), with_id(json_event("note", "{}"), later)}),
                 head, "events[0].metadata.causation_id");
  // After a restart the durable event is still found.
  reopen();
  ASSERT_TRUE(add("s-5", {caused_by(json_event("note", "{}"), earlier.to_string())}).ok());
  expect_refused(*s_, add("s-5", {caused_by(json_event("note", "{}"), missing.to_string())}), head + 1,
                 "events[0].metadata.causation_id");
}

TEST_F(References, FeedbackNamesWhatExists) {
  // On a proposal (the default target kind, and explicitly).
  expect_refused(*s_, add("f-1", {feedback("p-1")}), 0, "events[0].data.target", "p-1");
  expect_refused(*s_, add("f-1", {feedback("p-1", "proposal")}), 0, "events[0].data.target", "p-1");
  ASSERT_TRUE(add("p-1", {proposal("p-1")}).ok());
  ASSERT_TRUE(add("f-1", {feedback("p-1")}).ok());
  ASSERT_TRUE(add("f-1", {feedback("p-1", "proposal")}).ok());
  ASSERT_TRUE(add("f-2", {proposal("p-2"), feedback("p-2")}).ok());  // made earlier in the same append
  expect_refused(*s_, add("f-3", {feedback("p-3"), proposal("p-3")}), 5, "events[0].data.target");
  // On an event.
  const Uuid missing = Uuid::generate_v7();
  expect_refused(*s_, add("f-4", {feedback(missing.to_string(), "event")}), 5, "events[0].data.target",
                 missing.to_string());
  const Uuid existing = last_id(*s_, "p-1");
  ASSERT_TRUE(add("f-4", {feedback(existing.to_string(), "event")}).ok());
  // On a conversation: not checked.
  ASSERT_TRUE(add("f-5", {feedback("conv-never-seen", "conversation")}).ok());
  ASSERT_TRUE(add("f-5", {feedback(missing.to_string(), "conversation")}).ok());
  EXPECT_EQ(s_->head_position(), 8u);
}

TEST_F(References, ConcurrentDecidersOfOneProposalOnlyOneWins) {
  constexpr int kThreads = 8, kProposals = 40;
  for (int p = 0; p < kProposals; ++p) {
    const std::string pid = "race-" + std::to_string(p);
    ASSERT_TRUE(add("proposals", {proposal(pid)}).ok());
    std::latch start(kThreads);
    std::vector<Result<AppendResult>> results(kThreads, Status::invalid_argument("not run"));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        // Each thread its own stream: nothing but the ledger rule stands between them.
        results[t] = s_->append(one("decider-" + std::to_string(t), ExpectedRevision::any(), {decision(pid)}));
      });
    for (auto& th : threads) th.join();
    int ok = 0, refused = 0;
    for (const auto& r : results) {
      if (r.ok()) ++ok;
      else if (r.status().code() == ErrorCode::kInvalidEvent) ++refused;
      else ADD_FAILURE() << r.status().to_string();
    }
    EXPECT_EQ(ok, 1) << pid;
    EXPECT_EQ(refused, kThreads - 1) << pid;
  }
  // The log agrees: exactly one decision per proposal.
  Filter f;
  f.types = {"human.decision.recorded"};
  auto all = s_->read_all(std::nullopt, Direction::kForward, 10'000, f);
  ASSERT_TRUE(all.ok());
  std::map<std::string, int> per;
  for (const auto& e : all->events) per[json::parse(e.data)["proposal_id"].get<std::string>()]++;
  EXPECT_EQ(per.size(), static_cast<size_t>(kProposals));
  for (const auto& [p, n] : per) EXPECT_EQ(n, 1) << p;
}

TEST_F(References, ConcurrentMakersOfOneProposalOnlyOneWins) {
  constexpr int kThreads = 8, kRounds = 40;
  for (int p = 0; p < kRounds; ++p) {
    const std::string pid = "made-" + std::to_string(p);
    std::latch start(kThreads);
    std::vector<Result<AppendResult>> results(kThreads, Status::invalid_argument("not run"));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        results[t] = s_->append(one("maker-" + std::to_string(t), ExpectedRevision::any(), {proposal(pid), decision(pid)}));
      });
    for (auto& th : threads) th.join();
    int ok = 0;
    for (const auto& r : results) {
      if (r.ok()) ++ok;
      else EXPECT_EQ(r.status().code(), ErrorCode::kInvalidEvent) << r.status().to_string();
    }
    EXPECT_EQ(ok, 1) << pid;
  }
  EXPECT_EQ(s_->head_position(), 2u * kRounds);
}

TEST_F(References, AFailedAppendLetsItsReservationsGo) {
  ASSERT_TRUE(add("p-1", {proposal("p-1")}).ok());
  ASSERT_TRUE(add("d-1", {json_event("note", "{}")}).ok());
  // Wrong expected revision on the decision's stream: refused after the reference check.
  auto r = add("d-1", {decision("p-1")}, ExpectedRevision::exact(7));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kWrongExpectedRevision) << r.status().to_string();
  r = add("d-1", {decision("p-1")}, ExpectedRevision::exact(0));
  ASSERT_TRUE(r.ok()) << "the failed decision still holds p-1: " << r.status().to_string();

  // The same for a proposal: its failed append does not make it.
  r = add("p-2", {proposal("p-2")}, ExpectedRevision::exists());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kWrongExpectedRevision);
  expect_refused(*s_, add("d-2", {decision("p-2")}), 3, "events[0].data.proposal_id", "p-2");
  r = add("p-2", {proposal("p-2")}, ExpectedRevision::no_stream());
  ASSERT_TRUE(r.ok()) << "the failed proposal still holds p-2: " << r.status().to_string();

  // A duplicate id refused by the writer lets go too.
  ASSERT_TRUE(add("p-3", {proposal("p-3")}).ok());
  const Uuid used = last_id(*s_, "p-1");
  r = add("d-3", {with_id(decision("p-3"), used)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kDuplicateEventId) << r.status().to_string();
  r = add("d-3", {decision("p-3")});
  ASSERT_TRUE(r.ok()) << r.status().to_string();

  // Many rounds: a failing decider never blocks the next one.
  for (int i = 0; i < 20; ++i) {
    const std::string pid = "loop-" + std::to_string(i);
    ASSERT_TRUE(add("loop", {proposal(pid)}).ok());
    ASSERT_FALSE(add("loop", {decision(pid)}, ExpectedRevision::no_stream()).ok());
    ASSERT_FALSE(s_->append_multi({one("loop-x", ExpectedRevision::any(), {decision(pid)}),
                                   one("loop", ExpectedRevision::exact(999), {json_event("note", "{}")})})
                     .ok());
    ASSERT_TRUE(add("loop", {decision(pid)}).ok()) << pid;
  }
}

// Imports a fresh export of a proposal p-imp (not decided) and a proposal p-dec with its decision into s, after
// `before` events of s's own; then checks that the rules see them, and still do after a restart.
void import_then_decide(Store& s, uint64_t before, const std::function<void()>& reopen) {
  TempDir src;
  std::vector<ImportEvent> events;
  std::vector<uint64_t> commits;
  {
    auto a = open_ok(testing::small_options(src.path()));
    ASSERT_TRUE(a->append(one("conv-1", ExpectedRevision::any(),
                              {json_event("ai.question.asked", R"({"question":"q"})"), proposal("p-imp")}))
                    .ok());
    ASSERT_TRUE(a->append(one("conv-2", ExpectedRevision::any(), {proposal("p-dec"), decision("p-dec")})).ok());
    ASSERT_TRUE(a->scan_stored(0, Filter{}, [&](const StoredEventView& v) {
                   ImportEvent e{std::string(v.stream), v.revision, v.id, std::string(v.type), v.recorded_ns,
                                 v.content_type, std::string(v.metadata), std::string(v.data), {}};
                   std::memcpy(e.digest_salt.data(), v.digest_salt.data(), 16);
                   events.push_back(e);
                   commits.push_back(v.commit_position);
                   return true;
                 }).ok());
  }
  ASSERT_EQ(events.size(), 4u);
  for (size_t i = 0; i < events.size();) {
    std::vector<ImportEvent> c;
    size_t j = i;
    while (j < events.size() && commits[j] == commits[i]) c.push_back(events[j++]);
    auto r = s.import_commit(c);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    i = j;
  }
  expect_refused(s, s.append(one("x", ExpectedRevision::any(), {proposal("p-imp")})), before + 4,
                 "events[0].data.proposal_id", "made already");
  expect_refused(s, s.append(one("x", ExpectedRevision::any(), {decision("p-dec")})), before + 4,
                 "events[0].data.proposal_id", "decided already");
  auto r = s.append(one("conv-1", ExpectedRevision::any(), {decision("p-imp")}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(s.append(one("conv-1", ExpectedRevision::any(), {feedback("p-imp")})).ok());
  reopen();
}

TEST_F(References, AnImportedProposalCanBeDecided) {
  // Into a fresh store: nothing of the ledger has been looked at yet.
  import_then_decide(*s_, 0, [&] { reopen(); });
  expect_refused(*s_, add("x", {decision("p-imp")}), 6, "events[0].data.proposal_id", "decided already");
  expect_refused(*s_, add("x", {proposal("p-dec")}), 6, "events[0].data.proposal_id", "made already");
}

TEST_F(References, AnImportAfterLedgerAppendsIsRecorded) {
  // The store has checked ledger events before the import: the import must be recorded as it goes.
  ASSERT_TRUE(add("own", {proposal("p-own"), decision("p-own")}).ok());
  expect_refused(*s_, add("own", {decision("p-own")}), 2, "events[0].data.proposal_id", "decided already");
  import_then_decide(*s_, 2, [&] { reopen(); });
  expect_refused(*s_, add("x", {decision("p-imp")}), 8, "events[0].data.proposal_id", "decided already");
  expect_refused(*s_, add("x", {proposal("p-own")}), 8, "events[0].data.proposal_id", "made already");
}

// Quoted client values are cut at 64 bytes (docs/ai-events.md, "Error messages"), proposal ids included: a
// proposal id of up to ~1 MiB is not echoed back whole. (At commit 656dffd references.cc quoted them whole.)
TEST_F(References, QuotedProposalIdsAreCutAt64Bytes) {
  const std::string long_id = "p-" + std::string(500, 'x');
  auto bounded = [&](const Result<AppendResult>& r, const char* what) {
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidEvent) << what;
    EXPECT_EQ(r.status().message().find(long_id), std::string::npos)
        << what << ": the whole " << long_id.size() << "-byte id is quoted (message of "
        << r.status().message().size() << " bytes)";
    EXPECT_NE(r.status().message().find(long_id.substr(0, 64)), std::string::npos) << what << ": " << r.status().message();
  };
  bounded(add("d", {decision(long_id)}), "decision before its proposal");
  bounded(add("f", {feedback(long_id)}), "feedback on an unknown proposal");
  ASSERT_TRUE(add("p", {proposal(long_id)}).ok());
  bounded(add("p", {proposal(long_id)}), "proposal made twice");
  ASSERT_TRUE(add("d", {decision(long_id)}).ok());
  bounded(add("d", {decision(long_id)}), "second decision");
}

// ---------------------------------------------------------------------------------------------------------
// A retry that races its original: the first append is written and waits for its fsync (held by the test),
// the same append is sent again meanwhile. The writer knows ids in flight (it answers such a retry as a
// replay once the original is durable), so the ledger's check must not refuse it as a second decision.


// Sends `events` to `stream` twice: the second while the first waits for its sync. Returns both answers.
std::pair<Result<AppendResult>, Result<AppendResult>> race_retry(const std::string& dir, const std::string& setup_pid,
                                                                 const std::string& stream,
                                                                 const std::vector<EventData>& events) {
  testing::GateFs fs;
  EmbeddedOptions o = testing::small_options(dir);
  o.durability = Durability::kFsync;  // the window: written, not yet synced
  o.index_memtable_events = 1'000'000;
  auto opened = runtime::open_embedded(o, &fs);
  EXPECT_TRUE(opened.ok()) << opened.status().to_string();
  auto& s = **opened;
  if (!setup_pid.empty()) {
    EXPECT_TRUE(s.append(one("proposals", ExpectedRevision::any(), {proposal(setup_pid)})).ok());
  }
  Result<AppendResult> first = Status::invalid_argument("not run"), second = Status::invalid_argument("not run");
  fs.arm(1, 0);  // the next log fsync waits for release()
  std::thread a([&] { first = s.append(one(stream, ExpectedRevision::any(), events)); });
  fs.wait([&] { return fs.blocked(); });  // the first append is written and in flight
  std::atomic<bool> second_done{false};
  std::thread b([&] {
    second = s.append(one(stream, ExpectedRevision::any(), events));
    second_done = true;
  });
  // Give the retry its chance to be checked while the original is in flight. (Only how long to wait: if the
  // retry had not run by then, it runs after the original is durable and passes either way.)
  for (int i = 0; i < 300 && !second_done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  fs.release();
  a.join();
  b.join();
  EXPECT_TRUE(s.close().ok());
  return {std::move(first), std::move(second)};
}

// An idempotent retry sent while its original append is still in flight passes the reference rules, and the
// writer answers it as a replay (references.h: "An idempotent retry (the same event id again) passes").
// (At commit 656dffd the retry was refused with 422 "decided already" / "made already"; f9a0f1b counts retries
// in flight, and docs/ai-events.md "Idempotent retries" says so.)
TEST(ReferencesRace, ARetryOfADecisionInFlightIsAReplayNotASecondDecision) {
  TempDir dir;
  const Uuid did = Uuid::generate_v7();
  auto [first, second] = race_retry(dir.path(), "p-race", "decide", {decision("p-race", did)});
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(second.ok()) << "the retry of the in-flight decision was refused: " << second.status().to_string();
  EXPECT_TRUE(second->replayed);
  EXPECT_EQ(second->streams[0].first_position, first->streams[0].first_position);
}

TEST(ReferencesRace, ARetryOfAProposalInFlightIsAReplay) {
  TempDir dir;
  const Uuid pid = Uuid::generate_v7();
  auto [first, second] = race_retry(dir.path(), "", "propose", {proposal("p-race", pid)});
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(second.ok()) << "the retry of the in-flight proposal was refused: " << second.status().to_string();
  EXPECT_TRUE(second->replayed);
}

// The retry of an append that makes and decides a proposal together, sent while the original is in flight:
// the decision must see the proposal retried in the same append (it was once refused with 422, "no proposal ...
// (its append is still in flight)").
TEST(ReferencesRace, ARetryOfAProposalAndItsDecisionInFlightIsAReplay) {
  TempDir dir;
  const Uuid pid = Uuid::generate_v7(), did = Uuid::generate_v7();
  auto [first, second] = race_retry(dir.path(), "", "both", {proposal("p-race", pid), decision("p-race", did)});
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(second.ok()) << "the retry was refused: " << second.status().to_string();
  EXPECT_TRUE(second->replayed);
}

// The same for feedback on a proposal retried in flight in the same append.
TEST(ReferencesRace, ARetryOfAProposalAndFeedbackOnItInFlightIsAReplay) {
  TempDir dir;
  const Uuid pid = Uuid::generate_v7(), fid = Uuid::generate_v7();
  auto [first, second] =
      race_retry(dir.path(), "", "both", {proposal("p-race", pid), with_id(feedback("p-race"), fid)});
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(second.ok()) << "the retry was refused: " << second.status().to_string();
  EXPECT_TRUE(second->replayed);
}

// Without a retry, a second decision racing an in-flight one is refused (the reservation holds it).
TEST(ReferencesRace, ASecondDecisionWhileTheFirstIsInFlightIsRefused) {
  TempDir dir;
  auto [first, second] = race_retry(dir.path(), "p-race", "decide", {decision("p-race")});
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::kInvalidEvent) << second.status().to_string();
}

}  // namespace
}  // namespace cairn
