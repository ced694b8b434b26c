// Small helpers the benchmark programs share: failing loudly, timing, and the UTC date a result carries.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

namespace cairn::bench {

using Clock = std::chrono::steady_clock;

// The program's name, for messages (set by each main()).
inline const char*& program_name() {
  static const char* name = "cairn-bench";
  return name;
}

[[noreturn]] inline void fail(const std::string& m) {
  std::fprintf(stderr, "%s: %s\n", program_name(), m.c_str());
  std::exit(1);
}

inline double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Now, UTC, RFC 3339 to the second.
inline std::string utc_now() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace cairn::bench
