// Personal data over HTTP (docs/privacy.md): cairnd with a key store seals declared parts and reads them back
// in clear; only an unscoped admin key may forget a subject; a forget answers 201, a second one 200, an
// unknown subject 404, a missing reason 400; afterwards the event reads redacted; DELETE stays 405; the CLI
// forgets through the server too. The purge and the report: admin only; the purge drops the forgotten part
// with the same chain head before and after; the report names the forget, the event's state (awaiting a
// purge, then purged), the purge and a verification; by keyed hash too; 404 for an unknown subject; the CLI's
// purge and report work offline and through the server.
#include <gtest/gtest.h>

#include <cstdlib>

#include "harness.h"
#include "testing/temp_dir.h"

namespace {

using namespace cairn::server_test;

TEST(PrivacyHttp, SealForgetAndRedactOverHttp) {
  cairn::testing::TempDir dir;
  ::setenv("CAIRN_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
  Cairnd d(dir.sub("data"), {"--durability", "none", "--key-store", dir.sub("keys")});
  const int p = d.port();
  const std::string& k = d.key();
  const std::string body =
      R"({"events":[{"id":"0193c0de-0000-7000-8000-000000000001","type":"customer.registered",)"
      R"("data":{"email":"kk-unique-3390@example.org","plan":"pro"},)"
      R"("metadata":{"privacy":{"subject":"user-77","personal":["/email"]}}}]})";
  auto r = call(p, http::verb::post, "/v1/streams/customer-77", k, body);
  ASSERT_EQ(r.status, 201) << r.body;
  r = call(p, http::verb::get, "/v1/events/0193c0de-0000-7000-8000-000000000001", k);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["data"]["email"], "kk-unique-3390@example.org");
  EXPECT_EQ(r.j()["metadata"]["privacy"]["subject"].get<std::string>().rfind("hs:", 0), 0u);
  // A bad declaration: 400 naming the field, nothing written.
  auto bad = call(p, http::verb::post, "/v1/streams/customer-77", k,
                  R"({"events":[{"type":"t","data":{"a":1},"metadata":{"privacy":{"subject":"u","personal":["/b"]}}}]})");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("events[0].metadata.privacy.personal[0]"), std::string::npos) << bad.body;

  auto make_key = [&](const std::string& b) {
    auto kr = call(p, http::verb::post, "/v1/keys", k, b);
    EXPECT_EQ(kr.status, 201) << kr.body;
    return kr.j().value("key", std::string());
  };
  const std::string forget = "/v1/privacy/subjects/user-77/forget";
  const std::string reason = R"({"reason":"GDPR request 5"})";
  EXPECT_EQ(call(p, http::verb::post, forget, make_key(R"({"role":"reader"})"), reason).status, 403);
  EXPECT_EQ(call(p, http::verb::post, forget, make_key(R"({"role":"writer"})"), reason).status, 403);
  EXPECT_EQ(call(p, http::verb::post, forget, make_key(R"({"role":"admin","streams":["customer-"]})"), reason).status, 403);
  EXPECT_EQ(call(p, http::verb::post, forget).status, 401);
  EXPECT_EQ(call(p, http::verb::post, forget, k, "{}").status, 400);
  EXPECT_EQ(call(p, http::verb::get, forget, k).status, 405);
  r = call(p, http::verb::post, "/v1/privacy/subjects/nobody/forget", k, reason);
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.j()["error"]["code"], "subject_not_found") << r.body;

  r = call(p, http::verb::post, forget, k, reason);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.j()["keys_destroyed"], 1);
  EXPECT_EQ(r.j()["affected_events"], 1);
  EXPECT_EQ(r.j()["already_forgotten"], false);
  r = call(p, http::verb::post, forget, k, reason);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["already_forgotten"], true);
  r = call(p, http::verb::get, "/v1/events/0193c0de-0000-7000-8000-000000000001", k);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.j()["data"]["email"]["$cairn.redacted"]["reason"], "subject forgotten");
  EXPECT_EQ(r.body.find("kk-unique-3390"), std::string::npos);
  EXPECT_EQ(call(p, http::verb::delete_, "/v1/streams/customer-77", k).status, 405);

  // The CLI through the server: another subject.
  auto r2 = call(p, http::verb::post, "/v1/streams/customer-78", k,
                 R"({"events":[{"type":"customer.registered","data":{"email":"x@example.org"},"metadata":{"privacy":{"subject":"user-78","personal":"all"}}}]})");
  ASSERT_EQ(r2.status, 201) << r2.body;
  auto c = cli_split("privacy forget user-78 --reason test --json --url http://127.0.0.1:" + std::to_string(p) + " --key " + k);
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_TRUE(contains(c.out, "\"keys_destroyed\":1")) << c.out;
  ::unsetenv("CAIRN_MASTER_KEY");
}

TEST(PrivacyHttp, PurgeAndReportOverHttpAndOffline) {
  cairn::testing::TempDir dir;
  ::setenv("CAIRN_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
  {
    Cairnd d(dir.sub("data"), {"--durability", "none", "--key-store", dir.sub("keys")});
    const int p = d.port();
    const std::string& k = d.key();
    for (int i = 0; i < 3; ++i) {
      auto r = call(p, http::verb::post, "/v1/streams/customer-90", k,
                    R"({"events":[{"type":"customer.contacted","data":{"email":"pp-purge-7741@example.org","n":)" +
                        std::to_string(i) + R"(},"metadata":{"privacy":{"subject":"user-90","personal":["/email"]}}}]})");
      ASSERT_EQ(r.status, 201) << r.body;
    }
    const std::string report = "/v1/privacy/subjects/user-90/report";
    auto rep = call(p, http::verb::get, report, k);
    ASSERT_EQ(rep.status, 200) << rep.body;
    EXPECT_TRUE(rep.j()["forgotten"].is_null());
    EXPECT_EQ(rep.j()["events"]["count"], 3);
    EXPECT_EQ(rep.j()["events"]["readable"], 3);
    EXPECT_EQ(call(p, http::verb::get, "/v1/privacy/subjects/nobody/report", k).status, 404);
    auto reader = call(p, http::verb::post, "/v1/keys", k, R"({"role":"reader"})").j().value("key", std::string());
    EXPECT_EQ(call(p, http::verb::get, report, reader).status, 403);
    EXPECT_EQ(call(p, http::verb::post, "/v1/privacy/purge", reader, "{}").status, 403);
    EXPECT_EQ(call(p, http::verb::get, "/v1/privacy/purge", k).status, 405);
    EXPECT_EQ(call(p, http::verb::post, "/v1/privacy/purge", k, R"({"colour":"red"})").status, 400);

    ASSERT_EQ(call(p, http::verb::post, "/v1/privacy/subjects/user-90/forget", k, R"({"reason":"request 90"})").status, 201);
    rep = call(p, http::verb::get, report, k);
    ASSERT_EQ(rep.status, 200) << rep.body;
    EXPECT_EQ(rep.j()["forgotten"]["reason"], "request 90");
    EXPECT_EQ(rep.j()["events"]["unreadable_awaiting_purge"], 3);
    const std::string hs = rep.j()["subject"];

    auto purge = call(p, http::verb::post, "/v1/privacy/purge", k, "");
    ASSERT_EQ(purge.status, 200) << purge.body;
    EXPECT_EQ(purge.j()["parts"], 3);
    EXPECT_EQ(purge.j()["chain_head_before"], purge.j()["chain_head_after"]);
    EXPECT_EQ(purge.j()["subjects"][0], hs);
    auto metrics = call(p, http::verb::get, "/metrics", k);
    ASSERT_EQ(metrics.status, 200);
    EXPECT_TRUE(contains(metrics.body, "cairn_privacy_purges_total 1\n")) << metrics.body;
    EXPECT_TRUE(contains(metrics.body, "cairn_privacy_purged_parts_total 3\n")) << metrics.body;
    EXPECT_TRUE(contains(metrics.body, "cairn_privacy_purge_running 0\n")) << metrics.body;

    rep = call(p, http::verb::get, "/v1/privacy/subjects/" + hs + "/report", k);  // by keyed hash
    ASSERT_EQ(rep.status, 200) << rep.body;
    EXPECT_EQ(rep.j()["events"]["purged"], 3);
    EXPECT_EQ(rep.j()["events"]["unreadable_awaiting_purge"], 0);
    ASSERT_EQ(rep.j()["purges"].size(), 1u);
    EXPECT_EQ(rep.j()["purges"][0]["chain_unchanged"], true);
    EXPECT_EQ(rep.j()["verification"]["ok"], true);
    EXPECT_EQ(rep.body.find("user-90"), std::string::npos);
    EXPECT_EQ(rep.body.find("pp-purge-7741"), std::string::npos);

    auto c = cli_split("privacy report user-90 --url http://127.0.0.1:" + std::to_string(p) + " --key " + k);
    ASSERT_EQ(c.code, 0) << c.err;
    EXPECT_TRUE(contains(c.out, "3 purged")) << c.out;
    c = cli_split("privacy purge --json --url http://127.0.0.1:" + std::to_string(p) + " --key " + k);
    ASSERT_EQ(c.code, 0) << c.err;
    EXPECT_TRUE(contains(c.out, "\"parts\":0")) << c.out;
  }
  // Offline, on the data directory with its key store.
  const std::string offline = " --data " + dir.sub("data") + " --key-store " + dir.sub("keys");
  auto c = cli_split("privacy purge" + offline);
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_TRUE(contains(c.out, "nothing to purge")) << c.out;
  c = cli_split("privacy report user-90 --json" + offline);
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_TRUE(contains(c.out, "\"purged\":3")) << c.out;
  c = cli_split("privacy report nobody" + offline);
  EXPECT_EQ(c.code, 1) << c.out;
  ::unsetenv("CAIRN_MASTER_KEY");
}

}  // namespace
