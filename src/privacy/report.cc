#include "privacy/report.h"

#include <map>

#include <fmt/format.h>

#include "codec/event_json.h"
#include "base/file.h"
#include "privacy/keystore.h"

namespace cairn::privacy {
namespace {

using ojson = nlohmann::ordered_json;

constexpr std::string_view kForgottenType = "privacy.subject.forgotten";
constexpr std::string_view kPurgedType = "privacy.purge.completed";

ojson parse_or_null(std::string_view text) {
  ojson j = ojson::parse(text, nullptr, false);
  return j.is_discarded() ? ojson() : j;
}

// The event's JSON as the API shows it (for recorded_at).
std::string recorded_at(const RecordedEvent& e) {
  const ojson j = parse_or_null(codec::event_json(e));
  return j.is_object() ? j.value("recorded_at", "") : "";
}

}  // namespace

Result<ojson> subject_report(Store& store, std::string_view subject_id, const std::string& projections_dir,
                             const TypePredicate& is_ledger_type, size_t max_events) {
  if (!is_subject_id(subject_id))
    return Status::invalid_argument("subject: a keyed hash hs:<32 hex> (Store::subject_id) was expected");
  ojson report;
  report["subject"] = subject_id;

  // $privacy: the forget and the purges that name the subject.
  ojson forgotten;
  uint64_t forgotten_revision = 0;
  ojson purges = ojson::array();
  uint64_t privacy_events = 0;
  auto page = store.read_stream("$privacy", std::nullopt, Direction::kForward, 1u << 20);
  if (!page.ok() && page.status().code() != ErrorCode::kNotFound) return page.status();
  if (page.ok()) {
    privacy_events = page->events.size();
    for (const RecordedEvent& e : page->events) {
      const ojson d = parse_or_null(e.data);
      if (!d.is_object()) continue;
      const ojson meta = parse_or_null(e.metadata);
      if (e.type == kForgottenType && d.value("subject", "") == subject_id && forgotten.is_null()) {
        forgotten = {{"position", e.position}, {"recorded_at", recorded_at(e)}, {"reason", d.value("reason", "")},
                     {"keys_destroyed", d.value("keys_destroyed", 0)}, {"affected_events", d.value("affected_events", 0)}};
        if (meta.is_object() && meta.contains("actor")) forgotten["actor"] = meta["actor"];
        forgotten_revision = e.revision;
      } else if (e.type == kPurgedType && d.contains("subjects") && d["subjects"].is_array()) {
        bool names = false;
        for (const auto& s : d["subjects"]) names = names || (s.is_string() && s.get<std::string>() == subject_id);
        if (!names) continue;
        purges.push_back({{"position", e.position},
                          {"recorded_at", recorded_at(e)},
                          {"events", d.value("events", 0)},
                          {"parts", d.value("parts", 0)},
                          {"segments_rewritten", d.value("segments_rewritten", 0)},
                          {"verified_through", d.value("verified_through", 0)},
                          {"chain_head_before", d.value("chain_head_before", "")},
                          {"chain_head_after", d.value("chain_head_after", "")},
                          {"chain_unchanged", d.value("chain_head_before", "") == d.value("chain_head_after", "x")}});
      }
    }
  }
  report["forgotten"] = forgotten;
  const uint64_t forgot_at = forgotten.is_null() ? UINT64_MAX : forgotten["position"].get<uint64_t>();

  // Its events: the metadata of each names the subject by its keyed hash. The state of each comes from the
  // stored form: an envelope under the subject's key still there, or only purge markers.
  const std::string key_prefix = fmt::format(R"("k":"{}/)", subject_id);
  uint64_t count = 0, purged = 0, awaiting = 0, readable = 0;
  std::map<std::string, uint64_t> by_type, ledger;
  ojson list = ojson::array();
  CAIRN_RETURN_IF_ERROR(store.scan_stored(0, Filter{}, [&](const StoredEventView& v) {
    if (!v.sealed_parts || v.metadata.find(subject_id) == std::string_view::npos) return true;
    ++count;
    std::string state;
    if (v.position > forgot_at) {
      state = "readable";  // written after the forget, under the subject's next key
      ++readable;
    } else if (v.data.find(key_prefix) != std::string_view::npos) {
      state = forgotten.is_null() ? "readable" : "unreadable_awaiting_purge";
      ++(forgotten.is_null() ? readable : awaiting);
    } else {
      state = "purged";
      ++purged;
    }
    ++by_type[std::string(v.type)];
    if (is_ledger_type(v.type)) ++ledger[std::string(v.type)];
    if (list.size() < max_events)
      list.push_back({{"position", v.position}, {"stream", v.stream}, {"revision", v.revision}, {"id", v.id.to_string()},
                      {"type", v.type}, {"state", state}});
    return true;
  }));
  report["events"] = {{"count", count},         {"purged", purged},         {"unreadable_awaiting_purge", awaiting},
                      {"readable", readable},   {"by_type", by_type},       {"listed", list},
                      {"truncated", count > list.size()}};
  report["ai_ledger"] = {
      {"events_by_type", ledger},
      {"training_exports",
       forgotten.is_null()
           ? "the subject is not forgotten: its rows are exported as usual"
           : fmt::format("exports made from position {} on leave out every row holding a part of this subject (manifest "
                         "counts.redacted); training files exported before {} may still hold them and must be handled "
                         "where they are kept",
                         forgot_at, forgotten.value("recorded_at", "the forget"))}};

  // Projections: the runtime records in DIR/PRIVACY how many $privacy events every projection state reflects.
  if (!projections_dir.empty() && base::path_exists(projections_dir)) {
    uint64_t handled = 0;
    if (auto t = base::read_whole_file(projections_dir + "/PRIVACY"); t.ok()) handled = std::strtoull(t->c_str(), nullptr, 10);
    // Handled counts $privacy events in order: the forget is reflected once the count passes its revision.
    const bool rebuilt = !forgotten.is_null() && handled > forgotten_revision;
    report["projections"] = {{"privacy_events_handled", handled},
                             {"privacy_events", privacy_events},
                             {"rebuilt_without_the_subject", rebuilt},
                             {"note", "after a forget every projection that keeps event data is rebuilt from the log "
                                      "with the subject's parts redacted; the old states are deleted"}};
  } else {
    report["projections"] = nullptr;
  }

  // The proof: the log verifies now (digests and chain), and each purge verified the same head before and after.
  auto v = store.verify_chain();
  if (!v.ok()) return v.status();
  report["verification"] = {{"ok", v->ok}, {"events", v->events}, {"segments", v->segments}, {"chain_head", v->chain_head_hex}};
  if (!v->ok) report["verification"]["problem"] = fmt::format("{} offset {}: {}", v->file, v->offset, v->problem);
  report["purges"] = purges;
  return report;
}

ojson purge_result_json(const PurgeResult& r) {
  ojson out = {{"segments_scanned", r.segments_scanned}, {"segments_rewritten", r.segments_rewritten},
               {"events", r.events},                     {"parts", r.parts},
               {"bytes_scanned", r.bytes_scanned},       {"bytes_replaced", r.bytes_replaced},
               {"subjects", r.subjects},                 {"verified_through", r.verified_through},
               {"chain_head_before", r.chain_head_before}, {"chain_head_after", r.chain_head_after},
               {"seconds", r.seconds}};
  out["position"] = r.position ? ojson(*r.position) : ojson();
  return out;
}

}  // namespace cairn::privacy
