// Subscriptions on PostgreSQL: a page after the cursor and the head, read in one snapshot (see pg/pg_store.h).

#include <algorithm>

#include <fmt/format.h>

#include "pg/store_impl.h"

namespace cairn::pg {

Status PgStore::poll_all(uint64_t* cursor, const Filter& filter, size_t max, std::vector<RecordedEvent>* out,
                         uint64_t* seen_head, bool* unreachable) {
  CAIRN_RETURN_IF_ERROR(open_check());
  Params p;
  p.int8(static_cast<int64_t>(*cursor));
  p.int8(static_cast<int64_t>(std::min<size_t>(max, 100'000)));
  p.int8(0);
  filter_params(p, filter);
  // The head and the page in one statement, so one snapshot: every position below that head is committed
  // and visible in it (appends lock the head row until they commit), so the cursor may move to the head
  // when the page is not full, and no later commit can land behind it.
  const std::string sql = fmt::format(
      "SELECT h.next_position, ev.* FROM cairn.head h LEFT JOIN LATERAL (SELECT {} FROM cairn.events WHERE position >= $1 "
      "AND position < h.next_position AND $3::int8 = 0 {} ORDER BY position LIMIT $2) ev ON true WHERE h.id "
      "ORDER BY ev.position",
      kColumns, kFilterSql);
  auto r = read_query("cairn_poll_all", sql, p, unreachable);
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return Status::corruption("cairn.head has no row");
  const uint64_t head = static_cast<uint64_t>(r->int8(0, 0));
  *seen_head = head;
  size_t got = 0;
  for (int i = 0; i < r->rows(); ++i) {
    if (r->null(i, 1)) break;
    out->push_back(row_event(*r, i, 1));
    ++got;
  }
  if (got < max) {
    *cursor = std::max(*cursor, head);
  } else {
    *cursor = out->back().position + 1;
  }
  return {};
}

Status PgStore::poll_stream(const std::string& stream, uint64_t* cursor, size_t max, std::vector<RecordedEvent>* out,
                            uint64_t* seen_head, bool* unreachable) {
  CAIRN_RETURN_IF_ERROR(open_check());
  Params p;
  p.text(stream);
  p.int8(static_cast<int64_t>(*cursor));
  p.int8(static_cast<int64_t>(std::min<size_t>(max, 100'000)));
  const std::string sql = fmt::format(
      "SELECT h.next_position, ev.* FROM cairn.head h LEFT JOIN LATERAL (SELECT {} FROM cairn.events WHERE stream = $1 "
      "AND revision >= $2 ORDER BY revision LIMIT $3) ev ON true WHERE h.id ORDER BY ev.revision",
      kColumns);
  auto r = read_query("cairn_poll_stream", sql, p, unreachable);
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return Status::corruption("cairn.head has no row");
  *seen_head = static_cast<uint64_t>(r->int8(0, 0));
  for (int i = 0; i < r->rows(); ++i) {
    if (r->null(i, 1)) break;
    out->push_back(row_event(*r, i, 1));
    *cursor = out->back().revision + 1;
  }
  return {};
}

Result<std::vector<RecordedEvent>> PgSubscription::next(size_t max_events, std::chrono::milliseconds timeout) {
  if (max_events == 0) return Status::invalid_argument("max_events: must be at least 1");
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cancelled_.load()) return Status(ErrorCode::kClosed, "the subscription was cancelled");
    if (store_.notifier().closed()) return Status(ErrorCode::kClosed, "the store was closed");
    std::vector<RecordedEvent> out;
    uint64_t seen = 0;
    bool unreachable = false;
    Status st = stream_ ? store_.poll_stream(*stream_, &cursor_, max_events, &out, &seen, &unreachable)
                        : store_.poll_all(&cursor_, filter_, max_events, &out, &seen, &unreachable);
    if (!st.ok()) {
      if (!unreachable) return st;  // the server answered with an error: waiting would not change it
      // The server is away. The cursor did not move, so the next poll that gets through goes on from it.
      const auto now = Clock::now();
      if (!away_since_) away_since_ = now;
      const auto limit = *away_since_ + store_.outage_timeout();
      if (now >= limit)
        return Status(ErrorCode::kUnavailable,
                      fmt::format("PostgreSQL did not answer for {} s, the outage timeout (--pg-outage-timeout), so the "
                                  "subscription ends at cursor {}; resume from there: {}",
                                  std::chrono::duration_cast<std::chrono::seconds>(now - *away_since_).count(), cursor_,
                                  st.message()));
      if (now >= deadline) return out;  // empty: the caller's heartbeat goes on during the outage
      const auto pause = std::min({retry_pause_, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now),
                                   std::chrono::duration_cast<std::chrono::milliseconds>(limit - now)}) +
                         std::chrono::milliseconds(1);
      retry_pause_ = std::min(retry_pause_ * 2, std::chrono::milliseconds(1000));
      // Nothing moves the head while the server is away; this waits for the pause, a cancel() or close().
      store_.notifier().wait_beyond(UINT64_MAX, [] { return uint64_t{0}; }, pause, cancelled_);
      continue;
    }
    away_since_.reset();
    retry_pause_ = std::chrono::milliseconds(50);
    for (auto& e : out) CAIRN_RETURN_IF_ERROR(store_.open_personal(e));
    if (!out.empty()) return out;
    const auto now = Clock::now();
    if (now >= deadline) return out;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1);
    store_.notifier().wait_beyond(seen, [this] { return store_.read_head(); }, left, cancelled_);
  }
}

void PgSubscription::cancel() {
  cancelled_.store(true);
  store_.notifier().publish();
}

}  // namespace cairn::pg
