#include "store/validate.h"

#include <simdjson.h>

#include <unordered_set>

#include <fmt/format.h>

namespace cairn::store {
namespace {

Status validate_name(std::string_view name, std::string_view what, std::string_view kind, bool allow_reserved) {
  if (name.empty()) return Status::invalid_argument(fmt::format("{}: {} must not be empty", what, kind));
  if (name.size() > 256)
    return Status::invalid_argument(fmt::format("{}: {} is {} bytes, the limit is 256", what, kind, name.size()));
  if (!simdjson::validate_utf8(name.data(), name.size()))
    return Status::invalid_argument(fmt::format("{}: {} is not valid UTF-8", what, kind));
  for (size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f)
      return Status::invalid_argument(
          fmt::format("{}: {} contains a control character (0x{:02x}) at byte {}", what, kind, c, i));
  }
  if (!allow_reserved && name[0] == '$')
    return Status::invalid_argument(
        fmt::format("{}: {} '{}' starts with '$', which is reserved for the store", what, kind, name));
  return {};
}

simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

// A parser keeps the capacity of the largest document it parsed. Small documents share one per thread;
// a large one gets its own, freed afterwards, so that many threads do not each keep megabytes.
constexpr size_t kSharedParserMax = 64 * 1024;

template <typename F>
auto with_parser(size_t size, F&& f) {
  if (size <= kSharedParserMax) return f(thread_parser());
  simdjson::dom::parser own;
  return f(own);
}

}  // namespace

Status validate_stream_name(std::string_view name, std::string_view what, bool allow_reserved) {
  return validate_name(name, what, "stream name", allow_reserved);
}

Status validate_event_type(std::string_view type, std::string_view what, bool allow_reserved) {
  return validate_name(type, what, "event type", allow_reserved);
}

Status validate_json(std::string_view data, std::string_view what) {
  return with_parser(data.size(), [&](simdjson::dom::parser& parser) -> Status {
    simdjson::dom::element doc;
    auto err = parser.parse(data.data(), data.size()).get(doc);
    if (err) return Status::invalid_argument(fmt::format("{}: not valid JSON: {}", what, simdjson::error_message(err)));
    return {};
  });
}

Status check_metadata(simdjson::dom::parser& parser, std::string_view metadata, std::string_view what);

Status validate_metadata(std::string_view metadata, std::string_view what) {
  if (metadata.empty()) return {};
  return with_parser(metadata.size(), [&](simdjson::dom::parser& parser) { return check_metadata(parser, metadata, what); });
}

Status check_metadata(simdjson::dom::parser& parser, std::string_view metadata, std::string_view what) {
  simdjson::dom::element doc;
  auto err = parser.parse(metadata.data(), metadata.size()).get(doc);
  if (err) return Status::invalid_argument(fmt::format("{}: not valid JSON: {}", what, simdjson::error_message(err)));
  simdjson::dom::object obj;
  if (doc.get(obj)) return Status::invalid_argument(fmt::format("{}: must be a JSON object", what));
  for (const char* key : {"correlation_id", "causation_id"}) {
    simdjson::dom::element v;
    if (obj.at_key(key).get(v) == simdjson::SUCCESS && !v.is_string())
      return Status::invalid_argument(fmt::format("{}.{}: must be a string", what, key));
  }
  simdjson::dom::element actor;
  if (obj.at_key("actor").get(actor) == simdjson::SUCCESS) {
    simdjson::dom::object a;
    if (actor.get(a)) return Status::invalid_argument(fmt::format("{}.actor: must be an object {{\"kind\", \"id\"}}", what));
    std::string_view kind;
    if (a.at_key("kind").get(kind))
      return Status::invalid_argument(fmt::format("{}.actor.kind: required, a string", what));
    if (kind != "human" && kind != "ai_agent" && kind != "system" && kind != "service")
      return Status::invalid_argument(fmt::format(
          "{}.actor.kind: '{}' is not one of human, ai_agent, system, service", what, kind.substr(0, 64)));
    simdjson::dom::element id;
    if (a.at_key("id").get(id) == simdjson::SUCCESS && !id.is_string())
      return Status::invalid_argument(fmt::format("{}.actor.id: must be a string", what));
  }
  return {};
}

Status validate_stream_append(const StreamAppend& a, const Limits& limits, std::string_view prefix,
                              uint64_t* bytes_out, bool allow_reserved) {
  CAIRN_RETURN_IF_ERROR(validate_stream_name(a.stream, fmt::format("{}stream", prefix), allow_reserved));
  if (a.events.empty()) return Status::invalid_argument(fmt::format("{}events: at least one event is required", prefix));
  if (a.events.size() > limits.max_events_per_append)
    return Status::limit_exceeded(fmt::format("{}events: {} events, the limit per append is {}", prefix,
                                              a.events.size(), limits.max_events_per_append));
  uint64_t total = 0;
  std::unordered_set<Uuid, UuidHash> ids;
  for (size_t i = 0; i < a.events.size(); ++i) {
    const EventData& e = a.events[i];
    const std::string what = fmt::format("{}events[{}]", prefix, i);
    CAIRN_RETURN_IF_ERROR(validate_event_type(e.type, what + ".type", allow_reserved));
    if (e.id) {
      if (e.id->is_nil()) return Status::invalid_argument(what + ".id: the nil UUID is not a valid event id");
      if (!ids.insert(*e.id).second)
        return Status::invalid_argument(
            fmt::format("{}.id: {} appears twice in the same append", what, e.id->to_string()));
    }
    const uint64_t size = e.type.size() + e.metadata.size() + e.data.size();
    if (size > limits.max_event_bytes)
      return Status::limit_exceeded(fmt::format("{}: the event is {} bytes (type + metadata + data), the limit is {}",
                                                what, size, limits.max_event_bytes));
    CAIRN_RETURN_IF_ERROR(validate_metadata(e.metadata, what + ".metadata"));
    if (e.content_type == ContentType::kJson) CAIRN_RETURN_IF_ERROR(validate_json(e.data, what + ".data"));
    total += size + a.stream.size();
  }
  *bytes_out = total;
  return {};
}

Status validate_import(const std::vector<ImportEvent>& events, const Limits& limits) {
  if (events.empty()) return Status::invalid_argument("events: an imported commit needs at least one event");
  if (events.size() > limits.max_events_per_append)
    return Status::limit_exceeded(fmt::format("events: {} events in one commit, the limit is {}", events.size(),
                                              limits.max_events_per_append));
  uint64_t total = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& e = events[i];
    const std::string what = fmt::format("events[{}]", i);
    CAIRN_RETURN_IF_ERROR(validate_stream_name(e.stream, what + ".stream", true));
    CAIRN_RETURN_IF_ERROR(validate_event_type(e.type, what + ".type", true));
    if (e.id.is_nil()) return Status::invalid_argument(what + ".id: the nil UUID is not a valid event id");
    const uint64_t size = e.type.size() + e.metadata.size() + e.data.size();
    if (size > limits.max_event_bytes)
      return Status::limit_exceeded(fmt::format("{}: the event is {} bytes, the limit is {}", what, size, limits.max_event_bytes));
    CAIRN_RETURN_IF_ERROR(validate_metadata(e.metadata, what + ".metadata"));
    if (e.content_type == ContentType::kJson) CAIRN_RETURN_IF_ERROR(validate_json(e.data, what + ".data"));
    total += size + e.stream.size();
  }
  if (total > limits.max_append_bytes)
    return Status::limit_exceeded(fmt::format("the commit is {} bytes, the limit is {}", total, limits.max_append_bytes));
  return {};
}

}  // namespace cairn::store
