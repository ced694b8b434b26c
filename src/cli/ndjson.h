// JSON text for events: the one-line representation the CLI prints with --json and that export/import use.
// Field names follow the HTTP API (snake_case). Export lines add what an import needs to reproduce the
// chain exactly: commit_position, recorded_ns and digest_salt. JSON data and metadata are embedded as they
// were stored (byte for byte) when they are an object or array; other JSON values go in *_text fields.
#pragma once

#include <string>
#include <string_view>

#include "cairn/store.h"

namespace cairn::cli {

void append_json_string(std::string& out, std::string_view s);
std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

// One line (no newline) for an event. With for_export, adds commit_position, recorded_ns and digest_salt.
std::string event_json(const EventView& e, bool for_export);

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
