// 405 answers over a real socket (RFC 9110 §15.5.6: a 405 must carry Allow with the methods the target
// accepts). The expected methods of each path are written here from docs/openapi.yaml, not taken from the
// server's route table, so a route table that drifts from the documented API fails this test.
#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "testing/temp_dir.h"

namespace {

using namespace cairn::server_test;

std::set<std::string> split_allow(const std::string& v) {
  std::set<std::string> out;
  std::stringstream ss(v);
  std::string m;
  while (std::getline(ss, m, ',')) {
    const auto b = m.find_first_not_of(' '), e = m.find_last_not_of(' ');
    if (b != std::string::npos) out.insert(m.substr(b, e - b + 1));
  }
  return out;
}

struct PathMethods {
  std::string path;
  std::set<std::string> allowed;
};

const std::vector<PathMethods>& documented() {
  static const std::vector<PathMethods> v = {
      {"/health", {"GET"}},
      {"/metrics", {"GET"}},
      {"/v1/streams", {"GET"}},
      {"/v1/streams/s-1", {"GET", "POST"}},
      {"/v1/streams/s-1/subscribe", {"GET"}},
      {"/v1/transactions", {"POST"}},
      {"/v1/events", {"GET"}},
      {"/v1/events/0190f7d4-8a2b-7c3d-9e4f-000000000001", {"GET"}},
      {"/v1/positions/0", {"GET"}},
      {"/v1/subscribe", {"GET"}},
      {"/v1/stats", {"GET"}},
      {"/v1/verify", {"POST"}},
      {"/v1/keys", {"GET", "POST"}},
      {"/v1/keys/key_000000000000", {"DELETE"}},
      {"/v1/projections", {"GET", "POST"}},
      {"/v1/projections/p", {"GET"}},
      {"/v1/projections/p/state", {"GET"}},
      {"/v1/projections/p/partitions", {"GET"}},
      {"/v1/projections/p/digest", {"GET"}},
      {"/v1/projections/p/verify", {"POST"}},
      {"/v1/projections/p/rebuild", {"GET", "POST"}},
      {"/v1/projections/p/versions", {"GET", "POST"}},
      {"/v1/projections/p/versions/1", {"GET", "DELETE"}},
      {"/v1/projections/p/versions/1/activate", {"POST"}},
      {"/v1/why/0190f7d4-8a2b-7c3d-9e4f-000000000001", {"GET"}},
      {"/v1/correlations/c-1", {"GET"}},
      {"/v1/ai/rates", {"GET"}},
      {"/v1/ai/export", {"GET"}},
      {"/v1/ai/export/manifest", {"GET"}},
      {"/v1/privacy/subjects/u-1/forget", {"POST"}},
      {"/v1/privacy/subjects/u-1/report", {"GET"}},
      {"/v1/privacy/purge", {"POST"}},
  };
  return v;
}

const std::vector<std::pair<http::verb, std::string>> kMethods = {
    {http::verb::get, "GET"},       {http::verb::post, "POST"},       {http::verb::put, "PUT"},
    {http::verb::patch, "PATCH"},   {http::verb::delete_, "DELETE"}, {http::verb::options, "OPTIONS"},
};

// Every method a documented path does not accept answers 405 with exactly the documented methods in Allow,
// with a key and without one (the method is checked before the key: Allow is no secret).
TEST(Allow, EveryMethodNotAllowedNamesTheAllowedOnes) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  for (const auto& pm : documented()) {
    for (const auto& [verb, name] : kMethods) {
      if (pm.allowed.count(name)) continue;
      for (const std::string key : {d.key(), std::string()}) {
        const Reply r = call(d.port(), verb, pm.path, key, verb == http::verb::get ? "" : "{}");
        const std::string what = name + " " + pm.path + (key.empty() ? " (no key)" : "");
        ASSERT_EQ(r.status, 405) << what << ": " << r.body;
        EXPECT_EQ(r.j()["error"]["code"], "method_not_allowed") << what;
        bool present = false;
        const std::string allow = r.header("Allow", &present);
        EXPECT_TRUE(present) << what << ": no Allow header";
        EXPECT_EQ(split_allow(allow), pm.allowed) << what << ": Allow: " << allow;
      }
    }
  }
}

// Events stay immutable: the 405 for an update or delete of events still says why.
TEST(Allow, ImmutabilityIsExplained) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  const Reply r = call(d.port(), http::verb::put, "/v1/streams/s-1", d.key(), "{}");
  ASSERT_EQ(r.status, 405);
  EXPECT_NE(r.body.find("events are immutable"), std::string::npos) << r.body;
  EXPECT_EQ(split_allow(r.header("Allow")), (std::set<std::string>{"GET", "POST"}));
}

// Paths that are no resource answer 404 to every method, never a 405 that could not name an Allow.
TEST(Allow, PathsThatAreNoResourceAnswer404) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  for (const std::string path : {"/v1/positions", "/v1/keys/a/b", "/v1/ai/nothing", "/v1/why", "/v1/nothing"}) {
    for (const auto& [verb, name] : kMethods) {
      const Reply r = call(d.port(), verb, path, d.key(), verb == http::verb::get ? "" : "{}");
      EXPECT_EQ(r.status, 404) << name << " " << path << ": " << r.body;
    }
  }
}

}  // namespace
