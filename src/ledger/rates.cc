// ledger_rates (include/cairn/ledger.h): the slices of $ai.decisions summed by the requested dimensions.
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cairn/ledger.h"
#include "ledger/ai_projections.h"

namespace cairn {
namespace {

using json = nlohmann::json;
constexpr const char* kDimensions[] = {"model", "prompt_version", "skill", "day"};

struct Sum {
  uint64_t proposals = 0, accepted = 0, edited = 0, rejected = 0, expired = 0;
  uint64_t distance_ppm_sum = 0, distance_count = 0;
  int64_t decision_ms_sum = 0;
  uint64_t decision_ms_count = 0;
};

Status check_day(const std::optional<std::string>& day, const char* what) {
  if (!day) return {};
  if (day->size() != 10 || !parse_rfc3339_ns(*day + "T00:00:00Z").ok())
    return Status::invalid_argument(fmt::format("{}: '{}' is not a day (YYYY-MM-DD)", what, day->substr(0, 64)));
  return {};
}

json row_json(const Sum& s) {
  const uint64_t decided = s.accepted + s.edited + s.rejected + s.expired;
  auto share = [&](uint64_t n) { return decided == 0 ? json(nullptr) : json(static_cast<double>(n) / decided); };
  json j;
  j["proposals"] = s.proposals;
  j["decided"] = decided;
  j["accepted"] = s.accepted;
  j["edited"] = s.edited;
  j["rejected"] = s.rejected;
  j["expired"] = s.expired;
  j["acceptance_rate"] = share(s.accepted);
  j["edit_rate"] = share(s.edited);
  j["rejection_rate"] = share(s.rejected);
  j["expiry_rate"] = share(s.expired);
  j["mean_normalized_edit_distance"] =
      s.distance_count == 0 ? json(nullptr) : json(static_cast<double>(s.distance_ppm_sum) / 1e6 / s.distance_count);
  j["mean_time_to_decision_ms"] =
      s.decision_ms_count == 0 ? json(nullptr) : json(static_cast<double>(s.decision_ms_sum) / s.decision_ms_count);
  return j;
}

}  // namespace

Result<std::string> ledger_rates(Projections& projections, const RatesQuery& q) {
  std::vector<int> dims;  // indexes into kDimensions, in the order asked
  for (const auto& b : q.by) {
    int found = -1;
    for (int i = 0; i < 4; ++i)
      if (b == kDimensions[i]) found = i;
    if (found < 0)
      return Status::invalid_argument(fmt::format("by: '{}' is not one of model, prompt_version, skill, day", b.substr(0, 64)));
    for (int d : dims)
      if (d == found) return Status::invalid_argument(fmt::format("by: '{}' is given twice", b));
    dims.push_back(found);
  }
  CAIRN_RETURN_IF_ERROR(check_day(q.since, "since"));
  CAIRN_RETURN_IF_ERROR(check_day(q.until, "until"));
  if (q.since && q.until && *q.since > *q.until)
    return Status::invalid_argument(fmt::format("since: {} is after until: {}", *q.since, *q.until));

  std::map<std::vector<std::string>, Sum> groups;
  Sum total;
  uint64_t position = 0;
  bool first = true;
  std::optional<std::string> after = "slice:";
  for (;;) {
    auto page = projections.partitions(ledger::kDecisionsProjection, after, 1000, 0);
    if (!page.ok()) return page.status();
    if (first) position = page->position;
    first = false;
    for (const auto& key : page->keys) {
      if (!key.starts_with("slice:")) continue;
      auto st = projections.state(ledger::kDecisionsProjection, key, 0, std::nullopt, std::chrono::milliseconds(0));
      if (!st.ok()) return st.status();
      if (!st->found) continue;  // gone since the page was read (its counts moved to another slice)
      const json c = json::parse(st->json);
      const std::string values[4] = {c["model"], c["prompt_version"], c["skill"], c["day"]};
      if (q.since && values[3] < *q.since) continue;
      if (q.until && values[3] > *q.until) continue;
      if (q.model && values[0] != *q.model) continue;
      if (q.prompt_version && values[1] != *q.prompt_version) continue;
      if (q.skill && values[2] != *q.skill) continue;
      std::vector<std::string> g;
      for (int d : dims) g.push_back(values[d]);
      for (Sum* s : {&groups[g], &total}) {
        s->proposals += c["proposals"].get<uint64_t>();
        s->accepted += c["accepted"].get<uint64_t>();
        s->edited += c["edited"].get<uint64_t>();
        s->rejected += c["rejected"].get<uint64_t>();
        s->expired += c["expired"].get<uint64_t>();
        s->distance_ppm_sum += c["edit_distance_ppm_sum"].get<uint64_t>();
        s->distance_count += c["edit_distance_count"].get<uint64_t>();
        s->decision_ms_sum += c["decision_ms_sum"].get<int64_t>();
        s->decision_ms_count += c["decision_ms_count"].get<uint64_t>();
      }
    }
    if (!page->next) break;
    after = page->next;
  }
  json out;
  json by = json::array();
  for (int d : dims) by.push_back(kDimensions[d]);
  out["by"] = by;
  out["since"] = q.since ? json(*q.since) : json(nullptr);
  out["until"] = q.until ? json(*q.until) : json(nullptr);
  out["position"] = position;
  json rows = json::array();
  for (const auto& [g, s] : groups) {
    json r = row_json(s);
    json group = json::object();
    for (size_t i = 0; i < dims.size(); ++i) group[kDimensions[dims[i]]] = g[i];
    r["group"] = std::move(group);
    rows.push_back(std::move(r));
  }
  out["groups"] = std::move(rows);
  out["total"] = row_json(total);
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace cairn
