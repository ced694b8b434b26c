// Input validation for appends: names, JSON, metadata conventions and limits. Runs in the caller's thread,
// before anything reaches the writer, so bad input never costs the log anything.
// Every error names the field: "events[2].data: invalid JSON at byte 17: ...". Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "cairn/store.h"

namespace cairn::store {

// `what` is how the error names the field, e.g. "stream" or "appends[1].stream".
Status validate_stream_name(std::string_view name, std::string_view what, bool allow_reserved);
Status validate_event_type(std::string_view type, std::string_view what, bool allow_reserved);
// Checks metadata is a JSON object and that the conventional keys have the right shapes
// (correlation_id and causation_id strings; actor an object with kind in human|ai_agent|system|service and
// a string id).
Status validate_metadata(std::string_view metadata, std::string_view what);
Status validate_json(std::string_view data, std::string_view what);
// One stream append: the name, every event, the limits. `prefix` names it in errors ("" or "appends[i].").
// allow_reserved admits '$' stream names and event types (Cairn's own appends only).
Status validate_stream_append(const StreamAppend& a, const Limits& limits, std::string_view prefix,
                              uint64_t* bytes_out, bool allow_reserved = false);

// One imported commit (Store::import_commit): at least one event, names, types, ids, JSON and the limits.
Status validate_import(const std::vector<ImportEvent>& events, const Limits& limits);

}  // namespace cairn::store
