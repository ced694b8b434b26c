// "Incremental = full replay": projections that follow a log while it is written (catch-up, subscription
// following, frequent checkpoints, clean restarts and restarts from older checkpoints) end with exactly the
// state a fresh replay of the whole log gives, and the state an independent computation gives.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "testing/sanitizers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

// Sanitized builds run the same tests on smaller logs; under ThreadSanitizer the waits are longer too.
using ::cairn::testing::kSanitized;
using ::cairn::testing::kThreadSanitized;

constexpr auto kWait = std::chrono::milliseconds(kThreadSanitized ? 120000 : 20000);

// ---------------------------------------------------------------------------------------------------------
// The reducers, in Lua and in C++, with the same meaning, and the reference computation.

// Counts events and positions (by parity, summed) and amounts; a position that comes again or goes back is an
// error, so an event applied twice faults the projection. With check_revision, each partition is a stream and
// the revisions must follow one another (no event of the stream skipped).
std::string lua_reducer(bool check_revision) {
  std::string code = R"(
return {
  init = function() return {n = 0, even = 0, odd = 0, pos_sum = 0, amount = 0, last = -1, types = {}} end,
  reduce = function(s, e)
    if e.position <= s.last then error("position " .. e.position .. " comes after " .. s.last) end
)";
  if (check_revision)
    code += R"(    if e.revision ~= s.n then error("revision " .. e.revision .. " of " .. e.stream .. " after " .. s.n .. " events") end
)";
  code += R"(    s.last = e.position
    s.n = s.n + 1
    if e.position % 2 == 0 then s.even = s.even + 1 else s.odd = s.odd + 1 end
    s.pos_sum = s.pos_sum + e.position
    s.types[e.type] = (s.types[e.type] or 0) + 1
    if type(e.data) == "table" and type(e.data.amount) == "number" then s.amount = s.amount + e.data.amount end
  end}
)";
  return code;
}

struct Tally {
  uint64_t n = 0, even = 0, odd = 0, pos_sum = 0;
  int64_t amount = 0, last = -1;
  std::map<std::string, uint64_t> types;
};

json tally_json(const Tally& t) {
  json types = json::object();
  for (const auto& [k, v] : t.types) types[k] = v;
  return json{{"n", t.n},           {"even", t.even}, {"odd", t.odd},        {"pos_sum", t.pos_sum},
              {"amount", t.amount}, {"last", t.last}, {"types", types}};
}

Status tally_apply(Tally& t, const EventView& e) {
  if (static_cast<int64_t>(e.position) <= t.last)
    return Status::invalid_argument("position " + std::to_string(e.position) + " comes after " + std::to_string(t.last));
  t.last = static_cast<int64_t>(e.position);
  ++t.n;
  (e.position % 2 == 0 ? t.even : t.odd) += 1;
  t.pos_sum += e.position;
  ++t.types[std::string(e.type)];
  if (e.content_type == ContentType::kJson) {
    json d = json::parse(e.data, nullptr, false);
    if (d.is_object() && d.contains("amount") && d["amount"].is_number()) t.amount += d["amount"].get<int64_t>();
  }
  return {};
}

CppReducer<Tally> tally_reducer() {
  CppReducer<Tally> r;
  r.apply = tally_apply;
  r.to_json = [](const Tally& t) { return tally_json(t).dump(); };
  r.from_json = [](std::string_view text) -> Result<Tally> {
    json j = json::parse(text, nullptr, false);
    if (!j.is_object()) return Status::corruption("not a tally");
    Tally t;
    t.n = j["n"].get<uint64_t>();
    t.even = j["even"].get<uint64_t>();
    t.odd = j["odd"].get<uint64_t>();
    t.pos_sum = j["pos_sum"].get<uint64_t>();
    t.amount = j["amount"].get<int64_t>();
    t.last = j["last"].get<int64_t>();
    for (auto& [k, v] : j["types"].items()) t.types[k] = v.get<uint64_t>();
    return t;
  };
  return r;
}

// The partition key the runtime should give an event (nullopt: skipped).
std::optional<std::string> key_of(const RecordedEvent& e, PartitionBy by, const std::string& field) {
  switch (by) {
    case PartitionBy::kNone: return std::string();
    case PartitionBy::kStream: return e.stream;
    case PartitionBy::kCategory: return std::string(stream_category(e.stream));
    default: break;
  }
  const std::string& text = by == PartitionBy::kMetadata ? e.metadata : e.data;
  if (text.empty() || (by == PartitionBy::kData && e.content_type != ContentType::kJson)) return std::nullopt;
  json v = json::parse(text, nullptr, false);
  size_t at = 0;
  while (at <= field.size()) {
    size_t dot = field.find('.', at);
    if (dot == std::string::npos) dot = field.size();
    const std::string part = field.substr(at, dot - at);
    if (!v.is_object() || !v.contains(part)) return std::nullopt;
    v = v[part];
    at = dot + 1;
  }
  if (v.is_string()) return v.get<std::string>().empty() ? std::nullopt : std::optional(v.get<std::string>());
  if (v.is_number_integer()) return v.dump();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return std::nullopt;
}

// The expected state JSON (whole state) of a tally projection over `events` (user events only).
std::string expected_state(const std::vector<RecordedEvent>& events, PartitionBy by, const std::string& field) {
  std::map<std::string, Tally> parts;
  for (const auto& e : events) {
    auto k = key_of(e, by, field);
    if (!k) continue;
    EXPECT_TRUE(tally_apply(parts[*k], e.view()).ok());
  }
  if (by == PartitionBy::kNone) return parts.count("") ? tally_json(parts[""]).dump() : "null";
  json all = json::object();
  for (const auto& [k, t] : parts) all[k] = tally_json(t);
  return all.dump();
}

// ---------------------------------------------------------------------------------------------------------
// The log: random streams, types, data and metadata, appended in random batches.

class History {
 public:
  explicit History(uint64_t seed) : rng_(seed) {}

  EventData event() {
    EventData e;
    static const char* kTypes[] = {"created", "updated", "paid", "cancelled", "noted"};
    if (pick(30) == 0) {
      e.type = "blob";
      e.content_type = ContentType::kBinary;
      e.data = "bytes-" + std::to_string(pick(1000));
      return e;
    }
    e.type = kTypes[pick(5)];
    json d = json::object();
    switch (pick(6)) {
      case 0: break;                                   // no user_id: skipped by the user_id partition
      case 1: d["user_id"] = static_cast<int>(pick(4)); break;  // a number key
      case 2: d["user_id"] = ""; break;               // empty: skipped
      default: d["user_id"] = "u" + std::to_string(pick(12)); break;
    }
    d["amount"] = static_cast<int>(pick(1000));
    d["qty"] = static_cast<int>(pick(5) + 1);
    if (pick(4) == 0) d["note"] = std::string(pick(40), 'n');
    e.data = d.dump();
    switch (pick(4)) {
      case 0: break;
      case 1: e.metadata = R"({"actor":{"kind":"system"}})"; break;
      default: e.metadata = R"({"actor":{"kind":"human","id":"u)" + std::to_string(pick(9)) + R"("},"trace":"t"})"; break;
    }
    return e;
  }

  std::string stream() {
    switch (pick(3)) {
      case 0: return "order-" + std::to_string(pick(15));
      case 1: return "user-" + std::to_string(pick(8));
      default: return "cart-" + std::to_string(pick(6));
    }
  }

  // Appends `count` events in one commit (one stream, or several with append_multi); returns the last position.
  uint64_t append(Store& store, size_t count) {
    if (count >= 3 && pick(4) == 0) {
      std::vector<StreamAppend> reqs(2);
      reqs[0].stream = stream();
      do reqs[1].stream = stream();
      while (reqs[1].stream == reqs[0].stream);
      for (size_t i = 0; i < count; ++i) reqs[i % 2].events.push_back(event());
      auto r = store.append_multi(std::move(reqs));
      EXPECT_TRUE(r.ok()) << r.status().to_string();
      return r.ok() ? std::max(r->streams[0].last_position, r->streams[1].last_position) : 0;
    }
    StreamAppend a;
    a.stream = stream();
    for (size_t i = 0; i < count; ++i) a.events.push_back(event());
    auto r = store.append(std::move(a));
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? r->streams[0].last_position : 0;
  }

  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

 private:
  std::mt19937_64 rng_;
};

std::vector<RecordedEvent> user_events(Store& store) {
  std::vector<RecordedEvent> out;
  std::optional<uint64_t> from = 0;
  while (from) {
    auto page = store.read_all(from, Direction::kForward, 1000, Filter{});
    EXPECT_TRUE(page.ok()) << page.status().to_string();
    if (!page.ok()) break;
    for (auto& e : page->events)
      if (!e.stream.starts_with("$")) out.push_back(std::move(e));
    from = page->next;
  }
  return out;
}

// Copies a directory tree that is being written (files may vanish meanwhile): a crash image of it.
void copy_tree(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  for (auto it = fs::recursive_directory_iterator(from, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code e2;
    const fs::path rel = fs::relative(it->path(), from, e2);
    if (e2) continue;
    if (it->is_directory(e2)) fs::create_directories(to / rel, e2);
    else fs::copy_file(it->path(), to / rel, fs::copy_options::overwrite_existing, e2);
  }
}

bool has_checkpoint(const fs::path& dir) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
    if (it->path().filename().string().ends_with(".ndjson")) return true;
  return false;
}

struct Spec {
  std::string name;
  bool cpp = false;
  PartitionBy by = PartitionBy::kNone;
  std::string field;
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {
      {"count", false, PartitionBy::kNone, ""},
      {"by-stream", false, PartitionBy::kStream, ""},
      {"by-user", false, PartitionBy::kData, "user_id"},
      {"by-actor", false, PartitionBy::kMetadata, "actor.id"},
      {"cpp-count", true, PartitionBy::kNone, ""},
      {"cpp-by-category", true, PartitionBy::kCategory, ""},
      {"cpp-by-user", true, PartitionBy::kData, "user_id"},
  };
  return s;
}

Status define(Projections& p, const Spec& s, const std::string& name) {
  if (s.cpp) {
    CppProjection c;
    c.name = name;
    c.partition = {s.by, s.field};
    c.engine = make_cpp_engine(tally_reducer());
    c.snapshot_every = 300;
    return p.define_cpp(c).status();
  }
  ProjectionDefinition d;
  d.name = name;
  d.partition = {s.by, s.field};
  d.lua = lua_reducer(s.by == PartitionBy::kStream);
  d.snapshot_every = 300;
  return p.define(d).status();
}

class ReplayTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ReplayTest, IncrementalEqualsFullReplay) {
  const uint64_t seed = GetParam();
  ::cairn::testing::TempDir dir;
  EmbeddedOptions o;
  o.dir = dir.sub("store");
  o.durability = Durability::kNone;
  auto store = open_store(o);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  Store& s = **store;
  ProjectionsOptions po;
  po.dir = dir.sub("projections");
  po.batch_events = 7;
  po.checkpoint_interval = 1ms;
  po.checkpoint_events = 50;
  History h(seed);

  // Some history before the projections exist: they start by catching up.
  for (int i = 0; i < 10; ++i) h.append(s, 1 + h.pick(20));
  auto opened = open_projections(s, po);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  std::unique_ptr<Projections> p = std::move(*opened);
  for (const auto& sp : specs()) ASSERT_TRUE(define(*p, sp, sp.name).ok()) << sp.name;
  auto reopen = [&]() {
    for (const auto& sp : specs()) {
      if (sp.cpp) {
        ASSERT_TRUE(define(*p, sp, sp.name).ok()) << sp.name;  // C++ reducers register at every start
      }
    }
  };

  const int rounds = kSanitized ? 60 : 120;
  const int copy_round = rounds / 4, restart_round = rounds * 5 / 12, big_round = rounds / 2,
            restore_round = rounds * 3 / 4;
  const fs::path crash_copy = dir.sub("crash-copy");
  bool crash_copy_has_checkpoint = false;
  uint64_t last = 0;
  for (int round = 0; round < rounds; ++round) {
    const size_t batch = round == big_round ? 2600 : 1 + h.pick(h.pick(4) == 0 ? 60 : 12);  // one batch past the follow lag
    last = h.append(s, batch);
    if (h.pick(3) == 0) std::this_thread::yield();
    if (round == copy_round) {
      copy_tree(po.dir, crash_copy);  // the checkpoints as a crash would leave them
      crash_copy_has_checkpoint = has_checkpoint(crash_copy / "count");
    }
    if (round == restart_round) {  // a clean restart; more events arrive while the projections are down
      ASSERT_TRUE(p->close().ok());
      p.reset();
      for (int i = 0; i < 5; ++i) h.append(s, 1 + h.pick(20));
      auto again = open_projections(s, po);
      ASSERT_TRUE(again.ok()) << again.status().to_string();
      p = std::move(*again);
      reopen();
    }
    if (round == restore_round) {  // a restart from the older checkpoints of the crash copy
      ASSERT_TRUE(p->close().ok());
      p.reset();
      fs::remove_all(po.dir);
      fs::rename(crash_copy, po.dir);
      auto again = open_projections(s, po);
      ASSERT_TRUE(again.ok()) << again.status().to_string();
      p = std::move(*again);
      reopen();
    }
  }
  ASSERT_GT(last, 3000u);

  // Fresh copies, registered after all appends: a full replay each.
  for (const auto& sp : specs()) ASSERT_TRUE(define(*p, sp, sp.name + "-fresh").ok()) << sp.name;

  const auto events = user_events(s);
  ASSERT_EQ(events.back().position, last);
  for (const auto& sp : specs()) {
    SCOPED_TRACE(sp.name);
    const std::string expected = expected_state(events, sp.by, sp.field);
    auto live = p->state(sp.name, std::nullopt, 0, last, kWait);
    ASSERT_TRUE(live.ok()) << live.status().to_string();
    auto fresh = p->state(sp.name + "-fresh", std::nullopt, 0, last, kWait);
    ASSERT_TRUE(fresh.ok()) << fresh.status().to_string();
    EXPECT_EQ(live->json, expected);
    EXPECT_EQ(fresh->json, expected);
    EXPECT_GT(live->position, last);

    auto v = p->verify(sp.name, 0);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    EXPECT_TRUE(v->equal) << (v->differences.empty() ? std::string() : v->differences[0].key);
    EXPECT_TRUE(v->differences.empty());
    EXPECT_EQ(v->live_digest, v->rebuilt_digest);
    EXPECT_GT(v->position, last);
    auto d = p->digest(sp.name, 0);
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    EXPECT_EQ(d->sha256_hex, v->live_digest);
    EXPECT_EQ(d->partitions, v->partitions);
    auto df = p->digest(sp.name + "-fresh", 0);
    ASSERT_TRUE(df.ok());
    EXPECT_EQ(df->sha256_hex, d->sha256_hex);

    auto st = p->status(sp.name);
    ASSERT_TRUE(st.ok());
    EXPECT_FALSE(st->fault.has_value()) << st->fault->message;
    EXPECT_EQ(st->language, sp.cpp ? "c++" : "lua");
  }
  // The Lua counter resumed from the crash copy's checkpoint instead of starting over.
  if (crash_copy_has_checkpoint) {
    auto st = p->status("count");
    ASSERT_TRUE(st.ok());
    EXPECT_LT(st->events_applied, events.size());
  }
  ASSERT_TRUE(p->close().ok());
}

INSTANTIATE_TEST_SUITE_P(Seeds, ReplayTest, ::testing::Values(1u, 7u, 2024u));

// ---------------------------------------------------------------------------------------------------------
// verify() finds differences.

std::atomic<int> g_bias{0};  // read by the deliberately impure reducer below

struct Counter {
  int64_t n = 0;
};

CppReducer<Counter> impure_reducer() {
  CppReducer<Counter> r;
  r.apply = [](Counter& c, const EventView&) -> Status {
    c.n += 1 + g_bias.load();
    return {};
  };
  r.to_json = [](const Counter& c) { return R"({"n":)" + std::to_string(c.n) + "}"; };
  r.from_json = [](std::string_view text) -> Result<Counter> {
    json j = json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("n")) return Status::corruption("not a counter");
    return Counter{j["n"].get<int64_t>()};
  };
  return r;
}

TEST(ReplayVerify, ReportsDifferencesOfAnImpureReducer) {
  g_bias = 0;
  ::cairn::testing::TempDir dir;
  EmbeddedOptions o;
  o.dir = dir.sub("store");
  o.durability = Durability::kNone;
  auto store = open_store(o);
  ASSERT_TRUE(store.ok());
  ProjectionsOptions po;
  po.dir = dir.sub("projections");
  auto p = open_projections(**store, po);
  ASSERT_TRUE(p.ok());
  CppProjection part;
  part.name = "impure";
  part.partition.by = PartitionBy::kStream;
  part.engine = make_cpp_engine(impure_reducer());
  ASSERT_TRUE((*p)->define_cpp(part).ok());
  CppProjection whole;
  whole.name = "impure-whole";
  whole.engine = make_cpp_engine(impure_reducer());
  ASSERT_TRUE((*p)->define_cpp(whole).ok());
  uint64_t last = 0;
  const std::vector<std::pair<std::string, int>> streams = {{"s-a", 3}, {"s-b", 1}, {"s-c", 2}};
  for (const auto& [stream, n] : streams) {
    StreamAppend a;
    a.stream = stream;
    for (int i = 0; i < n; ++i) a.events.push_back(EventData{std::nullopt, "x", ContentType::kJson, "", "{}"});
    auto r = (*store)->append(std::move(a));
    ASSERT_TRUE(r.ok());
    last = r->streams[0].last_position;
  }
  ASSERT_TRUE((*p)->state("impure", std::nullopt, 0, last, kWait).ok());
  ASSERT_TRUE((*p)->state("impure-whole", std::nullopt, 0, last, kWait).ok());
  auto v = (*p)->verify("impure", 0);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_TRUE(v->equal);
  EXPECT_TRUE(v->differences.empty());

  g_bias = 1;  // the replay now folds differently
  v = (*p)->verify("impure", 0);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_FALSE(v->equal);
  EXPECT_NE(v->live_digest, v->rebuilt_digest);
  EXPECT_EQ(v->partitions, 3u);
  ASSERT_EQ(v->differences.size(), 3u);
  const char* keys[] = {"s-a", "s-b", "s-c"};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(v->differences[i].key, keys[i]);
    ASSERT_TRUE(v->differences[i].live.has_value());
    ASSERT_TRUE(v->differences[i].rebuilt.has_value());
    const int n = streams[i].second;
    EXPECT_EQ(*v->differences[i].live, R"({"n":)" + std::to_string(n) + "}");
    EXPECT_EQ(*v->differences[i].rebuilt, R"({"n":)" + std::to_string(2 * n) + "}");
  }
  auto d = (*p)->digest("impure", 0);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->sha256_hex, v->live_digest);
  auto few = (*p)->verify("impure", 0, 1);
  ASSERT_TRUE(few.ok());
  ASSERT_EQ(few->differences.size(), 1u);
  EXPECT_EQ(few->differences[0].key, "s-a");

  auto w = (*p)->verify("impure-whole", 0);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->equal);
  ASSERT_EQ(w->differences.size(), 1u);
  EXPECT_EQ(w->differences[0].key, "");
  EXPECT_EQ(w->differences[0].live.value_or(""), R"({"n":6})");
  EXPECT_EQ(w->differences[0].rebuilt.value_or(""), R"({"n":12})");
  g_bias = 0;
  ASSERT_TRUE((*p)->close().ok());
}

}  // namespace
}  // namespace cairn
