// /v1/projections over real sockets, against a cairnd child process: definitions and their validation, the
// role matrix, state with wait_for, keys, partitions and as-of, digests and verify, blue/green versions,
// faults, background rebuilds, the built-in $streams and $types, metrics, and SIGKILL while projections
// catch up and while appends flow. Expected states are computed by hand from the events the test appended.
#include <gtest/gtest.h>

#include <future>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "testing/temp_dir.h"

namespace {

using namespace cairn::server_test;
using Clock = std::chrono::steady_clock;

// Per partition: a count and the last n.
const std::string kPerPartition =
    "return {\n"
    "  init = function() return {count = 0} end,\n"
    "  reduce = function(s, e)\n"
    "    s.count = s.count + 1\n"
    "    s.last = e.data.n\n"
    "    return s\n"
    "  end,\n"
    "}\n";
// Fails on data.poison == true.
const std::string kPoisonable =
    "return function(s, e)\n"
    "  if e.data.poison == true then error('poisoned event at n=' .. tostring(e.data.n)) end\n"
    "  s.count = (s.count or 0) + 1\n"
    "end\n";

// An event the test appended, as the hand computations need it.
struct Ev {
  uint64_t position = 0;
  std::string stream;
  std::string type;
  json data;
};

// Polls f until it is true or the deadline passes.

std::string def_body(const std::string& name, const std::string& lua, json extra = json::object()) {
  json j = {{"name", name}, {"lua", lua}};
  for (auto& [k, v] : extra.items()) j[k] = v;
  return j.dump();
}

class Client {
 public:
  Client(int port, std::string key) : port_(port), key_(std::move(key)) {}
  int port() const { return port_; }
  const std::string& key() const { return key_; }

  Reply get(const std::string& target) const { return call(port_, http::verb::get, target, key_); }
  Reply post(const std::string& target, const std::string& body = "") const {
    return call(port_, http::verb::post, target, key_, body);
  }
  Reply del(const std::string& target) const { return call(port_, http::verb::delete_, target, key_); }

  Reply define(const std::string& name, const std::string& lua, json extra = json::object()) const {
    return post("/v1/projections", def_body(name, lua, std::move(extra)));
  }
  // Appends events (each {"type", "data"}) to a stream; records them in log_.
  void append(const std::string& stream, const std::vector<std::pair<std::string, json>>& events) {
    json body = {{"events", json::array()}};
    for (const auto& [type, data] : events) body["events"].push_back({{"type", type}, {"data", data}});
    auto r = post("/v1/streams/" + stream, body.dump());
    ASSERT_EQ(r.status, 201) << r.body;
    uint64_t pos = r.j()["first_position"];
    ASSERT_EQ(r.j()["last_position"].get<uint64_t>() - pos + 1, events.size());
    for (const auto& [type, data] : events) log_.push_back({pos++, stream, type, data});
  }
  void append1(const std::string& stream, json data, const std::string& type = "t") { append(stream, {{type, data}}); }
  uint64_t head() const { return call(port_, http::verb::get, "/health").j()["head_position"]; }
  // The state once it reflects the whole log.
  Reply caught_up(const std::string& name, const std::string& more = "") const {
    const uint64_t h = head();
    if (h == 0) return get("/v1/projections/" + name + "/state" + (more.empty() ? "" : "?" + more));
    return get("/v1/projections/" + name + "/state?timeout_ms=20000&wait_for=" + std::to_string(h - 1) +
               (more.empty() ? "" : "&" + more));
  }
  const std::vector<Ev>& log() const { return log_; }

 private:
  int port_;
  std::string key_;
  std::vector<Ev> log_;
};

// kCounter's state after the events at positions <= upto (null when none).
json counter_state(const std::vector<Ev>& log, uint64_t upto = UINT64_MAX) {
  uint64_t count = 0;
  int64_t sum = 0;
  for (const auto& e : log)
    if (e.position <= upto) {
      ++count;
      sum += e.data.value("n", 0);
    }
  if (count == 0) return nullptr;
  return {{"count", count}, {"sum", sum}};
}

// kPerPartition's states by a key function, after the events at positions <= upto.
json per_partition_state(const std::vector<Ev>& log, const std::function<std::optional<std::string>(const Ev&)>& key,
                         uint64_t upto = UINT64_MAX) {
  json out = json::object();
  for (const auto& e : log) {
    if (e.position > upto) continue;
    auto k = key(e);
    if (!k) continue;
    json& s = out[*k];
    if (s.is_null()) s = json::object();
    s["count"] = s.value("count", 0) + 1;
    if (e.data.contains("n")) s["last"] = e.data["n"];
    else s.erase("last");
  }
  return out;
}

// %-escapes a query value or path segment.
std::string esc(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}


// ------------------------------------------------------------------------------------------ definitions

TEST(ProjectionsHttp, CreateEchoesTheDefinitionAndValidatesBodies) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());

  auto r = c.define("counter", kCounter, {{"description", "counts events"}, {"source", {{"type_prefix", "t"}}}});
  ASSERT_EQ(r.status, 201) << r.body;
  json j = r.j();
  EXPECT_EQ(j["name"], "counter");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["active"], true);
  EXPECT_EQ(j["language"], "lua");
  EXPECT_TRUE(j["fault"].is_null()) << r.body;
  EXPECT_EQ(j["definition"]["name"], "counter");
  EXPECT_EQ(j["definition"]["version"], 1);
  EXPECT_EQ(j["definition"]["lua"], kCounter);
  EXPECT_EQ(j["definition"]["description"], "counts events");
  EXPECT_EQ(j["definition"]["source"]["type_prefix"], "t");
  EXPECT_EQ(j["definition"]["partition"]["by"], "none");
  EXPECT_TRUE(j["registered_at"].is_string()) << r.body;

  // The same definition again: a no-op, 200.
  r = c.define("counter", kCounter, {{"description", "counts events"}, {"source", {{"type_prefix", "t"}}}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["version"], 1);
  // The same version with other code: 409 conflict.
  r = c.define("counter", kCounterV2, {{"description", "counts events"}, {"source", {{"type_prefix", "t"}}}});
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.j()["error"]["code"], "conflict") << r.body;
  r = c.define("counter", kCounter, {{"version", 1}});  // other description and source: different too
  EXPECT_EQ(r.status, 409) << r.body;

  // GET echoes it with the code; the list without.
  r = c.get("/v1/projections/counter");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["definition"]["lua"], kCounter);
  ASSERT_EQ(r.j()["versions"].size(), 1u) << r.body;
  r = c.get("/v1/projections");
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<std::string> names;
  for (const auto& p : r.field("projections")) {
    names.push_back(p["name"]);
    EXPECT_FALSE(p["definition"].contains("lua")) << p.dump();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"$ai.decisions", "$ai.lineage", "$streams", "$types", "counter"}));
  r = c.get("/v1/projections/nope");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.j()["error"]["code"], "projection_not_found") << r.body;

  // Bad bodies: 400, the message names the field, nothing is registered.
  struct Bad {
    std::string what;
    std::string body;
    std::vector<std::string> mentions;
  };
  const std::string bytecode("\x1bLJ\x02\x00garbage", 11);
  const std::vector<Bad> bad = {
      {"upper case name", def_body("Counter-2", kCounter), {"name", "'C'"}},
      {"reserved name", def_body("$mine", kCounter), {"name"}},
      {"empty name", def_body("", kCounter), {"name"}},
      {"name too long", def_body(std::string(101, 'a'), kCounter), {"name"}},
      {"unknown field", R"({"name":"x1","lua":"return function(s,e) end","colour":"blue"})", {"colour", "unknown field"}},
      {"unknown nested field", R"({"name":"x1","lua":"return function(s,e) end","source":{"streams":["a"]}})",
       {"source.streams", "unknown field"}},
      {"unknown partition.by", def_body("x1", kCounter, {{"partition", {{"by", "galaxy"}}}}), {"partition.by", "galaxy"}},
      {"partition.field missing", def_body("x1", kCounter, {{"partition", {{"by", "data"}}}}), {"partition.field"}},
      {"version 0", def_body("x1", kCounter, {{"version", 0}}), {"version"}},
      {"version a string", def_body("x1", kCounter, {{"version", "2"}}), {"version"}},
      {"missing lua", R"({"name":"x1"})", {"lua"}},
      {"lua not a string", R"({"name":"x1","lua":42})", {"lua"}},
      {"syntax error", def_body("x1", "return function(s, e)\n  s.n = = 1\nend\n"), {"lua: line 2: unexpected symbol near '='"}},
      {"no reducer", def_body("x1", "return 42"), {"lua"}},
      {"upvalue assignment", def_body("x1", "local n = 0\nreturn function(s, e)\n  n = n + 1\n  s.n = n\nend\n"),
       {"lua", "line 3", "'n'"}},
      {"bytecode", def_body("x1", bytecode), {"lua: compiled Lua chunks (bytecode) are not accepted; send the reducer's source text"}},
      {"tiny instruction limit", def_body("x1", kCounter, {{"limits", {{"instructions_per_event", 10}}}}),
       {"limits.instructions_per_event"}},
      {"not JSON", "{name", {"JSON"}},
      {"not an object", R"(["x1"])", {"object"}},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.what);
    r = c.post("/v1/projections", b.body);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_EQ(r.j()["error"]["code"], "invalid_argument") << r.body;
    const std::string message = r.j()["error"].value("message", "");
    for (const auto& m : b.mentions) EXPECT_TRUE(contains(message, m)) << "'" << m << "' not in: " << message;
  }
  EXPECT_EQ(c.get("/v1/projections/x1").status, 404);

  // Content-Type must be JSON: 415, like the rest of the API.
  r = call(d.port(), http::verb::post, "/v1/projections", d.key(), def_body("x2", kCounter), "text/plain");
  EXPECT_EQ(r.status, 415) << r.body;
  EXPECT_TRUE(contains(r.j()["error"].value("message", ""), "Content-Type")) << r.body;
  EXPECT_EQ(c.get("/v1/projections/x2").status, 404);
  r = call(d.port(), http::verb::post, "/v1/projections", d.key(), def_body("x3", kCounter), "application/json; charset=utf-8");
  EXPECT_EQ(r.status, 201) << r.body;

  // Methods and paths.
  EXPECT_EQ(c.del("/v1/projections").status, 405);
  EXPECT_EQ(c.post("/v1/projections/counter", "{}").status, 405);
  EXPECT_EQ(c.get("/v1/projections/counter/nothing").status, 404);
  EXPECT_EQ(c.get("/v1/projections/counter/state?version=abc").status, 400);
}

// ------------------------------------------------------------------------------------------ roles

TEST(ProjectionsHttp, RolesAndScopes) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  const int p = d.port();
  Client admin(p, d.key());
  ASSERT_EQ(admin.define("counter", kCounter).status, 201);
  admin.append1("a-1", {{"n", 1}});
  auto make_key = [&](const std::string& body) {
    auto r = admin.post("/v1/keys", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.j().value("key", std::string());
  };
  const std::string reader = make_key(R"({"role":"reader"})");
  const std::string writer = make_key(R"({"role":"writer"})");
  const std::string scoped_reader = make_key(R"({"role":"reader","streams":["a-"]})");
  const std::string scoped_admin = make_key(R"({"role":"admin","streams":["a-"]})");

  struct Ep {
    http::verb method;
    std::string target;
    std::string body;
  };
  const std::vector<Ep> reads = {
      {http::verb::get, "/v1/projections", ""},
      {http::verb::get, "/v1/projections/counter", ""},
      {http::verb::get, "/v1/projections/counter/state", ""},
      {http::verb::get, "/v1/projections/counter/state?as_of=0", ""},
      {http::verb::get, "/v1/projections/counter/partitions", ""},
      {http::verb::get, "/v1/projections/counter/digest", ""},
      {http::verb::get, "/v1/projections/counter/rebuild", ""},
      {http::verb::get, "/v1/projections/counter/versions", ""},
      {http::verb::get, "/v1/projections/counter/versions/1", ""},
  };
  const std::vector<Ep> admin_only = {
      {http::verb::post, "/v1/projections", def_body("sneaky", kCounter)},
      {http::verb::post, "/v1/projections/counter/rebuild", ""},
      {http::verb::post, "/v1/projections/counter/verify", ""},
      {http::verb::post, "/v1/projections/counter/versions", R"({"lua":"return function(s, e) s.x = 1 end"})"},
      {http::verb::post, "/v1/projections/counter/versions/1/activate", ""},
      {http::verb::delete_, "/v1/projections/counter/versions/1", ""},
  };
  auto status_of = [&](const Ep& e, const std::string& key) { return call(p, e.method, e.target, key, e.body); };
  for (const auto* list : {&reads, &admin_only})
    for (const auto& e : *list) {
      SCOPED_TRACE(e.target);
      EXPECT_EQ(status_of(e, "").status, 401);
      EXPECT_EQ(status_of(e, "cairn_wrong").status, 401);
      for (const auto& k : {reader, writer}) {
        auto r = status_of(e, k);
        if (list == &reads) {
          EXPECT_EQ(r.status, 200) << r.body;
        } else {
          EXPECT_EQ(r.status, 403) << r.body;
          EXPECT_EQ(r.j()["error"]["code"], "forbidden") << r.body;
        }
      }
      for (const auto& k : {scoped_reader, scoped_admin}) {
        auto r = status_of(e, k);
        EXPECT_EQ(r.status, 403) << r.body;
        EXPECT_EQ(r.j()["error"]["code"], "forbidden") << r.body;
      }
    }
  // Nothing the refused requests asked for happened.
  EXPECT_EQ(admin.get("/v1/projections/sneaky").status, 404);
  auto versions = admin.get("/v1/projections/counter/versions");
  ASSERT_EQ(versions.status, 200) << versions.body;
  EXPECT_EQ(versions.j()["versions"].size(), 1u) << versions.body;
  // The admin may do all of it.
  for (const auto& e : admin_only) {
    if (e.method == http::verb::delete_) continue;
    auto r = status_of(e, admin.key());
    EXPECT_LT(r.status, 300) << e.target << ": " << r.body;
  }
}

// ------------------------------------------------------------------------------------------ state

TEST(ProjectionsHttp, StateWaitForKeysPartitionsAndAsOf) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  ASSERT_EQ(c.define("counter", kCounter).status, 201);
  ASSERT_EQ(c.define("per-stream", kPerPartition, {{"partition", {{"by", "stream"}}}}).status, 201);
  ASSERT_EQ(c.define("per-user", kPerPartition, {{"partition", {{"by", "data"}, {"field", "who.id"}}}}).status, 201);
  // Snapshots every few positions: as-of starts from the nearest one and replays the rest.
  ASSERT_EQ(c.define("counter-snap", kCounter, {{"snapshot_every", 3}}).status, 201);
  ASSERT_EQ(c.define("per-stream-snap", kPerPartition, {{"partition", "stream"}, {"snapshot_every", 4}}).status, 201);

  // Nothing appended yet: the unpartitioned state is null, the partitioned ones empty.
  auto r = c.get("/v1/projections/counter/state");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["found"], false) << r.body;
  EXPECT_TRUE(r.j()["state"].is_null()) << r.body;

  const std::vector<std::string> users = {"alice", "bob", "q\"uote\\back", "ünï", "with space"};
  int n = 0;
  for (int round = 0; round < 3; ++round)
    for (const char* s : {"s-a", "s-b", "s-c", "other-1", "s-d"}) {
      std::vector<std::pair<std::string, json>> evs;
      for (int i = 0; i < 2; ++i) {
        ++n;
        json data = {{"n", n}};
        if (n % 3 != 0) data["who"] = {{"id", users[static_cast<size_t>(n) % users.size()]}};  // some have no key
        evs.push_back({"t", data});
      }
      c.append(s, evs);
    }
  const uint64_t last = c.log().back().position;

  // wait_for the last position: the whole history, and a position past it.
  r = c.get("/v1/projections/counter/state?wait_for=" + std::to_string(last) + "&timeout_ms=20000");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["name"], "counter");
  EXPECT_EQ(r.j()["version"], 1);
  EXPECT_EQ(r.j()["found"], true);
  EXPECT_GT(r.j()["position"].get<uint64_t>(), last) << r.body;
  EXPECT_EQ(r.j()["state"], counter_state(c.log())) << r.body;

  // One partition by key.
  auto by_stream = [](const Ev& e) { return std::optional<std::string>(e.stream); };
  const json streams = per_partition_state(c.log(), by_stream);
  r = c.get("/v1/projections/per-stream/state?key=s-b&timeout_ms=20000&wait_for=" + std::to_string(last));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["found"], true);
  EXPECT_EQ(r.j()["key"], "s-b");
  EXPECT_EQ(r.j()["state"], streams["s-b"]) << r.body;
  r = c.get("/v1/projections/per-stream/state?key=s-zzz");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["found"], false) << r.body;
  EXPECT_TRUE(r.j()["state"].is_null()) << r.body;
  // The whole partitioned state as one object.
  r = c.get("/v1/projections/per-stream/state");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], streams) << r.body;

  // Keys from a data field, with quotes, backslashes, non-ASCII and spaces.
  auto by_user = [](const Ev& e) -> std::optional<std::string> {
    if (!e.data.contains("who")) return std::nullopt;
    return e.data["who"]["id"].get<std::string>();
  };
  const json per_user = per_partition_state(c.log(), by_user);
  ASSERT_EQ(per_user.size(), users.size());
  r = c.caught_up("per-user");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], per_user) << r.body;
  for (const auto& u : users) {
    r = c.get("/v1/projections/per-user/state?key=" + esc(u));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["found"], true) << u << ": " << r.body;
    EXPECT_EQ(r.j()["key"], u);
    EXPECT_EQ(r.j()["state"], per_user[u]) << u << ": " << r.body;
  }

  // Partitions, paged: every key once, in byte order.
  for (const std::string name : {"per-stream", "per-user"}) {
    SCOPED_TRACE(name);
    const json& want_states = name == "per-stream" ? streams : per_user;
    std::vector<std::string> want;
    for (auto& [k, v] : want_states.items()) want.push_back(k);
    std::sort(want.begin(), want.end());
    std::vector<std::string> got;
    std::optional<std::string> after;
    for (int guard = 0; guard < 20; ++guard) {
      r = c.get("/v1/projections/" + name + "/partitions?limit=2" + (after ? "&after=" + esc(*after) : ""));
      ASSERT_EQ(r.status, 200) << r.body;
      const json page = r.j();
      EXPECT_LE(page["keys"].size(), 2u);
      for (const auto& k : page["keys"]) got.push_back(k);
      if (page["next"].is_null()) break;
      EXPECT_EQ(page["next"], page["keys"].back()) << r.body;
      after = page["next"].get<std::string>();
    }
    EXPECT_EQ(got, want);
  }
  r = c.get("/v1/projections/per-stream/partitions?limit=100");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["keys"].size(), 5u);
  EXPECT_TRUE(r.j()["next"].is_null());
  EXPECT_EQ(c.get("/v1/projections/per-stream/partitions?limit=0").status, 400);
  EXPECT_EQ(c.get("/v1/projections/nope/partitions").status, 404);

  // A position nobody has appended yet: 504 after timeout_ms.
  r = c.get("/v1/projections/counter/state?wait_for=" + std::to_string(last + 1000) + "&timeout_ms=100");
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(r.j()["error"]["code"], "timeout") << r.body;
  EXPECT_EQ(c.get("/v1/projections/counter/state?wait_for=1&timeout_ms=60001").status, 400);
  EXPECT_EQ(c.get("/v1/projections/counter/state?wait_for=1&timeout_ms=60000").status, 200);
  EXPECT_EQ(c.get("/v1/projections/counter/state?wait_for=-1").status, 400);

  // as_of: the state after the event at P, as computed by hand, for every position of the log.
  for (const auto& e : c.log()) {
    SCOPED_TRACE("as_of=" + std::to_string(e.position));
    r = c.get("/v1/projections/counter/state?as_of=" + std::to_string(e.position));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["state"], counter_state(c.log(), e.position)) << r.body;
    EXPECT_EQ(r.j()["position"], e.position + 1) << r.body;
  }
  ASSERT_EQ(c.caught_up("counter-snap").status, 200);
  ASSERT_EQ(c.caught_up("per-stream-snap").status, 200);
  for (const auto& e : c.log()) {
    SCOPED_TRACE("with snapshots, as_of=" + std::to_string(e.position));
    r = c.get("/v1/projections/counter-snap/state?as_of=" + std::to_string(e.position));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["state"], counter_state(c.log(), e.position)) << r.body;
    r = c.get("/v1/projections/per-stream-snap/state?as_of=" + std::to_string(e.position));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["state"], per_partition_state(c.log(), by_stream, e.position)) << r.body;
  }
  const uint64_t mid = c.log()[c.log().size() / 2].position;
  r = c.get("/v1/projections/per-stream/state?as_of=" + std::to_string(mid));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], per_partition_state(c.log(), by_stream, mid)) << r.body;
  r = c.get("/v1/projections/per-user/state?key=bob&as_of=" + std::to_string(mid));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], per_partition_state(c.log(), by_user, mid)["bob"]) << r.body;

  // as_of_time: every event recorded at or before the time.
  auto events = c.get("/v1/events?limit=1000");
  ASSERT_EQ(events.status, 200);
  std::map<uint64_t, std::string> recorded;
  for (const auto& e : events.field("events")) recorded[e["position"]] = e["recorded_at"];
  for (size_t i : {size_t{0}, c.log().size() / 3, c.log().size() - 1}) {
    const std::string t = recorded[c.log()[i].position];
    SCOPED_TRACE("as_of_time=" + t);
    std::vector<Ev> before;
    for (const auto& e : c.log())
      if (recorded[e.position] <= t) before.push_back(e);
    r = c.get("/v1/projections/counter/state?as_of_time=" + esc(t));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["state"], counter_state(before)) << r.body;
  }
  r = c.get("/v1/projections/counter/state?as_of_time=" + esc("2000-01-01T00:00:00Z"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(r.j()["state"].is_null()) << r.body;
  EXPECT_EQ(r.j()["position"], 0) << r.body;
  r = c.get("/v1/projections/counter/state?as_of_time=" + esc("2200-01-01T00:00:00+02:00"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], counter_state(c.log())) << r.body;
  // Times past 2262-04-11 do not fit in int64 nanoseconds: refused, naming the time (they once overflowed
  // and answered the empty state).
  r = c.get("/v1/projections/counter/state?as_of_time=" + esc("2999-01-01T00:00:00Z"));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_TRUE(contains(r.j()["error"].value("message", ""), "2999")) << r.body;
  EXPECT_EQ(c.get("/v1/projections/counter/state?as_of_time=yesterday").status, 400);
  EXPECT_EQ(c.get("/v1/projections/counter/state?as_of=1&as_of_time=" + esc("2999-01-01T00:00:00Z")).status, 400);

  // as_of at or past the head: 400, naming as_of.
  const uint64_t head = c.head();
  for (uint64_t past : {head, head + 50}) {
    r = c.get("/v1/projections/counter/state?as_of=" + std::to_string(past));
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_TRUE(contains(r.j()["error"].value("message", ""), "as_of")) << r.body;
  }
  r = c.get("/v1/projections/counter/state?as_of=" + std::to_string(head - 1));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(c.get("/v1/projections/nope/state").status, 404);
}

// Source filters: the same events whether a runner catches up (a filtered scan), follows live appends (its
// own check) or replays for as-of and verify.
TEST(ProjectionsHttp, SourceFiltersAgreeBetweenCatchUpLiveAndReplay) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  struct F {
    std::string name;
    json source;
    std::function<bool(const Ev&)> pass;
  };
  auto cat = [](const std::string& s) { return s.substr(0, s.find('-')); };
  const std::vector<F> filters = {
      {"f-types", {{"types", {"t.a", "ai.y"}}}, [](const Ev& e) { return e.type == "t.a" || e.type == "ai.y"; }},
      {"f-type-prefix", {{"type_prefix", "ai."}}, [](const Ev& e) { return e.type.starts_with("ai."); }},
      {"f-stream-prefix", {{"stream_prefix", "team-"}}, [](const Ev& e) { return e.stream.starts_with("team-"); }},
      {"f-category", {{"category", "order"}}, [&](const Ev& e) { return cat(e.stream) == "order"; }},
      {"f-category-nodash", {{"category", "other"}}, [&](const Ev& e) { return cat(e.stream) == "other"; }},
      {"f-and", {{"types", {"ai.x", "ai.y"}}, {"category", "order"}},
       [&](const Ev& e) { return (e.type == "ai.x" || e.type == "ai.y") && cat(e.stream) == "order"; }},
  };
  const std::vector<std::string> streams = {"order-1", "order-2", "orders-1", "team-a", "team-b", "other"};
  const std::vector<std::string> types = {"ai.x", "ai.y", "t.a", "t.b", "ai"};
  int n = 0;
  auto append_round = [&] {
    for (const auto& s : streams)
      for (const auto& t : types) c.append1(s, {{"n", ++n}}, t);
  };
  append_round();  // before: the runners catch up over these
  for (const auto& f : filters)
    ASSERT_EQ(c.define(f.name, kPerPartition, {{"partition", "stream"}, {"source", f.source}}).status, 201) << f.name;
  const uint64_t mid = c.log().back().position;
  append_round();  // after: they follow these live
  for (const auto& f : filters) {
    SCOPED_TRACE(f.name);
    auto key = [&](const Ev& e) { return f.pass(e) ? std::optional<std::string>(e.stream) : std::nullopt; };
    auto r = c.caught_up(f.name);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["state"], per_partition_state(c.log(), key)) << r.body;
    r = c.get("/v1/projections/" + f.name + "/state?as_of=" + std::to_string(mid));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["state"], per_partition_state(c.log(), key, mid)) << r.body;
    r = c.post("/v1/projections/" + f.name + "/verify");
    EXPECT_EQ(r.j()["equal"], true) << r.body;
  }
}

// Partitions by a metadata path and by stream category; events without the key are skipped.
TEST(ProjectionsHttp, MetadataAndCategoryPartitions) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  ASSERT_EQ(c.define("by-actor", kPerPartition, {{"partition", {{"by", "metadata"}, {"field", "actor.id"}}}}).status, 201);
  ASSERT_EQ(c.define("by-category", kPerPartition, {{"partition", "category"}}).status, 201);
  const std::vector<std::pair<std::string, std::string>> posts = {
      {"order-1", R"({"actor":{"kind":"human","id":"u-1"}})"},
      {"order-2", R"({"actor":{"kind":"ai_agent","id":"agent-7"}})"},
      {"order-1", R"({"actor":{"kind":"human","id":"u-1"}})"},
      {"user-9", R"({"correlation_id":"c-1"})"},
      {"user-9", ""},
      {"solo", R"({"actor":{"kind":"service","id":"u-1"}})"},
  };
  int n = 0;
  for (const auto& [stream, md] : posts) {
    json ev = {{"type", "t"}, {"data", {{"n", ++n}}}};
    if (!md.empty()) ev["metadata"] = json::parse(md);
    auto r = c.post("/v1/streams/" + stream, json{{"events", {ev}}}.dump());
    ASSERT_EQ(r.status, 201) << r.body;
  }
  auto r = c.caught_up("by-actor");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], json::parse(R"({"agent-7":{"count":1,"last":2},"u-1":{"count":3,"last":6}})")) << r.body;
  r = c.caught_up("by-category");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], json::parse(R"({"order":{"count":3,"last":3},"solo":{"count":1,"last":6},"user":{"count":2,"last":5}})"))
      << r.body;
  EXPECT_EQ(c.post("/v1/projections/by-actor/verify").j()["equal"], true);
  EXPECT_EQ(c.post("/v1/projections/by-category/verify").j()["equal"], true);
}

// Whole states stop at 10,000 partitions; one partition, pages of keys and digests still answer.
TEST(ProjectionsHttp, ManyPartitions) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  ASSERT_EQ(c.define("per-key", kPerPartition, {{"partition", {{"by", "data"}, {"field", "k"}}}}).status, 201);
  constexpr int kKeys = 10'001;
  for (int b = 0; b * 2000 < kKeys; ++b) {
    std::vector<std::pair<std::string, json>> evs;
    for (int i = b * 2000; i < std::min(kKeys, (b + 1) * 2000); ++i) evs.push_back({"t", {{"n", i}, {"k", i}}});
    c.append("many-1", evs);
  }
  auto r = c.caught_up("per-key");
  EXPECT_EQ(r.status, 413) << r.body.substr(0, 300);
  EXPECT_EQ(r.j()["error"]["code"], "limit_exceeded") << r.body.substr(0, 300);
  EXPECT_TRUE(contains(r.j()["error"].value("message", ""), "key")) << r.body.substr(0, 300);
  r = c.get("/v1/projections/per-key/state?key=1234");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], json({{"count", 1}, {"last", 1234}})) << r.body;
  size_t keys = 0, pages = 0;
  std::optional<std::string> after;
  for (; pages < 20; ++pages) {
    r = c.get("/v1/projections/per-key/partitions?limit=5000" + (after ? "&after=" + esc(*after) : ""));
    ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
    const json page = r.j();
    EXPECT_LE(page["keys"].size(), 1000u);  // limit is capped at 1000
    keys += page["keys"].size();
    if (page["next"].is_null()) break;
    after = page["next"].get<std::string>();
  }
  EXPECT_EQ(keys, static_cast<size_t>(kKeys));
  EXPECT_EQ(c.get("/v1/projections/per-key/digest").j()["partitions"], kKeys);
  EXPECT_EQ(c.post("/v1/projections/per-key/verify").j()["equal"], true);
}

// ------------------------------------------------------------------------------------------ digests

TEST(ProjectionsHttp, DigestIsStableUntilAnAppendAndVerifyIsEqual) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  ASSERT_EQ(c.define("per-stream", kPerPartition, {{"partition", "stream"}}).status, 201);
  for (int i = 0; i < 20; ++i) c.append1("d-" + std::to_string(i % 4), {{"n", i}});
  ASSERT_EQ(c.caught_up("per-stream").status, 200);
  auto a = c.get("/v1/projections/per-stream/digest");
  auto b = c.get("/v1/projections/per-stream/digest");
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_EQ(a.j()["sha256"], b.j()["sha256"]);
  EXPECT_EQ(a.j()["position"], b.j()["position"]);
  EXPECT_EQ(a.j()["partitions"], 4);
  EXPECT_EQ(a.j()["sha256"].get<std::string>().size(), 64u) << a.body;
  EXPECT_EQ(a.j()["position"], c.head());

  auto v = c.post("/v1/projections/per-stream/verify");
  ASSERT_EQ(v.status, 200) << v.body;
  EXPECT_EQ(v.j()["equal"], true) << v.body;
  EXPECT_EQ(v.j()["live_digest"], a.j()["sha256"]) << v.body;
  EXPECT_EQ(v.j()["rebuilt_digest"], a.j()["sha256"]) << v.body;
  EXPECT_EQ(v.j()["differences"].size(), 0u);
  EXPECT_EQ(c.get("/v1/projections/per-stream/verify").status, 405);

  c.append1("d-1", {{"n", 99}});
  ASSERT_EQ(c.caught_up("per-stream").status, 200);
  auto after = c.get("/v1/projections/per-stream/digest");
  ASSERT_EQ(after.status, 200);
  EXPECT_NE(after.j()["sha256"], a.j()["sha256"]);
  EXPECT_GT(after.j()["position"].get<uint64_t>(), a.j()["position"].get<uint64_t>());
  v = c.post("/v1/projections/per-stream/verify");
  ASSERT_EQ(v.status, 200) << v.body;
  EXPECT_EQ(v.j()["equal"], true) << v.body;
  EXPECT_EQ(v.j()["live_digest"], after.j()["sha256"]) << v.body;
  EXPECT_EQ(c.post("/v1/projections/nope/verify").status, 404);
}

// ------------------------------------------------------------------------------------------ versions

TEST(ProjectionsHttp, VersionsBuildBesideTakeOverActivateAndDrop) {
  cairn::testing::TempDir dir;
  std::string key;
  std::vector<Ev> log;
  {
    Cairnd d(dir.path());
    key = d.key();
    Client c(d.port(), key);
    ASSERT_EQ(c.define("counter", kCounter).status, 201);
    for (int i = 1; i <= 10; ++i) c.append1("v-" + std::to_string(i % 3), {{"n", i}});
    ASSERT_EQ(c.caught_up("counter").status, 200);

    // v2 without a version: the next number.
    auto r = c.post("/v1/projections/counter/versions", json{{"lua", kCounterV2}}.dump());
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.j()["version"], 2);
    EXPECT_EQ(r.j()["definition"]["lua"], kCounterV2);
    // An identical re-POST of a version registers nothing: 200, like POST /v1/projections (it once said 201,
    // so a retried deploy could not tell).
    r = c.post("/v1/projections/counter/versions", json{{"version", 2}, {"lua", kCounterV2}}.dump());
    EXPECT_EQ(r.status, 200) << "an identical re-POST of version 2: " << r.body;
    EXPECT_EQ(r.j()["version"], 2) << r.body;
    r = c.get("/v1/projections/counter/versions");
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(r.j()["versions"].size(), 2u) << r.body;
    EXPECT_EQ(r.j()["versions"][0]["version"], 1);
    EXPECT_EQ(r.j()["versions"][1]["version"], 2);

    // Once v2 has caught up it answers queries by name; v1 still answers by number.
    const json v2_state = {{"count", 10}, {"v", 2}};
    ASSERT_TRUE(eventually([&] {
      auto s = c.get("/v1/projections/counter/state");
      return s.status == 200 && s.j()["version"] == 2;
    })) << c.get("/v1/projections/counter/versions").body;
    r = c.caught_up("counter");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["version"], 2);
    EXPECT_EQ(r.j()["state"], v2_state) << r.body;
    r = c.get("/v1/projections/counter/state?version=1");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["version"], 1);
    EXPECT_EQ(r.j()["state"], counter_state(c.log())) << r.body;
    r = c.get("/v1/projections/counter");
    EXPECT_EQ(r.j()["version"], 2) << r.body;
    EXPECT_EQ(r.j()["active"], true) << r.body;
    EXPECT_EQ(c.get("/v1/projections/counter/digest?version=1").j()["version"], 1);

    // A body naming another projection, or an unknown projection: refused.
    EXPECT_EQ(c.post("/v1/projections/counter/versions", json{{"name", "other"}, {"lua", kCounterV2}}.dump()).status, 400);
    EXPECT_EQ(c.post("/v1/projections/nope/versions", json{{"lua", kCounterV2}}.dump()).status, 404);
    // An explicit existing version with other code: conflict.
    EXPECT_EQ(c.post("/v1/projections/counter/versions", json{{"version", 1}, {"lua", kCounterV2}}.dump()).status, 409);

    // Back to v1.
    r = c.post("/v1/projections/counter/versions/1/activate");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["version"], 1);
    EXPECT_EQ(r.j()["active"], true);
    r = c.get("/v1/projections/counter/state");
    EXPECT_EQ(r.j()["version"], 1) << r.body;
    EXPECT_EQ(r.j()["state"], counter_state(c.log())) << r.body;

    // The active version cannot be dropped while another exists; the other can.
    r = c.del("/v1/projections/counter/versions/1");
    EXPECT_EQ(r.status, 409) << r.body;
    EXPECT_EQ(r.j()["error"]["code"], "conflict") << r.body;
    EXPECT_EQ(c.del("/v1/projections/counter/versions/abc").status, 400);
    EXPECT_EQ(c.del("/v1/projections/counter/versions/0").status, 400);
    EXPECT_EQ(c.del("/v1/projections/counter/versions/7").status, 404);
    r = c.del("/v1/projections/counter/versions/2");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["dropped"], true);
    r = c.get("/v1/projections/counter/versions");
    ASSERT_EQ(r.j()["versions"].size(), 1u) << r.body;
    EXPECT_EQ(r.j()["versions"][0]["version"], 1);
    EXPECT_EQ(c.get("/v1/projections/counter/state?version=2").status, 404);
    EXPECT_EQ(c.del("/v1/projections/counter/versions/2").status, 404);
    log = c.log();
    EXPECT_EQ(d.stop(SIGTERM), 0);
  }
  // After a restart: still v1, one version, the same state.
  Cairnd d(dir.path());
  Client c(d.port(), key);
  auto r = c.caught_up("counter");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["version"], 1) << r.body;
  EXPECT_EQ(r.j()["state"], counter_state(log)) << r.body;
  EXPECT_EQ(c.get("/v1/projections/counter/versions").j()["versions"].size(), 1u);
  // The only version can be dropped, and the name is gone.
  EXPECT_EQ(c.del("/v1/projections/counter/versions/1").status, 200);
  EXPECT_EQ(c.get("/v1/projections/counter").status, 404);
}

// ------------------------------------------------------------------------------------------ faults

TEST(ProjectionsHttp, FaultStopsOneProjectionKeepsItsLastGoodStateAndIsRecorded) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  ASSERT_EQ(c.define("poisonable", kPoisonable).status, 201);
  ASSERT_EQ(c.define("counter", kCounter).status, 201);
  for (int i = 1; i <= 3; ++i) c.append1("f-1", {{"n", i}});
  c.append1("f-2", {{"n", 4}, {"poison", true}}, "bad.thing");
  const uint64_t poison = c.log().back().position;
  for (int i = 5; i <= 6; ++i) c.append1("f-1", {{"n", i}});
  const uint64_t last = c.log().back().position;

  json status;
  ASSERT_TRUE(eventually([&] {
    status = c.get("/v1/projections/poisonable").j();
    return status.value("phase", "") == "faulted";
  })) << status.dump();
  ASSERT_TRUE(status["fault"].is_object()) << status.dump();
  EXPECT_EQ(status["fault"]["position"], poison) << status.dump();
  EXPECT_EQ(status["fault"]["stream"], "f-2") << status.dump();
  EXPECT_EQ(status["fault"]["type"], "bad.thing") << status.dump();
  EXPECT_TRUE(contains(status["fault"].value("message", ""), "poisoned event at n=4")) << status.dump();
  EXPECT_TRUE(status["fault"]["event_id"].is_string()) << status.dump();
  EXPECT_EQ(status["position"], poison) << status.dump();
  EXPECT_EQ(status["versions"][0]["phase"], "faulted") << status.dump();

  // The last good state still answers, at the fault's position.
  auto r = c.get("/v1/projections/poisonable/state");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["position"], poison) << r.body;
  EXPECT_EQ(r.j()["state"], json({{"count", 3}})) << r.body;
  r = c.get("/v1/projections/poisonable/state?wait_for=" + std::to_string(poison - 1));
  EXPECT_EQ(r.status, 200) << r.body;
  // Waiting for a position at or past the fault: 409 faulted, at once.
  for (uint64_t w : {poison, last}) {
    r = c.get("/v1/projections/poisonable/state?timeout_ms=20000&wait_for=" + std::to_string(w));
    EXPECT_EQ(r.status, 409) << r.body;
    EXPECT_EQ(r.j()["error"]["code"], "faulted") << r.body;
  }
  // as_of before the fault works; at the fault it is the reducer's error again.
  r = c.get("/v1/projections/poisonable/state?as_of=" + std::to_string(poison - 1));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], json({{"count", 3}})) << r.body;
  r = c.get("/v1/projections/poisonable/state?as_of=" + std::to_string(poison));
  EXPECT_EQ(r.status, 409) << r.body;

  // The other projection keeps going, past the poison event.
  r = c.caught_up("counter");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"], counter_state(c.log())) << r.body;
  c.append1("f-1", {{"n", 7}});
  r = c.caught_up("counter");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["state"]["count"], 7) << r.body;
  EXPECT_EQ(c.get("/v1/projections/poisonable/state").j()["position"], poison);

  // The list and the metrics say so too.
  r = c.get("/v1/projections");
  bool listed = false;
  for (const auto& p : r.field("projections"))
    if (p["name"] == "poisonable") {
      listed = true;
      EXPECT_EQ(p["phase"], "faulted");
      EXPECT_EQ(p["fault"]["position"], poison);
    }
  EXPECT_TRUE(listed) << r.body;
  r = c.get("/metrics");
  EXPECT_TRUE(contains(r.body, "cairn_projection_faulted{projection=\"poisonable\",version=\"1\"} 1\n")) << r.body;
  EXPECT_TRUE(contains(r.body, "cairn_projection_faulted{projection=\"counter\",version=\"1\"} 0\n")) << r.body;

  // $projections records the fault (the admin may read the reserved stream).
  json faulted;
  ASSERT_TRUE(eventually([&] {
    auto s = c.get("/v1/streams/$projections?limit=1000");
    if (s.status != 200) return false;
    for (const auto& e : s.field("events"))
      if (e["type"] == "$projection.faulted" && e["data"]["name"] == "poisonable") faulted = e;
    return !faulted.is_null();
  })) << c.get("/v1/streams/$projections?limit=1000").body;
  EXPECT_EQ(faulted["data"]["position"], poison) << faulted.dump();
  EXPECT_EQ(faulted["data"]["version"], 1) << faulted.dump();
  EXPECT_EQ(faulted["data"]["event_id"], status["fault"]["event_id"]) << faulted.dump();
  EXPECT_TRUE(contains(faulted["data"].value("message", ""), "poisoned event")) << faulted.dump();
  // Recorded once, not on every look.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int recorded = 0;
  for (const auto& e : c.get("/v1/streams/$projections?limit=1000").field("events"))
    if (e["type"] == "$projection.faulted") ++recorded;
  EXPECT_EQ(recorded, 1);

  // Rebuilding a faulted version meets the same event (reducers are pure): the rebuild stops with the fault
  // and the last good state keeps serving.
  ASSERT_EQ(c.post("/v1/projections/poisonable/rebuild").status, 202);
  json rebuild;
  ASSERT_TRUE(eventually([&] {
    rebuild = c.get("/v1/projections/poisonable/rebuild").j();
    return rebuild["running"] == false;
  })) << rebuild.dump();
  ASSERT_TRUE(rebuild["fault"].is_object()) << rebuild.dump();
  EXPECT_EQ(rebuild["fault"]["position"], poison) << rebuild.dump();
  r = c.get("/v1/projections/poisonable/state");
  EXPECT_EQ(r.j()["state"], json({{"count", 3}})) << r.body;
  EXPECT_EQ(r.j()["position"], poison) << r.body;

  // After a restart the projection is faulted at the same event again, with the same last good state.
  const std::string key = d.key();
  EXPECT_EQ(d.stop(SIGTERM), 0);
  Cairnd again(dir.path());
  Client c2(again.port(), key);
  ASSERT_TRUE(eventually([&] {
    status = c2.get("/v1/projections/poisonable").j();
    return status.value("phase", "") == "faulted";
  })) << status.dump();
  EXPECT_EQ(status["fault"]["position"], poison) << status.dump();
  r = c2.get("/v1/projections/poisonable/state");
  EXPECT_EQ(r.j()["state"], json({{"count", 3}})) << r.body;
  EXPECT_EQ(r.j()["position"], poison) << r.body;
}

// ------------------------------------------------------------------------------------------ rebuild

TEST(ProjectionsHttp, RebuildRunsInTheBackgroundAndEndsWithTheSameState) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  ASSERT_EQ(c.define("per-stream", kPerPartition, {{"partition", "stream"}}).status, 201);
  for (int b = 0; b < 20; ++b) {
    std::vector<std::pair<std::string, json>> evs;
    for (int i = 0; i < 100; ++i) evs.push_back({"t", {{"n", b * 100 + i}}});
    c.append("r-" + std::to_string(b % 7), evs);
  }
  auto before_state = c.caught_up("per-stream");
  ASSERT_EQ(before_state.status, 200) << before_state.body;
  const auto before = c.get("/v1/projections/per-stream/digest").j();

  auto r = c.post("/v1/projections/per-stream/rebuild");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_TRUE(r.j()["rebuild"].is_object()) << r.body;
  EXPECT_EQ(r.j()["name"], "per-stream");
  json progress;
  bool saw_running = false;
  ASSERT_TRUE(eventually([&] {
    auto g = c.get("/v1/projections/per-stream/rebuild");
    if (g.status != 200) return false;
    progress = g.j();
    if (progress["running"] == true) {
      saw_running = true;
      EXPECT_TRUE(progress["rebuild"].is_object()) << g.body;
      EXPECT_LE(progress["rebuild"]["position"].get<uint64_t>(), progress["rebuild"]["target"].get<uint64_t>()) << g.body;
      return false;
    }
    EXPECT_TRUE(progress["rebuild"].is_null()) << g.body;
    return true;
  })) << progress.dump();
  (void)saw_running;  // how long the rebuild runs is up to the machine
  // Asking again while none runs starts another; asking during one is not an error.
  EXPECT_EQ(c.post("/v1/projections/per-stream/rebuild").status, 202);
  EXPECT_EQ(c.post("/v1/projections/per-stream/rebuild").status, 202);
  ASSERT_TRUE(eventually([&] { return c.get("/v1/projections/per-stream/rebuild").j()["running"] == false; }));

  const auto after = c.get("/v1/projections/per-stream/digest").j();
  EXPECT_EQ(after["sha256"], before["sha256"]);
  // Only $projections records came after (each swap is one): the state is the same.
  EXPECT_GE(after["position"].get<uint64_t>(), before["position"].get<uint64_t>());
  r = c.get("/v1/projections/per-stream/state");
  EXPECT_EQ(r.j()["state"], before_state.j()["state"]);
  EXPECT_EQ(c.post("/v1/projections/per-stream/verify").j()["equal"], true);
  // The swap is recorded.
  int rebuilt = 0;
  for (const auto& e : c.get("/v1/streams/$projections?limit=1000").field("events"))
    if (e["type"] == "$projection.rebuilt") ++rebuilt;
  EXPECT_GE(rebuilt, 2);  // the third request may have come while the second rebuild ran
  EXPECT_LE(rebuilt, 3);
  EXPECT_EQ(c.post("/v1/projections/nope/rebuild").status, 404);
  EXPECT_EQ(c.del("/v1/projections/per-stream/rebuild").status, 405);
}

// A request waiting for a position it will see only after a rebuild has swapped in its state.
TEST(ProjectionsHttp, WaitForSpanningARebuildSwapSeesTheRebuiltState) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  ASSERT_EQ(c.define("counter", kCounter).status, 201);
  std::vector<std::pair<std::string, json>> evs;
  for (int i = 0; i < 50; ++i) evs.push_back({"t", {{"n", 1}}});
  c.append("w-1", evs);
  ASSERT_EQ(c.caught_up("counter").status, 200);
  // Not appended yet: the swap appends one $projections event, the events below the rest.
  const uint64_t target = c.head() + 3;
  Reply waited;
  std::thread waiter([&] {
    waited = call(d.port(), http::verb::get,
                  "/v1/projections/counter/state?timeout_ms=8000&wait_for=" + std::to_string(target), d.key());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let it start waiting on the serving state
  ASSERT_EQ(c.post("/v1/projections/counter/rebuild").status, 202);
  ASSERT_TRUE(eventually([&] { return c.get("/v1/projections/counter/rebuild").j()["running"] == false; }));
  evs.resize(10);
  c.append("w-1", evs);
  ASSERT_GT(c.log().back().position, target);
  ASSERT_EQ(c.caught_up("counter").j()["state"]["count"], 60);  // the projection has the position
  waiter.join();
  // A rebuild swap retires the runner a wait_for request waits on: the request must move to the new runner
  // (it once slept its whole timeout and answered 504 although the projection reflected the position).
  EXPECT_EQ(waited.status, 200) << waited.body;
  EXPECT_EQ(waited.j()["state"]["count"], 60) << waited.body;
}

// ------------------------------------------------------------------------------------------ built-ins, metrics

TEST(ProjectionsHttp, BuiltinStreamsAndTypesCountAKnownHistory) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  c.append("s-a", {{"t.one", {{"n", 1}}}, {"t.one", {{"n", 2}}}, {"t.one", {{"n", 3}}}});
  c.append("s-b", {{"t.two", {{"n", 4}}}});
  c.append1("s-b", {{"n", 5}}, "t.two");
  c.append1("cat-x", {{"n", 6}}, "t.one");
  ASSERT_EQ(c.head(), 6u);

  auto r = c.caught_up("$streams");
  ASSERT_EQ(r.status, 200) << r.body;
  json st = r.j()["state"];
  ASSERT_EQ(st.size(), 3u) << r.body;
  EXPECT_EQ(st["s-a"]["count"], 3);
  EXPECT_EQ(st["s-a"]["revision"], 2);
  EXPECT_EQ(st["s-a"]["first_position"], 0);
  EXPECT_EQ(st["s-a"]["last_position"], 2);
  EXPECT_EQ(st["s-b"]["count"], 2);
  EXPECT_EQ(st["s-b"]["first_position"], 3);
  EXPECT_EQ(st["s-b"]["last_position"], 4);
  EXPECT_EQ(st["cat-x"]["count"], 1);
  EXPECT_EQ(st["cat-x"]["revision"], 0);
  // The same numbers as the stream catalog.
  for (const auto& s : c.get("/v1/streams?limit=100").field("streams")) {
    EXPECT_EQ(st[s["stream"].get<std::string>()]["count"], s["count"]) << s.dump();
    EXPECT_EQ(st[s["stream"].get<std::string>()]["last_position"], s["last_position"]) << s.dump();
  }
  r = c.get("/v1/projections/$streams/state?key=s-b");
  EXPECT_EQ(r.j()["found"], true) << r.body;
  EXPECT_EQ(r.j()["state"]["count"], 2) << r.body;
  r = c.get("/v1/projections/%24streams/partitions");
  EXPECT_EQ(r.j()["keys"], json({"cat-x", "s-a", "s-b"})) << r.body;

  r = c.caught_up("$types");
  ASSERT_EQ(r.status, 200) << r.body;
  st = r.j()["state"];
  const std::map<std::string, int> want = {{"type:t.one", 4}, {"type:t.two", 2}, {"category:s", 5}, {"category:cat", 1}};
  ASSERT_EQ(st.size(), want.size()) << r.body;
  for (const auto& [k, n] : want) {
    SCOPED_TRACE(k);
    EXPECT_EQ(st[k]["total"], n) << r.body;
    int hours = 0, days = 0;
    for (auto& [h, v] : st[k]["hours"].items()) hours += v.get<int>();
    for (auto& [h, v] : st[k]["days"].items()) days += v.get<int>();
    EXPECT_EQ(hours, n);
    EXPECT_EQ(days, n);
  }
  // Built-ins have one version and cannot be dropped, redefined or switched.
  EXPECT_EQ(c.del("/v1/projections/$streams/versions/1").status, 400);
  EXPECT_EQ(c.post("/v1/projections/$types/versions/1/activate").status, 400);
  EXPECT_EQ(c.define("$streams", kCounter).status, 400);
  EXPECT_EQ(c.post("/v1/projections/$streams/verify").j()["equal"], true);

  // Defining a projection records it in $projections, which $streams counts too (it sees '$' streams).
  ASSERT_EQ(c.define("counter", kCounter).status, 201);
  r = c.caught_up("$streams", "key=" + esc("$projections"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j()["found"], true) << r.body;
  EXPECT_EQ(r.j()["state"]["count"], 2) << r.body;  // registered, activated
  // ... while user projections never see them.
  r = c.caught_up("counter");
  EXPECT_EQ(r.j()["state"]["count"], 6) << r.body;
}

TEST(ProjectionsHttp, MetricsShowPositionAndLagPerVersion) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path());
  Client c(d.port(), d.key());
  ASSERT_EQ(c.define("counter", kCounter).status, 201);
  for (int i = 0; i < 7; ++i) c.append1("m-" + std::to_string(i % 2), {{"n", i}});
  auto r = c.caught_up("counter");
  ASSERT_EQ(r.status, 200) << r.body;
  const uint64_t pos = r.j()["position"];
  ASSERT_EQ(pos, c.head());
  ASSERT_EQ(c.caught_up("$streams").status, 200);
  auto m = c.get("/metrics");
  ASSERT_EQ(m.status, 200);
  for (const std::string& line : std::vector<std::string>{
           "cairn_projection_position{projection=\"counter\",version=\"1\"} " + std::to_string(pos) + "\n",
           "cairn_projection_lag_events{projection=\"counter\",version=\"1\"} 0\n",
           "cairn_projection_active{projection=\"counter\",version=\"1\"} 1\n",
           "cairn_projection_partitions{projection=\"counter\",version=\"1\"} 1\n",
           "cairn_projection_events_applied_total{projection=\"counter\",version=\"1\"} 7\n",
           "cairn_projection_position{projection=\"$streams\",version=\"1\"} " + std::to_string(pos) + "\n",
           std::string("# TYPE cairn_projection_lag_events gauge\n"),
       })
    EXPECT_TRUE(contains(m.body, line)) << line << "\n" << m.body;
  EXPECT_FALSE(contains(m.body, "cairn_projection_rebuild_position{projection=\"counter\"")) << m.body;
  // A version building beside the active one has lines of its own.
  ASSERT_EQ(c.post("/v1/projections/counter/versions", json{{"lua", kCounterV2}}.dump()).status, 201);
  m = c.get("/metrics");
  EXPECT_TRUE(contains(m.body, "cairn_projection_position{projection=\"counter\",version=\"2\"} ")) << m.body;
  EXPECT_TRUE(contains(m.body, "cairn_projection_lag_events{projection=\"counter\",version=\"2\"} ")) << m.body;
}

// ------------------------------------------------------------------------------------------ crashes

// Appends batches of events to random c-* streams until stop or the server is gone.
void append_until(int port, const std::string& key, std::atomic<bool>& stop, uint32_t seed) {
  std::mt19937 rng(seed);
  while (!stop.load()) {
    json body = {{"events", json::array()}};
    for (int i = 0; i < 20; ++i) body["events"].push_back({{"type", "t"}, {"data", {{"n", rng() % 100}}}});
    auto r = call(port, http::verb::post, "/v1/streams/c-" + std::to_string(rng() % 12), key, body.dump());
    if (r.status == 0) break;
  }
}

// Both projections equal what the log holds: a count per stream (from the stream catalog) and in total.
void expect_states_match_the_log(const Client& c) {
  auto streams = c.get("/v1/streams?limit=1000");
  ASSERT_EQ(streams.status, 200) << streams.body;
  json want = json::object();
  uint64_t total = 0;
  for (const auto& s : streams.field("streams")) {
    const std::string name = s["stream"];
    if (name.starts_with("$")) continue;
    want[name] = s["count"];
    total += s["count"].get<uint64_t>();
  }
  ASSERT_GT(total, 0u);
  for (const std::string name : {"per-stream", "counter"}) {
    SCOPED_TRACE(name);
    auto r = c.caught_up(name);
    ASSERT_EQ(r.status, 200) << r.body;
    auto v = c.post("/v1/projections/" + name + "/verify");
    ASSERT_EQ(v.status, 200) << v.body;
    EXPECT_EQ(v.j()["equal"], true) << v.body;
    if (name == "counter") {
      EXPECT_EQ(r.j()["state"]["count"], total) << r.body;
    } else {
      json counts = json::object();
      const json state = r.field("state");
      for (auto& [k, s] : state.items()) counts[k] = s["count"];
      EXPECT_EQ(counts, want);
    }
  }
}

TEST(ProjectionsHttp, KillDuringCatchUpAndDuringAppendsResumesExactly) {
  cairn::testing::TempDir dir;
  std::string key;
  {
    Cairnd d(dir.path());
    key = d.key();
    Client c(d.port(), key);
    for (int b = 0; b < 50; ++b) {
      std::vector<std::pair<std::string, json>> evs;
      for (int i = 0; i < 200; ++i) evs.push_back({"t", {{"n", i}}});
      c.append("c-" + std::to_string(b % 12), evs);
    }
    // Define, then kill at once: the runners are catching up over 10,000 events.
    ASSERT_EQ(c.define("per-stream", kPerPartition, {{"partition", "stream"}}).status, 201);
    ASSERT_EQ(c.define("counter", kCounter).status, 201);
    d.stop(SIGKILL);
  }
  {
    // Restart, let it catch up and stop cleanly (final checkpoints), then more events with the server down.
    Cairnd d(dir.path());
    Client c(d.port(), key);
    expect_states_match_the_log(c);
    EXPECT_EQ(d.stop(SIGTERM), 0);
  }
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    {
      // Appends flowing, then SIGKILL.
      Cairnd d(dir.path());
      std::atomic<bool> stop{false};
      std::thread load([&] { append_until(d.port(), key, stop, static_cast<uint32_t>(round)); });
      std::thread load2([&] { append_until(d.port(), key, stop, static_cast<uint32_t>(round + 100)); });
      std::this_thread::sleep_for(std::chrono::milliseconds(150 + 100 * round));
      d.stop(SIGKILL);
      stop = true;
      load.join();
      load2.join();
    }
    {
      // Restart and kill at once: the projections are catching up from their checkpoints.
      Cairnd d(dir.path());
      d.stop(SIGKILL);
    }
  }
  Cairnd d(dir.path());
  Client c(d.port(), key);
  expect_states_match_the_log(c);
  EXPECT_EQ(c.get("/v1/projections/counter").j()["phase"], "live");
}

// A verify replays the whole log through the reducer, which may take seconds: it runs on a replay worker,
// never on a request worker. With one request worker (--workers 1), the projection's status is answered while
// the verify still runs, and shows it in `replays` (on main the status queued behind the verify).
TEST(ProjectionsHttp, AVerifyRunsOffTheRequestWorkersAndShowsItsProgress) {
  cairn::testing::TempDir dir;
  Cairnd d(dir.path(), {"--workers", "1"});
  Client c(d.port(), d.key());
  const std::string slow =
      "return function(s, e)\n  local x = 0\n  for i = 1, 600000 do x = x + i end\n  s.n = (s.n or 0) + 1\nend\n";
  ASSERT_EQ(c.define("slow", slow).status, 201);
  json body = {{"events", json::array()}};
  for (int i = 0; i < 1000; ++i) body["events"].push_back({{"type", "t"}, {"data", {{"i", i}}}});
  ASSERT_EQ(c.post("/v1/streams/s-1", body.dump()).status, 201);
  auto live = c.caught_up("slow");
  ASSERT_EQ(live.status, 200) << live.body;
  auto verify = std::async(std::launch::async, [&] { return c.post("/v1/projections/slow/verify"); });
  bool seen = false;
  while (!seen && verify.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    auto st = c.get("/v1/projections/slow");
    ASSERT_EQ(st.status, 200) << st.body;
    const json replays = st.field("replays");
    seen = replays.is_array() && replays.size() == 1 && replays[0]["kind"] == "verify" &&
           verify.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready;
  }
  EXPECT_TRUE(seen) << "no status answered while the verify ran";
  auto rep = verify.get();
  ASSERT_EQ(rep.status, 200) << rep.body;
  EXPECT_EQ(rep.j()["equal"], true);
  EXPECT_EQ(c.get("/v1/projections/slow").field("replays"), json::array());
}

}  // namespace
