// Forget and the purge on PostgreSQL (docs/scaling.md "The purge").

#include <unordered_set>

#include <fmt/format.h>

#include "log/sealed_form.h"
#include "log/sha256.h"
#include "pg/store_impl.h"
#include "pg/verify.h"

namespace cairn::pg {

Result<ForgetResult> PgStore::forget(std::string_view subject, std::string_view reason, std::string_view actor_json) {
  CAIRN_RETURN_IF_ERROR(open_check());
  if (!ext_.sealed) return Status::invalid_argument("forget: this store has no key store (docs/privacy.md)");
  base::MutexLock g(forget_mu_);
  return ext_.sealed->forget(*this, subject, reason, actor_json);
}

// The purge on PostgreSQL: every event with sealed parts not yet purged is read; parts under destroyed keys
// are replaced by their markers (same length), and cairn.purge_parts swaps them in. That function runs as
// cairn_purger, the only role the update trigger lets through, and only for data with the stored digest.
Result<PurgeResult> PgStore::purge(std::string_view actor_json, const std::function<void(uint64_t, uint64_t)>& progress) {
  CAIRN_RETURN_IF_ERROR(open_check());
  if (!ext_.sealed) return Status::invalid_argument("purge: this store has no key store (docs/privacy.md)");
  if (!actor_json.empty())
    CAIRN_RETURN_IF_ERROR(store::validate_metadata(fmt::format(R"({{"actor":{}}})", actor_json), "body"));
  base::MutexLock g(purge_mu_);
  purge_running_ = true;
  struct Finished {
    std::atomic<bool>& running;
    ~Finished() { running = false; }
  } finished{purge_running_};
  const auto start = Clock::now();
  PurgeResult out;
  // The chain first, so the report can show it unchanged by the purge.
  CAIRN_RETURN_IF_ERROR(seal_now());
  auto before = verify_seals(options_.connection, {});
  if (!before.ok()) return before.status();
  if (!before->ok)
    return Status::corruption(fmt::format("purge: the log does not verify (position {}: {}); nothing is changed in a "
                                          "damaged log (run cairn verify --backend)",
                                          before->position.value_or(0), before->problem));
  out.chain_head_before = before->chain_head_hex;
  out.verified_through = before->events;
  uint64_t cursor = 0;
  const uint64_t end = primary_head_.load();
  std::unordered_set<std::string> subjects;
  for (;;) {
    auto c = primary_->acquire();
    if (!c.ok()) return c.status();
    Params p;
    p.int8(static_cast<int64_t>(cursor));
    auto r = (*c)->prepared(
        "cairn_purge_candidates",
        // Events purged before may hold parts of subjects forgotten since: every event with sealed parts.
        fmt::format("SELECT {} FROM cairn.events WHERE position >= $1 AND (flags & 2) <> 0 ORDER BY position LIMIT 200",
                    kColumns),
        p);
    if (!r.ok()) return r.status();
    if (r->rows() == 0) break;
    Params up;
    struct Change {
      uint64_t position;
      std::string data, redacted;
    };
    std::vector<Change> changes;
    for (int i = 0; i < r->rows(); ++i) {
      RecordedEvent e = row_event(*r, i);
      cursor = e.position + 1;
      out.bytes_scanned += e.data.size();
      size_t purged = 0;
      std::vector<std::string> key_ids;
      auto replaced = ext_.sealed->purge_parts(e.data, &purged, &key_ids);
      if (!replaced.ok()) return Status(replaced.status().code(), fmt::format("event at position {}: {}", e.position,
                                                                             replaced.status().message()));
      if (purged == 0) continue;
      ++out.events;
      out.parts += purged;
      for (size_t k = 0; k < e.data.size(); ++k) out.bytes_replaced += e.data[k] != (*replaced)[k] ? 1 : 0;
      for (auto& kid : key_ids) subjects.insert(kid.substr(0, kid.find('/')));
      // The function checks the new data against the redacted form the digest commits to.
      auto redacted = log::redactable_form(e.data);
      if (!redacted.ok()) return Status(redacted.status().code(), fmt::format("event at position {}: {}", e.position,
                                                                            redacted.status().message()));
      changes.push_back(Change{e.position, std::move(*replaced), std::move(*redacted)});
    }
    if (!changes.empty()) {
      up.begin_array(Oid::kInt8);
      for (auto& ch : changes) up.el_int8(static_cast<int64_t>(ch.position));
      up.end_array();
      up.begin_array(Oid::kBytea);
      for (auto& ch : changes) up.el_text(ch.data);
      up.end_array();
      up.begin_array(Oid::kBytea);
      for (auto& ch : changes) up.el_text(ch.redacted);
      up.end_array();
      auto u = (*c)->prepared("cairn_purge_parts", "SELECT cairn.purge_parts($1, $2, $3)", up);
      if (!u.ok()) return u.status();
    }
    if (progress) progress(std::min(cursor, end), end);
  }
  auto after = verify_seals(options_.connection, {});
  if (!after.ok()) return after.status();
  out.chain_head_after = after->chain_head_hex;
  if (!after->ok || after->events < before->events)
    return Status::corruption(fmt::format("purge: the log does not verify after the purge (position {}: {}); this is a bug, "
                                          "report it", after->position.value_or(0), after->problem));
  // Every seal was recomputed from the purged events and matched; the seal that ended the chain before the
  // purge gives the chain head after it at the same place (the sealer may have added seals meanwhile).
  // With no seal before, that place is the empty chain, which nothing can change. (seal_now() seals nothing
  // while the tailer holds the sealing lock, so "no seal before" happens even with events, and the tailer's
  // seals may commit during the purge: comparing against the newest seal then reported a false corruption.)
  if (before->segments == 0) out.chain_head_after = out.chain_head_before;
  if (before->segments > 0) {
    auto c = primary_->acquire();
    if (!c.ok()) return c.status();
    Params p;
    p.int8(static_cast<int64_t>(before->segments));
    auto h = (*c)->prepared("cairn_seal_chain", "SELECT chain_after FROM cairn.seals WHERE seal_no = $1", p);
    if (!h.ok()) return h.status();
    if (h->rows() != 1) return Status::corruption(fmt::format("purge: seal {} is gone after the purge", before->segments));
    out.chain_head_after = log::hex(reinterpret_cast<const uint8_t*>(h->bytes(0, 0).data()), h->bytes(0, 0).size());
  }
  if (out.chain_head_after != out.chain_head_before)
    return Status::corruption(fmt::format("purge: the chain head changed from {} to {}; this is a bug, report it",
                                          out.chain_head_before, out.chain_head_after));
  for (auto& s : subjects) out.subjects.push_back(s);
  std::sort(out.subjects.begin(), out.subjects.end());
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ++purges_;
  purged_parts_ += out.parts;
  if (out.parts == 0) return out;
  std::string data = fmt::format(
      R"({{"backend":"postgres","events":{},"parts":{},"bytes_scanned":{},"bytes_replaced":{},)"
      R"("verified_through":{},"chain_head_before":"{}","chain_head_after":"{}","subjects":[)",
      out.events, out.parts, out.bytes_scanned, out.bytes_replaced, out.verified_through, out.chain_head_before,
      out.chain_head_after);
  for (size_t i = 0; i < out.subjects.size(); ++i) data += fmt::format(R"({}"{}")", i ? "," : "", out.subjects[i]);
  data += "]}";
  auto r = ext_.sealed->record_purge(*this, std::move(data), actor_json);
  if (!r.ok())
    return Status(r.status().code(), fmt::format("the purge is done (and committed), but recording it failed: {}", r.status().message()));
  out.position = *r;
  return out;
}

}  // namespace cairn::pg
