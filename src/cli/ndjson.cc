#include "cli/ndjson.h"

#include <openssl/evp.h>
#include <simdjson.h>

#include <fmt/format.h>

#include "log/sha256.h"

namespace cairn::cli {

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return Status::invalid_argument("not base64 (length is not a multiple of 4)");
  std::string out(3 * text.size() / 4, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return Status::invalid_argument("not base64");
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

namespace {

bool embeddable(std::string_view json) {
  // Objects and arrays embed byte for byte (a parser's raw view returns exactly these bytes);
  // anything with surrounding whitespace or a scalar goes into a *_text string instead.
  if (json.size() < 2) return false;
  const char a = json.front(), b = json.back();
  return (a == '{' && b == '}') || (a == '[' && b == ']');
}

void put_json_field(std::string& out, std::string_view name, std::string_view json, bool is_json) {
  out += ",\"";
  out += name;
  if (!is_json) {
    out += "_base64\":\"";
    out += base64_encode(json);
    out += "\"";
  } else if (embeddable(json)) {
    out += "\":";
    out += json;
  } else {
    out += "_text\":";
    append_json_string(out, json);
  }
}

}  // namespace

std::string event_json(const EventView& e, bool for_export) {
  std::string out;
  out.reserve(256 + e.data.size() + e.metadata.size());
  out += fmt::format("{{\"position\":{}", e.position);
  if (for_export) out += fmt::format(",\"commit_position\":{}", e.commit_position);
  out += ",\"stream\":";
  append_json_string(out, e.stream);
  out += fmt::format(",\"revision\":{},\"id\":\"{}\",\"type\":", e.revision, e.id.to_string());
  append_json_string(out, e.type);
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
  if (for_export)
    out += fmt::format(",\"digest_salt\":\"{}\"",
                       log::hex(reinterpret_cast<const uint8_t*>(e.digest_salt.data()), e.digest_salt.size()));
  out += "}";
  return out;
}

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

}  // namespace

Result<ExportLine> parse_export_line(std::string_view line, size_t line_no) {
  simdjson::padded_string padded(line);
  simdjson::ondemand::document doc;
  if (parser().iterate(padded).get(doc)) return line_error(line_no, "line", "not valid JSON");
  simdjson::ondemand::object obj;
  if (doc.get_object().get(obj)) return line_error(line_no, "line", "must be a JSON object");
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
  return r;
}

Result<EventData> parse_event_line(std::string_view line, size_t line_no) {
  simdjson::padded_string padded(line);
  simdjson::ondemand::document doc;
  if (parser().iterate(padded).get(doc)) return line_error(line_no, "line", "not valid JSON");
  simdjson::ondemand::object obj;
  if (doc.get_object().get(obj)) return line_error(line_no, "line", "must be a JSON object");
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
