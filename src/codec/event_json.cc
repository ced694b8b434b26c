#include "codec/event_json.h"

#include <openssl/evp.h>

#include <fmt/format.h>

#include "base/text.h"
#include "log/sha256.h"

namespace cairn::codec {

namespace {

bool embeddable(std::string_view json) {
  // Objects and arrays embed byte for byte (a parser's raw view returns exactly these bytes);
  // anything with surrounding whitespace or a scalar goes into a *_text string instead, and so does
  // text with a line break: one event must stay one line (NDJSON, export) and one SSE data: field.
  if (json.size() < 2) return false;
  if (json.find_first_of("\n\r") != std::string_view::npos) return false;
  const char a = json.front(), b = json.back();
  return (a == '{' && b == '}') || (a == '[' && b == ']');
}

void put_json_field(std::string& out, std::string_view name, std::string_view json, bool is_json) {
  out += ",\"";
  out += name;
  if (!is_json) {
    out += "_base64\":\"";
    out += base::base64_encode(json);
    out += "\"";
  } else if (embeddable(json)) {
    out += "\":";
    out += json;
  } else {
    out += "_text\":";
    base::append_json_string(out, json);
  }
}

// exported: the same event as stored, for an export line; null for the client's form.
std::string render(const EventView& e, const StoredEventView* exported) {
  const bool for_export = exported != nullptr;
  std::string out;
  out.reserve(256 + e.data.size() + e.metadata.size());
  out += fmt::format("{{\"position\":{}", e.position);
  if (for_export) out += fmt::format(",\"commit_position\":{}", e.commit_position);
  out += ",\"stream\":";
  base::append_json_string(out, e.stream);
  out += fmt::format(",\"revision\":{},\"id\":\"{}\",\"type\":", e.revision, e.id.to_string());
  base::append_json_string(out, e.type);
  out += fmt::format(",\"recorded_at\":\"{}\"", format_rfc3339_ns(e.recorded_ns));
  if (for_export) out += fmt::format(",\"recorded_ns\":{}", e.recorded_ns);
  out += fmt::format(",\"content_type\":\"{}\"", content_type_name(e.content_type));
  if (e.payload_removed) {
    out += ",\"payload_removed\":true}";
    return out;
  }
  if (e.metadata.empty()) {
    if (!for_export) out += ",\"metadata\":{}";
  } else {
    put_json_field(out, "metadata", e.metadata, true);
  }
  put_json_field(out, "data", e.data, e.content_type == ContentType::kJson);
  if (for_export && e.sealed_parts) out += ",\"sealed_parts\":true";
  if (for_export)
    out += fmt::format(",\"digest_salt\":\"{}\"", log::hex(reinterpret_cast<const uint8_t*>(exported->digest_salt.data()),
                                                           exported->digest_salt.size()));
  out += "}";
  return out;
}

}  // namespace

std::string event_json(const EventView& e) { return render(e, nullptr); }
std::string export_json(const StoredEventView& e) { return render(e, &e); }
std::string event_json(const RecordedEvent& r) { return render(r.view(), nullptr); }

}  // namespace cairn::codec
