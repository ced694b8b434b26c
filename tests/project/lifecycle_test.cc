// The life of projections (src/project/projections.cc, runner.cc): faults, new versions built side by side
// (blue/green), rebuilds, as-of queries, partition listings, the built-ins, and definition rules.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "testing/projections_fixture.h"
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

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// Polls f until it is true or 20 s have passed.
template <typename F>
bool eventually(F f) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return f();
}

EventData event(std::string type, std::string data = "{}", std::string metadata = "") {
  EventData e;
  e.type = std::move(type);
  e.data = std::move(data);
  e.metadata = std::move(metadata);
  return e;
}

class LifecycleTest : public ::cairn::testing::ProjectionsFixture {
 protected:
  void open(ProjectionsOptions po = {}, bool builtins = true) {
    open_store_now();
    po_ = po;
    po_.dir = dir_.sub("projections");
    po_.builtins = builtins;
    open_projections_now();
  }

  uint64_t put(const std::string& stream, std::vector<EventData> events) { return append_to(stream, std::move(events)); }

  Result<ProjectionStatus> def(const std::string& name, const std::string& lua, uint32_t version = 1,
                               Partitioning part = {}, bool resume = false, uint64_t snapshot_every = 100'000) {
    ProjectionDefinition d;
    d.name = name;
    d.version = version;
    d.lua = lua;
    d.partition = part;
    d.resume = resume;
    d.snapshot_every = snapshot_every;
    return p_->define(d);
  }

  std::string state_json(const std::string& name, uint64_t position, uint32_t version = 0,
                         std::optional<std::string> key = std::nullopt) {
    auto s = p_->state(name, key, version, position, kWait);
    EXPECT_TRUE(s.ok()) << name << ": " << s.status().to_string();
    return s.ok() ? s->json : "";
  }

  std::vector<RecordedEvent> projections_log() {
    std::vector<RecordedEvent> out;
    std::optional<uint64_t> from = 0;
    while (from) {
      auto page = store_->read_stream("$projections", from, Direction::kForward, 1000);
      if (!page.ok()) break;
      for (auto& e : page->events) out.push_back(std::move(e));
      from = page->next;
    }
    return out;
  }

  // The $projections records of a type for name (and version, if not 0).
  std::vector<json> records(const std::string& type, const std::string& name, uint32_t version = 0) {
    std::vector<json> out;
    for (const auto& e : projections_log()) {
      if (e.type != type) continue;
      json d = json::parse(e.data, nullptr, false);
      if (!d.is_object() || d.value("name", "") != name) continue;
      if (version && d.value("version", 0u) != version) continue;
      out.push_back(d);
    }
    return out;
  }

};

// ---------------------------------------------------------------------------------------------------------
// Faults

constexpr const char* kPoisonable = R"(return function(s, e)
  if e.data.poison == true then error("poisoned event at " .. e.position) end
  s.n = (s.n or 0) + 1
  s.sum = (s.sum or 0) + (e.data.x or 0)
end)";

TEST_F(LifecycleTest, FaultStopsAtThePoisonEventAndKeepsTheLastGoodState) {
  ProjectionsOptions po;
  po.batch_events = 4;            // several batches before the poison ...
  po.checkpoint_interval = 0ms;   // ... each checkpointed, so restoring means checkpoint + replay
  open(po);
  ASSERT_TRUE(def("live", kPoisonable).ok());   // follows the appends
  ASSERT_TRUE(def("other", "return function(s, e) s.n = (s.n or 0) + 1 end").ok());
  int64_t good_sum = 0;
  for (int i = 1; i <= 20; ++i) {
    put("good-" + std::to_string(i % 3), {event("ok", R"({"x":)" + std::to_string(i) + "}")});
    good_sum += i;
  }
  const uint64_t poison = put("bad-1", {event("poison.type", R"({"poison":true,"x":1000})")});
  auto poison_event = store_->read_position(poison);
  ASSERT_TRUE(poison_event.ok());
  uint64_t last = 0;
  for (int i = 0; i < 10; ++i) last = put("good-9", {event("ok", R"({"x":1})")});
  ASSERT_TRUE(def("late", kPoisonable).ok());   // catches up over the poison

  const std::string good_state = R"({"n":20,"sum":)" + std::to_string(good_sum) + "}";
  for (const std::string name : {"live", "late"}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(eventually([&] {
      auto st = p_->status(name);
      return st.ok() && st->fault.has_value();
    }));
    auto st = p_->status(name);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->phase, ProjectionPhase::kFaulted);
    ASSERT_TRUE(st->fault.has_value());
    EXPECT_EQ(st->fault->position, poison);
    EXPECT_EQ(st->fault->stream, "bad-1");
    EXPECT_EQ(st->fault->type, "poison.type");
    EXPECT_EQ(st->fault->event_id, poison_event->id);
    EXPECT_TRUE(contains(st->fault->message, "poisoned event at " + std::to_string(poison))) << st->fault->message;
    EXPECT_EQ(st->position, poison);
    // The last good state, which reflects the events before the poison.
    auto s = p_->state(name, std::nullopt, 0, std::nullopt, kWait);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ(s->position, poison);
    EXPECT_EQ(s->json, good_state);
    // Waiting for a later position reports the fault instead of timing out.
    auto w = p_->state(name, std::nullopt, 0, last, kWait);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.status().code(), ErrorCode::kFaulted) << w.status().to_string();
    // The fault is recorded once in $projections.
    ASSERT_TRUE(eventually([&] { return !records("$projection.faulted", name).empty(); }));
    auto rec = records("$projection.faulted", name);
    ASSERT_EQ(rec.size(), 1u);
    EXPECT_EQ(rec[0]["position"], poison);
    EXPECT_EQ(rec[0]["event_id"], poison_event->id.to_string());
    EXPECT_EQ(rec[0]["version"], 1);
  }
  // Other projections keep going.
  EXPECT_EQ(state_json("other", last), R"({"n":31})");
  last = put("good-9", {event("ok", R"({"x":1})")});
  EXPECT_EQ(state_json("other", last), R"({"n":32})");

  // After a restart the fault comes back at the same place, with the same state, and is not recorded again.
  reopen_projections();
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("live");
    return st.ok() && st->fault.has_value();
  }));
  auto s = p_->state("live", std::nullopt, 0, std::nullopt, kWait);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->position, poison);
  EXPECT_EQ(s->json, good_state);
  EXPECT_EQ(state_json("other", last), R"({"n":32})");
  std::this_thread::sleep_for(200ms);  // gives the monitor a chance to (wrongly) record it again
  EXPECT_EQ(records("$projection.faulted", "live").size(), 1u);
}

TEST_F(LifecycleTest, FixedVersionRebuildsSideBySideAndTakesOver) {
  open();
  ASSERT_TRUE(def("sum", kPoisonable).ok());
  for (int i = 1; i <= 20; ++i) put("good-1", {event("ok", R"({"x":)" + std::to_string(i) + "}")});
  const uint64_t poison = put("bad-1", {event("poison.type", R"({"poison":true})")});
  uint64_t last = 0;
  for (int i = 0; i < 10; ++i) last = put("good-1", {event("ok", R"({"x":2})")});
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("sum");
    return st.ok() && st->fault.has_value();
  }));
  // Version 2 skips poison events; built from position 0 beside the faulted version 1.
  auto r = def("sum", R"(return function(s, e)
    if e.data.poison == true then s.skipped = (s.skipped or 0) + 1 return end
    s.n = (s.n or 0) + 1
    s.sum = (s.sum or 0) + (e.data.x or 0)
  end)", 2);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->version, 2u);
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("sum");
    return st.ok() && st->version == 2;
  }));
  auto st = p_->status("sum");
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->active);
  EXPECT_FALSE(st->fault.has_value());
  EXPECT_EQ(state_json("sum", last), R"({"n":30,"skipped":1,"sum":230})");
  EXPECT_FALSE(records("$projection.activated", "sum", 2).empty());
  // Version 1 is still there, faulted, and answers when asked for.
  auto v1 = p_->state("sum", std::nullopt, 1, std::nullopt, kWait);
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->version, 1u);
  EXPECT_EQ(v1->position, poison);
  EXPECT_EQ(v1->json, R"({"n":20,"sum":210})");

  // Version 3 with resume starts from version 2's state and position instead of from 0: its new counter
  // only counts the events after the resume point.
  const uint64_t before = put("good-1", {event("ok", R"({"x":5})")});
  ASSERT_EQ(state_json("sum", before), R"({"n":31,"skipped":1,"sum":235})");
  auto r3 = def("sum", R"(return function(s, e)
    if e.data.poison == true then s.skipped = (s.skipped or 0) + 1 return end
    s.n = (s.n or 0) + 1
    s.sum = (s.sum or 0) + (e.data.x or 0)
    s.v3 = (s.v3 or 0) + 1
  end)", 3, {}, /*resume=*/true);
  ASSERT_TRUE(r3.ok()) << r3.status().to_string();
  EXPECT_GT(r3->position, before);  // it starts where version 2 was
  last = put("good-1", {event("ok", R"({"x":1})"), event("ok", R"({"x":1})")});
  ASSERT_TRUE(eventually([&] {
    auto s3 = p_->status("sum");
    return s3.ok() && s3->version == 3;
  }));
  EXPECT_EQ(state_json("sum", last), R"({"n":33,"skipped":1,"sum":237,"v3":2})");
  auto rec = records("$projection.registered", "sum", 3);
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_EQ(rec[0].value("resume", false), true);
}

// ---------------------------------------------------------------------------------------------------------
// Blue/green

TEST_F(LifecycleTest, BlueGreenSwitchNeverServesAPartialState) {
  ProjectionsOptions po;
  po.batch_events = 1024;
  open(po, /*builtins=*/false);
  const uint64_t n = kSanitized ? 40'000 : 200'000;
  for (uint64_t done = 0; done < n;) {
    StreamAppend a;
    a.stream = "bg-" + std::to_string(done / 10'000);
    for (uint64_t i = 0; i < 10'000 && done < n; ++i, ++done) a.events.push_back(event("t"));
    ASSERT_TRUE(store_->append(std::move(a)).ok());
  }
  ASSERT_EQ(store_->head_position(), n);
  ASSERT_TRUE(def("bg", "return function(s, e) s.v1 = (s.v1 or 0) + 1 end").ok());
  ASSERT_EQ(state_json("bg", n - 1), R"({"v1":)" + std::to_string(n) + "}");
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("bg");
    return st.ok() && st->phase == ProjectionPhase::kLive;
  }));

  // A reader asks by name only, as fast as it can, while version 2 builds and takes over.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> v1_answers{0}, v2_answers{0};
  std::string bad;  // the first wrong answer
  std::thread reader([&] {
    bool seen_v2 = false;
    while (!stop.load()) {
      auto s = p_->state("bg", std::nullopt, 0, std::nullopt, kWait);
      if (!s.ok()) {
        if (bad.empty()) bad = "error: " + s.status().to_string();
        continue;
      }
      const uint64_t k = std::min(s->position, n);  // user events below the position
      std::string expected;
      if (s->version == 1) {
        if (seen_v2 && bad.empty()) bad = "version 1 answered after version 2 had";
        expected = R"({"v1":)" + std::to_string(k) + "}";
        ++v1_answers;
      } else if (s->version == 2) {
        seen_v2 = true;
        expected = R"({"n":)" + std::to_string(k) + R"(,"pos_sum":)" + std::to_string(k * (k - 1) / 2) + "}";
        if (k != n && bad.empty()) bad = "version 2 answered before it had caught up: " + s->json;
        ++v2_answers;
        if (v2_answers > 200) stop = true;
      } else if (bad.empty()) {
        bad = "version " + std::to_string(s->version);
      }
      if (s->json != expected && bad.empty())
        bad = "v" + std::to_string(s->version) + " at " + std::to_string(s->position) + ": " + s->json + " != " + expected;
    }
  });
  auto r = def("bg", "return function(s, e) s.n = (s.n or 0) + 1 s.pos_sum = (s.pos_sum or 0) + e.position end", 2);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FALSE(r->active);
  const bool switched = eventually([&] {
    auto st = p_->status("bg");
    return st.ok() && st->version == 2 && st->active;
  });
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!stop.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  stop = true;
  reader.join();
  ASSERT_TRUE(switched);
  EXPECT_TRUE(bad.empty()) << bad;
  EXPECT_GT(v1_answers.load(), 0u);
  EXPECT_GT(v2_answers.load(), 0u);

  auto st = p_->status("bg");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->version, 2u);
  auto act = records("$projection.activated", "bg", 2);
  ASSERT_EQ(act.size(), 1u);
  EXPECT_GE(act[0].value("position", uint64_t{0}), n);
  // Version 1 still answers when asked by number.
  auto v1 = p_->state("bg", std::nullopt, 1, std::nullopt, kWait);
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->version, 1u);
  EXPECT_EQ(v1->json, R"({"v1":)" + std::to_string(n) + "}");
  auto versions = p_->versions("bg");
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_FALSE(versions[0].active);
  EXPECT_TRUE(versions[1].active);

  // The active version is kept in $projections across a restart.
  reopen_projections();
  st = p_->status("bg");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->version, 2u);
  const std::string v2_state = R"({"n":)" + std::to_string(n) + R"(,"pos_sum":)" + std::to_string(n * (n - 1) / 2) + "}";
  EXPECT_EQ(state_json("bg", n - 1), v2_state);

  // Dropping: not the active version while another exists; the other one, yes.
  Status d2 = p_->drop("bg", 2);
  EXPECT_EQ(d2.code(), ErrorCode::kConflict) << d2.to_string();
  Status d1 = p_->drop("bg", 1);
  ASSERT_TRUE(d1.ok()) << d1.to_string();
  EXPECT_EQ(p_->state("bg", std::nullopt, 1, std::nullopt, kWait).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(p_->versions("bg").size(), 1u);
  EXPECT_FALSE(records("$projection.dropped", "bg", 1).empty());
  EXPECT_FALSE(fs::exists(dir_.sub("projections") + "/bg/v1"));
  EXPECT_EQ(state_json("bg", n - 1), v2_state);
  // A restart does not bring the dropped version back.
  reopen_projections();
  EXPECT_EQ(p_->versions("bg").size(), 1u);
  EXPECT_EQ(p_->status("bg", 1).status().code(), ErrorCode::kNotFound);
}

TEST_F(LifecycleTest, ActivateGoesBackToAnOlderVersion) {
  open();
  const uint64_t last = put("a-1", {event("x"), event("x")});
  ASSERT_TRUE(def("ab", "return function(s, e) s.a = (s.a or 0) + 1 end").ok());
  ASSERT_TRUE(def("ab", "return function(s, e) s.b = (s.b or 0) + 1 end", 2).ok());
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("ab");
    return st.ok() && st->version == 2;
  }));
  EXPECT_EQ(state_json("ab", last), R"({"b":2})");
  auto r = p_->activate("ab", 1);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->active);
  EXPECT_EQ(state_json("ab", last), R"({"a":2})");
  std::this_thread::sleep_for(200ms);  // the monitor must not switch back to the newer version on its own
  EXPECT_EQ(state_json("ab", last), R"({"a":2})");
  reopen_projections();
  EXPECT_EQ(state_json("ab", last), R"({"a":2})");
  EXPECT_EQ(p_->activate("$streams", 1).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(p_->activate("ab", 7).status().code(), ErrorCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------------------
// Rebuild

TEST_F(LifecycleTest, RebuildKeepsServingThenSwapsInTheRebuiltState) {
  open(ProjectionsOptions{}, /*builtins=*/false);
  const int n = kSanitized ? 20'000 : 60'000;
  for (int done = 0; done < n;) {
    StreamAppend a;
    a.stream = "rb-" + std::to_string(done % 37);
    for (int i = 0; i < 5'000 && done < n; ++i, ++done) a.events.push_back(event("t", R"({"x":)" + std::to_string(done % 7) + "}"));
    ASSERT_TRUE(store_->append(std::move(a)).ok());
  }
  ASSERT_TRUE(def("rb", "return function(s, e) s.n = (s.n or 0) + 1 s.x = (s.x or 0) + e.data.x end", 1,
                  Partitioning{PartitionBy::kStream, ""}).ok());
  const std::string before = state_json("rb", n - 1);
  auto digest_before = p_->digest("rb", 0);
  ASSERT_TRUE(digest_before.ok());

  auto r = p_->rebuild("rb", 0);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(r->rebuild.has_value());
  EXPECT_LE(r->rebuild->position, r->rebuild->target);
  EXPECT_GE(r->rebuild->target, static_cast<uint64_t>(n));
  EXPECT_GE(r->rebuild->eta_seconds, 0);
  // Asking again while one runs is not an error.
  auto again = p_->rebuild("rb", 0);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  int answers = 0;
  bool done = false;
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = p_->state("rb", std::nullopt, 0, std::nullopt, kWait);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ(s->json, before);  // never a half-rebuilt state
    ++answers;
    auto st = p_->status("rb");
    ASSERT_TRUE(st.ok());
    if (!st->rebuild) {
      done = true;
      break;
    }
    EXPECT_LE(st->rebuild->position, st->rebuild->target);
  }
  ASSERT_TRUE(done);
  EXPECT_GT(answers, 0);
  ASSERT_TRUE(eventually([&] { return !records("$projection.rebuilt", "rb", 1).empty(); }));
  EXPECT_EQ(state_json("rb", n - 1), before);
  auto digest_after = p_->digest("rb", 0);
  ASSERT_TRUE(digest_after.ok());
  EXPECT_EQ(digest_after->sha256_hex, digest_before->sha256_hex);
  auto v = p_->verify("rb", 0);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->equal);
  // The rebuilt state follows new events, and is the one a restart resumes.
  const uint64_t last = put("rb-new", {event("t", R"({"x":3})")});
  EXPECT_EQ(state_json("rb", last, 0, std::string("rb-new")), R"({"n":1,"x":3})");
  reopen_projections();
  EXPECT_EQ(state_json("rb", last, 0, std::string("rb-new")), R"({"n":1,"x":3})");
  EXPECT_EQ(state_json("rb", last, 0, std::string("rb-5")), json::parse(before)["rb-5"].dump());
}

// Regression (failed at 3c7fd5f, fixed in d1071b5): a query waiting for a position held the runner it started
// with; when a rebuild swapped in the new runner the old one was stopped and never moved again, so the query
// answered kTimeout ("projection w v1 is at position 40003, not past 40004, after 10000 ms") although the
// projection had passed the position.
TEST_F(LifecycleTest, WaitingQuerySurvivesARebuildSwap) {
  open(ProjectionsOptions{}, /*builtins=*/false);
  const int n = kSanitized ? 10'000 : 40'000;
  StreamAppend a;
  a.stream = "w-1";
  for (int i = 0; i < n; ++i) a.events.push_back(event("t"));
  ASSERT_TRUE(store_->append(std::move(a)).ok());
  ASSERT_TRUE(def("w", "return function(s, e) s.n = (s.n or 0) + 1 end").ok());
  ASSERT_EQ(state_json("w", n - 1), R"({"n":)" + std::to_string(n) + "}");
  // A position a little ahead: the swap itself appends $projection.rebuilt.
  const uint64_t future = store_->head_position() + 2;
  Result<ProjectionState> waited = Status::not_found("not yet");
  std::thread waiter([&] { waited = p_->state("w", std::nullopt, 0, future, 10000ms); });
  std::this_thread::sleep_for(100ms);  // lets the waiter start waiting on the current runner
  const bool rebuilt = p_->rebuild("w", 0).ok() && eventually([&] {
    auto st = p_->status("w");
    return st.ok() && !st->rebuild;
  });
  uint64_t pos = 0;
  for (int i = 0; i < 3; ++i) pos = put("w-1", {event("t")});
  waiter.join();
  ASSERT_TRUE(rebuilt);
  ASSERT_GE(pos, future);
  ASSERT_TRUE(waited.ok()) << waited.status().to_string();
  EXPECT_GT(waited->position, future);
  EXPECT_EQ(state_json("w", pos), R"({"n":)" + std::to_string(n + 3) + "}");
}

std::atomic<bool> g_refuse_poison{true};  // read by the reducer below: what a fixed bug in C++ code looks like

struct Count {
  int64_t n = 0;
};

CppReducer<Count> count_reducer(bool may_refuse) {
  CppReducer<Count> r;
  r.apply = [may_refuse](Count& c, const EventView& e) -> Status {
    if (may_refuse && g_refuse_poison && e.type == "poison") return Status::invalid_argument("poison refused");
    ++c.n;
    return {};
  };
  r.to_json = [](const Count& c) { return R"({"n":)" + std::to_string(c.n) + "}"; };
  r.from_json = [](std::string_view text) -> Result<Count> {
    json j = json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("n")) return Status::corruption("not a count");
    return Count{j["n"].get<int64_t>()};
  };
  return r;
}

// A C++ reducer whose fault came from outside its input (here a flag, standing for a deployed fix): the
// rebuild replays cleanly and replaces the faulted state.
TEST_F(LifecycleTest, RebuildOfAFaultedVersionSwapsInACleanState) {
  g_refuse_poison = true;
  open();
  CppProjection c;
  c.name = "fixable";
  c.engine = make_cpp_engine(count_reducer(true));
  ASSERT_TRUE(p_->define_cpp(c).ok());
  for (int i = 0; i < 5; ++i) put("f-1", {event("ok")});
  const uint64_t poison = put("f-1", {event("poison")});
  uint64_t last = 0;
  for (int i = 0; i < 3; ++i) last = put("f-1", {event("ok")});
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("fixable");
    return st.ok() && st->fault.has_value();
  }));
  auto st = p_->status("fixable");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->fault->position, poison);
  EXPECT_TRUE(contains(st->fault->message, "poison refused")) << st->fault->message;
  EXPECT_EQ(state_json("fixable", poison - 1), R"({"n":5})");
  ASSERT_TRUE(eventually([&] { return !records("$projection.faulted", "fixable").empty(); }));

  g_refuse_poison = false;  // the fix is deployed
  ASSERT_TRUE(p_->rebuild("fixable", 0).ok());
  ASSERT_TRUE(eventually([&] {
    auto s = p_->status("fixable");
    return s.ok() && !s->rebuild && !s->fault;
  }));
  st = p_->status("fixable");
  ASSERT_TRUE(st.ok());
  EXPECT_NE(st->phase, ProjectionPhase::kFaulted);
  EXPECT_EQ(state_json("fixable", last), R"({"n":9})");
  EXPECT_FALSE(records("$projection.rebuilt", "fixable").empty());
  auto v = p_->verify("fixable", 0);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->equal);
  last = put("f-1", {event("ok")});
  EXPECT_EQ(state_json("fixable", last), R"({"n":10})");
  g_refuse_poison = true;
}

TEST_F(LifecycleTest, CppProjectionWaitsForItsReducerAfterARestart) {
  open();
  CppProjection c;
  c.name = "native";
  c.partition.by = PartitionBy::kCategory;
  c.engine = make_cpp_engine(count_reducer(false));
  ASSERT_TRUE(p_->define_cpp(c).ok());
  put("order-1", {event("x"), event("x")});
  const uint64_t last = put("user-1", {event("x")});
  EXPECT_EQ(state_json("native", last), R"({"order":{"n":2},"user":{"n":1}})");
  // Registering it again while it runs, or with another definition, is a conflict.
  EXPECT_EQ(p_->define_cpp(c).status().code(), ErrorCode::kConflict);
  CppProjection other = c;
  other.partition.by = PartitionBy::kStream;
  EXPECT_EQ(p_->define_cpp(other).status().code(), ErrorCode::kConflict);

  reopen_projections();
  auto st = p_->status("native");
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_EQ(st->phase, ProjectionPhase::kStopped);
  EXPECT_EQ(st->language, "c++");
  EXPECT_FALSE(st->fault.has_value());
  EXPECT_TRUE(contains(st->detail, "define_cpp")) << st->detail;
  EXPECT_EQ(p_->state("native", std::nullopt, 0, std::nullopt, 50ms).status().code(), ErrorCode::kClosed);
  EXPECT_EQ(p_->state_as_of("native", std::nullopt, AsOf{last, std::nullopt}, 0).status().code(), ErrorCode::kClosed);
  ASSERT_TRUE(p_->define_cpp(c).ok());
  EXPECT_EQ(state_json("native", last), R"({"order":{"n":2},"user":{"n":1}})");
  const uint64_t more = put("order-2", {event("x")});
  EXPECT_EQ(state_json("native", more), R"({"order":{"n":3},"user":{"n":1}})");
  EXPECT_EQ(records("$projection.registered", "native").size(), 1u);  // registering at each start records nothing new
}

TEST_F(LifecycleTest, ADroppedNameCanBeDefinedAfresh) {
  open();
  const uint64_t last = put("d-1", {event("x"), event("y")});
  ASSERT_TRUE(def("d", "return function(s, e) s.a = (s.a or 0) + 1 end").ok());
  EXPECT_EQ(state_json("d", last), R"({"a":2})");
  ASSERT_TRUE(p_->drop("d", 1).ok());  // the only version: allowed
  EXPECT_EQ(p_->status("d").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(p_->drop("d", 1).code(), ErrorCode::kNotFound);
  ASSERT_TRUE(def("d", "return function(s, e) s.types = (s.types or '') .. e.type end").ok());
  EXPECT_EQ(state_json("d", last), R"({"types":"xy"})");
  reopen_projections();
  EXPECT_EQ(state_json("d", last), R"({"types":"xy"})");
  EXPECT_EQ(p_->versions("d").size(), 1u);
  ASSERT_TRUE(p_->close().ok());
  EXPECT_EQ(def("late", "return function(s, e) end").status().code(), ErrorCode::kClosed);
}

TEST_F(LifecycleTest, AFaultedRebuildIsReportedAndTheStateKeepsServing) {
  open();
  ASSERT_TRUE(def("stuck", kPoisonable).ok());
  for (int i = 1; i <= 4; ++i) put("g-1", {event("ok", R"({"x":1})")});
  const uint64_t poison = put("g-1", {event("bad", R"({"poison":true})")});
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("stuck");
    return st.ok() && st->fault.has_value();
  }));
  // The same code faults at the same event again: the rebuild stops and is reported, not swapped in.
  auto r = p_->rebuild("stuck", 0);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("stuck");
    return st.ok() && !st->rebuild && st->rebuild_fault.has_value();
  }));
  auto st = p_->status("stuck");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->rebuild_fault->position, poison);
  EXPECT_TRUE(contains(st->rebuild_fault->message, "poisoned event")) << st->rebuild_fault->message;
  ASSERT_TRUE(st->fault.has_value());
  EXPECT_EQ(st->fault->position, poison);
  auto s = p_->state("stuck", std::nullopt, 0, std::nullopt, kWait);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->position, poison);
  EXPECT_EQ(s->json, R"({"n":4,"sum":4})");
  EXPECT_TRUE(records("$projection.rebuilt", "stuck").empty());
  // Another rebuild may be asked for (the stopped one does not linger).
  auto again = p_->rebuild("stuck", 0);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again->rebuild.has_value());
}

TEST_F(LifecycleTest, SourceFilterSelectsEventsAndNeverPassesReservedStreams) {
  open();
  put("order-1", {event("order.placed"), event("order.paid"), event("order.placed")});
  put("user-1", {event("order.placed"), event("user.created")});
  put("order-2", {event("order.cancelled")});
  const std::string code = "return function(s, e) s[e.stream .. '/' .. e.type] = (s[e.stream .. '/' .. e.type] or 0) + 1 end";
  auto with = [&](const std::string& name, Filter f) {
    ProjectionDefinition d;
    d.name = name;
    d.lua = code;
    d.source = std::move(f);
    return p_->define(d);
  };
  ASSERT_TRUE(with("types", Filter{{"order.placed", "order.cancelled"}, "", "", ""}).ok());
  ASSERT_TRUE(with("cat", Filter{{}, "", "", "order"}).ok());
  ASSERT_TRUE(with("both", Filter{{"order.placed"}, "", "", "order"}).ok());
  ASSERT_TRUE(with("prefix", Filter{{}, "order.p", "user-", ""}).ok());
  ASSERT_TRUE(with("reserved", Filter{{}, "", "$proj", ""}).ok());
  ASSERT_TRUE(with("reserved-types", Filter{{}, "$projection.", "", ""}).ok());
  // Later events arrive while following (the runner filters those itself).
  const uint64_t last = put("order-3", {event("order.placed"), event("order.shipped")});
  EXPECT_EQ(state_json("types", last),
            R"({"order-1/order.placed":2,"order-2/order.cancelled":1,"order-3/order.placed":1,"user-1/order.placed":1})");
  EXPECT_EQ(state_json("cat", last),
            R"({"order-1/order.paid":1,"order-1/order.placed":2,"order-2/order.cancelled":1,"order-3/order.placed":1,)"
            R"("order-3/order.shipped":1})");
  EXPECT_EQ(state_json("both", last), R"({"order-1/order.placed":2,"order-3/order.placed":1})");
  EXPECT_EQ(state_json("prefix", last), R"({"user-1/order.placed":1})");
  EXPECT_EQ(state_json("reserved", last), "null");  // no event at all: not even a first state
  EXPECT_EQ(state_json("reserved-types", last), "null");
  for (const char* name : {"types", "cat", "both", "prefix"}) {
    auto v = p_->verify(name, 0);
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->equal) << name;
  }
  auto a = p_->state_as_of("both", std::nullopt, AsOf{uint64_t{3}, std::nullopt}, 0);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->json, R"({"order-1/order.placed":2})");
}

// Everything at once: appends, queries of every kind, new versions (one resuming), rebuilds, activations and a
// drop, from different threads. Nothing may fail unexpectedly, and every version ends equal to a full replay.
// docs/projections.md: after `activate N`, a version older than N that never served does not take over once
// it has caught up (only newer ones do).
TEST_F(LifecycleTest, AnOlderPendingVersionDoesNotTakeOverAfterAManualActivate) {
  open();
  uint64_t last = 0;
  for (int i = 0; i < 50; ++i) last = put("a-1", {event("t")});
  ASSERT_TRUE(def("pick", "return function(s, e) s.v = 1 end").ok());
  ASSERT_TRUE(def("pick", "return function(s, e) s.v = 2 end", 2).ok());
  ASSERT_TRUE(def("pick", "return function(s, e) s.v = 3 end", 3).ok());
  ASSERT_TRUE(p_->activate("pick", 3).ok());
  // Version 2 catches up and the runtime looks again (every 50 ms): version 3 stays the active one.
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("pick", 2);
    return st.ok() && st->position > last && st->phase == ProjectionPhase::kLive;
  }));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(state_json("pick", last), R"({"v":3})");
  auto active = p_->status("pick");
  ASSERT_TRUE(active.ok());
  EXPECT_EQ(active->version, 3u);
}

TEST_F(LifecycleTest, ConcurrentAppendsQueriesAndVersionChanges) {
  ProjectionsOptions po;
  po.batch_events = 16;
  po.checkpoint_interval = 2ms;
  open(po);
  ASSERT_TRUE(def("busy", "return function(s, e) s.n = (s.n or 0) + 1 end", 1, Partitioning{PartitionBy::kStream, ""}).ok());
  const int total = kSanitized ? 1500 : 4000;
  std::atomic<bool> appending{true};
  std::atomic<int> appended{0};
  std::string errors;
  std::mutex errors_mu;
  auto note = [&](const std::string& what, const Status& st) {
    std::lock_guard g(errors_mu);
    if (errors.size() < 2000) errors += what + ": " + st.to_string() + "\n";
  };
  std::atomic<bool> managing{true};
  std::thread appender([&] {
    std::mt19937 rng(5);
    while (appended < total || managing) {  // goes on until the version changes are done
      const int k = 1 + static_cast<int>(rng() % 20);
      std::vector<EventData> evs;
      for (int i = 0; i < k; ++i) evs.push_back(event("t"));
      put("busy-" + std::to_string(rng() % 7), std::move(evs));
      appended += k;
      if (rng() % 8 == 0) std::this_thread::yield();
    }
    appending = false;
  });
  std::thread querier([&] {
    while (appending) {
      for (uint32_t version : {0u, 1u, 2u, 3u}) {
        auto s = p_->state("busy", std::nullopt, version, std::nullopt, kWait);
        if (!s.ok() && s.status().code() != ErrorCode::kNotFound) note("state", s.status());
        auto k = p_->state("busy", std::string("busy-3"), version, std::nullopt, kWait);
        if (!k.ok() && k.status().code() != ErrorCode::kNotFound) note("state key", k.status());
        auto pg = p_->partitions("busy", std::nullopt, 3, version);
        if (!pg.ok() && pg.status().code() != ErrorCode::kNotFound) note("partitions", pg.status());
        auto d = p_->digest("busy", version);
        if (!d.ok() && d.status().code() != ErrorCode::kNotFound) note("digest", d.status());
      }
      (void)p_->list();
      (void)p_->versions("busy");
      if (store_->head_position() > 10) {
        auto a = p_->state_as_of("busy", std::nullopt, AsOf{uint64_t{10}, std::nullopt}, 0);
        if (!a.ok()) note("as_of", a.status());
      }
    }
  });
  // Version changes while the log grows.
  auto r2 = def("busy", "return function(s, e) s.count = (s.count or 0) + 1 end", 2, Partitioning{PartitionBy::kStream, ""});
  if (!r2.ok()) note("define v2", r2.status());
  auto rb = p_->rebuild("busy", 1);
  if (!rb.ok()) note("rebuild v1", rb.status());
  std::this_thread::sleep_for(20ms);
  auto r3 = def("busy", "return function(s, e) s.count = (s.count or 0) + 1 end -- v3", 3,
                Partitioning{PartitionBy::kStream, ""}, /*resume=*/true);
  if (!r3.ok()) note("define v3", r3.status());
  auto a1 = p_->activate("busy", 1);
  if (!a1.ok()) note("activate 1", a1.status());
  std::this_thread::sleep_for(20ms);
  auto a3 = p_->activate("busy", 3);
  if (!a3.ok()) note("activate 3", a3.status());
  auto rb3 = p_->rebuild("busy", 3);
  if (!rb3.ok()) note("rebuild v3", rb3.status());
  Status d2 = p_->drop("busy", 2);
  if (!d2.ok()) note("drop 2", d2);
  managing = false;
  appender.join();
  querier.join();
  EXPECT_TRUE(errors.empty()) << errors;

  const uint64_t last = store_->head_position() - 1;
  std::map<std::string, int> per_stream;
  for (const auto& e : [&] {
         std::vector<RecordedEvent> out;
         std::optional<uint64_t> from = 0;
         while (from) {
           auto page = store_->read_all(from, Direction::kForward, 1000, Filter{});
           if (!page.ok()) break;
           for (auto& ev : page->events) out.push_back(std::move(ev));
           from = page->next;
         }
         return out;
       }())
    if (!e.stream.starts_with("$")) ++per_stream[e.stream];
  json v1 = json::object(), v3 = json::object();
  for (const auto& [k, n] : per_stream) {
    v1[k] = json{{"n", n}};
    v3[k] = json{{"count", n}};
  }
  ASSERT_TRUE(eventually([&] {
    auto st = p_->status("busy", 3);
    return st.ok() && !st->rebuild;
  }));
  EXPECT_EQ(state_json("busy", last, 1), v1.dump());
  EXPECT_EQ(state_json("busy", last, 3), v3.dump());
  EXPECT_EQ(state_json("busy", last), v3.dump());  // 3 is active
  EXPECT_EQ(p_->status("busy", 2).status().code(), ErrorCode::kNotFound);
  for (uint32_t version : {1u, 3u}) {
    auto v = p_->verify("busy", version);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    EXPECT_TRUE(v->equal) << version;
  }
  reopen_projections();
  EXPECT_EQ(state_json("busy", last), v3.dump());
  EXPECT_EQ(state_json("busy", last, 1), v1.dump());
}

// ---------------------------------------------------------------------------------------------------------
// As-of

struct Imported {
  std::string stream;
  int64_t x;
  int64_t ns;
};

class AsOfTest : public LifecycleTest {
 protected:
  // Imports `count` events with known, non-decreasing times (ties included), then opens the projections.
  void build(int count, uint64_t seed) {
    EmbeddedOptions o;
    o.dir = dir_.sub("store");
    o.durability = Durability::kNone;
    auto s = open_store(o);
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
    std::mt19937_64 rng(seed);
    auto t0 = parse_rfc3339_ns("2024-03-05T10:15:00Z");
    ASSERT_TRUE(t0.ok());
    int64_t t = *t0;
    std::map<std::string, uint64_t> revs;
    while (static_cast<int>(events_.size()) < count) {
      std::vector<ImportEvent> commit;
      const int k = 1 + static_cast<int>(rng() % 5);
      for (int i = 0; i < k && static_cast<int>(events_.size()) < count; ++i) {
        ImportEvent e;
        e.stream = "s-" + std::to_string(rng() % 9);
        e.revision = revs.count(e.stream) ? revs[e.stream] + 1 : 0;
        revs[e.stream] = e.revision;
        e.id = Uuid::generate_v7();
        e.type = "t";
        t += static_cast<int64_t>(rng() % 3) * 1'000'000'000;  // 0, 1 or 2 s later
        e.recorded_ns = t;
        const int64_t x = static_cast<int64_t>(rng() % 100);
        e.data = R"({"x":)" + std::to_string(x) + "}";
        events_.push_back({e.stream, x, t});
        commit.push_back(std::move(e));
      }
      auto r = store_->import_commit(std::move(commit));
      ASSERT_TRUE(r.ok()) << r.status().to_string();
    }
    po_.dir = dir_.sub("projections");
    po_.batch_events = 50;  // a snapshot chance every 50 events
    po_.builtins = false;
    open_projections_now();
  }

  // The expected state after the events in [0, end).
  std::string expected(size_t end, std::optional<std::string> key, bool partitioned) {
    std::map<std::string, json> parts;
    for (size_t i = 0; i < end && i < events_.size(); ++i) {
      const std::string k = partitioned ? events_[i].stream : "";
      auto& s = parts[k];
      if (s.is_null()) s = json{{"n", 0}, {"sum", 0}, {"last", -1}};
      s["n"] = s["n"].get<int64_t>() + 1;
      s["sum"] = s["sum"].get<int64_t>() + events_[i].x;
      s["last"] = static_cast<int64_t>(i);
    }
    if (!partitioned || key) {
      auto it = parts.find(key.value_or(""));
      return it == parts.end() ? "null" : it->second.dump();
    }
    json all = json::object();
    for (auto& [k, v] : parts) all[k] = v;
    return all.dump();
  }

  std::vector<Imported> events_;
};

constexpr const char* kAsOfReducer = R"(return {
  init = function() return {n = 0, sum = 0, last = -1} end,
  reduce = function(s, e) s.n = s.n + 1 s.sum = s.sum + e.data.x s.last = e.position end})";

size_t count_files(const std::string& dir, const std::string& prefix) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with(prefix)) ++n;
  return n;
}

TEST_F(AsOfTest, StateAsOfPositionsAndTimesEqualsTruncatedReplay) {
  const int count = 1500;
  build(count, 42);
  struct P {
    std::string name;
    uint64_t snapshot_every;
    bool partitioned;
  };
  const std::vector<P> ps = {{"snap", 100, false}, {"nosnap", 0, false}, {"snap-part", 100, true}, {"nosnap-part", 0, true}};
  for (const auto& p : ps)
    ASSERT_TRUE(def(p.name, kAsOfReducer, 1, p.partitioned ? Partitioning{PartitionBy::kStream, ""} : Partitioning{}, false,
                    p.snapshot_every).ok());
  for (const auto& p : ps) ASSERT_EQ(state_json(p.name, count - 1), expected(count, std::nullopt, p.partitioned));
  // Snapshots exist for the first ones only (how many depends on how long each took to write: the runner
  // paces them), so as-of queries past them start from one.
  EXPECT_GE(count_files(dir_.sub("projections") + "/snap/v1/g1", "snapshot-"), 1u);
  EXPECT_GE(count_files(dir_.sub("projections") + "/snap-part/v1/g1", "snapshot-"), 1u);
  EXPECT_EQ(count_files(dir_.sub("projections") + "/nosnap-part/v1/g1", "snapshot-"), 0u);
  EXPECT_EQ(count_files(dir_.sub("projections") + "/nosnap/v1/g1", "snapshot-"), 0u);

  std::mt19937_64 rng(7);
  std::vector<uint64_t> positions = {0, 1, 99, 100, 101, 199, 200, 1000, static_cast<uint64_t>(count - 1)};
  for (int i = 0; i < 25; ++i) positions.push_back(rng() % count);
  const uint64_t head = store_->head_position();
  positions.push_back(head - 1);  // a $projections event: every user event is in
  for (const auto& p : ps) {
    SCOPED_TRACE(p.name);
    for (uint64_t pos : positions) {
      SCOPED_TRACE(pos);
      auto s = p_->state_as_of(p.name, std::nullopt, AsOf{pos, std::nullopt}, 0);
      ASSERT_TRUE(s.ok()) << s.status().to_string();
      EXPECT_EQ(s->position, pos + 1);
      EXPECT_EQ(s->json, expected(pos + 1, std::nullopt, p.partitioned));
      if (p.partitioned) {
        for (const std::string key : {"s-0", "s-4", "s-8"}) {
          auto k = p_->state_as_of(p.name, key, AsOf{pos, std::nullopt}, 0);
          ASSERT_TRUE(k.ok()) << k.status().to_string();
          const std::string want = expected(pos + 1, key, true);
          EXPECT_EQ(k->json, want);
          EXPECT_EQ(k->found, want != "null");
        }
      }
    }
    // Times: the state after every event recorded at or before the time.
    for (int i = 0; i < 15; ++i) {
      const size_t idx = rng() % count;
      for (int64_t delta : {int64_t{0}, int64_t{-1}, int64_t{500'000'000}}) {
        const int64_t t = events_[idx].ns + delta;
        size_t end = 0;
        while (end < events_.size() && events_[end].ns <= t) ++end;
        auto s = p_->state_as_of(p.name, std::nullopt, AsOf{std::nullopt, t}, 0);
        ASSERT_TRUE(s.ok()) << s.status().to_string();
        EXPECT_EQ(s->position, end) << format_rfc3339_ns(t);
        EXPECT_EQ(s->json, expected(end, std::nullopt, p.partitioned)) << format_rfc3339_ns(t);
      }
    }
    // Before the first event: nothing yet.
    auto early = p_->state_as_of(p.name, std::nullopt, AsOf{std::nullopt, events_[0].ns - 1}, 0);
    ASSERT_TRUE(early.ok());
    EXPECT_EQ(early->position, 0u);
    EXPECT_EQ(early->json, p.partitioned ? "{}" : "null");
    // Past the head: refused, naming as_of (kNotFound in the first design; kInvalidArgument since d1071b5).
    for (uint64_t past : {head, head + 1000}) {
      auto r = p_->state_as_of(p.name, std::nullopt, AsOf{past, std::nullopt}, 0);
      ASSERT_FALSE(r.ok());
      EXPECT_TRUE(r.status().code() == ErrorCode::kNotFound || r.status().code() == ErrorCode::kInvalidArgument)
          << r.status().to_string();
      EXPECT_TRUE(contains(r.status().message(), "as_of")) << r.status().message();
    }
    EXPECT_EQ(p_->state_as_of(p.name, std::nullopt, AsOf{}, 0).status().code(), ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(p_->state_as_of("nope", std::nullopt, AsOf{uint64_t{1}, std::nullopt}, 0).status().code(), ErrorCode::kNotFound);
}

TEST_F(AsOfTest, AsOfStillRightAfterRestartAndMoreEvents) {
  build(600, 3);
  ASSERT_TRUE(def("snap", kAsOfReducer, 1, {}, false, 100).ok());
  ASSERT_EQ(state_json("snap", 599), expected(600, std::nullopt, false));
  reopen_projections();
  for (uint64_t pos : {uint64_t{0}, uint64_t{150}, uint64_t{301}, uint64_t{599}}) {
    auto s = p_->state_as_of("snap", std::nullopt, AsOf{pos, std::nullopt}, 0);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ(s->json, expected(pos + 1, std::nullopt, false)) << pos;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Partitions

TEST_F(LifecycleTest, PartitionsListingPagesThroughAllKeysInOrder) {
  open();
  std::set<std::string> streams;
  for (int i = 0; i < 50; ++i) streams.insert("p-" + std::to_string(i * 7));
  for (const char* s : {"p-A", "p-a", "p-Z", "p-_", "p-\xc3\xa4", "P-upper", "p-a b"}) streams.insert(s);
  uint64_t last = 0;
  for (const auto& s : streams) last = put(s, {event("x")});
  ASSERT_TRUE(def("parts", "return function(s, e) s.n = (s.n or 0) + 1 end", 1, Partitioning{PartitionBy::kStream, ""}).ok());
  ASSERT_FALSE(state_json("parts", last).empty());
  const std::vector<std::string> want(streams.begin(), streams.end());  // std::string order is byte order
  for (size_t limit : {size_t{1}, size_t{7}, size_t{10}, want.size() - 1, want.size(), want.size() + 5}) {
    SCOPED_TRACE(limit);
    std::vector<std::string> got;
    std::optional<std::string> after;
    int pages = 0;
    for (;;) {
      auto page = p_->partitions("parts", after, limit, 0);
      ASSERT_TRUE(page.ok()) << page.status().to_string();
      EXPECT_LE(page->keys.size(), limit);
      EXPECT_EQ(page->version, 1u);
      EXPECT_GT(page->position, last);
      got.insert(got.end(), page->keys.begin(), page->keys.end());
      ++pages;
      if (!page->next) break;
      EXPECT_EQ(*page->next, page->keys.back());
      after = page->next;
      ASSERT_LT(pages, 1000);
    }
    EXPECT_EQ(got, want);
    EXPECT_EQ(pages, static_cast<int>((want.size() + limit - 1) / limit));
  }
  auto end = p_->partitions("parts", want.back(), 10, 0);
  ASSERT_TRUE(end.ok());
  EXPECT_TRUE(end->keys.empty());
  EXPECT_FALSE(end->next.has_value());
  EXPECT_EQ(p_->partitions("parts", std::nullopt, 0, 0).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(p_->partitions("nope", std::nullopt, 10, 0).status().code(), ErrorCode::kNotFound);
  // The whole state is an object of every partition; one partition by key; a missing one is not found.
  auto whole = json::parse(state_json("parts", last));
  EXPECT_EQ(whole.size(), want.size());
  auto one = p_->state("parts", std::string("p-a b"), 0, last, kWait);
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->found);
  EXPECT_EQ(one->json, R"({"n":1})");
  auto missing = p_->state("parts", std::string("p-none"), 0, last, kWait);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->found);
  EXPECT_EQ(missing->json, "null");
}

// ---------------------------------------------------------------------------------------------------------
// Built-ins

class BuiltinsTest : public LifecycleTest {
 protected:
  struct Ev {
    std::string stream;
    std::string type;
    std::string time;
  };
  void build(const std::vector<Ev>& evs) {
    EmbeddedOptions o;
    o.dir = dir_.sub("store");
    o.durability = Durability::kNone;
    auto s = open_store(o);
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
    std::map<std::string, uint64_t> revs;
    for (const auto& ev : evs) {
      ImportEvent e;
      e.stream = ev.stream;
      e.revision = revs.count(ev.stream) ? revs[ev.stream] + 1 : 0;
      revs[ev.stream] = e.revision;
      e.id = Uuid::generate_v7();
      e.type = ev.type;
      auto t = parse_rfc3339_ns(ev.time);
      ASSERT_TRUE(t.ok()) << ev.time;
      e.recorded_ns = *t;
      e.data = "{}";
      ASSERT_TRUE(store_->import_commit({e}).ok());
    }
    po_.dir = dir_.sub("projections");
    open_projections_now();
  }
};

TEST_F(BuiltinsTest, StreamsAndTypesReportAKnownHistory) {
  build({
      {"order-1", "order.placed", "2024-03-05T10:15:00Z"},        // 0
      {"order-1", "order.paid", "2024-03-05T10:25:00.5Z"},        // 1
      {"order-2", "order.placed", "2024-03-05T11:05:00Z"},        // 2
      {"user-1", "user.created", "2024-03-06T10:15:00Z"},         // 3
      {"order-1", "order.shipped", "2024-03-06T11:15:00.000000001Z"},  // 4
      {"order-2", "order.placed", "2024-03-06T23:59:59.999999999Z"},   // 5
  });
  auto ns = [](const char* t) { return parse_rfc3339_ns(t).value(); };
  auto s1 = p_->state("$streams", std::string("order-1"), 0, uint64_t{5}, kWait);
  ASSERT_TRUE(s1.ok()) << s1.status().to_string();
  EXPECT_TRUE(s1->found);
  json o1 = json::parse(s1->json);
  EXPECT_EQ(o1["count"], 3);
  EXPECT_EQ(o1["revision"], 2);
  EXPECT_EQ(o1["first_position"], 0);
  EXPECT_EQ(o1["last_position"], 4);
  EXPECT_EQ(o1["first_time"], format_rfc3339_ns(ns("2024-03-05T10:15:00Z")));
  EXPECT_EQ(o1["last_time"], format_rfc3339_ns(ns("2024-03-06T11:15:00.000000001Z")));
  json o2 = json::parse(state_json("$streams", 5, 0, std::string("order-2")));
  EXPECT_EQ(o2["count"], 2);
  EXPECT_EQ(o2["revision"], 1);
  EXPECT_EQ(o2["first_position"], 2);
  EXPECT_EQ(o2["last_position"], 5);
  json u1 = json::parse(state_json("$streams", 5, 0, std::string("user-1")));
  EXPECT_EQ(u1["count"], 1);
  EXPECT_EQ(u1["revision"], 0);
  EXPECT_EQ(u1["first_position"], 3);
  EXPECT_EQ(u1["last_position"], 3);
  auto none = p_->state("$streams", std::string("order-9"), 0, uint64_t{5}, kWait);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->found);
  auto sp = p_->partitions("$streams", std::nullopt, 100, 0);
  ASSERT_TRUE(sp.ok());
  EXPECT_EQ(sp->keys, (std::vector<std::string>{"order-1", "order-2", "user-1"}));

  json placed = json::parse(state_json("$types", 5, 0, std::string("type:order.placed")));
  EXPECT_EQ(placed, json::parse(R"({"total":3,"hours":{"2024-03-05T10":1,"2024-03-05T11":1,"2024-03-06T23":1},)"
                                R"("days":{"2024-03-05":2,"2024-03-06":1}})"));
  json paid = json::parse(state_json("$types", 5, 0, std::string("type:order.paid")));
  EXPECT_EQ(paid, json::parse(R"({"total":1,"hours":{"2024-03-05T10":1},"days":{"2024-03-05":1}})"));
  json order = json::parse(state_json("$types", 5, 0, std::string("category:order")));
  EXPECT_EQ(order, json::parse(R"({"total":5,"hours":{"2024-03-05T10":2,"2024-03-05T11":1,"2024-03-06T11":1,)"
                               R"("2024-03-06T23":1},"days":{"2024-03-05":3,"2024-03-06":2}})"));
  json user = json::parse(state_json("$types", 5, 0, std::string("category:user")));
  EXPECT_EQ(user, json::parse(R"({"total":1,"hours":{"2024-03-06T10":1},"days":{"2024-03-06":1}})"));
  auto tp = p_->partitions("$types", std::nullopt, 100, 0);
  ASSERT_TRUE(tp.ok());
  EXPECT_EQ(tp->keys, (std::vector<std::string>{"category:order", "category:user", "type:order.paid", "type:order.placed",
                                                "type:order.shipped", "type:user.created"}));
  auto st = p_->status("$types");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->language, "builtin");
  // Built-ins survive a restart with the same counts, and cannot be dropped.
  reopen_projections();
  EXPECT_EQ(json::parse(state_json("$types", 5, 0, std::string("type:order.placed")))["total"], 3);
  EXPECT_EQ(json::parse(state_json("$streams", 5, 0, std::string("order-1")))["count"], 3);
  EXPECT_EQ(p_->drop("$streams", 1).code(), ErrorCode::kInvalidArgument);
  // Cairn's own streams count too: defining a projection writes $projections.
  ASSERT_TRUE(def("x", "return function(s, e) end").ok());
  const uint64_t head = store_->head_position();
  json proj = json::parse(state_json("$streams", head - 1, 0, std::string("$projections")));
  EXPECT_EQ(proj["count"], head - 6);
  EXPECT_EQ(proj["first_position"], 6);
}

// $types is defined with partition.by none but keeps one partition per "type:..." / "category:..." key: a
// whole-state query must still list them (it answered "null" before state_answer, commit d8289e4).
TEST_F(BuiltinsTest, TypesWholeStateListsItsPartitions) {
  build({{"order-1", "order.placed", "2024-03-05T10:15:00Z"}, {"user-1", "user.created", "2024-03-05T10:16:00Z"}});
  auto s = p_->state("$types", std::nullopt, 0, uint64_t{1}, kWait);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_TRUE(s->found);
  EXPECT_TRUE(contains(s->json, "\"type:order.placed\"")) << s->json;
}

// ---------------------------------------------------------------------------------------------------------
// Definitions

TEST_F(LifecycleTest, DefineRejectsBadDefinitionsNamingTheField) {
  open();
  const std::string ok_code = "return function(s, e) end";
  struct Bad {
    const char* what;
    ProjectionDefinition def;
    const char* field;
  };
  auto base = [&] {
    ProjectionDefinition d;
    d.name = "good";
    d.lua = ok_code;
    return d;
  };
  std::vector<Bad> bad;
  for (const std::string& name :
       std::vector<std::string>{"", "Upper", "has space", "$builtin", "-dash", "_under", "a/b", std::string(101, 'a')}) {
    auto d = base();
    d.name = name;
    bad.push_back({"name", d, "name"});
  }
  {
    auto d = base();
    d.version = 0;
    bad.push_back({"version 0", d, "version"});
  }
  for (PartitionBy by : {PartitionBy::kData, PartitionBy::kMetadata}) {
    auto d = base();
    d.partition.by = by;
    bad.push_back({"missing field", d, "partition.field"});
  }
  for (const char* f : {".a", "a.", "a..b"}) {
    auto d = base();
    d.partition = {PartitionBy::kData, f};
    bad.push_back({"bad path", d, "partition.field"});
  }
  {
    auto d = base();
    d.partition = {PartitionBy::kStream, "x"};
    bad.push_back({"field with stream", d, "partition.field"});
  }
  {
    auto d = base();
    d.lua = "";
    bad.push_back({"empty lua", d, "lua"});
  }
  {
    auto d = base();
    d.lua = "return function(s, e) s.x = end";
    bad.push_back({"syntax error", d, "lua"});
  }
  {
    auto d = base();
    d.lua = "return 42";
    bad.push_back({"no reducer", d, "lua"});
  }
  {
    auto d = base();
    d.lua = "local x = 1";
    bad.push_back({"nothing returned", d, "lua"});
  }
  {
    auto d = base();
    d.lua = "error('at load')";
    bad.push_back({"error at load", d, "at load"});
  }
  {
    auto d = base();
    d.limits.instructions_per_event = 10;
    bad.push_back({"tiny instruction limit", d, "limits.instructions_per_event"});
  }
  {
    auto d = base();
    d.limits.memory_bytes = 1000;
    bad.push_back({"tiny memory limit", d, "limits.memory_bytes"});
  }
  {
    auto d = base();
    d.description = std::string(5000, 'd');
    bad.push_back({"long description", d, "description"});
  }
  const size_t records_before = projections_log().size();
  for (const auto& b : bad) {
    SCOPED_TRACE(b.what);
    auto r = p_->define(b.def);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << r.status().to_string();
    EXPECT_TRUE(contains(r.status().message(), b.field)) << r.status().message();
  }
  EXPECT_EQ(projections_log().size(), records_before);  // nothing refused was recorded
  auto by = parse_partition_by("bogus");
  ASSERT_FALSE(by.ok());
  EXPECT_EQ(by.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(by.status().message(), "partition.by")) << by.status().message();
  CppProjection c;
  c.name = "cpp";
  auto rc = p_->define_cpp(c);
  ASSERT_FALSE(rc.ok());
  EXPECT_EQ(rc.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(rc.status().message(), "engine")) << rc.status().message();
}

// Regression (failed at 3c7fd5f and d1071b5, fixed in 26d7c21): validate_definition did not check that
// partition.by is a known kind, so static_cast<PartitionBy>(42) was accepted, recorded in $projections as
// "none" while the runner skipped every event (state "{}"), and after a restart re-read as "none" resuming from
// its empty checkpoint: a state no replay of either reading gives.
TEST_F(LifecycleTest, DefineRejectsAnUnknownPartitionKind) {
  open();
  ProjectionDefinition d;
  d.name = "odd-partition";
  d.lua = "return function(s, e) s.n = (s.n or 0) + 1 end";
  d.partition.by = static_cast<PartitionBy>(42);
  auto r = p_->define(d);
  ASSERT_FALSE(r.ok()) << "accepted partition.by = 42";
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(r.status().message(), "partition.by")) << r.status().message();
}

TEST_F(LifecycleTest, RedefiningIsANoOpOrAConflict) {
  open();
  const uint64_t last = put("a-1", {event("x")});
  const std::string code = "return function(s, e) s.n = (s.n or 0) + 1 end";
  auto r1 = def("same", code);
  ASSERT_TRUE(r1.ok());
  const size_t records_before = projections_log().size();
  auto registered = [&] { return records("$projection.registered", "same").size(); };
  auto r2 = def("same", code);
  ASSERT_TRUE(r2.ok()) << r2.status().to_string();
  EXPECT_EQ(r2->version, 1u);
  EXPECT_EQ(projections_log().size(), records_before);  // nothing new recorded
  EXPECT_EQ(p_->versions("same").size(), 1u);
  EXPECT_EQ(state_json("same", last), R"({"n":1})");
  // The same version with other code, or other settings: a conflict naming the next version.
  auto r3 = def("same", "return function(s, e) s.m = 1 end");
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.status().code(), ErrorCode::kConflict);
  EXPECT_TRUE(contains(r3.status().message(), "version 2")) << r3.status().message();
  auto r4 = def("same", code, 1, Partitioning{PartitionBy::kStream, ""});
  EXPECT_EQ(r4.status().code(), ErrorCode::kConflict);
  // A new version, then an older number again: a conflict.
  ASSERT_TRUE(def("same", "return function(s, e) s.m = 1 end", 3).ok());
  auto r5 = def("same", "return function(s, e) s.k = 1 end", 2);
  EXPECT_EQ(r5.status().code(), ErrorCode::kConflict) << r5.status().to_string();
  EXPECT_EQ(registered(), 2u);  // versions 1 and 3
  // After a restart the identical definition is still a no-op.
  reopen_projections();
  auto r6 = def("same", code);
  ASSERT_TRUE(r6.ok()) << r6.status().to_string();
  EXPECT_EQ(r6->version, 1u);
  EXPECT_EQ(registered(), 2u);
}

TEST_F(LifecycleTest, WaitForAFuturePositionTimesOut) {
  open();
  const uint64_t last = put("a-1", {event("x")});
  ASSERT_TRUE(def("w", "return function(s, e) s.n = (s.n or 0) + 1 end").ok());
  ASSERT_EQ(state_json("w", last), R"({"n":1})");
  auto s = p_->state("w", std::nullopt, 0, store_->head_position() + 10, 50ms);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), ErrorCode::kTimeout) << s.status().to_string();
  EXPECT_EQ(p_->state("nope", std::nullopt, 0, std::nullopt, 50ms).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(p_->state("w", std::nullopt, 9, std::nullopt, 50ms).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(p_->status("w", 9).status().code(), ErrorCode::kNotFound);
  // The state answered now (no wait) says which position it reflects.
  auto now = p_->state("w", std::nullopt, 0, std::nullopt, 50ms);
  ASSERT_TRUE(now.ok());
  EXPECT_GT(now->position, last);
}

}  // namespace
}  // namespace cairn
