// The Lua reducer engine: a LuaJIT state in a sandbox that makes reducers pure.
//
// The sandbox: only base functions without I/O or loading (no io, os, require, load, loadstring, dofile,
// string.dump, debug, jit, ffi, collectgarbage, coroutine), math without random, string, table, bit and a
// `json` table (null, encode, decode). Source only, never bytecode. Globals and library tables are
// read-only once the code has loaded, and functions may not assign upvalues, so state cannot hide outside
// the state argument. Each event may run at most limits.instructions_per_event VM instructions and the
// whole Lua heap is capped at limits.memory_bytes; crossing either faults the event. The JIT compiler is
// off because compiled loops do not check the instruction hook; the interpreter is fast enough.
//
// The code returns a reducer function, or a table {reduce = f, init = g}, or defines globals reduce (and
// init). reduce(state, event) returns the new state (nil: keep the state it was given, changed in place).
// init() gives a new partition's first state (default: an empty table).
// Thread safety: one thread at a time.
#pragma once

#include <memory>
#include <string>

#include "cairn/projection.h"

namespace cairn::project {

// Compiles and checks code; an error names the line and what is wrong.
Result<std::unique_ptr<ReducerEngine>> make_lua_engine(const std::string& name, const std::string& code,
                                                       const ProjectionLimits& limits);

}  // namespace cairn::project
