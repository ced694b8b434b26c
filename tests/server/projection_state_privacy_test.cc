// Personal data in projection state, tried from outside (docs/privacy.md, "Projection state"): cairnd with a
// key store never writes a personal value in clear to any file under its data directory, whatever projection
// copies it (the built-in $ai.decisions, a Lua projection); and a copy of the data directory made before a
// forget, served after it with the current key store, serves the forgotten value from nowhere.
#include <gtest/gtest.h>

#include <signal.h>

#include <cstdlib>
#include <filesystem>

#include "harness.h"
#include "base/file.h"
#include "testing/temp_dir.h"

namespace {

using namespace cairn::server_test;

const std::string kFinal = "ps-final-8813@example.org";   // the human's final value: declared personal
const std::string kEmail = "ps-email-2207@example.org";   // copied into a Lua projection's state
const std::string kOther = "ps-other-5150@example.org";   // another subject's: must survive the forget

// Every file under dir that holds needle, one per line (empty: none).
std::string files_holding(const std::string& dir, const std::string& needle) {
  std::string out;
  std::error_code ec;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir, ec))
    if (f.is_regular_file()) {
      auto t = cairn::base::read_whole_file(f.path().string());
      if (t.ok() && t->find(needle) != std::string::npos) out += f.path().string() + "\n";
    }
  return out;
}

std::string state(int port, const std::string& key, const std::string& name) {
  auto r = call(port, http::verb::get, "/v1/projections/" + name + "/state", key);
  return r.status == 200 ? r.body : "";
}

TEST(ProjectionStatePrivacy, NoPlaintextOnDiskAndACopyFromBeforeAForgetServesNothingOfTheSubject) {
  cairn::testing::TempDir dir;
  ::setenv("CAIRN_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
  const std::string data = dir.sub("data"), copy = dir.sub("copy"), keys = dir.sub("keys");
  const std::vector<std::string> flags = {"--durability", "none", "--key-store", keys};
  std::string k;
  uint64_t last = 0;  // the position of the last customer event
  {
    Cairnd d(data, flags);
    const int p = d.port();
    k = d.key();
    const std::string lua =
        "return function(s, e)\n  s.emails = s.emails or {}\n  s.emails[#s.emails + 1] = e.data.email\nend\n";
    auto r = call(p, http::verb::post, "/v1/projections",
                  k, json{{"name", "emails"}, {"lua", lua}, {"source", {{"types", {"customer.registered"}}}},
                          {"snapshot_every", 1}}.dump());
    ASSERT_EQ(r.status, 201) << r.body;
    const json proposal = {{"proposal_id", "p-77"}, {"proposal_kind", "draft"}, {"skill", "reply"},
                           {"gen_ai.request.model", "m-1"}, {"input", "mail"}, {"proposed_value", "Dear customer"}};
    r = call(p, http::verb::post, "/v1/streams/conv-77", k,
             json{{"events", {{{"type", "ai.proposal.made"}, {"data", proposal}}}}}.dump());
    ASSERT_EQ(r.status, 201) << r.body;
    const json decision = {{"proposal_id", "p-77"}, {"outcome", "edited"}, {"final_value", kFinal}};
    const json privacy = {{"privacy", {{"subject", "user-17"}, {"personal", {"/final_value"}}}}};
    r = call(p, http::verb::post, "/v1/streams/conv-77", k,
             json{{"events", {{{"type", "human.decision.recorded"}, {"data", decision}, {"metadata", privacy}}}}}.dump());
    ASSERT_EQ(r.status, 201) << r.body;
    for (const auto& [email, subject] : {std::pair{kEmail, "user-17"}, std::pair{kOther, "user-18"}}) {
      r = call(p, http::verb::post, "/v1/streams/customer-" + std::string(subject), k,
               json{{"events", {{{"type", "customer.registered"},
                                 {"data", {{"email", email}}},
                                 {"metadata", {{"privacy", {{"subject", subject}, {"personal", {"/email"}}}}}}}}}}.dump());
      ASSERT_EQ(r.status, 201) << r.body;
      last = r.j()["last_position"].get<uint64_t>();
    }
    // Both projections serve the values in clear to a reader with access...
    ASSERT_TRUE(eventually([&] { return contains(state(p, k, "%24ai.decisions"), kFinal); })) << state(p, k, "%24ai.decisions");
    ASSERT_TRUE(eventually([&] { return contains(state(p, k, "emails"), kOther); })) << state(p, k, "emails");
    EXPECT_TRUE(contains(state(p, k, "emails"), kEmail));
    ASSERT_EQ(d.stop(SIGTERM), 0);  // a clean stop writes every projection's final checkpoint
  }
  // ... and no file under the data directory holds any of them in clear, though state files were written.
  EXPECT_EQ(files_holding(data, kFinal), "");
  EXPECT_EQ(files_holding(data, kEmail), "");
  EXPECT_EQ(files_holding(data, kOther), "");
  EXPECT_NE(files_holding(data + "/projections", "\"cairn_projection_state\":2"), "") << "no sealed state file was written";
  EXPECT_EQ(files_holding(data + "/projections", "\"cairn_projection_state\":1"), "") << "a state file in clear";

  // A backup of the data directory, taken before the forget.
  std::filesystem::copy(data, copy, std::filesystem::copy_options::recursive);
  {
    Cairnd d(data, flags);
    const int p = d.port();
    auto r = call(p, http::verb::post, "/v1/privacy/subjects/user-17/forget", k, R"({"reason":"GDPR request 17"})");
    ASSERT_EQ(r.status, 201) << r.body;
    ASSERT_TRUE(eventually([&] {
      auto rep = call(p, http::verb::get, "/v1/privacy/subjects/user-17/report", k);
      return rep.status == 200 && rep.j()["projections"]["rebuilt_without_the_subject"] == true;
    }, 60));
    r = call(p, http::verb::post, "/v1/privacy/purge", k, "{}");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_FALSE(contains(state(p, k, "%24ai.decisions"), kFinal));
    EXPECT_FALSE(contains(state(p, k, "emails"), kEmail));
    ASSERT_EQ(d.stop(SIGTERM), 0);
  }
  EXPECT_EQ(files_holding(data, kFinal), "");
  // The old copy, served with the key store as it is now: the forgotten values come from nowhere (its state
  // files were sealed under keys the forget's rebuild destroyed), the other subject's value is still there.
  {
    Cairnd d(copy, flags);
    const int p = d.port();
    ASSERT_TRUE(eventually([&] { return contains(state(p, k, "emails"), kOther); })) << state(p, k, "emails");
    ASSERT_TRUE(eventually([&] { return contains(state(p, k, "%24ai.decisions"), "p-77"); }));
    EXPECT_FALSE(contains(state(p, k, "emails"), kEmail)) << state(p, k, "emails");
    EXPECT_FALSE(contains(state(p, k, "%24ai.decisions"), kFinal)) << state(p, k, "%24ai.decisions");
    EXPECT_TRUE(contains(state(p, k, "emails"), "$cairn.redacted"));
    auto as_of = call(p, http::verb::get, "/v1/projections/emails/state?as_of=" + std::to_string(last), k);
    ASSERT_EQ(as_of.status, 200) << as_of.body;
    EXPECT_FALSE(contains(as_of.body, kEmail)) << as_of.body;
    EXPECT_TRUE(contains(as_of.body, kOther)) << as_of.body;
    ASSERT_EQ(d.stop(SIGTERM), 0);
  }
  ::unsetenv("CAIRN_MASTER_KEY");
}

}  // namespace
