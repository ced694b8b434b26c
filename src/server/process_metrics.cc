#include "server/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include <fmt/format.h>

namespace cairn::server {

namespace {

// A number at the start of s (after spaces); nullopt rather than an exception for anything else, since the
// metrics listener answers on an I/O thread.
std::optional<double> number(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);  // "VmRSS:\t  123 kB"
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p == s.data()) return std::nullopt;
  return v;
}

std::optional<std::string> read_file(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The fields of /proc/self/stat after the command name, which is in parentheses and may hold spaces:
// fields[0] is field 3 (state) of proc(5).
std::vector<std::string> stat_fields() {
  std::vector<std::string> out;
  auto s = read_file("/proc/self/stat");
  if (!s) return out;
  const size_t close = s->rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream in(s->substr(close + 1));
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

std::optional<double> boot_time_seconds() {
  auto s = read_file("/proc/stat");
  if (!s) return std::nullopt;
  const size_t p = s->find("\nbtime ");
  if (p == std::string::npos) return std::nullopt;
  return number(std::string_view(*s).substr(p + 7));
}

std::optional<double> resident_bytes() {
  auto s = read_file("/proc/self/status");
  if (!s) return std::nullopt;
  const size_t p = s->find("\nVmRSS:");
  if (p == std::string::npos) return std::nullopt;
  auto kb = number(std::string_view(*s).substr(p + 7));  // "VmRSS:   12345 kB"
  if (!kb) return std::nullopt;
  return *kb * 1024;
}

std::optional<double> open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return std::nullopt;
  double n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the descriptor opendir itself holds
}

}  // namespace

std::string process_metrics_text() {
  std::string out;
  auto one = [&](std::string_view name, std::string_view type, std::string_view help, std::optional<double> v) {
    if (!v) return;
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, *v);
  };
  const std::vector<std::string> f = stat_fields();
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  // proc(5): utime is field 14, stime 15, starttime 22 (in clock ticks since boot); f[0] is field 3.
  std::optional<double> cpu, start;
  if (f.size() > 19 && ticks > 0) {
    const auto utime = number(f[11]), stime = number(f[12]), started = number(f[19]);
    if (utime && stime) cpu = (*utime + *stime) / ticks;
    if (auto boot = boot_time_seconds(); boot && started) start = *boot + *started / ticks;
  }
  one("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu);
  one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", resident_bytes());
  one("process_open_fds", "gauge", "Number of open file descriptors.", open_fds());
  std::optional<double> max_fds;
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    max_fds = static_cast<double>(rl.rlim_cur);
  one("process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds);
  one("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", start);
  return out;
}

std::string build_info_text(std::string_view version) {
  return fmt::format(
      "# HELP cairn_build_info The version of cairnd; always 1.\n# TYPE cairn_build_info gauge\n"
      "cairn_build_info{{version=\"{}\"}} 1\n",
      version);
}

}  // namespace cairn::server
