// The online verify (docs/http-api.md, "Verify"): while cairnd holds the data directory, `cairn verify DIR`
// answers busy and says to use the server; POST /v1/verify (admin without scopes) reports the whole log with
// its chain head, the CLI's `verify --url` prints what offline verify prints, and once cairnd stopped the
// offline report names the same chain head.
#include <gtest/gtest.h>

#include <signal.h>

#include "harness.h"
#include "testing/temp_dir.h"

namespace {

using namespace cairn::server_test;

TEST(VerifyHttp, TheRunningServerVerifiesItsLogAndTheCliPrintsTheSame) {
  cairn::testing::TempDir dir;
  const std::string data = dir.sub("data");
  std::string online_json;
  {
    Cairnd d(data, {"--durability", "none"});
    const int p = d.port();
    const std::string& k = d.key();
    for (int i = 0; i < 5; ++i)
      ASSERT_EQ(call(p, http::verb::post, "/v1/streams/order-" + std::to_string(i), k, one_event("", "order.placed", "{\"n\":1}")).status, 201);
    // Offline, the directory is taken: the error says what to do instead.
    auto busy = cli_split("verify " + shell_quote(data));
    EXPECT_EQ(busy.code, 1) << busy.out;
    EXPECT_TRUE(contains(busy.err, "cairn verify --url")) << busy.err;

    auto r = call(p, http::verb::post, "/v1/verify", k);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["ok"], true);
    EXPECT_EQ(r.j()["events"], 5);
    EXPECT_EQ(r.j()["streams"], 5);
    EXPECT_EQ(r.j()["chain_head"].get<std::string>().size(), 64u);
    online_json = r.body;

    auto reader = call(p, http::verb::post, "/v1/keys", k, R"({"role":"reader"})").j().value("key", std::string());
    auto scoped = call(p, http::verb::post, "/v1/keys", k, R"({"role":"admin","streams":["order-"]})").j().value("key", std::string());
    EXPECT_EQ(call(p, http::verb::post, "/v1/verify", reader).status, 403);
    EXPECT_EQ(call(p, http::verb::post, "/v1/verify", scoped).status, 403);
    EXPECT_EQ(call(p, http::verb::post, "/v1/verify").status, 401);
    EXPECT_EQ(call(p, http::verb::get, "/v1/verify", k).status, 405);

    const std::string url = " --url http://127.0.0.1:" + std::to_string(p) + " --key " + k;
    auto c = cli_split("verify --json" + url);
    ASSERT_EQ(c.code, 0) << c.err;
    EXPECT_EQ(c.out, online_json + "\n");
    c = cli_split("verify" + url);
    ASSERT_EQ(c.code, 0) << c.err;
    EXPECT_TRUE(contains(c.out, "ok: ")) << c.out;
    EXPECT_TRUE(contains(c.out, "chain head: " + r.j()["chain_head"].get<std::string>())) << c.out;
    auto denied = cli_split("verify --url http://127.0.0.1:" + std::to_string(p) + " --key " + reader);
    EXPECT_EQ(denied.code, 1);
    EXPECT_TRUE(contains(denied.err, "403") || contains(denied.err, "forbidden")) << denied.err;
    ASSERT_EQ(d.stop(SIGTERM), 0);
  }
  // Offline after the stop: the same report (nothing was appended in between).
  auto offline = cli_split("verify --json " + shell_quote(data));
  ASSERT_EQ(offline.code, 0) << offline.err;
  EXPECT_EQ(offline.out, online_json + "\n");
}

}  // namespace
