// cairn-projection-bench: projection rebuild speed and as-of latency (bench/run_projections.sh runs it).
//
// Builds a store of N events (durability none: the build is not what is measured), then for each workload
// registers a projection on a fresh projection directory and times the rebuild from position 0 until its
// position reaches the head, through the public API (checkpoints included). Prints one JSON line per result.
//   lua-count-by-type      Lua: state[e.type] += 1, one state
//   lua-per-stream         Lua: per-stream state {n, last, total} partitioned by stream
//   cpp-count-by-type      C++ reducer (CppReducer) doing the same as lua-count-by-type
//   as-of                  state_as_of at random positions of a 1M-event Lua projection with snapshots
// Usage: cairn-projection-bench --dir DIR [--events N] [--streams S] [--machine JSON] [--workload NAME]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bench_util.h"

#include "cairn/projection.h"
#include "cairn/store.h"

namespace {

using cairn::bench::Clock;
using namespace std::chrono_literals;

using cairn::bench::fail;
using cairn::bench::secs;

struct Args {
  std::string dir;
  uint64_t events = 10'000'000;
  uint64_t streams = 100'000;
  std::string machine = "null";
  std::string workload = "all";
  uint64_t as_of_events = 1'000'000;
};

const char* kTypes[] = {"order.placed",      "order.paid",        "order.shipped",      "proposal.made",
                        "human.decision.made", "feedback.left",  "skill.executed",     "question.asked",
                        "path.chosen",       "user.signed_up",    "user.renamed",       "cart.item_added",
                        "cart.item_removed", "invoice.issued",    "invoice.paid",       "model.deployed",
                        "prompt.changed",    "tool.called",       "tool.failed",        "session.ended"};

// Appends `events` events: batches of 100 to streams user-0..user-(streams-1) in turn, 20 types.
void build(cairn::Store& store, uint64_t events, uint64_t streams) {
  uint64_t done = 0, k = 0;
  std::mt19937_64 rng(42);
  while (done < events) {
    cairn::StreamAppend a;
    a.stream = fmt::format("user-{}", k % streams);
    const uint64_t n = std::min<uint64_t>(100, events - done);
    for (uint64_t i = 0; i < n; ++i) {
      cairn::EventData e;
      e.type = kTypes[rng() % 20];
      e.data = fmt::format(R"({{"user_id":"u{}","amount":{},"model":"m-{}"}})", k % streams, rng() % 1000, rng() % 4);
      a.events.push_back(std::move(e));
    }
    auto r = store.append(std::move(a));
    if (!r.ok()) fail("append: " + r.status().to_string());
    done += n;
    ++k;
  }
}

struct Counts {
  std::vector<std::pair<std::string, uint64_t>> by_type;
};

cairn::EngineFactory cpp_count_by_type() {
  cairn::CppReducer<Counts> r;
  r.apply = [](Counts& c, const cairn::EventView& e) -> cairn::Status {
    for (auto& [t, n] : c.by_type)
      if (t == e.type) {
        ++n;
        return {};
      }
    c.by_type.emplace_back(std::string(e.type), 1);
    return {};
  };
  r.to_json = [](const Counts& c) {
    auto sorted = c.by_type;
    std::sort(sorted.begin(), sorted.end());
    std::string out = "{";
    for (const auto& [t, n] : sorted) out += fmt::format("{}\"{}\":{}", out.size() > 1 ? "," : "", t, n);
    return out + "}";
  };
  r.from_json = [](std::string_view) -> cairn::Result<Counts> {
    return cairn::Status::invalid_argument("the benchmark never restores");
  };
  return cairn::make_cpp_engine(std::move(r));
}

std::unique_ptr<cairn::Projections> open_runtime(cairn::Store& store, const std::string& dir) {
  std::error_code ec;
  cairn::ProjectionsOptions po;
  po.dir = dir;
  po.builtins = false;
  auto p = cairn::open_projections(store, po);
  if (!p.ok()) fail("open_projections: " + p.status().to_string());
  // Projections of earlier workloads (or runs) on this store would run alongside: drop them first.
  for (bool active : {false, true})
    for (const auto& s : (*p)->list())
      if (s.active == active)
        if (auto st = (*p)->drop(s.name, s.version); !st.ok()) fail("drop: " + st.to_string());
  return std::move(*p);
}

// Waits until the projection's position reaches the head; returns seconds since `start`.
double wait_caught_up(cairn::Projections& p, cairn::Store& store, const std::string& name, Clock::time_point start) {
  for (;;) {
    auto s = p.status(name);
    if (!s.ok()) fail("status: " + s.status().to_string());
    if (s->fault) fail(fmt::format("{} faulted: {}", name, s->fault->message));
    if (s->position >= store.head_position()) return secs(Clock::now() - start);
    std::this_thread::sleep_for(1ms);
  }
}

void emit(const Args& a, const std::string& workload, const std::string& reducer, uint64_t events, double seconds,
          const std::string& extra) {
  std::printf(
      "{\"system\":\"cairn\",\"workload\":\"%s\",\"reducer\":\"%s\",\"events\":%llu,\"seconds\":%.4f,"
      "\"events_per_s\":%.0f,\"durability\":\"none (store build); rebuild reads the page cache\"%s,"
      "\"machine\":%s,\"date\":\"%s\"}\n",
      workload.c_str(), reducer.c_str(), static_cast<unsigned long long>(events), seconds,
      static_cast<double>(events) / seconds, extra.c_str(), a.machine.c_str(), cairn::bench::utc_now().c_str());
  std::fflush(stdout);
}

void rebuild_lua(const Args& a, cairn::Store& store, const std::string& name, const std::string& code,
                 cairn::PartitionBy by) {
  const std::string pdir = fmt::format("{}/projections-{}", a.dir, name);
  std::filesystem::remove_all(pdir);
  auto p = open_runtime(store, pdir);
  cairn::ProjectionDefinition d;
  d.name = name;
  d.lua = code;
  d.partition.by = by;
  d.snapshot_every = 0;
  const uint64_t events = store.head_position();
  const auto t0 = Clock::now();
  auto r = p->define(d);
  if (!r.ok()) fail("define: " + r.status().to_string());
  const double t = wait_caught_up(*p, store, name, t0);
  auto st = p->status(name);
  emit(a, "projection-rebuild", name, events, t,
       fmt::format(",\"partitions\":{},\"language\":\"lua\",\"note\":\"define() to position == head, checkpoints included\"",
                   st.ok() ? st->partitions : 0));
  (void)p->close();
}

}  // namespace

int main(int argc, char** argv) {
  cairn::bench::program_name() = "cairn-projection-bench";
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) fail(k + ": needs a value");
      return argv[++i];
    };
    if (k == "--dir") a.dir = next();
    else if (k == "--events") a.events = std::stoull(next());
    else if (k == "--streams") a.streams = std::stoull(next());
    else if (k == "--machine") a.machine = next();
    else if (k == "--workload") a.workload = next();
    else if (k == "--as-of-events") a.as_of_events = std::stoull(next());
    else fail("unknown argument " + k);
  }
  if (a.dir.empty()) fail("--dir is required");
  const bool all = a.workload == "all";
  auto open = [&](const std::string& sub, uint64_t events) {
    cairn::EmbeddedOptions o;
    o.dir = a.dir + "/" + sub;
    o.durability = cairn::Durability::kNone;
    auto s = cairn::open_store(o);
    if (!s.ok()) fail("open_store: " + s.status().to_string());
    if ((*s)->head_position() < events) {
      const auto t0 = Clock::now();
      build(**s, events - (*s)->head_position(), a.streams);
      std::fprintf(stderr, "built %s: %llu events in %.1f s\n", sub.c_str(), static_cast<unsigned long long>(events),
                   secs(Clock::now() - t0));
    }
    return std::move(*s);
  };

  if (all || a.workload != "as-of") {
    auto store = open("store", a.events);
    if (all || a.workload == "lua-count-by-type")
      rebuild_lua(a, *store, "lua-count-by-type", "return function(s, e) local t = e.type s[t] = (s[t] or 0) + 1 end",
                  cairn::PartitionBy::kNone);
    if (all || a.workload == "lua-per-stream")
      rebuild_lua(a, *store, "lua-per-stream",
                  "return function(s, e) s.n = (s.n or 0) + 1 s.last = e.position s.last_type = e.type end",
                  cairn::PartitionBy::kStream);
    if (all || a.workload == "cpp-count-by-type") {
      const std::string pdir = a.dir + "/projections-cpp";
      std::filesystem::remove_all(pdir);
      auto p = open_runtime(*store, pdir);
      cairn::CppProjection c;
      c.name = "cpp-count-by-type";
      c.engine = cpp_count_by_type();
      c.snapshot_every = 0;
      const uint64_t events = store->head_position();
      const auto t0 = Clock::now();
      auto r = p->define_cpp(c);
      if (!r.ok()) fail("define_cpp: " + r.status().to_string());
      const double t = wait_caught_up(*p, *store, c.name, t0);
      emit(a, "projection-rebuild", c.name, events, t,
           ",\"language\":\"c++\",\"note\":\"define_cpp() to position == head, checkpoints included\"");
      (void)p->close();
    }
    (void)store->close();
  }
  if (all || a.workload == "as-of") {
    auto store = open("store-as-of", a.as_of_events);
    const std::string pdir = a.dir + "/projections-as-of";
    std::filesystem::remove_all(pdir);
    auto p = open_runtime(*store, pdir);
    // Two shapes: one partition of a per-stream projection, and the whole state of an unpartitioned one.
    struct Case {
      const char* name;
      const char* label;
      const char* lua;
      cairn::PartitionBy by;
    };
    const Case cases[] = {
        {"as-of", "lua-per-stream (data.amount), one partition",
         "return function(s, e) s.n = (s.n or 0) + 1 s.last = e.position s.amount = (s.amount or 0) + e.data.amount end",
         cairn::PartitionBy::kStream},
        {"as-of-whole", "lua-count-by-type, whole state",
         "return function(s, e) local t = e.type s[t] = (s[t] or 0) + 1 end", cairn::PartitionBy::kNone},
    };
    for (const auto& c : cases) {
      cairn::ProjectionDefinition d;
      d.name = c.name;
      d.lua = c.lua;
      d.partition.by = c.by;
      d.snapshot_every = 100'000;
      if (auto r = p->define(d); !r.ok()) fail("define: " + r.status().to_string());
      wait_caught_up(*p, *store, d.name, Clock::now());
      std::mt19937_64 rng(7);
      std::vector<double> ms;
      const uint64_t head = store->head_position();
      for (int i = 0; i < 30; ++i) {
        const uint64_t pos = rng() % (head - 3);
        std::optional<std::string> key;
        if (c.by != cairn::PartitionBy::kNone) key = fmt::format("user-{}", rng() % 10'000);
        const auto t0 = Clock::now();
        auto s = p->state_as_of(d.name, key, cairn::AsOf{pos, std::nullopt}, 0);
        ms.push_back(secs(Clock::now() - t0) * 1000);
        if (!s.ok()) fail("as-of: " + s.status().to_string());
      }
      std::sort(ms.begin(), ms.end());
      std::printf(
          "{\"system\":\"cairn\",\"workload\":\"projection-as-of\",\"reducer\":\"%s\",\"events\":%llu,"
          "\"snapshot_every\":100000,\"queries\":30,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
          "\"note\":\"state_as_of(random position): nearest snapshot + replay\",\"machine\":%s,\"date\":\"%s\"}\n",
          c.label, static_cast<unsigned long long>(head), ms[ms.size() / 2], ms[ms.size() * 99 / 100], ms.back(),
          a.machine.c_str(), cairn::bench::utc_now().c_str());
      std::fflush(stdout);
    }
    (void)p->close();
    (void)store->close();
  }
  return 0;
}
