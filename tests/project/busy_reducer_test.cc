// A busy reducer never holds up anyone else (docs/projections.md, "Queries while a reducer works"): while a C++
// reducer is stuck inside one event, the status and list of every projection (what /metrics reads), another
// projection's state and its digest all answer; a query of the stuck projection itself waits only for that one
// event, not for the rest of the batch: it is answered between two events of a batch still running, with the
// position its state reflects. Asserted on the order of events (a gate inside the reducer), not on time; the
// futures' long waits only turn a hang into a failure.
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using namespace std::chrono_literals;

// The reducer stops inside apply() of the events at the positions in `stops`, until released.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t stuck_at = UINT64_MAX;  // the position the reducer is stuck at, if any
  uint64_t released_upto = 0;      // events below this go through
  std::vector<uint64_t> stops;
  bool armed = true;  // false: nothing stops
  uint64_t brief = UINT64_MAX;  // a stop that lasts at most 2 s

  void enter(uint64_t position) {
    std::unique_lock g(mu);
    if (!armed || std::find(stops.begin(), stops.end(), position) == stops.end()) return;
    stuck_at = position;
    cv.notify_all();
    if (position == brief) cv.wait_for(g, 2s, [&] { return released_upto > position; });
    else cv.wait(g, [&] { return released_upto > position; });
    stuck_at = UINT64_MAX;
  }
  bool wait_stuck_at(uint64_t position) {
    std::unique_lock g(mu);
    return cv.wait_for(g, 60s, [&] { return stuck_at == position; });
  }
  void release_past(uint64_t position) {
    std::lock_guard g(mu);
    released_upto = position + 1;
    cv.notify_all();
  }
};

// Whether f answers (true) while the reducer is stuck. If it does not, the gate opens for good so that f, and
// the test, can end: a hang becomes a failure.
template <typename F>
bool answers(Gate& gate, F&& f) {
  auto fut = std::async(std::launch::async, std::forward<F>(f));
  if (fut.wait_for(60s) == std::future_status::ready) return fut.get();
  gate.release_past(UINT64_MAX - 1);
  fut.wait();
  return false;
}

// n events of stream t-1 at positions 0..n-1.
void append_ticks(Store& store, int n) {
  StreamAppend a;
  a.stream = "t-1";
  for (int i = 0; i < n; ++i) {
    EventData e;
    e.type = "tick";
    e.data = "{}";
    a.events.push_back(std::move(e));
  }
  ASSERT_TRUE(store.append(std::move(a)).ok());
}

// A store in dir/store (no sync) holding n ticks; null (and a test failure) if it cannot be opened.
std::unique_ptr<Store> store_with_ticks(testing::TempDir& dir, int n) {
  EmbeddedOptions o;
  o.dir = dir.sub("store");
  o.durability = Durability::kNone;
  auto store = open_store(o);
  EXPECT_TRUE(store.ok()) << store.status().to_string();
  if (!store.ok()) return nullptr;
  append_ticks(**store, n);
  return std::move(*store);
}

// "gated": counts the events of t- streams, passing each one through the gate first.
CppProjection gated_projection(std::shared_ptr<Gate> gate) {
  CppReducer<uint64_t> r;
  r.apply = [gate](uint64_t& n, const EventView& e) {
    gate->enter(e.position);
    ++n;
    return Status();
  };
  r.to_json = [](const uint64_t& n) { return std::to_string(n); };
  r.from_json = [](std::string_view j) -> Result<uint64_t> { return std::stoull(std::string(j)); };
  CppProjection def;
  def.name = "gated";
  def.source.stream_prefix = "t-";
  def.engine = make_cpp_engine(r);
  return def;
}

TEST(BusyReducer, QueriesStatusAndOtherProjectionsNeverWaitForIt) {
  testing::TempDir dir;
  auto store = store_with_ticks(dir, 300);
  ASSERT_TRUE(store);

  ProjectionsOptions po;
  po.dir = dir.sub("projections");
  po.batch_events = 4096;  // the whole log in one batch
  auto p = open_projections(*store, po);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  // The built-ins must have caught up before the gate shuts, so that asking them tests only the locking.
  ASSERT_TRUE((*p)->state("$streams", std::string("t-1"), 0, uint64_t{299}, 60s).ok());

  auto gate = std::make_shared<Gate>();
  gate->stops = {100, 200};
  gate->brief = 200;
  ASSERT_TRUE((*p)->define_cpp(gated_projection(gate)).ok());
  ASSERT_TRUE(gate->wait_stuck_at(100));

  // Stuck inside event 100: everything that is not this projection's state answers.
  EXPECT_TRUE(answers(*gate, [&] {
    auto s = (*p)->status("gated");
    return s.ok() && s->position <= 100 && s->phase != ProjectionPhase::kFaulted;
  }));
  EXPECT_TRUE(answers(*gate, [&] { return (*p)->list().size() >= 5; }));
  EXPECT_TRUE(answers(*gate, [&] { return (*p)->state("$streams", std::string("t-1"), 0, std::nullopt, 1s).ok(); }));
  EXPECT_TRUE(answers(*gate, [&] { return (*p)->digest("$types", 0).ok(); }));

  // The stuck projection's own state waits for the event being applied only, not for the batch (which
  // goes on to position 256 at least). Released from event 100, the reducer stops again in event 200, for at
  // most 2 s: the query, whether it came before event 200 or while the reducer was in it, is answered at
  // position 201 at the latest, while the batch still runs, with a state that matches its position.
  auto query = std::async(std::launch::async, [&] { return (*p)->state("gated", std::nullopt, 0, std::nullopt, 1s); });
  gate->release_past(100);
  const bool answered = query.wait_for(60s) == std::future_status::ready;
  if (!answered) gate->release_past(UINT64_MAX - 1);
  ASSERT_TRUE(answered);
  auto st = query.get();
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_GT(st->position, 100u);
  EXPECT_LE(st->position, 201u) << "the query waited for the batch, not for one event";
  EXPECT_EQ(st->json, std::to_string(st->position));  // one event counted per position below it

  gate->release_past(200);
  auto done = (*p)->state("gated", std::nullopt, 0, uint64_t{299}, 60s);
  ASSERT_TRUE(done.ok()) << done.status().to_string();
  EXPECT_EQ(done->json, "300");
  ASSERT_TRUE((*p)->close().ok());
}

// A verify replays the log on the calling thread (cairnd runs it on a replay worker): while it runs, the
// version's status shows it with how far it got, and it is gone once it is done.
TEST(BusyReducer, ARunningVerifyShowsInTheStatusWithItsProgress) {
  testing::TempDir dir;
  auto store = store_with_ticks(dir, 100);
  ASSERT_TRUE(store);
  ProjectionsOptions po;
  po.dir = dir.sub("projections");
  auto p = open_projections(*store, po);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  auto gate = std::make_shared<Gate>();
  gate->stops = {50};
  gate->armed = false;
  ASSERT_TRUE((*p)->define_cpp(gated_projection(gate)).ok());
  ASSERT_TRUE((*p)->state("gated", std::nullopt, 0, uint64_t{99}, 60s).ok());
  auto before = (*p)->status("gated");
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE(before->replays.empty());
  {
    std::lock_guard g(gate->mu);
    gate->armed = true;  // only the verify's replay meets the gate now: the live state is past it
  }
  auto verify = std::async(std::launch::async, [&] { return (*p)->verify("gated", 0); });
  ASSERT_TRUE(gate->wait_stuck_at(50));
  auto during = (*p)->status("gated");
  gate->release_past(50);
  ASSERT_TRUE(during.ok());
  ASSERT_EQ(during->replays.size(), 1u);
  EXPECT_EQ(during->replays[0].kind, "verify");
  EXPECT_LE(during->replays[0].position, 50u);
  EXPECT_GT(during->replays[0].target, 50u);
  ASSERT_EQ(verify.wait_for(60s), std::future_status::ready);
  auto rep = verify.get();
  ASSERT_TRUE(rep.ok()) << rep.status().to_string();
  EXPECT_TRUE(rep->equal);
  auto after = (*p)->status("gated");
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->replays.empty());
  ASSERT_TRUE((*p)->close().ok());
}

}  // namespace
}  // namespace cairn
