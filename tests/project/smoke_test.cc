// The projection runtime end to end on a small log: define, catch up, follow, query, restart.
#include <gtest/gtest.h>

#include <thread>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using namespace std::chrono_literals;

EventData ev(std::string type, std::string data = "{}") {
  EventData e;
  e.type = std::move(type);
  e.data = std::move(data);
  return e;
}

uint64_t append(Store& s, const std::string& stream, std::vector<EventData> events) {
  StreamAppend a;
  a.stream = stream;
  a.events = std::move(events);
  auto r = s.append(std::move(a));
  EXPECT_TRUE(r.ok());
  return r.ok() ? r->streams[0].last_position : 0;
}

TEST(ProjectionSmoke, CountsByTypeThenFollowsLiveThenResumes) {
  testing::TempDir dir;
  EmbeddedOptions o;
  o.dir = dir.sub("store");
  o.durability = Durability::kNone;
  auto store = open_store(o);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  append(**store, "order-1", {ev("order.placed"), ev("order.paid")});
  append(**store, "order-2", {ev("order.placed")});
  ProjectionsOptions po;
  po.dir = dir.sub("projections");
  {
    auto p = open_projections(**store, po);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    ProjectionDefinition d;
    d.name = "by-type";
    d.lua = "return function(s, e) s[e.type] = (s[e.type] or 0) + 1 end";
    auto st = (*p)->define(d);
    ASSERT_TRUE(st.ok()) << st.status().to_string();
    auto s = (*p)->state("by-type", std::nullopt, 0, uint64_t{2}, 5000ms);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ(s->json, R"({"order.paid":1,"order.placed":2})");
    const uint64_t last = append(**store, "order-3", {ev("order.placed")});
    s = (*p)->state("by-type", std::nullopt, 0, last, 5000ms);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ(s->json, R"({"order.paid":1,"order.placed":3})");
    auto streams = (*p)->state("$streams", std::string("order-1"), 0, uint64_t{3}, 5000ms);
    ASSERT_TRUE(streams.ok()) << streams.status().to_string();
    EXPECT_NE(streams->json.find("\"count\":2"), std::string::npos) << streams->json;
    auto v = (*p)->verify("by-type", 0);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    EXPECT_TRUE(v->equal);
    auto asof = (*p)->state_as_of("by-type", std::nullopt, AsOf{uint64_t{1}, std::nullopt}, 0);
    ASSERT_TRUE(asof.ok()) << asof.status().to_string();
    EXPECT_EQ(asof->json, R"({"order.paid":1,"order.placed":1})");
    ASSERT_TRUE((*p)->close().ok());
  }
  auto p = open_projections(**store, po);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  auto s = (*p)->state("by-type", std::nullopt, 0, (*store)->head_position() - 1, 5000ms);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->json, R"({"order.paid":1,"order.placed":3})");
}

TEST(ProjectionSmoke, SandboxRefusesAndLimitsFault) {
  testing::TempDir dir;
  EmbeddedOptions o;
  o.dir = dir.sub("store");
  o.durability = Durability::kNone;
  auto store = open_store(o);
  ASSERT_TRUE(store.ok());
  ProjectionsOptions po;
  po.dir = dir.sub("projections");
  auto p = open_projections(**store, po);
  ASSERT_TRUE(p.ok());
  int n = 0;
  for (const char* code : {"return function(s, e) io.write('x') end", "local n = 0 return function(s, e) n = n + 1 end",
                           "return function(s,e) os.time() end", "x = = 1"}) {
    ProjectionDefinition d;
    d.name = "bad" + std::to_string(n++);
    d.lua = code;
    auto r = (*p)->define(d);
    if (r.ok()) {
      // Refusals that only show at run time (a nil global) fault on the first event.
      continue;
    }
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << code;
  }
  ProjectionDefinition loop;
  loop.name = "loop";
  loop.lua = "return function(s, e) while true do end end";
  ASSERT_TRUE((*p)->define(loop).ok());
  append(**store, "a-1", {ev("x")});
  for (int i = 0; i < 200; ++i) {
    auto st = (*p)->status("loop");
    if (st.ok() && st->fault) break;
    std::this_thread::sleep_for(20ms);
  }
  auto st = (*p)->status("loop");
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(st->fault.has_value());
  EXPECT_NE(st->fault->message.find("instructions"), std::string::npos) << st->fault->message;
}

}  // namespace
}  // namespace cairn
