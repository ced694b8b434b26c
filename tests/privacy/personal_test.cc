// Personal parts (src/privacy/personal.cc): the declaration's rules, with the field named; sealing keeps no
// plaintext (values or subject) in what is stored; opening gives the data back, member order kept; a
// forgotten subject's parts read as redaction markers while others' still open; a sealed part is bound to
// its event and place; the redactable form does not depend on keys and confirms no guess.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "privacy/personal.h"
#include "testing/temp_dir.h"

namespace cairn::privacy {
namespace {

using ojson = nlohmann::ordered_json;

const Uuid kId = *Uuid::parse("0193c0de-1182-7000-8000-000000000042");
const Uuid kOtherId = *Uuid::parse("0193c0de-1182-7000-8000-000000000043");
constexpr std::string_view kData =
    R"({"order":1182,"email":"zq-ana-7781@example.org","address":{"street":"Rue Zyxw 17","city":"Lyon"},"referrer":{"email":"bo-9932@example.net"},"amount":42.5})";

class Personal : public ::testing::Test {
 protected:
  void SetUp() override {
    Key m;
    m.fill(9);
    auto ks = KeyStore::open(dir_.sub("keys"), m);
    ASSERT_TRUE(ks.ok()) << ks.status().to_string();
    keys_ = std::move(*ks);
  }
  Result<std::optional<Declaration>> decl(const std::string& privacy, std::string_view data = kData,
                                          ContentType t = ContentType::kJson) {
    return read_declaration(R"({"correlation_id":"c-1","privacy":)" + privacy + "}", data, t, "events[0]");
  }
  SealedEvent sealed(const std::string& privacy, const Uuid& id = kId) {
    auto d = decl(privacy);
    EXPECT_TRUE(d.ok() && *d) << (d.ok() ? "no declaration" : d.status().to_string());
    auto s = seal_event(*keys_, id, kData, R"({"correlation_id":"c-1","privacy":)" + privacy + "}", **d);
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    return *s;
  }
  testing::TempDir dir_;
  std::unique_ptr<KeyStore> keys_;
};

TEST_F(Personal, DeclarationRulesNameTheField) {
  auto none = read_declaration(R"({"correlation_id":"c"})", kData, ContentType::kJson, "events[0]");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  auto ok = decl(R"({"subject":"ana","personal":["/email","/address/street"]})");
  ASSERT_TRUE(ok.ok() && *ok);
  EXPECT_EQ((*ok)->parts.size(), 2u);
  EXPECT_TRUE(decl(R"({"subject":"ana","personal":"all"})").ok());
  EXPECT_TRUE(decl(R"({"parts":[{"subject":"ana","pointer":"/email"},{"subject":"bo","pointer":"/referrer/email"}]})").ok());
  struct Bad {
    std::string privacy;
    std::string field;
  };
  const std::vector<Bad> bads = {
      {R"("ana")", "events[0].metadata.privacy:"},
      {R"({"personal":["/email"]})", "events[0].metadata.privacy.subject:"},
      {R"({"subject":"","personal":["/email"]})", "events[0].metadata.privacy.subject:"},
      {R"({"subject":"ana"})", "events[0].metadata.privacy.personal:"},
      {R"({"subject":"ana","personal":[]})", "events[0].metadata.privacy.personal:"},
      {R"({"subject":"ana","personal":"some"})", "events[0].metadata.privacy.personal:"},
      {R"({"subject":"ana","personal":[5]})", "events[0].metadata.privacy.personal[0]:"},
      {R"({"subject":"ana","personal":["/phone"]})", "events[0].metadata.privacy.personal[0]:"},
      {R"({"subject":"ana","personal":["email"]})", "events[0].metadata.privacy.personal[0]:"},
      {R"({"subject":"ana","personal":["/address","/address/city"]})", "events[0].metadata.privacy.personal[1]:"},
      {R"({"subject":"ana","personal":["/email","/email"]})", "events[0].metadata.privacy.personal[1]:"},
      {R"({"subject":"ana","personal":["/email"],"parts":[]})", "events[0].metadata.privacy:"},
      {R"({"parts":[{"subject":"ana"}]})", "events[0].metadata.privacy.parts[0]:"},
      {R"({"parts":[{"pointer":"/email"}]})", "events[0].metadata.privacy.parts[0].subject:"},
      {R"({"subject":"ana","personal":["/email"],"colour":"red"})", "events[0].metadata.privacy.colour:"},
  };
  for (const auto& b : bads) {
    auto r = decl(b.privacy);
    ASSERT_FALSE(r.ok()) << b.privacy;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.status().message().rfind(b.field, 0), 0u) << b.privacy << " -> " << r.status().message();
  }
  auto binary = decl(R"({"subject":"ana","personal":"all"})", "bytes", ContentType::kBinary);
  EXPECT_FALSE(binary.ok());
}

TEST_F(Personal, SealingStoresNoPlaintextAndOpeningGivesTheDataBack) {
  const SealedEvent s = sealed(R"({"parts":[{"subject":"ana@example.org","pointer":"/email"},{"subject":"ana@example.org","pointer":"/address"},{"subject":"bo@example.net","pointer":"/referrer/email"}]})");
  for (const char* secret : {"zq-ana-7781", "Rue Zyxw", "bo-9932", "ana@example.org", "bo@example.net"}) {
    EXPECT_EQ(s.data.find(secret), std::string::npos) << secret;
    EXPECT_EQ(s.metadata.find(secret), std::string::npos) << secret;
  }
  EXPECT_NE(s.data.find("\"amount\":42.5"), std::string::npos);  // the rest stays readable
  EXPECT_EQ(s.subjects.size(), 2u);
  EXPECT_NE(s.metadata.find(keys_->subject_id("ana@example.org")), std::string::npos);
  EXPECT_TRUE(has_sealed_parts(s.data));
  bool redacted = true;
  auto open = open_data(*keys_, kId, s.data, &redacted);
  ASSERT_TRUE(open.ok()) << open.status().to_string();
  EXPECT_FALSE(redacted);
  EXPECT_EQ(*open, std::string(kData));  // byte for byte, member order kept
  // The whole data as one part.
  const SealedEvent all = sealed(R"({"subject":"ana@example.org","personal":"all"})");
  EXPECT_EQ(all.data.find("1182"), std::string::npos);
  auto open_all = open_data(*keys_, kId, all.data, &redacted);
  ASSERT_TRUE(open_all.ok());
  EXPECT_EQ(*open_all, std::string(kData));
}

TEST_F(Personal, AForgottenSubjectReadsAsRedactedAndOthersStillOpen) {
  const SealedEvent s = sealed(R"({"parts":[{"subject":"ana@example.org","pointer":"/email"},{"subject":"bo@example.net","pointer":"/referrer/email"}]})");
  auto n = keys_->destroy(keys_->subject_id("ana@example.org"));
  ASSERT_TRUE(n.ok());
  bool redacted = false;
  auto open = open_data(*keys_, kId, s.data, &redacted);
  ASSERT_TRUE(open.ok()) << open.status().to_string();
  EXPECT_TRUE(redacted);
  const ojson j = ojson::parse(*open);
  EXPECT_EQ(j["email"], ojson::parse(R"({"$cairn.redacted":{"reason":"subject forgotten"}})"));
  EXPECT_EQ(j["referrer"]["email"], "bo-9932@example.net");
  EXPECT_EQ(j["address"]["street"], "Rue Zyxw 17");  // not declared personal: stored and read in clear
  EXPECT_EQ(open->find("zq-ana-7781"), std::string::npos);
}

TEST_F(Personal, SealingIsDeterministicSoARetryIsAReplay) {
  const SealedEvent a = sealed(R"({"subject":"ana","personal":["/email"]})");
  const SealedEvent b = sealed(R"({"subject":"ana","personal":["/email"]})");
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(a.metadata, b.metadata);
}

TEST_F(Personal, ASealedPartIsBoundToItsEventAndPlace) {
  const SealedEvent s = sealed(R"({"subject":"ana","personal":["/email"]})");
  bool redacted = false;
  EXPECT_EQ(open_data(*keys_, kOtherId, s.data, &redacted).status().code(), ErrorCode::kCorruption);
  // The envelope copied to another field does not open there.
  ojson j = ojson::parse(s.data);
  j["order"] = j["email"];
  EXPECT_EQ(open_data(*keys_, kId, j.dump(), &redacted).status().code(), ErrorCode::kCorruption);
}

TEST_F(Personal, TheRedactableFormNeedsNoKeyAndConfirmsNoGuess) {
  const SealedEvent s = sealed(R"({"subject":"ana","personal":["/email"]})");
  auto before = redactable_form(s.data);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->find("$cairn.sealed"), std::string::npos);
  EXPECT_NE(before->find("$cairn.purged"), std::string::npos);
  EXPECT_NE(before->find("\"order\":1182"), std::string::npos);
  ASSERT_TRUE(keys_->destroy(keys_->subject_id("ana")).ok());
  auto after = redactable_form(s.data);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *before);  // the digest of an event with sealed parts survives the key and the purge
  auto again = redactable_form(*before);  // a purged payload is its own redactable form
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *before);
  // The same value in another event hashes differently, and under the subject's new key too: computing the
  // purged hash of a guess needs the destroyed key.
  const SealedEvent s2 = sealed(R"({"subject":"ana","personal":["/email"]})", kOtherId);
  EXPECT_NE(*redactable_form(s2.data), *before);
  const SealedEvent s3 = sealed(R"({"subject":"ana","personal":["/email"]})");  // same event, generation 2 key
  EXPECT_NE(*redactable_form(s3.data), *before);
}

TEST_F(Personal, TheClientsBytesAroundAndInsideThePartsAreKeptExactly) {
  // Whitespace, escapes, a key written with an escape, a pointer with ~1 and a quote, numbers as written.
  const std::string data =
      "{ \"a/b\" : {\"q\\\"x\" : [1, 2.50, {\"em\\u0061il\": \"x\\u00e9y@example.org\" } ]},\n  \"n\":  1e3 }";
  const std::string meta = R"({"privacy":{"subject":"ana","personal":["/a~1b/q\"x/2/email"]}})";
  auto d = read_declaration(meta, data, ContentType::kJson, "events[0]");
  ASSERT_TRUE(d.ok() && *d) << (d.ok() ? "none" : d.status().to_string());
  auto s = seal_event(*keys_, kId, data, meta, **d);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->data.find("example.org"), std::string::npos);
  EXPECT_EQ(s->data.rfind("{ \"a/b\" : {\"q\\\"x\" : [1, 2.50, {\"em\\u0061il\": ", 0), 0u) << s->data;
  bool redacted = true;
  auto open = open_data(*keys_, kId, s->data, &redacted);
  ASSERT_TRUE(open.ok()) << open.status().to_string();
  EXPECT_EQ(*open, data);
  EXPECT_FALSE(redacted);
  // The redactable form computed while sealing is the one verify recomputes from the stored data.
  auto form = redactable_form(s->data);
  ASSERT_TRUE(form.ok());
  EXPECT_EQ(*form, s->redactable);
  EXPECT_EQ(ojson::parse(s->metadata)["privacy"]["subject"], keys_->subject_id("ana"));
}

TEST_F(Personal, DataOfAnEventWithPersonalPartsMayNotUseTheReservedKeys) {
  for (const char* data : {R"({"email":"a@b.c","x":{"$cairn.sealed":{"v":1}}})", R"({"email":"a@b.c","x":{ "$cairn.purged" : "00"}})"}) {
    auto r = read_declaration(R"({"privacy":{"subject":"ana","personal":["/email"]}})", data, ContentType::kJson, "events[0]");
    ASSERT_FALSE(r.ok()) << data;
    EXPECT_EQ(r.status().message().rfind("events[0].data:", 0), 0u) << r.status().message();
  }
  // As a string value (not a key) it is the client's text like any other.
  EXPECT_TRUE(read_declaration(R"({"privacy":{"subject":"ana","personal":["/email"]}})", R"({"email":"a@b.c","x":"$cairn.sealed"})",
                               ContentType::kJson, "events[0]").ok());
}

TEST_F(Personal, APurgeStoresTheRedactableFormOfForgottenPartsOnly) {
  const SealedEvent s = sealed(R"({"parts":[{"subject":"ana@example.org","pointer":"/email"},{"subject":"bo@example.net","pointer":"/referrer/email"}]})");
  size_t purged = 9;
  auto none = purge_parts(*keys_, s.data, &purged);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(purged, 0u);
  EXPECT_EQ(*none, s.data);
  ASSERT_TRUE(keys_->destroy(keys_->subject_id("ana@example.org")).ok());
  auto p = purge_parts(*keys_, s.data, &purged);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(purged, 1u);
  EXPECT_EQ(p->size(), s.data.size());  // same width: a purged segment keeps every offset
  EXPECT_EQ(p->find(ojson::parse(s.data)["email"]["$cairn.sealed"]["c"].get<std::string>()), std::string::npos);
  EXPECT_EQ(*redactable_form(*p), s.redactable);  // the digest survives the purge
  bool redacted = false;
  auto open = open_data(*keys_, kId, *p, &redacted);
  ASSERT_TRUE(open.ok()) << open.status().to_string();
  EXPECT_TRUE(redacted);
  const ojson j = ojson::parse(*open);
  EXPECT_EQ(j["email"], ojson::parse(R"({"$cairn.redacted":{"reason":"subject forgotten"}})"));
  EXPECT_EQ(j["referrer"]["email"], "bo-9932@example.net");
  auto again = purge_parts(*keys_, *p, &purged);  // purging again changes nothing
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(purged, 0u);
  EXPECT_EQ(*again, *p);
}

TEST_F(Personal, ADamagedEnvelopeIsCorruptionNotACrash) {
  const SealedEvent s = sealed(R"({"subject":"ana","personal":["/email"]})");
  bool redacted = false;
  const size_t envelope_end = s.data.find("\"}}") + 3;
  for (size_t cut = s.data.find("$cairn.sealed") + 15; cut < envelope_end; cut += 7) {  // from just after {"$cairn.sealed":
    const std::string damaged = s.data.substr(0, cut);
    auto r = open_data(*keys_, kId, damaged, &redacted);
    EXPECT_FALSE(r.ok());
    auto f = redactable_form(damaged);
    if (!f.ok()) {
      EXPECT_EQ(f.status().code(), ErrorCode::kCorruption);
    }
  }
  std::string flipped = s.data;
  flipped[flipped.find("\"c\":\"") + 6] ^= 1;
  EXPECT_EQ(open_data(*keys_, kId, flipped, &redacted).status().code(), ErrorCode::kCorruption);
}

}  // namespace
}  // namespace cairn::privacy
