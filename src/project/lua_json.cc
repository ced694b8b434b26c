#include "project/lua_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "base/text.h"
#include "codec/event_json.h"

namespace cairn::project {

char kEventPayloadKey;

namespace {

int materialize_event(lua_State* L) {
  for (const char* f : kEventLazyFields) {
    lua_getfield(L, 1, f);
    lua_pop(L, 1);
  }
  return 0;
}

bool is_event(lua_State* L, int t) {
  if (!lua_getmetatable(L, t)) return false;
  lua_getfield(L, LUA_REGISTRYINDEX, kEventMetatableKey);
  const bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

bool is_payload_key(lua_State* L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &kEventPayloadKey;
}

constexpr int kMaxDepth = 100;

std::string key_path(std::string_view path, std::string_view key) {
  for (char c : key)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) {
      std::string quoted;
      base::append_json_string(quoted, key);
      return fmt::format("{}[{}]", path, quoted);
    }
  return fmt::format("{}.{}", path, key);
}

// Tables met so far in one serialization, with where: a state is a tree, and a table met twice would be
// saved twice and restored as two tables (changes through one would stop showing through the other).
using Seen = std::unordered_map<const void*, std::string>;

Status to_json(lua_State* L, int idx, std::string& path, std::string* out, int depth, Seen& seen) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      out->append("null");
      return {};
    case LUA_TBOOLEAN:
      out->append(lua_toboolean(L, idx) ? "true" : "false");
      return {};
    case LUA_TNUMBER:
      if (!append_json_number(out, lua_tonumber(L, idx)))
        return Status::invalid_argument(fmt::format("{}: NaN and infinity cannot be stored in JSON", path));
      return {};
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, idx, &n);
      if (!simdjson::validate_utf8(s, n))
        return Status::invalid_argument(fmt::format("{}: the string is not UTF-8 text", path));
      base::append_json_string(*out, std::string_view(s, n));
      return {};
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == nullptr) {
        out->append("null");
        return {};
      }
      break;
    case LUA_TTABLE: {
      if (depth >= kMaxDepth)
        return Status::invalid_argument(fmt::format("{}: nested deeper than {} levels (does the state contain a cycle?)", path, kMaxDepth));
      if (!lua_checkstack(L, 4)) return Status::limit_exceeded(fmt::format("{}: out of Lua stack", path));
      const int t = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
      if (auto [it, fresh] = seen.emplace(lua_topointer(L, t), path); !fresh)
        return Status::invalid_argument(fmt::format(
            "{}: the same table as {} (a state must be a tree: a table in two places would come back from a "
            "checkpoint as two tables; copy it)",
            path, it->second));
      if (is_event(L, t)) {
        lua_pushcfunction(L, materialize_event);
        lua_pushvalue(L, t);
        if (lua_pcall(L, 1, 0, 0) != 0) {
          std::string m = lua_tostring(L, -1) ? lua_tostring(L, -1) : "?";
          lua_pop(L, 1);
          return Status::invalid_argument(fmt::format("{}: an event kept in the state cannot be read: {}", path, m));
        }
      }
      size_t count = 0;
      bool all_int = true, all_str = true;
      double max_int = 0;
      lua_pushnil(L);
      while (lua_next(L, t) != 0) {
        if (is_payload_key(L, -2)) {
          lua_pop(L, 1);
          continue;
        }
        ++count;
        if (lua_type(L, -2) == LUA_TNUMBER) {
          all_str = false;
          const double k = lua_tonumber(L, -2);
          if (k < 1 || k != std::floor(k)) all_int = false;
          else max_int = std::max(max_int, k);
        } else if (lua_type(L, -2) == LUA_TSTRING) {
          all_int = false;
        } else {
          const char* type = lua_typename(L, lua_type(L, -2));
          lua_pop(L, 2);
          return Status::invalid_argument(fmt::format("{}: a table key of type {} cannot be stored in JSON", path, type));
        }
        lua_pop(L, 1);
      }
      if (count == 0) {
        out->append("{}");
        return {};
      }
      const size_t base = path.size();
      if (all_int && static_cast<double>(count) == max_int) {
        out->push_back('[');
        for (size_t i = 1; i <= count; ++i) {
          if (i > 1) out->push_back(',');
          lua_rawgeti(L, t, static_cast<int>(i));
          path.append(fmt::format("[{}]", i));
          Status st = to_json(L, -1, path, out, depth + 1, seen);
          path.resize(base);
          lua_pop(L, 1);
          if (!st.ok()) return st;
        }
        out->push_back(']');
        return {};
      }
      if (!all_str)
        return Status::invalid_argument(fmt::format(
            "{}: a table with number keys that are not exactly 1..n, or with both number and string keys, cannot be "
            "stored in JSON",
            path));
      std::vector<std::string> keys;
      keys.reserve(count);
      lua_pushnil(L);
      while (lua_next(L, t) != 0) {
        if (is_payload_key(L, -2)) {
          lua_pop(L, 1);
          continue;
        }
        size_t n = 0;
        const char* s = lua_tolstring(L, -2, &n);  // a string key: no conversion happens
        keys.emplace_back(s, n);
        lua_pop(L, 1);
      }
      std::sort(keys.begin(), keys.end());
      out->push_back('{');
      bool first = true;
      for (const auto& k : keys) {
        if (!simdjson::validate_utf8(k.data(), k.size()))
          return Status::invalid_argument(fmt::format("{}: a key is not UTF-8 text", path));
        if (!first) out->push_back(',');
        first = false;
        base::append_json_string(*out, k);
        out->push_back(':');
        lua_pushlstring(L, k.data(), k.size());
        lua_rawget(L, t);
        path = key_path(path.substr(0, base), k);
        Status st = to_json(L, -1, path, out, depth + 1, seen);
        path.resize(base);
        lua_pop(L, 1);
        if (!st.ok()) return st;
      }
      out->push_back('}');
      return {};
    }
    default:
      break;
  }
  return Status::invalid_argument(
      fmt::format("{}: a {} cannot be stored in JSON", path, lua_typename(L, lua_type(L, idx))));
}

}  // namespace

bool append_json_number(std::string* out, double d) {
  if (!std::isfinite(d)) return false;
  char buf[40];
  if (d == std::floor(d) && std::fabs(d) < 9007199254740992.0) {
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(d));
    out->append(buf, r.ptr);
  } else {
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    out->append(buf, r.ptr);
  }
  return true;
}

Status lua_to_json(lua_State* L, int idx, std::string_view path, std::string* out) {
  std::string p(path);
  Seen seen;
  return to_json(L, idx, p, out, 0, seen);
}

Status json_to_lua(lua_State* L, simdjson::dom::element e) {
  if (!lua_checkstack(L, 4)) return Status::limit_exceeded("JSON nested too deeply for the Lua stack");
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT: {
      simdjson::dom::object o = e.get_object().value_unsafe();
      lua_createtable(L, 0, static_cast<int>(std::min<size_t>(o.size(), 1 << 16)));
      for (auto field : o) {
        lua_pushlstring(L, field.key.data(), field.key.size());
        Status st = json_to_lua(L, field.value);
        if (!st.ok()) {
          lua_pop(L, 2);
          return st;
        }
        lua_rawset(L, -3);
      }
      return {};
    }
    case simdjson::dom::element_type::ARRAY: {
      simdjson::dom::array a = e.get_array().value_unsafe();
      lua_createtable(L, static_cast<int>(std::min<size_t>(a.size(), 1 << 16)), 0);
      int i = 1;
      for (auto v : a) {
        Status st = json_to_lua(L, v);
        if (!st.ok()) {
          lua_pop(L, 1);
          return st;
        }
        lua_rawseti(L, -2, i++);
      }
      return {};
    }
    case simdjson::dom::element_type::STRING: {
      std::string_view s = e.get_string().value_unsafe();
      lua_pushlstring(L, s.data(), s.size());
      return {};
    }
    case simdjson::dom::element_type::INT64:
      lua_pushnumber(L, static_cast<double>(e.get_int64().value_unsafe()));
      return {};
    case simdjson::dom::element_type::UINT64:
      lua_pushnumber(L, static_cast<double>(e.get_uint64().value_unsafe()));
      return {};
    case simdjson::dom::element_type::DOUBLE:
      lua_pushnumber(L, e.get_double().value_unsafe());
      return {};
    case simdjson::dom::element_type::BOOL:
      lua_pushboolean(L, e.get_bool().value_unsafe());
      return {};
    case simdjson::dom::element_type::NULL_VALUE:
      lua_pushlightuserdata(L, nullptr);
      return {};
  }
  return Status::invalid_argument("unknown JSON element");
}

Status push_json_text(lua_State* L, simdjson::dom::parser& parser, std::string_view text, std::string_view what) {
  simdjson::dom::element root;
  auto err = parser.parse(text.data(), text.size(), true).get(root);
  if (err) return Status::invalid_argument(fmt::format("{}: invalid JSON: {}", what, simdjson::error_message(err)));
  return json_to_lua(L, root);
}

}  // namespace cairn::project
