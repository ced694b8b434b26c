// Between Lua values and JSON text, for projection states and the events handed to Lua reducers.
//
// The canonical form is what checkpoints, queries and digests use, so equal states give equal bytes:
// object keys sorted by bytes, no whitespace, integers (|x| < 2^53) without a fraction, other numbers in
// their shortest round-trip form. A Lua table is a JSON array when its keys are exactly 1..n, an object
// when all its keys are strings, and an empty table is {}. JSON null is the light userdata `json.null`.
// Anything else (functions, NaN, mixed keys, non-UTF-8 strings, cycles) is an error naming its path.
// Thread safety: functions on one lua_State must be called from one thread at a time.
#pragma once

#include <string>
#include <string_view>

#include <lua.hpp>
#include <simdjson.h>

#include "cairn/status.h"

namespace cairn::project {

// Event tables handed to reducers make some fields on first use (see lua_engine.cc). Their metatable is
// registered under kEventMetatableKey; their payload hides under the light userdata &kEventPayloadKey.
// Serializing an event makes every lazy field first, so a kept event reads the same after a restore.
inline constexpr const char* kEventMetatableKey = "cairn.event";
inline constexpr const char* kEventLazyFields[] = {"id",       "time",      "time_ms",        "commit_position",
                                                   "category", "content_type", "payload_removed", "data",
                                                   "metadata", "data_text"};
extern char kEventPayloadKey;

// Appends the canonical JSON of the value at stack index idx to *out. path names the value in errors.
Status lua_to_json(lua_State* L, int idx, std::string_view path, std::string* out);

// Pushes the Lua value of a parsed JSON element (one value on success; nothing on error).
Status json_to_lua(lua_State* L, simdjson::dom::element e);

// Parses JSON text and pushes its Lua value.
Status push_json_text(lua_State* L, simdjson::dom::parser& parser, std::string_view text, std::string_view what);

// Appends a number in canonical form; false for NaN and infinities.
bool append_json_number(std::string* out, double d);

}  // namespace cairn::project
