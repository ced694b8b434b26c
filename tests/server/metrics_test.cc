// /metrics as Prometheus reads it: a live scrape of both listeners (the main one, with a key, and the
// --metrics-http one, without) passes `promtool check metrics` (Debian's prometheus package; `make deps`
// installs it), carries the standard process metrics and cairn_build_info, and the keyless listener serves
// nothing but GET /metrics.
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "harness.h"
#include "testing/temp_dir.h"

namespace {

using namespace cairn::server_test;

// `promtool check metrics` on the text: its exit code and what it printed.
std::pair<int, std::string> promtool_check(const cairn::testing::TempDir& dir, const std::string& text) {
  const std::string file = dir.path() + "/scrape.txt";
  std::ofstream(file) << text;
  return cli_raw("promtool check metrics < " + shell_quote(file));
}

// The samples without labels: name -> value.
std::map<std::string, double> plain_samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line.find('{') != std::string::npos) continue;
    const auto sp = line.find(' ');
    if (sp != std::string::npos) out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

void expect_standard_series(const std::string& text, const std::string& where) {
  const auto s = plain_samples(text);
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                           "process_max_fds", "process_start_time_seconds", "cairn_events"})
    EXPECT_TRUE(s.count(name)) << where << ": no " << name;
  if (s.count("process_resident_memory_bytes")) EXPECT_GT(s.at("process_resident_memory_bytes"), 1e6) << where;
  if (s.count("process_open_fds")) EXPECT_GT(s.at("process_open_fds"), 2) << where;
  if (s.count("process_cpu_seconds_total")) EXPECT_GE(s.at("process_cpu_seconds_total"), 0) << where;
  if (s.count("process_start_time_seconds")) {
    // Started by this test: not in the future, and after this machine's clock read 2020.
    EXPECT_LE(s.at("process_start_time_seconds"), static_cast<double>(std::time(nullptr)) + 1) << where;
    EXPECT_GT(s.at("process_start_time_seconds"), 1577836800.0) << where;
  }
  EXPECT_NE(text.find("\ncairn_build_info{version=\"0.1.0\"} 1\n"), std::string::npos) << where << ":\n" << text;
}

TEST(Metrics, BothListenersPassPromtoolAndCarryTheStandardSeries) {
  ASSERT_EQ(cli_raw("command -v promtool").first, 0) << "promtool is missing: `make deps` installs Debian's prometheus";
  cairn::testing::TempDir dir;
  Cairnd d(dir.path(), {"--metrics-http", "127.0.0.1:0"});
  ASSERT_GT(d.metrics_port(), 0);
  // Some traffic first, so that the labelled families have samples.
  ASSERT_EQ(call(d.port(), http::verb::post, "/v1/streams/m-1", d.key(), one_event("", "t", "{}")).status, 201);
  EXPECT_EQ(call(d.port(), http::verb::get, "/v1/streams/nope", d.key()).status, 404);

  // The main listener's /metrics still needs a key.
  EXPECT_EQ(call(d.port(), http::verb::get, "/metrics").status, 401);
  const Reply main = call(d.port(), http::verb::get, "/metrics", d.key());
  ASSERT_EQ(main.status, 200) << main.body;
  EXPECT_EQ(main.header("Content-Type"), "text/plain; version=0.0.4");
  auto [rc, out] = promtool_check(dir, main.body);
  EXPECT_EQ(rc, 0) << "promtool check metrics (main listener):\n" << out;
  EXPECT_EQ(out, "") << "promtool check metrics (main listener) found problems";
  expect_standard_series(main.body, "main listener");

  const Reply scrape = call(d.metrics_port(), http::verb::get, "/metrics");
  ASSERT_EQ(scrape.status, 200) << scrape.body;
  EXPECT_EQ(scrape.header("Content-Type"), "text/plain; version=0.0.4");
  std::tie(rc, out) = promtool_check(dir, scrape.body);
  EXPECT_EQ(rc, 0) << "promtool check metrics (--metrics-http):\n" << out;
  EXPECT_EQ(out, "") << "promtool check metrics (--metrics-http) found problems";
  expect_standard_series(scrape.body, "--metrics-http");
}

TEST(Metrics, TheKeylessListenerServesNothingElse) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path(), {"--metrics-http", "127.0.0.1:0"});
  const int m = d.metrics_port();
  for (const std::string path : {"/health", "/v1/stats", "/v1/events", "/v1/keys", "/v1/streams/x", "/", "/metrics/x"}) {
    EXPECT_EQ(call(m, http::verb::get, path).status, 404) << path;
    EXPECT_EQ(call(m, http::verb::get, path, d.key()).status, 404) << path << " with a key";
  }
  EXPECT_EQ(call(m, http::verb::post, "/v1/streams/x", d.key(), one_event("", "t", "{}")).status, 404);
  const Reply post = call(m, http::verb::post, "/metrics", "", "{}");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("Allow"), "GET");
  // Nothing was appended through it.
  EXPECT_EQ(call(d.port(), http::verb::get, "/v1/streams/x", d.key()).status, 404);
}

TEST(Metrics, ABadMetricsAddressIsAUsageError) {
  cairn::testing::TempDir dir;
  auto [rc, out] = cli_raw(std::string(CAIRND) + " --data " + shell_quote(dir.path()) +
                           " --http 127.0.0.1:0 --metrics-http nonsense");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--metrics-http: 'nonsense' is not ADDR:PORT"), std::string::npos) << out;
}

}  // namespace
