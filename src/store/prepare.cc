#include "store/prepare.h"

#include <openssl/rand.h>

#include <cstring>
#include <unordered_set>

#include <fmt/format.h>

#include "log/record.h"
#include "log/sha256.h"
#include "store/validate.h"

namespace cairn::store {
namespace {

std::string event_name(bool multi, size_t i, size_t j) {
  return multi ? fmt::format("appends[{}].events[{}]", i, j) : fmt::format("events[{}]", j);
}

// One policy's run and the events it checked (in request order), so that transform() sees the same ones.
struct Active {
  AppendPolicy::Run* run;
  std::vector<std::pair<size_t, size_t>> events;
};

}  // namespace

Status PreparedBatch::reserve() {
  std::vector<const EventData*> events;
  for (const auto& a : appends)
    for (const auto& e : a.append.events) events.push_back(&e);
  for (size_t r = 0; r < runs.size(); ++r) {
    Status st = runs[r]->reserve(events);
    if (!st.ok()) {
      for (size_t before = 0; before < r; ++before) runs[before]->finish(nullptr);
      return st;
    }
  }
  return {};
}

void PreparedBatch::finish(const AppendResult* durable) {
  for (auto& run : runs) run->finish(durable);
}

Result<PreparedBatch> prepare_appends(std::vector<StreamAppend> requests, bool multi, bool reserved, const Limits& limits,
                                      const std::vector<std::shared_ptr<AppendPolicy>>& policies, PolicyHost& host) {
  uint64_t total = 0;
  size_t events = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    uint64_t bytes = 0;
    CAIRN_RETURN_IF_ERROR(validate_stream_append(requests[i], limits, multi ? fmt::format("appends[{}].", i) : std::string(),
                                                 &bytes, reserved));
    total += bytes;
    events += requests[i].events.size();
  }
  {
    std::unordered_set<Uuid, UuidHash> seen;
    for (size_t i = 0; i < requests.size(); ++i)
      for (size_t j = 0; j < requests[i].events.size(); ++j)
        if (requests[i].events[j].id && !seen.insert(*requests[i].events[j].id).second)
          return Status::invalid_argument(fmt::format("appends[{}].events[{}].id: {} appears twice in the same append", i, j,
                                                      requests[i].events[j].id->to_string()));
  }
  PreparedBatch out;
  // The policies' checks, event by event in request order (so the first error is the first event's).
  // A run is made the first time its policy applies; a plain event formats no name and makes none.
  std::vector<Active> active(policies.size(), Active{nullptr, {}});
  for (size_t i = 0; i < requests.size(); ++i)
    for (size_t j = 0; j < requests[i].events.size(); ++j) {
      std::string what;
      for (size_t p = 0; p < policies.size(); ++p) {
        if (!policies[p]->applies(requests[i].events[j])) continue;
        if (!active[p].run) {
          out.runs.push_back(policies[p]->begin(host, limits));
          active[p].run = out.runs.back().get();
        }
        if (what.empty()) what = event_name(multi, i, j);
        CAIRN_RETURN_IF_ERROR(active[p].run->check(requests, i, j, what));
        active[p].events.emplace_back(i, j);
      }
    }
  if (total > limits.max_append_bytes)
    return Status::limit_exceeded(fmt::format("the append is {} bytes, the limit is {}", total, limits.max_append_bytes));
  if (events > limits.max_events_per_append)
    return Status::limit_exceeded(
        fmt::format("the append has {} events, the limit is {}", events, limits.max_events_per_append));
  auto& prepared = out.appends;
  prepared.resize(requests.size());
  std::vector<uint8_t> salt_bytes(events * log::kSaltSize);
  if (RAND_bytes(salt_bytes.data(), static_cast<int>(salt_bytes.size())) != 1)
    return Status::io_error("the random generator failed (RAND_bytes)");
  size_t missing = 0;
  for (const auto& r : requests)
    for (const auto& e : r.events) missing += e.id ? 0 : 1;
  std::vector<Uuid> fresh(missing);
  Uuid::generate_v7(fresh.data(), fresh.size());
  size_t k = 0, f = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    PreparedAppend& p = prepared[i];
    p.append = std::move(requests[i]);
    const size_t n = p.append.events.size();
    p.id_supplied.resize(n);
    p.salts.resize(n);
    p.digests.resize(n);
    for (size_t j = 0; j < n; ++j, ++k) {
      auto& e = p.append.events[j];
      p.id_supplied[j] = e.id.has_value();
      if (!e.id) e.id = fresh[f++];
      std::memcpy(p.salts[j].data(), salt_bytes.data() + k * log::kSaltSize, log::kSaltSize);
    }
  }
  // The transforms, in the order of the checks; then the payload digests, hashed here, in the caller's thread,
  // so that concurrent appenders share the work instead of queueing it on the single writer.
  std::vector<std::vector<std::optional<std::string>>> digest_data;  // only for events a transform changed
  uint64_t grown = 0;
  for (auto& a : active) {
    for (auto [i, j] : a.events) {
      auto& e = prepared[i].append.events[j];
      const size_t before = e.metadata.size() + e.data.size();
      Transformed t;
      CAIRN_RETURN_IF_ERROR(a.run->transform(e, event_name(multi, i, j), &t));
      grown += e.metadata.size() + e.data.size() - std::min(before, e.metadata.size() + e.data.size());
      if (t.flags) {
        if (prepared[i].flags.empty()) prepared[i].flags.resize(prepared[i].append.events.size());
        prepared[i].flags[j] |= t.flags;
      }
      if (t.digest_data) {
        if (digest_data.empty()) digest_data.resize(prepared.size());
        if (digest_data[i].empty()) digest_data[i].resize(prepared[i].append.events.size());
        digest_data[i][j] = std::move(t.digest_data);
      }
    }
  }
  for (auto& a : active)
    if (a.run) CAIRN_RETURN_IF_ERROR(a.run->after_transform(total, grown));
  thread_local log::Sha256 sha;
  for (size_t i = 0; i < prepared.size(); ++i) {
    PreparedAppend& p = prepared[i];
    for (size_t j = 0; j < p.append.events.size(); ++j) {
      const auto& e = p.append.events[j];
      const bool other = !digest_data.empty() && !digest_data[i].empty() && digest_data[i][j];
      p.digests[j] = log::payload_digest(sha, p.salts[j].data(), e.metadata, other ? *digest_data[i][j] : e.data);
    }
  }
  return out;
}

}  // namespace cairn::store
