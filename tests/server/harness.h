// The harness of the cairnd tests: one HTTP exchange over a real socket (call), a cairnd child process on a
// free loopback port (Cairnd), and the cairn CLI run as a child (cli_raw, cli, run_split).
// CAIRND and CAIRN_CLI are the paths of the binaries under test (compile definitions, tests/server/CMakeLists.txt).
#pragma once

#include <sys/types.h>

#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace cairn::server_test {

namespace http = boost::beast::http;
using nlohmann::json;

struct Reply {
  int status = 0;  // 0: no answer (connection failed or closed)
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // as received, names as sent
  // A header's value by name (case-insensitive), "" when absent; `present` tells absent from empty.
  std::string header(const std::string& name, bool* present = nullptr) const;
  json j() const { return json::parse(body, nullptr, false); }
  // One field of the body, by value (safe to iterate: `for (auto& e : r.j()["events"])` would dangle).
  json field(const std::string& name) const {
    json v = j();
    if (!v.is_object() || !v.contains(name)) return nullptr;
    return v[name];
  }
};

// One request on a fresh connection. A POST always carries Content-Type (content_type), even with no body.
Reply call(int port, http::verb method, const std::string& target, const std::string& key = "",
           const std::string& body = "", const std::string& content_type = "application/json");

// A cairnd child process: `cairnd --data dir --http 127.0.0.1:0 extra...`. The constructor returns once it
// listens; the admin key is captured when cairnd prints one (the first start on a directory).
class Cairnd {
 public:
  explicit Cairnd(const std::string& dir, std::vector<std::string> extra = {});
  ~Cairnd();
  Cairnd(const Cairnd&) = delete;
  Cairnd& operator=(const Cairnd&) = delete;
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }  // with --metrics-http ADDR:0 in extra
  pid_t pid() const { return pid_; }
  const std::string& key() const { return key_; }
  // Sends sig and returns the exit code (or 128 + signal).
  int stop(int sig);

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string key_;
};

// The body of POST /v1/streams/{s} with one event. expected: "" (none), "any", "no_stream", "exists" or a number.
std::string one_event(const std::string& expected, const std::string& type, const std::string& data,
                      const std::string& id = "");

// Runs a shell command line; returns its exit code and stdout and stderr together.
std::pair<int, std::string> cli_raw(const std::string& cmd_line);
// The cairn CLI with these arguments (a shell command line), stdout and stderr together.
std::pair<int, std::string> cli(const std::string& args);

// A command's exit code with its stdout and stderr apart.
struct Run {
  int code = -1;
  std::string out;
  std::string err;
};
Run run_split(const std::string& cmd_line);
// The cairn CLI with these arguments, stdout and stderr apart.
Run cli_split(const std::string& args);

// Quotes one argument for the shell.
std::string shell_quote(const std::string& s);

bool contains(const std::string& s, const std::string& part);
// Polls f every 20 ms until it holds or `seconds` pass; the last answer.
bool eventually(const std::function<bool()>& f, double seconds = 20);

// Lua reducers the projection tests share: counts events and sums data.n (unpartitioned); and another one,
// to tell versions apart.
inline const std::string kCounter =
    "return function(s, e)\n"
    "  s.count = (s.count or 0) + 1\n"
    "  s.sum = (s.sum or 0) + (e.data.n or 0)\n"
    "end\n";
inline const std::string kCounterV2 =
    "return function(s, e)\n"
    "  s.count = (s.count or 0) + 1\n"
    "  s.v = 2\n"
    "end\n";

}  // namespace cairn::server_test
