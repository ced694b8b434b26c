// Personal data through the Store (docs/privacy.md): declared parts are sealed before anything is written
// (no plaintext in any file of the data directory, nor in what scan_stored and exports see), every read
// returns them opened, verify passes, a retry is a replay; after the subject's key is destroyed the reads
// show redaction markers, verify passes with the same chain head and other subjects read as before; an
// import of the stored events reproduces the chain. Without a key store such an append is refused.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "cairn/ledger.h"
#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "base/file.h"
#include "privacy/keystore.h"
#include "privacy_test_util.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using nlohmann::json;
using privacy_test::all_bytes_under;
using privacy_test::kMaster;
constexpr const char* kAnaEmail = "qx-ana-5521@example.org";
constexpr const char* kAnaStreet = "Impasse Wqrtz 9";
constexpr const char* kBoEmail = "vv-bo-0173@example.net";

class StorePrivacy : public ::testing::Test {
 protected:
  EmbeddedOptions options(bool with_keys = true) {
    EmbeddedOptions o;
    o.dir = dir_.sub("data");
    o.durability = Durability::kNone;
    if (with_keys) {
      o.key_store_dir = dir_.sub("keys");
      o.master_key = kMaster;
    }
    return o;
  }
  static EventData person(const std::string& email, const std::string& street, const std::string& subject) {
    EventData e;
    e.id = Uuid::generate_v7();
    e.type = "customer.registered";
    e.data = json{{"email", email}, {"address", {{"street", street}, {"city", "Lyon"}}}, {"plan", "pro"}}.dump();
    e.metadata = json{{"privacy", {{"subject", subject}, {"personal", {"/email", "/address/street"}}}}}.dump();
    return e;
  }
  testing::TempDir dir_;
};

TEST_F(StorePrivacy, WithoutAKeyStoreADeclarationIsRefusedAndNothingWritten) {
  auto s = open_store(options(false));
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  auto r = (*s)->append({"c-1", ExpectedRevision::any(), {person(kAnaEmail, kAnaStreet, "ana")}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("events[0].metadata.privacy"), std::string::npos) << r.status().to_string();
  EXPECT_EQ((*s)->head_position(), 0u);
  // A bad declaration is refused the same way, naming the field, with a key store too.
  ASSERT_TRUE((*s)->close().ok());
  auto k = open_store(options());
  ASSERT_TRUE(k.ok()) << k.status().to_string();
  EventData bad = person(kAnaEmail, kAnaStreet, "ana");
  bad.metadata = R"({"privacy":{"subject":"ana","personal":["/phone"]}})";
  auto rb = (*k)->append({"c-1", ExpectedRevision::any(), {bad}});
  ASSERT_FALSE(rb.ok());
  EXPECT_NE(rb.status().message().find("events[0].metadata.privacy.personal[0]"), std::string::npos) << rb.status().to_string();
  // The key store may not live inside the data directory.
  EmbeddedOptions inside = options();
  inside.key_store_dir = dir_.sub("data") + "/keys";
  ASSERT_TRUE((*k)->close().ok());
  EXPECT_EQ(open_store(inside).status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(StorePrivacy, SealedOnWriteOpenedOnReadRedactedAfterForget) {
  const EventData ana = person(kAnaEmail, kAnaStreet, "ana@example.org");
  const EventData bo = person(kBoEmail, "Rue Bo 1", "bo@example.org");
  std::string head_before;
  {
    auto s = open_store(options());
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    Store& st = **s;
    ASSERT_TRUE(st.append({"customer-1", ExpectedRevision::any(), {ana}}).ok());
    ASSERT_TRUE(st.append({"customer-2", ExpectedRevision::any(), {bo}}).ok());
    // Every read gives the data as written.
    auto e = st.read_event(*ana.id);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    EXPECT_EQ(e->data, ana.data);
    EXPECT_TRUE(e->sealed_parts);
    EXPECT_EQ(st.read_position(0)->data, ana.data);
    EXPECT_EQ(st.read_stream("customer-1", std::nullopt, Direction::kForward, 10)->events[0].data, ana.data);
    EXPECT_EQ(st.read_all(std::nullopt, Direction::kForward, 10, Filter{})->events[1].data, bo.data);
    std::vector<std::string> scanned, stored;
    ASSERT_TRUE(st.scan_all(0, Filter{}, [&](const EventView& v) { scanned.emplace_back(v.data); return true; }).ok());
    ASSERT_TRUE(st.scan_stored(0, Filter{}, [&](const StoredEventView& v) {
      stored.push_back(std::string(v.metadata) + std::string(v.data));
      return true;
    }).ok());
    EXPECT_EQ(scanned, (std::vector<std::string>{ana.data, bo.data}));
    for (const auto& s2 : stored) {
      for (const char* secret : {kAnaEmail, kAnaStreet, kBoEmail, "ana@example.org", "bo@example.org"})
        EXPECT_EQ(s2.find(secret), std::string::npos) << secret;
      EXPECT_NE(s2.find("$cairn.sealed"), std::string::npos);
      EXPECT_NE(s2.find("\"plan\":\"pro\""), std::string::npos);  // the rest stays in clear
    }
    auto sub = st.subscribe_all(0, Filter{});
    ASSERT_TRUE(sub.ok());
    auto batch = (*sub)->next(10, std::chrono::milliseconds(2000));
    ASSERT_TRUE(batch.ok());
    ASSERT_EQ(batch->size(), 2u);
    EXPECT_EQ((*batch)[0].data, ana.data);
    (*sub)->cancel();
    // A retry of the same event is a replay (sealing is deterministic).
    auto again = st.append({"customer-1", ExpectedRevision::any(), {ana}});
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    EXPECT_TRUE(again->replayed);
    head_before = st.stats().chain_head_hex;
    ASSERT_TRUE(st.close().ok());
  }
  // Nothing personal in any file of the data directory.
  const std::string bytes = all_bytes_under(dir_.sub("data"));
  for (const char* secret : {kAnaEmail, kAnaStreet, kBoEmail, "ana@example.org", "bo@example.org"})
    EXPECT_EQ(bytes.find(secret), std::string::npos) << secret;
  auto v = verify_log(dir_.sub("data"));
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_TRUE(v->ok);
  EXPECT_EQ(v->chain_head_hex, head_before);

  // Forget ana: her key is destroyed.
  {
    auto master = privacy::parse_master_key(kMaster);
    auto ks = privacy::KeyStore::open(dir_.sub("keys"), *master);
    ASSERT_TRUE(ks.ok());
    auto n = (*ks)->destroy((*ks)->subject_id("ana@example.org"));
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 1u);
  }
  auto s = open_store(options());
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  auto e = (*s)->read_event(*ana.id);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  const json j = json::parse(e->data);
  EXPECT_EQ(j["email"], json::parse(R"({"$cairn.redacted":{"reason":"subject forgotten"}})"));
  EXPECT_EQ(j["address"]["street"], json::parse(R"({"$cairn.redacted":{"reason":"subject forgotten"}})"));
  EXPECT_EQ(j["address"]["city"], "Lyon");
  EXPECT_EQ((*s)->read_event(*bo.id)->data, bo.data);  // another subject: as before
  ASSERT_TRUE((*s)->close().ok());
  auto v2 = verify_log(dir_.sub("data"));
  ASSERT_TRUE(v2.ok());
  EXPECT_TRUE(v2->ok);
  EXPECT_EQ(v2->chain_head_hex, head_before);
}

TEST_F(StorePrivacy, AnImportOfTheStoredEventsReproducesTheChain) {
  std::vector<ImportEvent> events;
  std::string head;
  {
    auto s = open_store(options());
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->append({"customer-1", ExpectedRevision::any(), {person(kAnaEmail, kAnaStreet, "ana")}}).ok());
    ASSERT_TRUE((*s)->scan_stored(0, Filter{}, [&](const StoredEventView& v) {
      ImportEvent ie = privacy_test::import_event_of(v);
      events.push_back(std::move(ie));
      return true;
    }).ok());
    head = (*s)->stats().chain_head_hex;
    ASSERT_TRUE((*s)->close().ok());
  }
  EmbeddedOptions copy = options();
  copy.dir = dir_.sub("copy");
  auto c = open_store(copy);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_TRUE((*c)->import_commit(events).ok());
  EXPECT_EQ((*c)->stats().chain_head_hex, head);
  EXPECT_EQ(json::parse((*c)->read_position(0)->data)["email"], kAnaEmail);  // same key store: readable
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST_F(StorePrivacy, ForgetDestroysTheKeysRecordsItOnceAndKeepsTheChain) {
  auto s = open_store(options());
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  Store& st = **s;
  const EventData ana1 = person(kAnaEmail, kAnaStreet, "ana@example.org");
  const EventData ana2 = person(kAnaEmail, "Other 2", "ana@example.org");
  const EventData bo = person(kBoEmail, "Rue Bo 1", "bo@example.org");
  ASSERT_TRUE(st.append({"customer-1", ExpectedRevision::any(), {ana1, ana2}}).ok());
  ASSERT_TRUE(st.append({"customer-2", ExpectedRevision::any(), {bo}}).ok());
  EXPECT_EQ(st.forget("nobody@example.org", "request 1", "").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(st.forget("ana@example.org", "", "").status().code(), ErrorCode::kInvalidArgument);  // a reason is required
  EXPECT_EQ(st.forget("ana@example.org", "r", R"({"kind":"robot"})").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.head_position(), 3u);  // bad requests wrote nothing

  auto f = st.forget("ana@example.org", "GDPR request 17", R"({"kind":"human","id":"dpo-1"})");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->keys_destroyed, 1u);
  EXPECT_EQ(f->affected_events, 2u);
  EXPECT_FALSE(f->already);
  EXPECT_EQ(f->position, 3u);
  auto rec = st.read_position(f->position);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->stream, "$privacy");
  EXPECT_EQ(rec->type, "privacy.subject.forgotten");
  EXPECT_EQ(rec->data.find("ana@example.org"), std::string::npos);  // only the keyed hash
  EXPECT_NE(rec->data.find(f->subject_id), std::string::npos);
  EXPECT_NE(rec->data.find("GDPR request 17"), std::string::npos);
  EXPECT_NE(rec->metadata.find("dpo-1"), std::string::npos);
  // Both events of ana read redacted; bo's as written.
  for (const auto& id : {*ana1.id, *ana2.id}) {
    auto e = st.read_event(id);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->data.find(kAnaEmail), std::string::npos);
    EXPECT_NE(e->data.find("$cairn.redacted"), std::string::npos);
  }
  EXPECT_EQ(st.read_event(*bo.id)->data, bo.data);
  // A second forget changes nothing and answers the first one.
  auto again = st.forget("ana@example.org", "again", "");
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again->already);
  EXPECT_EQ(again->position, 3u);
  EXPECT_EQ(again->affected_events, 2u);
  EXPECT_EQ(st.head_position(), 4u);
  const std::string head = st.stats().chain_head_hex;
  ASSERT_TRUE(st.close().ok());
  auto v = verify_log(dir_.sub("data"));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
  EXPECT_EQ(v->chain_head_hex, head);
  // Without a key store there is nothing to forget with.
  auto plain = open_store(options(false));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->forget("bo@example.org", "r", "").status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST_F(StorePrivacy, TrainingExportsLeaveForgottenSubjectsRowsOut) {
  auto s = open_store(options());
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  Store& st = **s;
  auto proposal = [](const std::string& pid, const std::string& question, const std::string& subject) {
    EventData e;
    e.id = Uuid::generate_v7();
    e.type = "ai.proposal.made";
    e.data = json{{"proposal_id", pid}, {"proposal_kind", "draft"}, {"skill", "reply"}, {"gen_ai.request.model", "m"},
                  {"input", question}, {"proposed_value", "an answer"}}.dump();
    e.metadata = json{{"privacy", {{"subject", subject}, {"personal", {"/input"}}}}}.dump();
    return e;
  };
  auto decision = [](const std::string& pid) {
    EventData e;
    e.type = "human.decision.recorded";
    e.data = json{{"proposal_id", pid}, {"outcome", "accepted"}, {"final_value", "an answer"}}.dump();
    return e;
  };
  ASSERT_TRUE(st.append({"conv-1", ExpectedRevision::any(), {proposal("p-1", "UNIQUE-Q-ANA-4471", "ana"), decision("p-1")}}).ok());
  ASSERT_TRUE(st.append({"conv-2", ExpectedRevision::any(), {proposal("p-2", "UNIQUE-Q-BO-2290", "bo"), decision("p-2")}}).ok());
  auto run = [&]() {
    std::string out;
    ExportQuery q;
    q.format = ExportFormat::kSft;
    auto m = ledger_export(st, q, [&](std::string_view c) {
      out.append(c);
      return true;
    });
    EXPECT_TRUE(m.ok()) << m.status().to_string();
    return std::pair{out, m.ok() ? *m : ExportManifest{}};
  };
  auto [before, mb] = run();
  EXPECT_EQ(mb.rows, 2u);
  EXPECT_NE(before.find("UNIQUE-Q-ANA-4471"), std::string::npos);  // readers with access see the plaintext
  ASSERT_TRUE(st.forget("ana", "request", "").ok());
  auto [after, ma] = run();
  EXPECT_EQ(ma.rows, 1u);
  EXPECT_EQ(ma.redacted, 1u);
  EXPECT_EQ(after.find("UNIQUE-Q-ANA-4471"), std::string::npos);
  EXPECT_EQ(after.find("$cairn.redacted"), std::string::npos);
  EXPECT_NE(after.find("UNIQUE-Q-BO-2290"), std::string::npos);
  EXPECT_NE(ma.to_json().find("\"redacted\":1"), std::string::npos);
}

}  // namespace
}  // namespace cairn
