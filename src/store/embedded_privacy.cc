// The store's privacy operations (docs/privacy.md): forgetting a subject, the physical purge of forgotten
// parts from sealed segments, and the chain verification both rest on.
#include <chrono>

#include <fmt/format.h>
#include <simdjson.h>

#include "codec/event_json.h"
#include "log/verify.h"
#include "store/embedded_store.h"
#include "store/validate.h"

namespace cairn::store {
namespace {

std::vector<log::SegmentExtent> extents(const std::vector<std::shared_ptr<log::Segment>>& segs) {
  std::vector<log::SegmentExtent> out;
  for (const auto& s : segs) out.push_back({s, s->durable_size()});
  return out;
}
}  // namespace

Result<ForgetResult> EmbeddedStore::forget(std::string_view subject, std::string_view reason, std::string_view actor_json) {
  CAIRN_RETURN_IF_ERROR(writable());
  if (!ext_.sealed) return Status::invalid_argument("forget: this store has no key store (docs/privacy.md)");
  base::MutexLock g(forget_mu_);
  return ext_.sealed->forget(*this, subject, reason, actor_json);
}

Result<std::string> EmbeddedStore::subject_id(std::string_view subject) const {
  if (!ext_.sealed) return Status::invalid_argument("subject: this store has no key store (docs/privacy.md)");
  return ext_.sealed->subject_id(subject);
}

Result<VerifyReport> EmbeddedStore::verify_chain() {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  return log::verify_segments(extents(log_->segments()), /*allow_torn_tail=*/false, {});
}

Result<PurgeResult> EmbeddedStore::purge(std::string_view actor_json, const std::function<void(uint64_t, uint64_t)>& progress) {
  CAIRN_RETURN_IF_ERROR(writable());
  if (!ext_.sealed) return Status::invalid_argument("purge: this store has no key store (docs/privacy.md)");
  if (!actor_json.empty()) CAIRN_RETURN_IF_ERROR(validate_metadata(fmt::format(R"({{"actor":{}}})", actor_json), "body"));
  base::MutexLock g(purge_mu_);
  const auto start = std::chrono::steady_clock::now();
  PurgeResult out;
  purge_running_ = true;
  purge_done_bytes_ = 0;
  struct Finished {
    std::atomic<bool>& running;
    ~Finished() { running = false; }
  } finished{purge_running_};
  // The caller's progress and the store's (for /metrics) see the same numbers.
  const auto report = [&](uint64_t done_bytes, uint64_t total_bytes) {
    purge_done_bytes_.store(done_bytes, std::memory_order_relaxed);
    if (progress) progress(done_bytes, total_bytes);
  };
  // Everything acknowledged so far goes into sealed segments; the new active one is never rewritten.
  CAIRN_RETURN_IF_ERROR(writer_->roll());
  std::vector<std::shared_ptr<log::Segment>> sealed = log_->segments();
  sealed.pop_back();
  for (const auto& s : sealed) out.bytes_scanned += s->durable_size();
  out.segments_scanned = sealed.size();
  // Verify, rewrite, verify each rewritten segment: at most three passes over the sealed bytes.
  const uint64_t total = 3 * out.bytes_scanned;
  purge_total_bytes_ = total;
  uint64_t done = 0;
  const VerifyReport before = log::verify_segments(extents(sealed), /*allow_torn_tail=*/false,
                                                   [&](uint64_t d, uint64_t) { report(done + d, total); });
  if (!before.ok)
    return Status::corruption(fmt::format("purge: the log does not verify ({} offset {}: {}); nothing is rewritten in a "
                                          "damaged log (run cairn verify)", before.file, before.offset, before.problem));
  out.chain_head_before = out.chain_head_after = before.chain_head_hex;
  done += out.bytes_scanned;
  for (size_t i = 0; i < sealed.size(); ++i) {
    auto& seg = sealed[i];
    const uint64_t size = seg->durable_size();
    const std::string tmp = seg->path() + ".purge.tmp";
    // The copy is synced even with durability none (see Log::replace_sealed_segment).
    auto p = ext_.sealed->purge_segment(*seg, size, fs_, tmp, /*sync=*/true,
                                        [&](uint64_t scanned) { report(done + scanned, total); });
    if (!p.ok()) return p.status();
    done += size;
    if (!p->rewritten) continue;
    // The proof, before anything is replaced: the rewritten copy verifies on its own (every digest, every
    // commit's chain head from its header's) and ends at the chain head the old segment ends at. A copy that
    // fails is deleted and the old segment stays.
    Status proof;
    {
      auto copy = log::Segment::open(tmp, 0);
      if (!copy.ok()) {
        proof = copy.status();
      } else {
        const VerifyReport r = log::verify_segment_alone({*copy, size}, [&](uint64_t d, uint64_t) { report(done + d, total); });
        auto old_end = log::segment_end_head({seg, size});
        if (!r.ok)
          proof = Status::corruption(fmt::format("purge: the rewritten copy of {} does not verify (offset {}: {}); the "
                                                 "segment is kept as it was. This is a bug, report it", seg->path(),
                                                 r.offset, r.problem));
        else if (!old_end.ok())
          proof = old_end.status();
        else if (r.chain_head_hex != *old_end)
          proof = Status::corruption(fmt::format("purge: the rewritten copy of {} ends at chain head {}, the segment at {}; "
                                                 "the segment is kept as it was. This is a bug, report it",
                                                 seg->path(), r.chain_head_hex, *old_end));
        else if (i + 1 == sealed.size())
          out.chain_head_after = r.chain_head_hex;
      }
    }
    if (!proof.ok()) {
      (void)fs_->remove(tmp);  // the error being reported is the proof's; a leftover *.tmp goes at the next open
      return proof;
    }
    done += size;
    auto replaced = log_->replace_sealed_segment(seg, tmp);
    if (!replaced.ok()) return replaced.status();
    seg = *replaced;
    ++out.segments_rewritten;
    out.events += p->events;
    out.parts += p->parts;
    out.bytes_replaced += p->bytes_replaced;
    for (auto& s : p->subjects)
      if (std::find(out.subjects.begin(), out.subjects.end(), s) == out.subjects.end()) out.subjects.push_back(std::move(s));
  }
  report(total, total);
  if (out.chain_head_after != out.chain_head_before)
    return Status::corruption(fmt::format("purge: the chain head changed from {} to {}; this is a bug, report it",
                                          out.chain_head_before, out.chain_head_after));
  // The sealed segments end where the next one (the active one after the roll, or later ones) begins.
  if (!sealed.empty()) {
    auto all = log_->segments();
    for (size_t i = 0; i + 1 < all.size(); ++i)
      if (all[i] == sealed.back()) out.verified_through = all[i + 1]->first_position();
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++purges_;
  purged_parts_ += out.parts;
  if (out.parts == 0) return out;
  std::string data = fmt::format(
      R"({{"segments_scanned":{},"segments_rewritten":{},"events":{},"parts":{},"bytes_scanned":{},"bytes_replaced":{},)"
      R"("verified_through":{},"chain_head_before":"{}","chain_head_after":"{}","subjects":[)",
      out.segments_scanned, out.segments_rewritten, out.events, out.parts, out.bytes_scanned, out.bytes_replaced,
      out.verified_through, out.chain_head_before, out.chain_head_after);
  for (size_t i = 0; i < out.subjects.size(); ++i) data += fmt::format(R"({}"{}")", i ? "," : "", out.subjects[i]);
  data += "]}";
  auto r = ext_.sealed->record_purge(*this, std::move(data), actor_json);
  if (!r.ok())
    return Status(r.status().code(), fmt::format("the purge is done (and durable), but recording it failed: {}", r.status().message()));
  out.position = *r;
  return out;
}

}  // namespace cairn::store
