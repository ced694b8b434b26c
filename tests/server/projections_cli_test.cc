// `cairn projection ...` as a user runs it: against a running cairnd (--url/--key), and offline (--data) on
// the directory of a stopped one, where the CLI runs the projection runtime itself. Output is checked as
// printed (JSON where the command prints JSON), exit codes as documented: 0 done (verify: equal), 1 the
// operation failed, 2 bad usage or input.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "testing/temp_dir.h"

namespace {

using namespace cairn::server_test;
using Clock = std::chrono::steady_clock;

const std::string kPerStream =
    "return function(s, e)\n"
    "  s.count = (s.count or 0) + 1\n"
    "end\n";
const std::string kPoisonable =
    "return function(s, e)\n"
    "  if e.data.poison == true then error('poisoned') end\n"
    "  s.count = (s.count or 0) + 1\n"
    "end\n";
const std::string kSyntaxError = "return function(s, e)\n  s.count = = 1\nend\n";



std::string write_file(const cairn::testing::TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.sub(name);
  std::ofstream(path) << text;
  return path;
}

json parse(const Run& r) { return json::parse(r.out, nullptr, false); }

std::string describe(const Run& r) {
  return "exit " + std::to_string(r.code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

// Lines of text that are not empty.
std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l))
    if (!l.empty()) out.push_back(l);
  return out;
}

// Appends one event {"n": n} over HTTP; returns its position.
uint64_t append(int port, const std::string& key, const std::string& stream, int n) {
  auto r = call(port, http::verb::post, "/v1/streams/" + stream, key, one_event("any", "t", "{\"n\":" + std::to_string(n) + "}"));
  EXPECT_EQ(r.status, 201) << r.body;
  return r.j().value("last_position", uint64_t{0});
}

uint64_t head(int port) { return call(port, http::verb::get, "/health").j()["head_position"]; }

// rebuild --wait without a terminal: progress lines on stderr, or nothing.
void expect_rebuild_output(const Run& r, const std::string& name) {
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "rebuilt " + name)) << describe(r);
  for (const auto& l : lines(r.err)) EXPECT_TRUE(l.starts_with("rebuilding: position ")) << describe(r);
  EXPECT_FALSE(contains(r.err, "\r")) << "no progress bar without a terminal: " << describe(r);
}

TEST(ProjectionsCli, AgainstARunningServer) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.sub("data"));
  const int p = d.port();
  const std::string url = " --url http://127.0.0.1:" + std::to_string(p) + " --key " + d.key();
  const std::string counter_lua = write_file(dir, "counter.lua", kCounter);
  const std::string v2_lua = write_file(dir, "counter_v2.lua", kCounterV2);
  const std::string per_stream_lua = write_file(dir, "per_stream.lua", kPerStream);
  const std::string bad_lua = write_file(dir, "bad.lua", kSyntaxError);

  auto r = cli_split("projection create counter --lua " + counter_lua + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "registered counter v1")) << describe(r);
  r = cli_split("projection create counter --lua " + counter_lua + url);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "unchanged counter v1")) << describe(r);
  r = cli_split("projection create per-stream --lua " + per_stream_lua +
                " --partition-by stream --description 'one count per stream' --json" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["definition"]["partition"]["by"], "stream") << describe(r);
  EXPECT_EQ(parse(r)["definition"]["description"], "one count per stream") << describe(r);
  // The code from stdin.
  r = run_split("cat " + per_stream_lua + " | " + std::string(CAIRN_CLI) + " projection create from-stdin --lua -" + url);
  EXPECT_EQ(r.code, 0) << describe(r);

  std::vector<std::pair<std::string, int>> events;
  uint64_t last = 0, mid = 0;
  int sum = 0;
  for (int i = 1; i <= 12; ++i) {
    const std::string s = "s-" + std::string(1, static_cast<char>('a' + i % 3));
    last = append(p, d.key(), s, i);
    events.push_back({s, i});
    sum += i;
    if (i == 5) mid = last;
  }

  r = cli_split("projection list" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  for (const char* name : {"$streams", "$types", "counter", "per-stream", "from-stdin"})
    EXPECT_TRUE(contains(r.out, name)) << name << "\n" << describe(r);
  EXPECT_TRUE(contains(r.out, "active")) << describe(r);
  r = cli_split("projection list --json" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["projections"].size(), 7u) << describe(r);

  r = cli_split("projection show counter" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "counter")) << describe(r);
  EXPECT_TRUE(contains(r.out, "---- lua\n" + kCounter)) << describe(r);
  r = cli_split("projection show counter --json" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["definition"]["lua"], kCounter) << describe(r);

  // State: wait for the last append, one partition, the past.
  r = cli_split("projection state counter --wait-for " + std::to_string(last) + " --timeout-ms 20000" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", 12}, {"sum", sum}})) << describe(r);
  EXPECT_GT(parse(r)["position"].get<uint64_t>(), last) << describe(r);
  ASSERT_EQ(call(p, http::verb::get, "/v1/projections/per-stream/state?timeout_ms=20000&wait_for=" + std::to_string(last),
                 d.key()).status, 200);
  r = cli_split("projection state per-stream --partition s-a" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["found"], true) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", 4}})) << describe(r);
  r = cli_split("projection state per-stream --partition nope" + url);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["found"], false) << describe(r);
  r = cli_split("projection state counter --as-of " + std::to_string(mid) + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", 5}, {"sum", 15}})) << describe(r);
  r = cli_split("projection state counter --wait-for " + std::to_string(last + 100) + " --timeout-ms 50" + url);
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "timeout")) << describe(r);

  // Partitions, paged.
  r = cli_split("projection partitions per-stream --limit 2" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["keys"], json({"s-a", "s-b"})) << describe(r);
  EXPECT_EQ(parse(r)["next"], "s-b") << describe(r);
  r = cli_split("projection partitions per-stream --limit 2 --after s-b" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["keys"], json({"s-c"})) << describe(r);
  EXPECT_TRUE(parse(r)["next"].is_null()) << describe(r);

  // Digest: the server's; verify: equal, exit 0.
  r = cli_split("projection digest counter" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["sha256"], call(p, http::verb::get, "/v1/projections/counter/digest", d.key()).j()["sha256"]);
  r = cli_split("projection verify counter" + url);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(r.out.starts_with("equal: counter v1")) << describe(r);
  r = cli_split("projection verify per-stream --json" + url);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["equal"], true) << describe(r);

  // Versions: deploy v2, it takes over; back to v1; drop v2.
  r = cli_split("projection deploy counter --lua " + v2_lua + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "registered counter v2")) << describe(r);
  EXPECT_TRUE(contains(r.out, "building beside")) << describe(r);
  r = cli_split("projection versions counter" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  ASSERT_EQ(parse(r)["versions"].size(), 2u) << describe(r);
  EXPECT_EQ(parse(r)["versions"][1]["version"], 2) << describe(r);
  ASSERT_TRUE(eventually([&] { return parse(cli_split("projection state counter" + url))["version"] == 2; }));
  r = cli_split("projection state counter --wait-for " + std::to_string(head(p) - 1) + url);
  EXPECT_EQ(parse(r)["state"], json({{"count", 12}, {"v", 2}})) << describe(r);
  r = cli_split("projection state counter --version 1" + url);
  EXPECT_EQ(parse(r)["version"], 1) << describe(r);
  r = cli_split("projection show counter" + url);
  EXPECT_TRUE(contains(r.out, "v1")) << describe(r);
  EXPECT_TRUE(contains(r.out, "v2")) << describe(r);
  r = cli_split("projection activate counter 1" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["version"], 1) << describe(r);
  EXPECT_EQ(parse(cli_split("projection state counter" + url))["version"], 1);
  r = cli_split("projection drop counter 1" + url);  // the active one while v2 exists
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "conflict")) << describe(r);
  r = cli_split("projection drop counter 2" + url);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["dropped"], true) << describe(r);
  r = cli_split("projection versions counter" + url);
  EXPECT_EQ(parse(r)["versions"].size(), 1u) << describe(r);

  // Rebuild: --wait returns once it is done; without, at once.
  const std::string digest_before = parse(cli_split("projection digest counter" + url))["sha256"];
  r = cli_split("projection rebuild counter --wait" + url);
  expect_rebuild_output(r, "counter");
  EXPECT_EQ(call(p, http::verb::get, "/v1/projections/counter/rebuild", d.key()).j()["running"], false);
  EXPECT_EQ(parse(cli_split("projection digest counter" + url))["sha256"], digest_before);
  r = cli_split("projection rebuild per-stream" + url);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "started in the background")) << describe(r);

  // A faulted projection: listed with its fault; waiting past it and rebuilding it fail (exit 1), not hang.
  const std::string poison_lua = write_file(dir, "poison.lua", kPoisonable);
  ASSERT_EQ(cli_split("projection create poisonable --lua " + poison_lua + url).code, 0);
  auto pr = call(p, http::verb::post, "/v1/streams/bad-1", d.key(), one_event("any", "t", R"({"poison":true})"));
  ASSERT_EQ(pr.status, 201) << pr.body;
  const uint64_t poison = pr.j()["last_position"];
  ASSERT_TRUE(eventually([&] {
    return call(p, http::verb::get, "/v1/projections/poisonable", d.key()).j()["phase"] == "faulted";
  }));
  r = cli_split("projection list" + url);
  EXPECT_TRUE(contains(r.out, "FAULT at " + std::to_string(poison))) << describe(r);
  r = cli_split("projection state poisonable --timeout-ms 20000 --wait-for " + std::to_string(poison) + url);
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "faulted")) << describe(r);
  r = cli_split("projection state poisonable" + url);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["position"], poison) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", 12}})) << describe(r);
  r = cli_split("projection verify poisonable" + url);
  EXPECT_EQ(r.code, 0) << describe(r);
  r = cli_split("projection rebuild poisonable --wait" + url);
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "faulted")) << describe(r);

  // Bad input: exit 2; a missing projection: exit 1.
  r = cli_split("projection create x1" + url);
  EXPECT_EQ(r.code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--lua")) << describe(r);
  r = cli_split("projection create x1 --lua " + bad_lua + url);
  EXPECT_EQ(r.code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "invalid_argument")) << describe(r);
  EXPECT_TRUE(contains(r.err, "line 2: unexpected symbol near '='")) << "the line of the error: " << describe(r);
  r = cli_split("projection create Bad.Name --lua " + counter_lua + url);
  EXPECT_EQ(r.code, 2) << describe(r);
  r = cli_split("projection create x1 --lua " + counter_lua + " --partition-by galaxy" + url);
  EXPECT_EQ(r.code, 2) << describe(r);
  r = cli_split("projection create x1 --lua " + counter_lua + " --partition-by data" + url);  // no --field
  EXPECT_EQ(r.code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "partition.field")) << describe(r);
  r = cli_split("projection activate counter" + url);  // no version
  EXPECT_EQ(r.code, 2) << describe(r);
  r = cli_split("projection drop counter abc" + url);
  EXPECT_EQ(r.code, 2) << describe(r);
  r = cli_split("projection deploy counter --version 1 --lua " + v2_lua + url);  // v1 exists with other code
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "conflict")) << describe(r);
  for (const std::string cmd : {"show nope", "state nope", "partitions nope", "digest nope", "verify nope",
                                "rebuild nope", "versions nope", "activate nope 1", "drop nope 1", "activate counter 9"}) {
    r = cli_split("projection " + cmd + url);
    EXPECT_EQ(r.code, 1) << cmd << ": " << describe(r);
    EXPECT_TRUE(contains(r.err, "not_found")) << cmd << ": " << describe(r);
  }
  EXPECT_EQ(cli_split("projection show nope --json" + url).code, 1);
  r = cli_split("projection list --url http://127.0.0.1:" + std::to_string(p) + " --key cairn_wrong");
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "unauthorized")) << describe(r);
  EXPECT_EQ(call(p, http::verb::get, "/v1/projections/x1", d.key()).status, 404);  // nothing was registered

  // While cairnd serves the directory, --data is refused with a hint.
  r = cli_split("projection list --data " + dir.sub("data"));
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "--url")) << describe(r);
}

TEST(ProjectionsCli, OfflineOnAStoppedServersDirectory) {
  cairn::testing::TempDir dir;
  const std::string data = dir.sub("data");
  const std::string counter_lua = write_file(dir, "counter.lua", kCounter);
  const std::string v2_lua = write_file(dir, "counter_v2.lua", kCounterV2);
  const std::string per_stream_lua = write_file(dir, "per_stream.lua", kPerStream);
  const std::string bad_lua = write_file(dir, "bad.lua", kSyntaxError);
  std::string key;
  int count = 0, sum = 0;
  uint64_t mid = 0;
  {
    Cairnd d(data);
    key = d.key();
    const std::string url = " --url http://127.0.0.1:" + std::to_string(d.port()) + " --key " + key;
    ASSERT_EQ(cli_split("projection create counter --lua " + counter_lua + url).code, 0);
    ASSERT_EQ(cli_split("projection create per-stream --partition-by stream --lua " + per_stream_lua + url).code, 0);
    for (int i = 1; i <= 10; ++i) {
      const uint64_t pos = append(d.port(), key, i % 2 ? "s-a" : "s-b", i);
      ++count;
      sum += i;
      if (i == 4) mid = pos;
    }
    EXPECT_EQ(d.stop(SIGTERM), 0);
  }
  const std::string at = " --data " + data;
  // More events while the server is down: the offline queries catch up with them before answering.
  for (int i = 11; i <= 13; ++i) {
    auto a = cli_split("append s-c t '{\"n\":" + std::to_string(i) + "}'" + at);
    ASSERT_EQ(a.code, 0) << describe(a);
    ++count;
    sum += i;
  }

  auto r = cli_split("projection list" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "counter")) << describe(r);
  EXPECT_TRUE(contains(r.out, "per-stream")) << describe(r);
  r = cli_split("projection state counter" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", count}, {"sum", sum}})) << describe(r);
  const uint64_t position = parse(r)["position"];
  r = cli_split("projection state per-stream --partition s-c" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", 3}})) << describe(r);
  r = cli_split("projection state per-stream" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"s-a", {{"count", 5}}}, {"s-b", {{"count", 5}}}, {"s-c", {{"count", 3}}}}))
      << describe(r);
  r = cli_split("projection state counter --as-of " + std::to_string(mid) + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", 4}, {"sum", 10}})) << describe(r);
  r = cli_split("projection partitions per-stream --limit 2" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["keys"], json({"s-a", "s-b"})) << describe(r);
  EXPECT_EQ(parse(r)["next"], "s-b") << describe(r);
  r = cli_split("projection digest counter" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["sha256"].get<std::string>().size(), 64u) << describe(r);
  EXPECT_EQ(parse(r)["position"], position) << describe(r);
  r = cli_split("projection verify counter" + at);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(r.out.starts_with("equal: counter v1")) << describe(r);
  r = cli_split("projection verify per-stream --json" + at);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["equal"], true) << describe(r);
  r = cli_split("projection show counter" + at);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, kCounter)) << describe(r);

  // Define offline; it catches up from position 0 before the first answer.
  r = cli_split("projection create offline-one --lua " + counter_lua + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "registered offline-one v1")) << describe(r);
  r = cli_split("projection state offline-one" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", count}, {"sum", sum}})) << describe(r);

  // Versions offline.
  r = cli_split("projection deploy counter --lua " + v2_lua + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "registered counter v2")) << describe(r);
  r = cli_split("projection versions counter" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["versions"].size(), 2u) << describe(r);
  r = cli_split("projection state counter --version 2" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(parse(r)["state"], json({{"count", count}, {"v", 2}})) << describe(r);
  r = cli_split("projection activate counter 2" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  r = cli_split("projection state counter" + at);
  EXPECT_EQ(parse(r)["version"], 2) << describe(r);
  r = cli_split("projection drop counter 1" + at);
  ASSERT_EQ(r.code, 0) << describe(r);
  r = cli_split("projection versions counter" + at);
  ASSERT_EQ(parse(r)["versions"].size(), 1u) << describe(r);

  // Rebuild offline always waits for the end.
  r = cli_split("projection rebuild per-stream --wait" + at);
  expect_rebuild_output(r, "per-stream");
  r = cli_split("projection rebuild offline-one" + at);
  expect_rebuild_output(r, "offline-one");
  r = cli_split("projection verify offline-one" + at);
  EXPECT_EQ(r.code, 0) << describe(r);

  // Errors offline.
  r = cli_split("projection show nope" + at);
  EXPECT_EQ(r.code, 1) << describe(r);
  r = cli_split("projection state nope" + at);
  EXPECT_EQ(r.code, 1) << describe(r);
  r = cli_split("projection create x1 --lua " + bad_lua + at);
  EXPECT_EQ(r.code, 2) << describe(r);
  r = cli_split("projection create x1" + at);
  EXPECT_EQ(r.code, 2) << describe(r);

  // The server sees what was done offline.
  Cairnd d(data);
  const int p = d.port();
  const uint64_t h = head(p);
  auto s = call(p, http::verb::get, "/v1/projections/counter/state?timeout_ms=20000&wait_for=" + std::to_string(h - 1), key);
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(s.j()["version"], 2) << s.body;
  EXPECT_EQ(s.j()["state"], json({{"count", count}, {"v", 2}})) << s.body;
  s = call(p, http::verb::get, "/v1/projections/offline-one/state?timeout_ms=20000&wait_for=" + std::to_string(h - 1), key);
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(s.j()["state"], json({{"count", count}, {"sum", sum}})) << s.body;
  EXPECT_EQ(call(p, http::verb::get, "/v1/projections/counter/versions", key).j()["versions"].size(), 1u);
}

}  // namespace
