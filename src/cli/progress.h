// A progress bar on stderr for long CLI operations (verify, reindex, purge): drawn on a terminal only and
// rewritten in place at most ten times a second; scripts and pipes see nothing. One thread.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

namespace cairn::cli {

inline bool terminal(FILE* f) { return ::isatty(::fileno(f)) == 1; }

// Progress on a terminal only, rewritten in place; scripts see nothing.
class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), on_(terminal(stderr)) {}
  ~Progress() { done(); }
  void update(uint64_t done, uint64_t total, std::string_view unit) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100) && done != total) return;
    last_ = now;
    const double pct = total ? 100.0 * double(done) / double(total) : 100.0;
    const int bar = static_cast<int>(pct / 5);
    std::fprintf(stderr, "\r%s [%-20s] %5.1f%% %llu/%llu %.*s", what_.c_str(), std::string(bar, '#').c_str(), pct,
                 (unsigned long long)done, (unsigned long long)total, (int)unit.size(), unit.data());
    shown_ = true;
  }
  void done() {
    if (shown_) std::fprintf(stderr, "\n");
    shown_ = false;
  }

 private:
  std::string what_;
  bool on_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace cairn::cli
