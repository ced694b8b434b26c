#include "cli/ndjson.h"

#include <simdjson.h>

#include <fmt/format.h>

#include "base/text.h"
#include "log/sha256.h"

namespace cairn::cli {

using base::base64_decode;

namespace {

simdjson::ondemand::parser& parser() {
  thread_local simdjson::ondemand::parser p;
  return p;
}

Status line_error(size_t line_no, std::string_view field, std::string_view what) {
  return Status::invalid_argument(fmt::format("line {}: {}: {}", line_no, field, what));
}

// Reads a field that may be embedded JSON (name), a JSON-in-a-string (name_text) or base64 (name_base64).
Status read_payload(simdjson::ondemand::object& obj, std::string_view name, size_t line_no, std::string* out,
                    bool* present) {
  *present = false;
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return line_error(line_no, name, "unreadable key");
    if (key == name) {
      std::string_view raw;
      simdjson::ondemand::value value;
      simdjson::ondemand::json_type type;
      if (field.value().get(value) || value.type().get(type)) return line_error(line_no, name, "not valid JSON");
      simdjson::error_code err = simdjson::SUCCESS;
      if (type == simdjson::ondemand::json_type::object) {
        simdjson::ondemand::object o;
        err = value.get_object().get(o);
        if (!err) err = o.raw_json().get(raw);
      } else if (type == simdjson::ondemand::json_type::array) {
        simdjson::ondemand::array a;
        err = value.get_array().get(a);
        if (!err) err = a.raw_json().get(raw);
      } else {
        return line_error(line_no, name, "must be an object or array (use a _text field for other JSON values)");
      }
      if (err) return line_error(line_no, name, "not valid JSON");
      // raw_json() keeps trailing whitespace before the next token; the stored bytes had none.
      while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\t' || raw.back() == '\r'))
        raw.remove_suffix(1);
      *out = std::string(raw);
      *present = true;
    } else if (key.size() == name.size() + 5 && key.starts_with(name) && key.ends_with("_text")) {
      std::string_view s;
      if (field.value().get_string().get(s)) return line_error(line_no, key, "must be a string");
      *out = std::string(s);
      *present = true;
    } else if (key.size() == name.size() + 7 && key.starts_with(name) && key.ends_with("_base64")) {
      std::string_view s;
      if (field.value().get_string().get(s)) return line_error(line_no, key, "must be a string");
      auto d = base64_decode(s);
      if (!d.ok()) return line_error(line_no, key, d.status().message());
      *out = std::move(*d);
      *present = true;
    }
  }
  obj.reset();
  return {};
}

// Parses one line as a JSON object; `padded` and `doc` must outlive `obj`.
Status open_object(simdjson::padded_string& padded, size_t line_no, simdjson::ondemand::document& doc,
                   simdjson::ondemand::object& obj) {
  if (parser().iterate(padded).get(doc)) return line_error(line_no, "line", "not valid JSON");
  if (doc.get_object().get(obj)) return line_error(line_no, "line", "must be a JSON object");
  return {};
}

}  // namespace

Result<ExportLine> parse_export_line(std::string_view line, size_t line_no) {
  simdjson::padded_string padded(line);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  CAIRN_RETURN_IF_ERROR(open_object(padded, line_no, doc, obj));
  ExportLine r;
  ImportEvent& e = r.event;
  std::string_view s;
  uint64_t u = 0;
  int64_t i = 0;
  if (obj["position"].get_uint64().get(u)) return line_error(line_no, "position", "required, a number");
  r.position = u;
  if (obj["commit_position"].get_uint64().get(u)) return line_error(line_no, "commit_position", "required, a number");
  r.commit_position = u;
  if (obj["stream"].get_string().get(s)) return line_error(line_no, "stream", "required, a string");
  e.stream = std::string(s);
  if (obj["revision"].get_uint64().get(u)) return line_error(line_no, "revision", "required, a number");
  e.revision = u;
  if (obj["id"].get_string().get(s)) return line_error(line_no, "id", "required, a string");
  auto id = Uuid::parse(s);
  if (!id.ok()) return line_error(line_no, "id", id.status().message());
  e.id = *id;
  if (obj["type"].get_string().get(s)) return line_error(line_no, "type", "required, a string");
  e.type = std::string(s);
  if (obj["recorded_ns"].get_int64().get(i)) return line_error(line_no, "recorded_ns", "required, a number");
  e.recorded_ns = i;
  if (obj["content_type"].get_string().get(s)) return line_error(line_no, "content_type", "required, a string");
  auto ct = parse_content_type(s);
  if (!ct.ok()) return line_error(line_no, "content_type", ct.status().message());
  e.content_type = *ct;
  bool removed = false;
  if (obj["payload_removed"].get_bool().get(removed) == simdjson::SUCCESS && removed)
    return line_error(line_no, "payload_removed",
                      "this event's payload was purged; an export holding it cannot be imported");
  obj.reset();
  bool present = false;
  CAIRN_RETURN_IF_ERROR(read_payload(obj, "metadata", line_no, &e.metadata, &present));
  CAIRN_RETURN_IF_ERROR(read_payload(obj, "data", line_no, &e.data, &present));
  if (!present) return line_error(line_no, "data", "required (data, data_text or data_base64)");
  if (obj["digest_salt"].get_string().get(s) || s.size() != 32)
    return line_error(line_no, "digest_salt", "required, 32 hex digits");
  for (size_t k = 0; k < 16; ++k) {
    auto hexv = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    const int hi = hexv(s[2 * k]), lo = hexv(s[2 * k + 1]);
    if (hi < 0 || lo < 0) return line_error(line_no, "digest_salt", "must be lowercase hex");
    e.digest_salt[k] = static_cast<uint8_t>(hi * 16 + lo);
  }
  bool sealed = false;
  if (obj["sealed_parts"].get_bool().get(sealed) == simdjson::SUCCESS) e.sealed_parts = sealed;
  return r;
}

Result<EventData> parse_event_line(std::string_view line, size_t line_no) {
  simdjson::padded_string padded(line);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  CAIRN_RETURN_IF_ERROR(open_object(padded, line_no, doc, obj));
  EventData e;
  std::string_view s;
  if (obj["type"].get_string().get(s)) return line_error(line_no, "type", "required, a string");
  e.type = std::string(s);
  if (obj["id"].get_string().get(s) == simdjson::SUCCESS) {
    auto id = Uuid::parse(s);
    if (!id.ok()) return line_error(line_no, "id", id.status().message());
    e.id = *id;
  }
  obj.reset();
  if (obj["content_type"].get_string().get(s) == simdjson::SUCCESS) {
    auto ct = parse_content_type(s);
    if (!ct.ok()) return line_error(line_no, "content_type", ct.status().message());
    e.content_type = *ct;
  }
  obj.reset();
  bool present = false;
  CAIRN_RETURN_IF_ERROR(read_payload(obj, "metadata", line_no, &e.metadata, &present));
  CAIRN_RETURN_IF_ERROR(read_payload(obj, "data", line_no, &e.data, &present));
  if (!present) return line_error(line_no, "data", "required (data, data_text or data_base64)");
  return e;
}

}  // namespace cairn::cli
