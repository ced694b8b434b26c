// Appends on PostgreSQL: preparation, the reference rules, and the group commit through cairn.append on two
// writer connections (see pg/store_impl.h).

#include <unordered_set>

#include <fmt/format.h>

#include "pg/store_impl.h"

namespace cairn::pg {

Result<AppendResult> PgStore::do_append(std::vector<StreamAppend> requests, bool multi, bool reserved) {
  CAIRN_RETURN_IF_ERROR(open_check());
  auto batch = store::prepare_appends(std::move(requests), multi, reserved, options_.limits, ext_.policies, *this);
  if (!batch.ok()) return batch.status();
  return store::submit_prepared(*batch, [this](std::vector<store::PreparedAppend> a) { return submit(std::move(a)); });
}

Result<AppendResult> PgStore::submit(std::vector<store::PreparedAppend> appends) {
  Request r;
  r.appends = &appends;
  for (const auto& a : appends) {
    r.events += a.append.events.size();
    for (const auto& e : a.append.events) r.bytes += e.data.size() + e.metadata.size() + e.type.size() + 64;
  }
  {
    base::MutexLock g(mu_);
    if (stopping_) return Status(ErrorCode::kClosed, "the store is closed");
    queue_.push_back(&r);
  }
  cv_.notify_one();
  r.done.acquire();
  if (!r.status.ok()) return r.status;
  return std::move(r.result);
}

void PgStore::take_group(std::vector<Request*>* group) {
  // A request whose supplied ids repeat one already in the group waits for the next group (the function
  // checks ids against committed events only).
  std::unordered_set<Uuid, UuidHash> ids;
  size_t events = 0, bytes = 0;
  while (!queue_.empty()) {
    Request* r = queue_.front();
    if (!group->empty() && (events + r->events > kGroupEvents || bytes + r->bytes > kGroupBytes)) break;
    bool clash = false;
    for (const auto& a : *r->appends)
      for (size_t j = 0; j < a.append.events.size() && !clash; ++j)
        clash = a.id_supplied[j] && ids.count(*a.append.events[j].id) > 0;
    if (clash) break;
    for (const auto& a : *r->appends)
      for (size_t j = 0; j < a.append.events.size(); ++j)
        if (a.id_supplied[j]) ids.insert(*a.append.events[j].id);
    events += r->events;
    bytes += r->bytes;
    group->push_back(r);
    queue_.pop_front();
  }
}

void PgStore::run_writer() {
  struct InFlight {
    int conn;
    std::vector<Request*> group;
  };
  std::deque<InFlight> inflight;
  for (;;) {
    std::vector<Request*> group;
    {
      base::UniqueLock lk(mu_);
      if (inflight.empty())
        while (!stopping_ && queue_.empty()) cv_.wait(lk.native());
      if (inflight.empty() && queue_.empty()) return;  // stopping, and everything queued was answered
      if (inflight.size() < writer_conns_.size()) take_group(&group);
    }
    if (!group.empty()) {
      const int conn = inflight.empty() ? 0 : 1 - inflight.front().conn;
      Status st = send_group(conn, group);
      if (st.ok()) {
        inflight.push_back({conn, std::move(group)});
        continue;  // a second group may be ready to wait behind this one
      }
      refuse_unsent(group, st);
    }
    if (!inflight.empty()) {
      InFlight f = std::move(inflight.front());
      inflight.pop_front();
      finish_group(f.conn, f.group);
    }
  }
}

// "Never sent" and "sent, outcome unknown" are told apart by the moment libpq accepts the call.
// Before it, nothing of this group can have run: a connection that is broken, or whose server hung up while
// it sat idle (alive(): the close of a restarted server is already in the socket, seconds before this append),
// is replaced by a fresh one and the group goes there; if no fresh one can be made, or libpq refuses the call
// (PQsendQueryPrepared fails before its Sync, and the server commits only at the Sync), the group is refused
// as not appended (refuse_unsent). Once libpq accepted it, the server may have received it and committed:
// any failure from then on (finish_group) is answered as unknown, even when the server in fact died just
// before reading it, because nothing on this side can tell those apart.
Status PgStore::send_group(int conn, std::vector<Request*>& group) {
  auto& c = writer_conns_[conn];
  if (!c || !c->alive()) {
    auto fresh = Connection::connect(options_.connection);
    if (!fresh.ok()) return fresh.status();
    c = std::move(*fresh);
  }
  return c->send_prepared("cairn_append", kAppendSql, append_params(group));
}

Params PgStore::append_params(const std::vector<Request*>& group) {
  Params p;
  p.begin_array(Oid::kInt4);
  for (size_t i = 0; i < group.size(); ++i)
    for (size_t k = 0; k < group[i]->appends->size(); ++k) p.el_int4(static_cast<int32_t>(i));
  p.end_array();
  p.begin_array(Oid::kText);
  for (auto* r : group)
    for (const auto& a : *r->appends) p.el_text(a.append.stream);
  p.end_array();
  p.begin_array(Oid::kInt8);
  for (auto* r : group)
    for (const auto& a : *r->appends) p.el_int8(expected_code(a.append.expected));
  p.end_array();
  p.begin_array(Oid::kInt4);
  for (auto* r : group)
    for (const auto& a : *r->appends) p.el_int4(static_cast<int32_t>(a.append.events.size()));
  p.end_array();
  // The events, flattened in part order, one array per column.
  const auto each = [&](auto&& fn) {
    for (auto* r : group)
      for (const auto& a : *r->appends)
        for (size_t j = 0; j < a.append.events.size(); ++j) fn(a, j);
  };
  p.begin_array(Oid::kUuid);
  each([&](const store::PreparedAppend& a, size_t j) { p.el_uuid(*a.append.events[j].id); });
  p.end_array();
  p.begin_array(Oid::kBool);
  each([&](const store::PreparedAppend& a, size_t j) { p.el_bool(a.id_supplied[j]); });
  p.end_array();
  p.begin_array(Oid::kText);
  each([&](const store::PreparedAppend& a, size_t j) { p.el_text(a.append.events[j].type); });
  p.end_array();
  p.begin_array(Oid::kInt2);
  each([&](const store::PreparedAppend& a, size_t j) { p.el_int2(static_cast<int16_t>(a.append.events[j].content_type)); });
  p.end_array();
  p.begin_array(Oid::kInt2);
  each([&](const store::PreparedAppend& a, size_t j) { p.el_int2(a.flags.empty() ? 0 : a.flags[j]); });
  p.end_array();
  p.begin_array(Oid::kBytea);
  each([&](const store::PreparedAppend& a, size_t j) { p.el_text(a.append.events[j].metadata); });
  p.end_array();
  p.begin_array(Oid::kBytea);
  each([&](const store::PreparedAppend& a, size_t j) { p.el_text(a.append.events[j].data); });
  p.end_array();
  p.begin_array(Oid::kBytea);
  each([&](const store::PreparedAppend& a, size_t j) {
    p.el_text(std::string_view(reinterpret_cast<const char*>(a.salts[j].data()), a.salts[j].size()));
  });
  p.end_array();
  p.begin_array(Oid::kBytea);
  each([&](const store::PreparedAppend& a, size_t j) {
    p.el_text(std::string_view(reinterpret_cast<const char*>(a.digests[j].data()), a.digests[j].size()));
  });
  p.end_array();
  return p;
}

void PgStore::finish_group(int conn, std::vector<Request*>& group) {
  auto res = writer_conns_[conn]->receive("cairn.append");
  if (!res.ok()) return group_failed(conn, group, res.status());
  answer_group(group, *res);
}

void PgStore::group_failed(int conn, std::vector<Request*>& group, const Status& st) {
  const auto& c = writer_conns_[conn];
  if (!c || c->broken()) {
    // The transaction may or may not have committed: say so, and never guess.
    for (auto* r : group) {
      r->status = Status::io_error(fmt::format(
          "the connection to PostgreSQL broke while this append was in flight, so whether it was committed is unknown; "
          "retry it with the same event ids and the store answers it idempotently either way ({})", st.message()));
      r->done.release();
    }
    return;
  }
  if (group.size() > 1) return retry_alone(conn, group);
  group[0]->status = st;
  group[0]->done.release();
}

void PgStore::retry_alone(int conn, std::vector<Request*>& group) {
  Connection& c = *writer_conns_[conn];
  std::vector<Request*> sent;
  Status st = c.prepare("cairn_append", kAppendSql, append_params({group[0]}));
  if (st.ok()) st = c.pipeline_begin();
  if (st.ok()) {
    for (auto* r : group) {
      st = c.pipeline_send("cairn_append", kAppendSql, append_params({r}));
      if (st.ok()) st = c.pipeline_sync();
      if (!st.ok()) break;
      sent.push_back(r);
    }
  }
  for (auto* r : sent) {
    auto res = c.pipeline_next();
    (void)c.pipeline_next();  // the sync after it
    std::vector<Request*> one{r};
    if (res.ok()) {
      answer_group(one, *res);
    } else if (c.broken()) {
      group_failed(conn, one, res.status());  // outcome unknown
    } else {
      r->status = res.status();
      r->done.release();
    }
  }
  (void)c.pipeline_end();
  std::vector<Request*> unsent(group.begin() + static_cast<ptrdiff_t>(sent.size()), group.end());
  if (!unsent.empty()) refuse_unsent(unsent, st.ok() ? Status::io_error("the pipeline ended early") : st);
}

void PgStore::committed_through(uint64_t end) {
  uint64_t cur = primary_head_.load();
  while (cur < end && !primary_head_.compare_exchange_weak(cur, end)) {
  }
  if (!replica_) {  // the primary is where this process reads: its subscribers may go on at once
    cur = read_head_.load();
    while (cur < end && !read_head_.compare_exchange_weak(cur, end)) {
    }
    notifier_.publish();
  }
}

void PgStore::refuse_unsent(std::vector<Request*>& group, const Status& st) {
  for (auto* r : group) {
    r->status = Status(st.code(), "not appended (PostgreSQL is unreachable): " + st.message());
    r->done.release();
  }
}

void PgStore::answer_group(std::vector<Request*>& group, const PgResult& res) {
  groups_.fetch_add(1);
  size_t group_events = 0;
  for (auto* r : group) group_events += r->events;
  for (size_t i = 0; i < group_buckets_.size(); ++i)
    if (static_cast<double>(group_events) <= StoreMetrics::kGroupBucketsEvents[i]) group_buckets_[i].fetch_add(1);
  uint64_t end = 0;
  int row = 0;
  for (auto* r : group) {
    const auto& appends = *r->appends;
    const bool multi = appends.size() > 1;
    Status failed;
    bool replayed = false;
    AppendResult result;
    for (size_t k = 0; k < appends.size(); ++k, ++row) {
      const auto& a = appends[k].append;
      const int16_t status = res.int2(row, 0);
      const std::string prefix = multi ? fmt::format("appends[{}].", k) : std::string();
      if (status == 2 && failed.ok()) {
        const int64_t actual = res.int8(row, 1);
        failed = Status::wrong_expected_revision(
            fmt::format("{}stream '{}': expected revision {}, but the stream {}", prefix, a.stream, a.expected.to_string(),
                        actual >= 0 ? fmt::format("is at revision {}", actual) : std::string("does not exist")),
            actual);
      } else if (status == 3 && failed.ok()) {
        failed = Status::duplicate_event_id(fmt::format("{}events: {}", prefix, res.bytes(row, 4)));
      } else if (status == 0 || status == 1) {
        replayed = replayed || status == 1;
        const uint64_t first = static_cast<uint64_t>(res.int8(row, 2));
        const uint64_t rev = static_cast<uint64_t>(res.int8(row, 3));
        const uint64_t n = a.events.size();
        result.streams.push_back(StreamAppendResult{a.stream, first, first + n - 1, rev, rev + n - 1});
        end = std::max(end, first + n);
      }
    }
    if (!failed.ok()) {
      r->status = failed;
    } else {
      result.replayed = replayed;
      r->result = std::move(result);
      if (!replayed) {
        appended_commits_.fetch_add(1);
        appended_events_.fetch_add(r->events);
      }
    }
  }
  if (end > 0) committed_through(end);
  for (auto* r : group) r->done.release();
}

}  // namespace cairn::pg
