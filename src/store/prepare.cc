#include "store/prepare.h"

#include <openssl/rand.h>

#include <cstring>
#include <unordered_set>

#include <fmt/format.h>

#include "ledger/vocabulary.h"
#include "log/record.h"
#include "log/sha256.h"
#include "privacy/personal.h"
#include "store/validate.h"

namespace cairn::store {
namespace {

// A correction that amends an earlier event must fit it: the corrected event comes earlier in the same
// append, or is durable already (events that exist nowhere are the reference rules' concern).
Status check_amendment(const std::vector<StreamAppend>& requests, size_t i, size_t j, const ledger::References& refs,
                       const std::string& what, const FindEventFn& find_durable) {
  const EventData& correction = requests[i].events[j];
  for (size_t a = 0; a <= i; ++a)
    for (size_t b = 0; b < (a == i ? j : requests[a].events.size()); ++b)
      if (const EventData& e = requests[a].events[b]; e.id && *e.id == *refs.corrects)
        return ledger::check_amendment(refs, e.type, e.data, correction.metadata, what);
  auto found = find_durable(*refs.corrects);
  if (!found.ok()) return found.status();
  if (!*found) return {};
  return ledger::check_amendment(refs, (*found)->type, (*found)->data, correction.metadata, what);
}

}  // namespace

Result<PreparedBatch> prepare_appends(std::vector<StreamAppend> requests, bool multi, bool reserved, const Limits& limits,
                                      privacy::KeyStore* keys, const FindEventFn& find_durable) {
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
  // The AI ledger's vocabulary: each type's rules, and what its events refer to.
  std::vector<std::optional<privacy::Declaration>> personal;  // per event, in request order
  bool has_personal = false;
  for (size_t i = 0; i < requests.size(); ++i)
    for (size_t j = 0; j < requests[i].events.size(); ++j) {
      const std::string what = multi ? fmt::format("appends[{}].events[{}]", i, j) : fmt::format("events[{}]", j);
      const EventData& ev = requests[i].events[j];
      // Personal parts (docs/privacy.md): declared in metadata.privacy, sealed below once the event has its id.
      auto declared = privacy::read_declaration(ev.metadata, ev.data, ev.content_type, what);
      if (!declared.ok()) return declared.status();
      if (*declared && !keys)
        return Status::invalid_argument(fmt::format(
            "{}.metadata.privacy: personal parts need a key store; start cairnd with --key-store DIR and CAIRN_MASTER_KEY "
            "(docs/privacy.md)", what));
      has_personal = has_personal || declared->has_value();
      personal.push_back(std::move(*declared));
      auto refs = ledger::check_event(requests[i].events[j], what);
      if (!refs.ok()) return refs.status();
      out.has_references = out.has_references || refs->any() || refs->type == ledger::LedgerType::kProposalMade;
      if (refs->corrects && !refs->replacement.empty())
        CAIRN_RETURN_IF_ERROR(check_amendment(requests, i, j, *refs, what, find_durable));
      out.ledger_events.push_back({Uuid{}, std::move(*refs), what});
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
  // The payload digests are hashed here, in the caller's thread, so that concurrent appenders share the
  // work instead of queueing it on the single writer.
  thread_local log::Sha256 sha;
  size_t k = 0, f = 0;
  uint64_t sealed_growth = 0;
  std::string redactable;
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
      out.ledger_events[k].id = *e.id;
      std::memcpy(p.salts[j].data(), salt_bytes.data() + k * log::kSaltSize, log::kSaltSize);
      if (personal[k]) {
        const size_t before = e.metadata.size() + e.data.size();
        auto sealed = privacy::seal_event(*keys, *e.id, e.data, e.metadata, *personal[k]);
        if (!sealed.ok()) return sealed.status();
        e.data = std::move(sealed->data);
        e.metadata = std::move(sealed->metadata);
        redactable = std::move(sealed->redactable);
        sealed_growth += e.metadata.size() + e.data.size() - std::min(before, e.metadata.size() + e.data.size());
        if (e.type.size() + e.metadata.size() + e.data.size() > limits.max_event_bytes)
          return Status::limit_exceeded(fmt::format(
              "{}: with its personal parts sealed the event is {} bytes, the limit is {}",
              multi ? fmt::format("appends[{}].events[{}]", i, j) : fmt::format("events[{}]", j),
              e.type.size() + e.metadata.size() + e.data.size(), limits.max_event_bytes));
        if (p.flags.empty()) p.flags.resize(n);
        p.flags[j] = log::kEventFlagSealedParts;
        // The digest covers the redactable form (format.md), which sealing produced in the same pass.
        p.digests[j] = log::payload_digest(sha, p.salts[j].data(), e.metadata, redactable);
      } else {
        p.digests[j] = log::payload_digest(sha, p.salts[j].data(), e.metadata, e.data);
      }
    }
  }
  if (has_personal && total + sealed_growth > limits.max_append_bytes)
    return Status::limit_exceeded(fmt::format("with its personal parts sealed the append is {} bytes, the limit is {}",
                                              total + sealed_growth, limits.max_append_bytes));
  return out;
}

}  // namespace cairn::store
