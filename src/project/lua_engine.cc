#include "project/lua_engine.h"

#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <unordered_map>

#include <fmt/format.h>
#include <lua.hpp>
#include <simdjson.h>

#include "base/text.h"
#include "codec/event_json.h"
#include "project/lua_json.h"

namespace cairn::project {
namespace {

constexpr int kHookEvery = 1000;  // instructions between two checks of the budget

// The bytes of an event that Lua reads lazily, copied into one userdata so the event stays valid after the
// callback that produced it (a reducer may keep the event table in its state).
struct Payload {
  uint64_t commit_position;
  int64_t recorded_ns;
  Uuid id;
  ContentType content_type;
  bool payload_removed;
  uint32_t metadata_size;
  uint32_t data_size;
  char* metadata() { return reinterpret_cast<char*>(this + 1); }
  char* data() { return metadata() + metadata_size; }
};

class LuaEngine final : public ReducerEngine {
 public:
  LuaEngine(std::string name, const ProjectionLimits& limits) : name_(std::move(name)), limits_(limits) {}
  ~LuaEngine() override {
    if (L_) lua_close(L_);
  }

  Status init(const std::string& code);

  Status apply(std::string_view key, const EventView& event) override;
  Result<std::optional<std::string>> state_json(std::string_view key) override;
  std::vector<std::string> keys(std::string_view after, size_t limit) const override {
    if (sorted_.size() != slots_.size()) {  // keys were added since the last listing
      sorted_.clear();
      sorted_.reserve(slots_.size());
      for (const auto& [k, slot] : slots_) sorted_.push_back(k);
      std::sort(sorted_.begin(), sorted_.end());
    }
    auto it = after.empty() ? sorted_.begin() : std::upper_bound(sorted_.begin(), sorted_.end(), after);
    std::vector<std::string> out;
    for (; it != sorted_.end() && out.size() < limit; ++it) out.push_back(*it);
    return out;
  }
  size_t partitions() const override { return slots_.size(); }
  Status restore(std::string_view key, std::string_view json) override;
  Status check_purity() override;

 private:
  Result<std::string> fingerprint();
  static void* alloc(void* ud, void* ptr, size_t osize, size_t nsize);
  static void count_hook(lua_State* L, lua_Debug* ar);
  static int sandbox_pcall(lua_State* L);
  static int event_index(lua_State* L);
  struct ApplyCall {
    LuaEngine* engine;
    int slot;
    bool fresh;  // a new partition: its state comes from init()
    const EventView* event;
    const char* stage;
  };
  static int apply_protected(lua_State* L);
  static int json_encode(lua_State* L);
  static int json_decode(lua_State* L);
  static LuaEngine* self(lua_State* L) {
    void* ud = nullptr;
    lua_getallocf(L, &ud);
    return static_cast<LuaEngine*>(ud);
  }

  Status build_sandbox();
  Status check_upvalue_assignments();
  void start_budget() {
    ticks_ = 0;
    instructions_exceeded_ = false;
    memory_exceeded_ = false;
  }
  bool aborting() const { return instructions_exceeded_ || memory_exceeded_; }
  // Calls the function below nargs arguments on the stack, under the budget; nresults results on success.
  Status call(int nargs, int nresults, std::string_view doing);
  void push_event(const EventView& e);
  int slot_for(std::string_view key, bool create, Status* st);

  std::string name_;
  ProjectionLimits limits_;
  lua_State* L_ = nullptr;
  size_t used_ = 0;
  uint64_t ticks_ = 0;
  bool instructions_exceeded_ = false;
  bool memory_exceeded_ = false;
  bool limits_armed_ = false;
  int reduce_ref_ = LUA_NOREF;
  int init_ref_ = LUA_NOREF;
  int states_ref_ = LUA_NOREF;
  int event_mt_ref_ = LUA_NOREF;
  int env_ref_ = LUA_NOREF;
  int protected_ref_ = LUA_NOREF;
  int base_ref_ = LUA_NOREF;
  int fingerprint_ref_ = LUA_NOREF;
  int apply_ref_ = LUA_NOREF;  // apply_protected, made once so that calling it allocates nothing
  std::string fingerprint_;  // of the tables the code made at load time
  int next_slot_ = 1;
  // Partition key -> slot in the states table. Hashed, because this lookup is on every event; listings
  // sort the keys when new ones came since the last listing (keys are never removed).
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int, KeyHash, std::equal_to<>> slots_;
  mutable std::vector<std::string> sorted_;
  lua_Alloc base_alloc_ = nullptr;  // LuaJIT's own allocator, which alloc() wraps with the accounting
  void* base_ud_ = nullptr;
  simdjson::dom::parser parser_;
};

// LuaJIT's own allocator (much faster than malloc for its many small objects), with the heap counted.
void* LuaEngine::alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* e = static_cast<LuaEngine*>(ud);
  const size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    e->used_ -= old;
    return e->base_alloc_(e->base_ud_, ptr, osize, 0);
  }
  if (e->limits_armed_ && nsize > old && e->used_ + (nsize - old) > e->limits_.memory_bytes) {
    e->memory_exceeded_ = true;
    return nullptr;
  }
  void* p = e->base_alloc_(e->base_ud_, ptr, osize, nsize);
  if (p) e->used_ = e->used_ - old + nsize;
  return p;
}

void LuaEngine::count_hook(lua_State* L, lua_Debug*) {
  LuaEngine* e = self(L);
  if (++e->ticks_ * kHookEvery > e->limits_.instructions_per_event) {
    e->instructions_exceeded_ = true;
    const std::string m = fmt::format("the reducer ran more than {} instructions on one event (the limit)",
                                      e->limits_.instructions_per_event);
    lua_pushlstring(L, m.data(), m.size());
    lua_error(L);
  }
}

// pcall for sandboxed code: a limit that was crossed inside it is not caught, it ends the event.
int LuaEngine::sandbox_pcall(lua_State* L) {
  luaL_checkany(L, 1);
  const int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  if (self(L)->aborting()) return lua_error(L);
  lua_pushboolean(L, status == 0);
  lua_insert(L, 1);
  return lua_gettop(L);
}

int LuaEngine::json_encode(lua_State* L) {
  std::string out;
  Status st = lua_to_json(L, 1, "value", &out);
  if (!st.ok()) return luaL_error(L, "json.encode: %s", st.message().c_str());
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

int LuaEngine::json_decode(lua_State* L) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, 1, &n);
  Status st = push_json_text(L, self(L)->parser_, std::string_view(s, n), "json.decode");
  if (!st.ok()) return luaL_error(L, "%s", st.message().c_str());
  return 1;
}

// __index of event tables: fields that cost something are made on first use and then cached in the table.
int LuaEngine::event_index(lua_State* L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  size_t kn = 0;
  const char* k = lua_tolstring(L, 2, &kn);
  const std::string_view key(k, kn);
  lua_pushlightuserdata(L, &kEventPayloadKey);
  lua_rawget(L, 1);
  auto* p = static_cast<Payload*>(lua_touserdata(L, -1));
  if (!p) return 0;
  if (p->payload_removed && (key == "data" || key == "metadata" || key == "data_text")) {
    lua_pushnil(L);  // erased by a privacy purge: nothing to decode (payload_removed says so)
  } else if (key == "payload_removed") {
    lua_pushboolean(L, p->payload_removed);
  } else if (key == "data") {
    if (p->content_type == ContentType::kJson) {
      Status st = push_json_text(L, self(L)->parser_, std::string_view(p->data(), p->data_size), "event.data");
      if (!st.ok()) return luaL_error(L, "%s", st.message().c_str());
    } else {
      lua_pushlstring(L, p->data(), p->data_size);
    }
  } else if (key == "metadata") {
    if (p->metadata_size == 0) {
      lua_newtable(L);
    } else {
      Status st = push_json_text(L, self(L)->parser_, std::string_view(p->metadata(), p->metadata_size), "event.metadata");
      if (!st.ok()) return luaL_error(L, "%s", st.message().c_str());
    }
  } else if (key == "data_text") {
    lua_pushlstring(L, p->data(), p->data_size);
  } else if (key == "id") {
    const std::string id = p->id.to_string();
    lua_pushlstring(L, id.data(), id.size());
  } else if (key == "time") {
    const std::string t = format_rfc3339_ns(p->recorded_ns);
    lua_pushlstring(L, t.data(), t.size());
  } else if (key == "time_ms") {
    lua_pushnumber(L, static_cast<double>(p->recorded_ns / 1'000'000));
  } else if (key == "commit_position") {
    lua_pushnumber(L, static_cast<double>(p->commit_position));
  } else if (key == "content_type") {
    const std::string_view ct = content_type_name(p->content_type);
    lua_pushlstring(L, ct.data(), ct.size());
  } else if (key == "category") {
    lua_getfield(L, 1, "stream");
    size_t sn = 0;
    const char* s = lua_tolstring(L, -1, &sn);
    const std::string_view cat = stream_category(std::string_view(s ? s : "", s ? sn : 0));
    lua_pushlstring(L, cat.data(), cat.size());
  } else {
    return 0;
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

Status LuaEngine::call(int nargs, int nresults, std::string_view doing) {
  start_budget();
  const int status = lua_pcall(L_, nargs, nresults, 0);
  if (status == 0) return {};
  std::string message;
  if (memory_exceeded_) {
    message = fmt::format("the reducer went over the memory limit ({} bytes of Lua heap)", limits_.memory_bytes);
  } else if (lua_type(L_, -1) == LUA_TSTRING) {
    size_t n = 0;
    const char* s = lua_tolstring(L_, -1, &n);
    message.assign(s, n);
  } else {
    message = fmt::format("the reducer raised an error value of type {}", lua_typename(L_, lua_type(L_, -1)));
  }
  lua_pop(L_, 1);
  if (message.size() > 2000) message.resize(2000);
  return Status::invalid_argument(doing.empty() ? ": " + message : fmt::format("{}: {}", doing, message));
}

constexpr const char* kDeterministic = R"lua(
local env, event_mt, payload_key, lazy_fields = ...
-- debug.getmetatable: the event metatable hides itself from getmetatable (__metatable = false)
local type, tostring, error, select, rawget, sort, getmetatable = type, tostring, error, select, rawget, table.sort, debug.getmetatable
local format = string.format
local rank = {boolean = 1, number = 2, string = 3}
local function before(a, b)
  local ta, tb = type(a), type(b)
  if not rank[ta] or not rank[tb] then
    error("a table with " .. (rank[ta] and tb or ta) .. " keys has no deterministic order to iterate in", 3)
  end
  if ta ~= tb then return rank[ta] < rank[tb] end
  if ta == "boolean" then return (not a) and b end
  return a < b
end
local function sorted_keys(t)
  if getmetatable(t) == event_mt then  -- an event: make its lazy fields so that every field is listed
    for _, f in ipairs(lazy_fields) do local _ = t[f] end
  end
  local keys, n = {}, 0
  for k in next, t do
    if k ~= payload_key then n = n + 1; keys[n] = k end
  end
  sort(keys, before)
  return keys, n
end
env.pairs = function(t)
  if type(t) ~= "table" then error("bad argument #1 to 'pairs' (table expected, got " .. type(t) .. ")", 2) end
  local keys, n = sorted_keys(t)
  local i = 0
  return function()
    i = i + 1
    if i > n then return nil end
    local k = keys[i]
    return k, rawget(t, k)
  end, t, nil
end
env.next = function(t, k)
  if type(t) ~= "table" then error("bad argument #1 to 'next' (table expected, got " .. type(t) .. ")", 2) end
  if getmetatable(t) == event_mt then
    for _, f in ipairs(lazy_fields) do local _ = t[f] end
  end
  local best
  for key in next, t do
    if key ~= payload_key and (k == nil or before(k, key)) and (best == nil or before(key, best)) then best = key end
  end
  if best == nil then return nil end
  return best, rawget(t, best)
end
local function safe_tostring(v)
  local tv = type(v)
  if tv == "table" or tv == "function" or tv == "userdata" or tv == "thread" then
    return tv  -- an address would differ from run to run
  end
  return tostring(v)
end
env.tostring = safe_tostring
local function safe_format(fmt, ...)
  if type(fmt) == "string" and fmt:gsub("%%%%", ""):find("%%[-+ #0]*%d*%.?%d*p") then
    error("string.format: %p prints an address, which differs from run to run", 2)
  end
  for i = 1, select("#", ...) do
    local tv = type((select(i, ...)))
    if tv == "table" or tv == "function" or tv == "userdata" or tv == "thread" then
      error("string.format: argument #" .. (i + 1) .. " is a " .. tv .. " (its text would be an address); use json.encode", 2)
    end
  end
  return format(fmt, ...)
end
env.string.format = safe_format
string.format = safe_format  -- also reached by ("..."):format()
)lua";

// Library tables are read-only proxies; rawset refuses them and the globals. Returns the set of protected
// tables (filled further once the code has loaded).
constexpr const char* kLibraries = R"lua(
local env = ...
local protected = {}
local function readonly(t, what)
  return setmetatable({}, {__index = t, __newindex = function(_, k) error(what .. " is read-only (cannot set '" .. tostring(k) .. "'): keep state in the state argument", 2) end, __metatable = false})
end
for _, lib in ipairs({"string", "table", "math", "bit", "json"}) do
  env[lib] = readonly(env[lib], lib)
  protected[env[lib]] = lib
end
local rawset = rawset
env.rawset = function(t, k, v)
  if protected[t] then error("rawset: " .. protected[t] .. " cannot be changed (read-only): keep state in the state argument", 2) end
  return rawset(t, k, v)
end
return protected
)lua";

// Tables the code made at load time (reachable from its globals and from the upvalues of its functions) are
// shared by every event: if a reducer changed one, state would live outside the state argument. They cannot
// be frozen in place (LuaJIT's # and ipairs ignore metatables), so their contents are fingerprinted once and
// checked after every batch. Returns the fingerprint function.
constexpr const char* kConstants = R"lua(
local env, protected, base, reduce, init = ...
local getupvalue, type, next, sort, concat, format = debug.getupvalue, type, next, table.sort, table.concat, string.format
local trusted = {}
for _, v in next, base do trusted[v] = true end
local roots, index = {}, {}
local function visit(v)
  local tv = type(v)
  if tv == "table" then
    if index[v] or protected[v] or trusted[v] then return end
    roots[#roots + 1] = v
    index[v] = #roots
    for k, x in next, v do visit(k) visit(x) end
  elseif tv == "function" then
    if index[v] or trusted[v] then return end
    index[v] = 0
    local i = 1
    while true do
      local name, x = getupvalue(v, i)
      if name == nil then break end
      visit(x)
      i = i + 1
    end
  end
end
visit(reduce)
if init then visit(init) end
for k, v in next, env do
  if base[k] ~= v then visit(v) end
end
local function atom(v)
  local tv = type(v)
  if tv == "table" then return "t" .. (index[v] or "?") end
  if tv == "string" then return "s" .. #v .. ":" .. v end
  if tv == "number" then return "n" .. format("%.17g", v) end
  if tv == "boolean" then return v and "T" or "F" end
  return tv
end
return function()
  local parts = {}
  for i = 1, #roots do
    local items = {}
    for k, v in next, roots[i] do items[#items + 1] = atom(k) .. "=" .. atom(v) end
    sort(items)
    parts[i] = concat(items, ",")
  end
  return concat(parts, ";"), #roots
end
)lua";

Status LuaEngine::build_sandbox() {
  lua_State* L = L_;
  // The environment the code sees. Library tables are fresh copies so the shared ones stay untouched.
  lua_newtable(L);
  const int env = lua_gettop(L);
  static constexpr const char* kBase[] = {"assert", "error",  "ipairs",   "next",     "pairs",  "rawequal", "rawget",
                                          "rawset", "select", "tonumber", "tostring", "type",   "unpack"};
  for (const char* f : kBase) {
    lua_getglobal(L, f);
    lua_setfield(L, env, f);
  }
  lua_pushcfunction(L, &LuaEngine::sandbox_pcall);
  lua_setfield(L, env, "pcall");
  lua_pushstring(L, "_VERSION");
  lua_pushstring(L, "Lua 5.1 (LuaJIT, Cairn projection sandbox)");
  lua_rawset(L, env);
  struct Lib {
    const char* name;
    std::vector<const char*> omit;
  };
  const Lib libs[] = {{"string", {"dump"}}, {"table", {}}, {"math", {"random", "randomseed"}}, {"bit", {}}};
  for (const auto& lib : libs) {
    lua_getglobal(L, lib.name);
    const int src = lua_gettop(L);
    lua_newtable(L);
    const int dst = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, src) != 0) {
      bool omitted = false;
      if (lua_type(L, -2) == LUA_TSTRING)
        for (const char* o : lib.omit) omitted = omitted || std::strcmp(lua_tostring(L, -2), o) == 0;
      if (!omitted) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, dst);
      } else {
        lua_pop(L, 1);
      }
    }
    lua_setfield(L, env, lib.name);
    lua_pop(L, 1);
  }
  // string.dump would give bytecode; the string metatable reaches the shared string table, so remove it there.
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, nullptr);
  lua_setfield(L, -2, "null");
  lua_pushcfunction(L, &LuaEngine::json_encode);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, &LuaEngine::json_decode);
  lua_setfield(L, -2, "decode");
  lua_setfield(L, env, "json");
  lua_pushvalue(L, env);
  lua_setfield(L, env, "_G");
  // The metatable of events.
  lua_newtable(L);
  lua_pushcfunction(L, &LuaEngine::event_index);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, kEventMetatableKey);
  event_mt_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  // Deterministic replacements: iteration in key order (hash order changes with a table's history, so a
  // restored checkpoint would iterate differently), no addresses in text.
  if (luaL_loadstring(L, kDeterministic) != 0) return Status::invalid_argument(lua_tostring(L, -1));
  lua_pushvalue(L, env);
  lua_rawgeti(L, LUA_REGISTRYINDEX, event_mt_ref_);
  lua_pushlightuserdata(L, &kEventPayloadKey);
  lua_createtable(L, static_cast<int>(std::size(kEventLazyFields)), 0);
  for (size_t i = 0; i < std::size(kEventLazyFields); ++i) {
    lua_pushstring(L, kEventLazyFields[i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  if (lua_pcall(L, 4, 0, 0) != 0) return Status::invalid_argument(lua_tostring(L, -1));
  if (luaL_loadstring(L, kLibraries) != 0) return Status::invalid_argument(lua_tostring(L, -1));
  lua_pushvalue(L, env);
  if (lua_pcall(L, 1, 1, 0) != 0) return Status::invalid_argument(lua_tostring(L, -1));
  protected_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  // What the environment holds before the code runs: trusted, and never fingerprinted.
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, env) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  base_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  env_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_newtable(L);
  states_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, &LuaEngine::apply_protected);
  apply_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
  return {};
}

// Functions that assign upvalues keep state between events outside the state argument: refuse them.
// The bytecodes that do it are found by compiling samples, since their numbers differ between LuaJIT builds.
constexpr const char* kUpvalueCheck = R"lua(
local chunk = ...
local ju = require("jit.util")
local band, rshift = bit.band, bit.rshift
local function ops(f)
  local set, pc = {}, 1
  while true do
    local ins = ju.funcbc(f, pc)
    if not ins then break end
    set[band(ins, 0xff)] = true
    pc = pc + 1
  end
  return set
end
local base = ops(loadstring("return function() end")())
local uset = {}
for _, src in ipairs({"local a; return function() a = 1 end", "local a; return function(b) a = b end",
                      "local a; return function() a = 's' end", "local a; return function() a = nil end",
                      "local a; return function() a = true end"}) do
  for op in pairs(ops(loadstring(src)())) do if not base[op] then uset[op] = true end end
end
local check
local function check_children(f)
  local i = -1
  while true do
    local k = ju.funck(f, i)
    if k == nil then return nil end
    if type(k) == "proto" then
      local err = check(k)
      if err then return err end
    end
    i = i - 1
  end
end
check = function(f)
  local pc = 1
  while true do
    local ins = ju.funcbc(f, pc)
    if not ins then break end
    if uset[band(ins, 0xff)] then
      local info = ju.funcinfo(f, pc)
      local name = ju.funcuvname(f, band(rshift(ins, 8), 0xff)) or "?"
      return string.format("line %d: a function assigns to the variable '%s' declared outside it; a reducer must keep everything it remembers in the state it returns",
        info.currentline or 0, name)
    end
    pc = pc + 1
  end
  return check_children(f)
end
return check_children(chunk)
)lua";

Status LuaEngine::check_upvalue_assignments() {
  if (luaL_loadstring(L_, kUpvalueCheck) != 0) return Status::invalid_argument(lua_tostring(L_, -1));
  lua_pushvalue(L_, -2);  // the compiled chunk
  if (lua_pcall(L_, 1, 1, 0) != 0) {
    std::string m = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "?";
    lua_pop(L_, 1);
    return Status::invalid_argument(fmt::format("checking the code failed: {}", m));
  }
  Status st;
  if (lua_type(L_, -1) == LUA_TSTRING) st = Status::invalid_argument(fmt::format("lua: {}", lua_tostring(L_, -1)));
  lua_pop(L_, 1);
  return st;
}

Status LuaEngine::init(const std::string& code) {
  L_ = luaL_newstate();
  if (!L_) return Status::io_error("could not create a Lua state");
  base_alloc_ = lua_getallocf(L_, &base_ud_);
  used_ = static_cast<size_t>(lua_gc(L_, LUA_GCCOUNT, 0)) * 1024 + static_cast<size_t>(lua_gc(L_, LUA_GCCOUNTB, 0));
  lua_setallocf(L_, &LuaEngine::alloc, this);
  luaL_openlibs(L_);  // the trusted side needs jit.util for the checks; the sandbox gets a curated copy
  luaJIT_setmode(L_, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  CAIRN_RETURN_IF_ERROR(build_sandbox());

  // Lua and LuaJIT bytecode starts with ESC; mode "t" would refuse it too, but with "attempt to load chunk with
  // wrong mode", which tells the user neither what is wrong nor what to do.
  if (!code.empty() && code[0] == '\x1b')
    return Status::invalid_argument("lua: compiled Lua chunks (bytecode) are not accepted; send the reducer's source text");
  if (luaL_loadbufferx(L_, code.data(), code.size(), ("=" + name_).c_str(), "t") != 0) {
    std::string m = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "?";
    lua_pop(L_, 1);
    // LuaJIT prefixes "NAME:LINE: "; the name is the projection's, so say "line LINE: " as the docs show.
    const std::string prefix = name_ + ":";
    if (m.starts_with(prefix)) {
      const size_t colon = m.find(':', prefix.size());
      const std::string_view digits(m.data() + prefix.size(), colon == std::string::npos ? 0 : colon - prefix.size());
      if (!digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        const size_t rest = colon + 1 < m.size() && m[colon + 1] == ' ' ? colon + 2 : colon + 1;
        m = fmt::format("line {}: {}", digits, m.substr(rest));
      }
    }
    return Status::invalid_argument(fmt::format("lua: {}", m));
  }
  CAIRN_RETURN_IF_ERROR(check_upvalue_assignments());
  lua_rawgeti(L_, LUA_REGISTRYINDEX, env_ref_);
  lua_setfenv(L_, -2);

  // From here on the code runs under the limits.
  limits_armed_ = true;
  lua_sethook(L_, &LuaEngine::count_hook, LUA_MASKCOUNT, kHookEvery);
  CAIRN_RETURN_IF_ERROR(call(0, 1, "loading the code"));

  auto take_function = [&](int idx, const char* what, int* ref) -> Status {
    if (lua_isnil(L_, idx)) return {};
    if (!lua_isfunction(L_, idx))
      return Status::invalid_argument(fmt::format("lua: {} must be a function, not a {}", what, luaL_typename(L_, idx)));
    lua_pushvalue(L_, idx);
    *ref = luaL_ref(L_, LUA_REGISTRYINDEX);
    return {};
  };
  if (lua_isfunction(L_, -1)) {
    CAIRN_RETURN_IF_ERROR(take_function(-1, "the returned reducer", &reduce_ref_));
  } else if (lua_istable(L_, -1)) {
    lua_getfield(L_, -1, "reduce");
    CAIRN_RETURN_IF_ERROR(take_function(-1, "reduce", &reduce_ref_));
    lua_pop(L_, 1);
    lua_getfield(L_, -1, "init");
    CAIRN_RETURN_IF_ERROR(take_function(-1, "init", &init_ref_));
    lua_pop(L_, 1);
  } else if (lua_isnil(L_, -1)) {
    lua_rawgeti(L_, LUA_REGISTRYINDEX, env_ref_);
    lua_getfield(L_, -1, "reduce");
    CAIRN_RETURN_IF_ERROR(take_function(-1, "reduce", &reduce_ref_));
    lua_pop(L_, 1);
    lua_getfield(L_, -1, "init");
    CAIRN_RETURN_IF_ERROR(take_function(-1, "init", &init_ref_));
    lua_pop(L_, 2);
  } else {
    return Status::invalid_argument(fmt::format(
        "lua: the code must return a reducer function or a table {{reduce = ..., init = ...}}, not a {}",
        luaL_typename(L_, -1)));
  }
  lua_pop(L_, 1);
  if (reduce_ref_ == LUA_NOREF)
    return Status::invalid_argument(
        "lua: no reducer: return a function(state, event), a table with reduce, or define a global reduce");

  // Globals are read-only from now on: nothing can carry state from one event to the next.
  constexpr const char* kFreeze = R"lua(
local env, protected = ...
protected[env] = "globals"
local forbidden = {io = "files", os = "the clock and the system", debug = "the debugger", require = "modules",
  package = "modules", load = "loading code", loadstring = "loading code", loadfile = "files", dofile = "files",
  module = "modules", collectgarbage = "the garbage collector", coroutine = "coroutines", print = "output",
  ffi = "foreign code", jit = "the compiler", setfenv = "environments", getfenv = "environments",
  newproxy = "userdata", gcinfo = "the garbage collector", setmetatable = "metatables",
  getmetatable = "metatables"}
setmetatable(env, {
  __newindex = function(_, k) error("globals are read-only (cannot set '" .. tostring(k) .. "'): keep state in the state argument", 2) end,
  __index = function(_, k)
    if forbidden[k] then
      error("'" .. k .. "' is not available to projections: a reducer is a pure function of (state, event) and may not use " .. forbidden[k], 2)
    end
    return nil
  end,
  __metatable = false})
)lua";
  limits_armed_ = false;
  if (luaL_loadstring(L_, kFreeze) != 0) return Status::invalid_argument(lua_tostring(L_, -1));
  lua_rawgeti(L_, LUA_REGISTRYINDEX, env_ref_);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, protected_ref_);
  lua_sethook(L_, nullptr, 0, 0);
  if (lua_pcall(L_, 2, 0, 0) != 0) return Status::invalid_argument(lua_tostring(L_, -1));
  if (luaL_loadstring(L_, kConstants) != 0) return Status::invalid_argument(lua_tostring(L_, -1));
  for (int ref : {env_ref_, protected_ref_, base_ref_, reduce_ref_, init_ref_}) {
    if (ref == LUA_NOREF) lua_pushnil(L_);
    else lua_rawgeti(L_, LUA_REGISTRYINDEX, ref);
  }
  if (lua_pcall(L_, 5, 1, 0) != 0) return Status::invalid_argument(lua_tostring(L_, -1));
  fingerprint_ref_ = luaL_ref(L_, LUA_REGISTRYINDEX);
  auto fp = fingerprint();
  if (!fp.ok()) return fp.status();
  fingerprint_ = std::move(*fp);
  lua_sethook(L_, &LuaEngine::count_hook, LUA_MASKCOUNT, kHookEvery);
  limits_armed_ = true;
  // Remove the trusted libraries from the shared globals, so nothing reaches them through a metatable.
  for (const char* g : {"io", "os", "debug", "package", "require", "jit", "ffi", "load", "loadstring", "loadfile",
                        "dofile", "module", "collectgarbage", "coroutine", "newproxy", "gcinfo", "print", "setfenv",
                        "getfenv"}) {
    lua_pushnil(L_);
    lua_setglobal(L_, g);
  }
  lua_getglobal(L_, "string");
  lua_getglobal(L_, "math");
  lua_pushnil(L_);
  lua_setfield(L_, -2, "random");
  lua_pushnil(L_);
  lua_setfield(L_, -2, "randomseed");
  lua_pop(L_, 2);
  return {};
}

void LuaEngine::push_event(const EventView& e) {
  lua_State* L = L_;
  lua_createtable(L, 0, 6);
  lua_pushlstring(L, e.stream.data(), e.stream.size());
  lua_setfield(L, -2, "stream");
  lua_pushlstring(L, e.type.data(), e.type.size());
  lua_setfield(L, -2, "type");
  lua_pushnumber(L, static_cast<double>(e.position));
  lua_setfield(L, -2, "position");
  lua_pushnumber(L, static_cast<double>(e.revision));
  lua_setfield(L, -2, "revision");
  lua_pushlightuserdata(L, &kEventPayloadKey);
  auto* p = static_cast<Payload*>(lua_newuserdata(L, sizeof(Payload) + e.metadata.size() + e.data.size()));
  p->commit_position = e.commit_position;
  p->recorded_ns = e.recorded_ns;
  p->id = e.id;
  p->content_type = e.content_type;
  p->payload_removed = e.payload_removed;
  p->metadata_size = static_cast<uint32_t>(e.metadata.size());
  p->data_size = static_cast<uint32_t>(e.data.size());
  if (!e.metadata.empty()) std::memcpy(p->metadata(), e.metadata.data(), e.metadata.size());
  if (!e.data.empty()) std::memcpy(p->data(), e.data.data(), e.data.size());
  lua_rawset(L, -3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, event_mt_ref_);
  lua_setmetatable(L, -2);
}

// Everything an event does in Lua runs inside one protected call: with the memory limit armed, any
// allocation may fail, and a failure outside a protected call would end the process.
int LuaEngine::apply_protected(lua_State* L) {
  auto* a = static_cast<ApplyCall*>(lua_touserdata(L, 1));
  LuaEngine* e = a->engine;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->states_ref_);  // 1: states
  if (a->fresh) {
    a->stage = "init";
    if (e->init_ref_ != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, e->init_ref_);
      lua_call(L, 0, 1);
    } else {
      lua_newtable(L);
    }
  } else {
    lua_rawgeti(L, 1, a->slot);
  }
  // 2: the state given; 3: the reducer's answer
  a->stage = "reduce";
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->reduce_ref_);
  lua_pushvalue(L, 2);
  e->push_event(*a->event);
  lua_call(L, 2, 1);
  if (lua_isnil(L, 3)) lua_pushvalue(L, 2);
  lua_rawseti(L, 1, a->slot);
  return 0;
}

Status LuaEngine::apply(std::string_view key, const EventView& event) {
  lua_State* L = L_;
  lua_settop(L, 0);
  auto it = slots_.find(key);
  ApplyCall a{this, it == slots_.end() ? next_slot_ : it->second, it == slots_.end(), &event, "reduce"};
  lua_rawgeti(L, LUA_REGISTRYINDEX, apply_ref_);
  lua_pushlightuserdata(L, &a);
  Status st = call(1, 0, "");
  if (!st.ok()) {
    lua_settop(L, 0);
    return Status::invalid_argument(fmt::format("{}{}", a.stage == std::string_view("init")
                                                             ? fmt::format("init() for partition '{}'", key)
                                                             : std::string("reduce"),
                                                st.message()));
  }
  if (a.fresh) {
    slots_.emplace(std::string(key), a.slot);
    ++next_slot_;
  }
  lua_settop(L, 0);
  return {};
}

Result<std::string> LuaEngine::fingerprint() {
  const bool armed = limits_armed_;
  limits_armed_ = false;  // the runtime's work, not the reducer's
  lua_sethook(L_, nullptr, 0, 0);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, fingerprint_ref_);
  const int rc = lua_pcall(L_, 0, 1, 0);
  std::string out;
  if (rc == 0) {
    size_t n = 0;
    const char* p = lua_tolstring(L_, -1, &n);
    out.assign(p ? p : "", p ? n : 0);
  } else {
    out = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "?";
  }
  lua_pop(L_, 1);
  lua_sethook(L_, &LuaEngine::count_hook, LUA_MASKCOUNT, kHookEvery);
  limits_armed_ = armed;
  if (rc != 0) return Status::invalid_argument(fmt::format("fingerprinting the code's tables failed: {}", out));
  return out;
}

Status LuaEngine::check_purity() {
  auto fp = fingerprint();
  if (!fp.ok()) return fp.status();
  if (*fp != fingerprint_)
    return Status::invalid_argument(
        "a table made when the code loaded (a global or a variable declared outside the reducer) was changed; a "
        "reducer must keep everything it remembers in the state it returns");
  return {};
}

Result<std::optional<std::string>> LuaEngine::state_json(std::string_view key) {
  auto it = slots_.find(key);
  if (it == slots_.end()) return std::optional<std::string>();
  lua_settop(L_, 0);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, states_ref_);
  lua_rawgeti(L_, 1, it->second);
  std::string out;
  std::string path = key.empty() ? "state" : "state[";
  if (!key.empty()) {
    base::append_json_string(path, key);
    path += "]";
  }
  const bool armed = limits_armed_;
  limits_armed_ = false;  // serializing is the runtime's work, not the reducer's
  Status st = lua_to_json(L_, 2, path, &out);
  limits_armed_ = armed;
  lua_settop(L_, 0);
  if (!st.ok()) return st;
  return std::optional<std::string>(std::move(out));
}

Status LuaEngine::restore(std::string_view key, std::string_view json) {
  lua_settop(L_, 0);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, states_ref_);
  const bool armed = limits_armed_;
  limits_armed_ = false;
  // A state that was nil is saved as null; it comes back as nil (json.null only stands for nested nulls).
  Status st = json == "null" ? (lua_pushnil(L_), Status()) : push_json_text(L_, parser_, json, fmt::format("partition '{}'", key));
  limits_armed_ = armed;
  if (!st.ok()) {
    lua_settop(L_, 0);
    return st;
  }
  auto it = slots_.find(key);
  int slot = it == slots_.end() ? next_slot_++ : it->second;
  lua_rawseti(L_, 1, slot);
  if (it == slots_.end()) slots_.emplace(std::string(key), slot);
  lua_settop(L_, 0);
  return {};
}

}  // namespace

Result<std::unique_ptr<ReducerEngine>> make_lua_engine(const std::string& name, const std::string& code,
                                                       const ProjectionLimits& limits) {
  auto e = std::make_unique<LuaEngine>(name, limits);
  CAIRN_RETURN_IF_ERROR(e->init(code));
  return std::unique_ptr<ReducerEngine>(std::move(e));
}

}  // namespace cairn::project
