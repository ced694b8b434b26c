#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <thread>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

namespace cairn::server_test {

namespace beast = boost::beast;
using tcp = boost::asio::ip::tcp;

Reply call(int port, http::verb method, const std::string& target, const std::string& key, const std::string& body,
           const std::string& content_type) {
  try {
    boost::asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!key.empty()) req.set(http::field::authorization, "Bearer " + key);
    if (!body.empty() || method == http::verb::post) {
      req.set(http::field::content_type, content_type);
      req.body() = body;
    }
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    Reply out{static_cast<int>(res.result_int()), res.body(), {}};
    for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    return out;
  } catch (const std::exception&) {
    return {};
  }
}

std::string Reply::header(const std::string& name, bool* present) const {
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  if (present) *present = false;
  for (const auto& [k, v] : headers)
    if (lower(k) == lower(name)) {
      if (present) *present = true;
      return v;
    }
  return "";
}

Cairnd::Cairnd(const std::string& dir, std::vector<std::string> extra) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe");
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that crashed (it would hold CTest's pipes)
    ::dup2(out[1], 1);
    ::close(out[0]);
    std::vector<std::string> args{CAIRND, "--data", dir, "--http", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(CAIRND, argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  out_ = ::fdopen(out[0], "r");
  char line[512];
  while (std::fgets(line, sizeof line, out_)) {
    std::string s = line;
    if (auto p = s.find("cairn_"); p != std::string::npos && s.starts_with("admin key")) {
      key_ = s.substr(p, s.find_first_of(" \n", p) - p);
    }
    if (auto p = s.find("://127.0.0.1:"); p != std::string::npos) {
      port_ = std::atoi(s.c_str() + p + 13);
      break;
    }
  }
  // With --metrics-http, the line after the main one names the metrics listener.
  const bool metrics = std::find(extra.begin(), extra.end(), "--metrics-http") != extra.end();
  if (port_ != 0 && metrics && std::fgets(line, sizeof line, out_)) {
    std::string s = line;
    if (auto p = s.find("metrics on http://127.0.0.1:"); p != std::string::npos) metrics_port_ = std::atoi(s.c_str() + p + 28);
  }
  if (port_ == 0 || (metrics && metrics_port_ == 0)) {
    stop(SIGKILL);
    std::fclose(out_);
    out_ = nullptr;
    throw std::runtime_error("cairnd did not start");
  }
}

Cairnd::~Cairnd() {
  if (pid_ > 0) stop(SIGKILL);
  if (out_) std::fclose(out_);
}

int Cairnd::stop(int sig) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, sig);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string one_event(const std::string& expected, const std::string& type, const std::string& data,
                      const std::string& id) {
  json ev = {{"type", type}, {"data", json::parse(data)}};
  if (!id.empty()) ev["id"] = id;
  json body = {{"events", json::array({ev})}};
  if (expected.empty()) {
  } else if (std::isdigit(static_cast<unsigned char>(expected[0]))) {
    body["expected_revision"] = std::stoull(expected);
  } else {
    body["expected_revision"] = expected;
  }
  return body.dump();
}

std::pair<int, std::string> cli_raw(const std::string& cmd_line) {
  const std::string cmd = cmd_line + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

std::pair<int, std::string> cli(const std::string& args) { return cli_raw(std::string(CAIRN_CLI) + " " + args); }

Run run_split(const std::string& cmd_line) {
  char path[] = "/tmp/cairn-test-stderr-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return {-1, "", "mkstemp failed"};
  ::close(fd);
  const std::string cmd = cmd_line + " 2>" + path;
  Run r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    ::unlink(path);
    return {-1, "", "popen failed"};
  }
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  ::unlink(path);
  return r;
}

Run cli_split(const std::string& args) { return run_split(std::string(CAIRN_CLI) + " " + args); }

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out.push_back(c);
  }
  out += "'";
  return out;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

bool eventually(const std::function<bool()>& f, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return f();
}

}  // namespace cairn::server_test
