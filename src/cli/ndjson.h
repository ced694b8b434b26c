// Parsing the CLI's NDJSON inputs: export lines (for import) and event lines (for append --events).
// The event representation itself (what --json prints and export writes) is codec/event_json.h.
#pragma once

#include <string>
#include <string_view>

#include "cairn/store.h"
#include "base/text.h"
#include "codec/event_json.h"

namespace cairn::cli {

using base::append_json_string;
using codec::event_json;

struct ExportLine {
  ImportEvent event;
  uint64_t position = 0;
  uint64_t commit_position = 0;
};
// Parses one export line; errors name the line number and the field.
Result<ExportLine> parse_export_line(std::string_view line, size_t line_no);

// An event to append, from a line {"type", "data", "metadata"?, "id"?, "content_type"?}.
Result<EventData> parse_event_line(std::string_view line, size_t line_no);

}  // namespace cairn::cli
