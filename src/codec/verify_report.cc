#include "codec/verify_report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/text.h"
#include "codec/event_json.h"

namespace cairn::codec {

std::string verify_report_json(const VerifyReport& r) {
  std::string out = fmt::format(
      "{{\"ok\":{},\"segments\":{},\"commits\":{},\"events\":{},\"bytes\":{},\"streams\":{},\"removed_payloads\":{},"
      "\"torn_tail_bytes\":{},\"chain_head\":\"{}\"",
      r.ok, r.segments, r.commits, r.events, r.bytes, r.streams, r.removed_payloads, r.torn_tail_bytes, r.chain_head_hex);
  if (!r.ok) {
    out += ",\"file\":";
    base::append_json_string(out, r.file);
    out += fmt::format(",\"offset\":{}", r.offset);
    if (r.position) out += fmt::format(",\"position\":{}", *r.position);
    out += ",\"problem\":";
    base::append_json_string(out, r.problem);
  }
  out += "}";
  return out;
}

std::string verify_report_text(const VerifyReport& r) {
  std::string out;
  if (r.ok) {
    out += fmt::format("ok: {} segments, {} commits, {} events, {} streams, {} bytes\nchain head: {}\n", r.segments,
                       r.commits, r.events, r.streams, r.bytes, r.chain_head_hex);
    if (r.removed_payloads)
      out += fmt::format("payloads removed by purge: {} (their digests and the chain verified)\n", r.removed_payloads);
    if (r.torn_tail_bytes)
      out += fmt::format("note: {} bytes of an unacknowledged, incomplete commit at the end; the next open cuts them\n",
                         r.torn_tail_bytes);
    return out;
  }
  out += fmt::format("BROKEN: {} offset {}{}: {}\n", r.file, r.offset,
                     r.position ? fmt::format(" (position {})", *r.position) : "", r.problem);
  out += fmt::format("verified before it: {} commits, {} events; chain head there: {}\n", r.commits, r.events,
                     r.chain_head_hex);
  return out;
}

Result<VerifyReport> verify_report_from_json(std::string_view text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return Status::invalid_argument("verify report: not a JSON object");
  VerifyReport r;
  auto need_uint = [&](const char* name, uint64_t* out) -> Status {
    if (!j.contains(name) || !j[name].is_number_unsigned())
      return Status::invalid_argument(fmt::format("verify report: '{}' is missing or not a non-negative integer", name));
    *out = j[name].get<uint64_t>();
    return {};
  };
  if (!j.contains("ok") || !j["ok"].is_boolean()) return Status::invalid_argument("verify report: 'ok' is missing or not a boolean");
  r.ok = j["ok"].get<bool>();
  CAIRN_RETURN_IF_ERROR(need_uint("segments", &r.segments));
  CAIRN_RETURN_IF_ERROR(need_uint("commits", &r.commits));
  CAIRN_RETURN_IF_ERROR(need_uint("events", &r.events));
  CAIRN_RETURN_IF_ERROR(need_uint("bytes", &r.bytes));
  CAIRN_RETURN_IF_ERROR(need_uint("streams", &r.streams));
  CAIRN_RETURN_IF_ERROR(need_uint("removed_payloads", &r.removed_payloads));
  CAIRN_RETURN_IF_ERROR(need_uint("torn_tail_bytes", &r.torn_tail_bytes));
  if (!j.contains("chain_head") || !j["chain_head"].is_string())
    return Status::invalid_argument("verify report: 'chain_head' is missing or not a string");
  r.chain_head_hex = j["chain_head"].get<std::string>();
  if (!r.ok) {
    r.file = j.value("file", "");
    r.problem = j.value("problem", "");
    r.offset = j.value("offset", uint64_t{0});
    if (j.contains("position") && j["position"].is_number_unsigned()) r.position = j["position"].get<uint64_t>();
  }
  return r;
}

}  // namespace cairn::codec
