// The JSON representation of events, shared by the CLI (--json, export) and the HTTP API.
//
// {"position", "stream", "revision", "id", "type", "recorded_at" (RFC 3339, ns), "content_type",
//  "metadata", "data"}: JSON data and metadata are embedded byte for byte as stored when they are an
// object or array; other JSON values go in "data_text" / "metadata_text" strings; binary data is
// "data_base64". Export lines add commit_position, recorded_ns and digest_salt so that an import can
// reproduce the chain exactly. Stateless and thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "cairn/event.h"
#include "cairn/status.h"

namespace cairn::codec {

// One object (no newline) for an event.
std::string event_json(const EventView& e);
// One export line (no newline) for an event as stored (Store::scan_stored): adds commit_position,
// recorded_ns, digest_salt and (for events whose personal parts the store sealed) "sealed_parts":true.
std::string export_json(const StoredEventView& e);
// The same for an owned event.
std::string event_json(const RecordedEvent& e);

}  // namespace cairn::codec
