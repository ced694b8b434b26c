// Projections after a forget (docs/privacy.md): a projection that copied a subject's personal value into its
// state is rebuilt from the now-redacted events, so neither its state nor any file under the projections
// directory holds the plaintext afterwards; other subjects' values stay.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "base/file.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using nlohmann::json;

std::string bytes_under(const std::string& dir) {
  std::string out;
  std::error_code ec;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir, ec))
    if (f.is_regular_file()) {
      auto t = base::read_whole_file(f.path().string());
      if (t.ok()) out += *t;
    }
  return out;
}

TEST(ProjectionPrivacy, AForgetRebuildsProjectionsSoNoStateKeepsThePlaintext) {
  testing::TempDir dir;
  EmbeddedOptions o;
  o.dir = dir.sub("data");
  o.durability = Durability::kNone;
  o.key_store_dir = dir.sub("keys");
  o.master_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  auto s = open_store(o);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ProjectionsOptions po;
  po.dir = dir.sub("data") + "/projections";
  po.checkpoint_interval = std::chrono::milliseconds(10);
  po.checkpoint_events = 1;
  auto p = open_projections(**s, po);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ProjectionDefinition d;
  d.name = "emails";
  d.lua = "return function(s, e)\n  s.emails = s.emails or {}\n  s.emails[#s.emails + 1] = e.data.email\nend\n";
  d.snapshot_every = 1;
  ASSERT_TRUE((*p)->define(d).ok());
  auto event = [](const std::string& email, const std::string& subject) {
    EventData e;
    e.type = "customer.registered";
    e.data = json{{"email", email}}.dump();
    e.metadata = json{{"privacy", {{"subject", subject}, {"personal", {"/email"}}}}}.dump();
    return e;
  };
  ASSERT_TRUE((*s)->append({"c-1", ExpectedRevision::any(), {event("pp-ana-6610@example.org", "ana")}}).ok());
  auto last = (*s)->append({"c-2", ExpectedRevision::any(), {event("pp-bo-1187@example.org", "bo")}});
  ASSERT_TRUE(last.ok());
  // Wait for the last event's own position: the runtime appends to $projections too (activation), so
  // positions are not known in advance.
  auto st = (*p)->state("emails", std::nullopt, 0, last->streams[0].last_position, std::chrono::seconds(20));
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_NE(st->json.find("pp-ana-6610"), std::string::npos);  // before: the projection saw the plaintext

  ASSERT_TRUE((*s)->forget("ana", "request", "").ok());
  bool clean = false;
  for (int i = 0; i < 400 && !clean; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto now = (*p)->state("emails", std::nullopt, 0, std::nullopt, std::chrono::seconds(1));
    auto status = (*p)->status("emails");
    clean = now.ok() && now->json.find("pp-ana-6610") == std::string::npos && status.ok() && !status->rebuild &&
            base::read_whole_file(po.dir + "/PRIVACY").ok();
  }
  ASSERT_TRUE(clean) << "the projection still holds the forgotten value";
  auto after = (*p)->state("emails", std::nullopt, 0, std::nullopt, std::chrono::seconds(1));
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->json.find("pp-bo-1187"), std::string::npos);
  EXPECT_NE(after->json.find("$cairn.redacted"), std::string::npos);
  ASSERT_TRUE((*p)->close().ok());
  // No checkpoint, snapshot or state file keeps it either.
  EXPECT_EQ(bytes_under(po.dir).find("pp-ana-6610"), std::string::npos);
  ASSERT_TRUE((*s)->close().ok());
}

}  // namespace
}  // namespace cairn
