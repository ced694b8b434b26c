// Projections under SIGKILL: a child process runs the projection runtime on a store with a long history
// (so a kill can land during catch-up) while it keeps appending (so a kill can land during live
// processing and during checkpoint writes, which are frequent here). The parent kills it at a random
// moment, reopens the store and the runtime, waits until every projection has caught up, and checks:
//   - verify(): the resumed state (last checkpoint + catch-up) equals a replay from position 0;
//   - an oracle independent of the runtime: for sampled streams, the partition's count, sum of positions
//     and last position equal what read_stream() returns, so an event applied twice or skipped is caught
//     even if the live path and the replay path shared a bug.
// Iterations: CAIRN_CRASH_ITERATIONS (default 12; 5 under AddressSanitizer). Seed: CAIRN_CRASH_SEED.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cairn/projection.h"
#include "crash_env.h"
#include "cairn/store.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using namespace std::chrono_literals;

constexpr int kStreams = 50;
constexpr const char* kPerStream =
    "return function(s, e) s.n = (s.n or 0) + 1 s.sum = (s.sum or 0) + e.position s.last = e.position end";
constexpr const char* kByType = "return function(s, e) s[e.type] = (s[e.type] or 0) + 1 end";

ProjectionsOptions runtime_options(const std::string& dir) {
  ProjectionsOptions po;
  po.dir = dir;
  po.batch_events = 97;
  po.checkpoint_interval = 5ms;
  po.checkpoint_events = 500;
  return po;
}

void append_some(Store& store, std::mt19937_64& rng, int commits) {
  for (int c = 0; c < commits; ++c) {
    StreamAppend a;
    a.stream = fmt::format("acct-{}", rng() % kStreams);
    const int n = 1 + static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) {
      EventData e;
      e.type = rng() % 3 == 0 ? "acct.debited" : "acct.credited";
      e.data = fmt::format(R"({{"amount":{}}})", rng() % 100);
      a.events.push_back(std::move(e));
    }
    auto r = store.append(std::move(a));
    if (!r.ok()) {
      std::fprintf(stderr, "child append: %s\n", r.status().to_string().c_str());
      _exit(3);
    }
  }
}

// The child: open, keep projecting and appending until killed.
[[noreturn]] void child(const std::string& store_dir, const std::string& proj_dir, uint64_t seed) {
  EmbeddedOptions o;
  o.dir = store_dir;
  o.durability = Durability::kNone;  // SIGKILL keeps what was written; power loss is not simulated here
  auto store = open_store(o);
  if (!store.ok()) _exit(4);
  auto p = open_projections(**store, runtime_options(proj_dir));
  if (!p.ok()) _exit(5);
  std::mt19937_64 rng(seed);
  for (;;) {
    append_some(**store, rng, 5);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
  }
}

TEST(ProjectionCrash, KilledDuringCatchUpAndLiveResumesToTheSameStateAsAReplay) {
  const int iterations = crash::iterations(12, 5);
  const uint64_t seed = crash::seed();
  SCOPED_TRACE(fmt::format("CAIRN_CRASH_SEED={}", seed));
  std::mt19937_64 rng(seed);

  testing::TempDir dir;
  const std::string store_dir = dir.sub("store"), proj_dir = dir.sub("projections");
  EmbeddedOptions o;
  o.dir = store_dir;
  o.durability = Durability::kNone;
  {
    auto store = open_store(o);
    ASSERT_TRUE(store.ok());
    append_some(**store, rng, 3000);  // a history long enough for a kill to land in catch-up
    auto p = open_projections(**store, runtime_options(proj_dir));
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    ProjectionDefinition per_stream;
    per_stream.name = "per-stream";
    per_stream.lua = kPerStream;
    per_stream.partition.by = PartitionBy::kStream;
    ASSERT_TRUE((*p)->define(per_stream).ok());
    ProjectionDefinition by_type;
    by_type.name = "by-type";
    by_type.lua = kByType;
    ASSERT_TRUE((*p)->define(by_type).ok());
    // Kill the first child before anything was checkpointed by closing without waiting.
  }

  for (int it = 0; it < iterations; ++it) {
    SCOPED_TRACE(fmt::format("iteration {}", it));
    // Every other iteration drops the checkpoints, so the next child starts a catch-up from position 0.
    if (it % 3 == 1) std::filesystem::remove_all(proj_dir);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) child(store_dir, proj_dir, seed + static_cast<uint64_t>(it) + 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(10 + rng() % 400));
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "the child exited by itself with status " << WEXITSTATUS(wstatus);

    auto store = open_store(o);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    auto p = open_projections(**store, runtime_options(proj_dir));
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    const uint64_t head = (*store)->head_position();
    for (const char* name : {"per-stream", "by-type"}) {
      auto s = (*p)->state(name, std::nullopt, 0, head - 1, 60s);
      ASSERT_TRUE(s.ok()) << name << ": " << s.status().to_string();
      auto v = (*p)->verify(name, 0);
      ASSERT_TRUE(v.ok()) << v.status().to_string();
      EXPECT_TRUE(v->equal) << name << " differs from a replay at position " << v->position << ": first key "
                            << (v->differences.empty() ? "?" : v->differences[0].key);
    }
    // The oracle: each sampled stream's partition against the stream itself.
    for (int k = 0; k < 5; ++k) {
      const std::string stream = fmt::format("acct-{}", rng() % kStreams);
      auto s = (*p)->state("per-stream", stream, 0, head - 1, 60s);
      ASSERT_TRUE(s.ok());
      uint64_t n = 0, sum = 0, last = 0;
      std::optional<uint64_t> from = 0;
      while (from) {
        auto page = (*store)->read_stream(stream, from, Direction::kForward, 1000);
        if (!page.ok()) break;  // the stream may not exist yet
        for (const auto& e : page->events)
          if (e.position < s->position) {
            ++n;
            sum += e.position;
            last = e.position;
          }
        from = page->next;
      }
      if (n == 0) {
        EXPECT_FALSE(s->found);
        continue;
      }
      auto j = nlohmann::json::parse(s->json);
      EXPECT_EQ(j["n"].get<uint64_t>(), n) << stream;
      EXPECT_EQ(j["sum"].get<uint64_t>(), sum) << stream;
      EXPECT_EQ(j["last"].get<uint64_t>(), last) << stream;
    }
    ASSERT_TRUE((*p)->close().ok());
    ASSERT_TRUE((*store)->close().ok());
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace cairn
