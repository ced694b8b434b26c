#include "privacy/forget.h"

#include <fmt/format.h>
#include <simdjson.h>

#include "base/reserved_appends.h"
#include "base/text.h"
#include "codec/event_json.h"
#include "store/validate.h"

namespace cairn::privacy {

Result<uint64_t> record_privacy_event(Store& store, std::string_view type, std::string data, std::string_view actor_json) {
  EventData e;
  e.type = std::string(type);
  e.data = std::move(data);
  if (!actor_json.empty()) e.metadata = fmt::format(R"({{"actor":{}}})", actor_json);
  auto reserved = base::reserved_appends(store);
  if (!reserved.ok()) return reserved.status();
  auto r = (*reserved)->append_reserved(StreamAppend{std::string(kPrivacyStream), ExpectedRevision::any(), {std::move(e)}});
  if (!r.ok()) return r.status();
  return r->streams[0].first_position;
}

Result<ForgetResult> forget_subject(Store& store, KeyStore& keys, std::string_view subject, std::string_view reason,
                                    std::string_view actor_json) {
  if (subject.empty() || subject.size() > 256) return Status::invalid_argument("subject: required, 1 to 256 bytes");
  if (reason.empty() || reason.size() > 4096) return Status::invalid_argument("reason: required, 1 to 4096 bytes");
  if (!actor_json.empty())
    CAIRN_RETURN_IF_ERROR(store::validate_metadata(fmt::format(R"({{"actor":{}}})", actor_json), "body"));
  ForgetResult out;
  out.subject_id = keys.subject_id(subject);
  // One pass: the events holding its parts (their metadata names its keyed hash) and the earlier record of
  // this subject's forget, if any.
  std::optional<RecordedEvent> earlier;
  CAIRN_RETURN_IF_ERROR(store.scan_stored(0, Filter{}, [&](const StoredEventView& v) {
    if (v.sealed_parts && v.metadata.find(out.subject_id) != std::string_view::npos) ++out.affected_events;
    if (v.stream == kPrivacyStream && v.type == kForgottenType && v.data.find(out.subject_id) != std::string_view::npos)
      earlier = v.to_owned();
    return true;
  }));
  auto destroyed = keys.destroy(out.subject_id);
  if (!destroyed.ok()) return destroyed.status();
  out.keys_destroyed = *destroyed;
  if (out.keys_destroyed == 0) {
    if (earlier) {
      simdjson::dom::parser p;
      simdjson::dom::element d;
      uint64_t n = 0;
      if (p.parse(earlier->data).get(d) == simdjson::SUCCESS && d["affected_events"].get(n) == simdjson::SUCCESS)
        out.affected_events = n;
      out.position = earlier->position;
      out.already = true;
      return out;
    }
    if (!keys.forgotten(out.subject_id))
      return Status::not_found(fmt::format("subject: no personal data of this subject is stored here ({})", out.subject_id));
    // Forgotten, but the record of it is missing (a crash between the two steps): record it now.
  }
  // The key is gone; now the record. It names the subject only by its keyed hash.
  std::string data = fmt::format(R"({{"subject":"{}","keys_destroyed":{},"affected_events":{},"reason":)", out.subject_id,
                                 out.keys_destroyed, out.affected_events);
  base::append_json_string(data, reason);
  data += "}";
  auto r = record_privacy_event(store, kForgottenType, std::move(data), actor_json);
  if (!r.ok())
    return Status(r.status().code(), fmt::format("the subject's keys are destroyed, but recording it failed ({}); forget "
                                                 "again to record it", r.status().message()));
  out.position = *r;
  return out;
}

}  // namespace cairn::privacy
