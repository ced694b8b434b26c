// The PostgreSQL store: open and close, reads, the tailer and the sealer, import (see pg/pg_store.h).
#include "pg/pg_store.h"

#include <thread>

#include <filesystem>
#include <unordered_set>

#include <fmt/format.h>

#include "log/sha256.h"
#include "pg/admin.h"
#include "pg/store_impl.h"

namespace cairn::pg {

// The log is shared with other processes: the reference rules need every proposal and decision so far,
// including theirs (docs/scaling.md says what two processes racing on the same proposal can do).
Result<std::optional<RecordedEvent>> PgStore::find_durable(const Uuid& id) {
  auto e = read_event(id);
  if (e.ok()) return std::optional<RecordedEvent>(std::move(*e));
  if (e.status().code() == ErrorCode::kNotFound) return std::optional<RecordedEvent>();
  return e.status();
}

Status PgStore::scan_types(uint64_t from, const std::vector<std::string>& types, const EventVisitor& visit) {
  Filter f;
  f.types = types;
  return scan(from, f, visit, true);
}

Result<std::unique_ptr<PgStore>> PgStore::open(const PostgresOptions& options, store::Extensions extensions) {
  std::unique_ptr<PgStore> s(new PgStore());
  s->options_ = options;
  s->ext_ = std::move(extensions);

  auto conn = Connection::connect(options.connection);
  if (!conn.ok()) return conn.status();
  CAIRN_RETURN_IF_ERROR(check_engine(**conn, options.connection));
  CAIRN_RETURN_IF_ERROR(check_schema(**conn));
  auto head = (*conn)->query("SELECT next_position FROM cairn.head WHERE id", Params());
  if (!head.ok()) return head.status();
  s->primary_head_ = s->read_head_ = static_cast<uint64_t>(head->int8(0, 0));
  s->writer_conns_[0] = std::move(*conn);
  s->primary_ = std::make_unique<Pool>(options.connection, std::max<size_t>(1, options.pool));
  if (!options.read_replica.empty()) {
    auto rc = Connection::connect(options.read_replica);
    if (!rc.ok()) return Status(rc.status().code(), "read replica: " + rc.status().message());
    CAIRN_RETURN_IF_ERROR(check_schema(**rc));
    auto rh = (*rc)->query("SELECT next_position FROM cairn.head WHERE id", Params());
    if (!rh.ok()) return Status(rh.status().code(), "read replica: " + rh.status().message());
    s->read_head_ = static_cast<uint64_t>(rh->int8(0, 0));
    s->replica_ = std::make_unique<Pool>(options.read_replica, std::max<size_t>(1, options.pool));
  }
  s->writer_ = std::thread([p = s.get()] { p->run_writer(); });
  s->tailer_ = std::thread([p = s.get()] { p->run_tailer(); });
  return s;
}

Status PgStore::close() {
  if (closed_.exchange(true)) return {};
  {
    base::MutexLock g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  tail_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (tailer_.joinable()) tailer_.join();
  if (primary_) (void)seal_now();  // what this process appended is sealed now rather than by the next sealer
  notifier_.close();
  return {};
}

StoreStats PgStore::stats() const {
  StoreStats s;
  s.events = head_position();
  s.commits = appended_commits_.load();
  return s;
}

StoreMetrics PgStore::metrics() const {
  StoreMetrics m;
  m.appended_commits = appended_commits_.load();
  m.appended_events = appended_events_.load();
  m.groups = groups_.load();
  for (size_t i = 0; i < m.group_buckets.size(); ++i) m.group_buckets[i] = group_buckets_[i].load();
  m.group_events = appended_events_.load();
  m.purge_running = purge_running_.load();
  m.purges = purges_.load();
  m.purged_parts = purged_parts_.load();
  return m;
}

// Follows the read server's head (other processes append too) and seals committed events.
void PgStore::run_tailer() {
  std::unique_ptr<Connection> conn;
  const std::string& target = replica_ ? options_.read_replica : options_.connection;
  auto next_seal = Clock::now();
  for (;;) {
    {
      // A 10 ms tick, or stop: a wait_for with a predicate, spelled out so that stopping_ is read under mu_.
      base::UniqueLock lk(mu_);
      const auto tick = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
      while (!stopping_ && tail_cv_.wait_until(lk.native(), tick) != std::cv_status::timeout) {
      }
      if (stopping_) return;
    }
    if (!conn || conn->broken()) {
      auto c = Connection::connect(target);
      if (!c.ok()) continue;  // retried on the next tick; readers report their own errors
      conn = std::move(*c);
    }
    auto h = conn->prepared("cairn_head", "SELECT next_position FROM cairn.head WHERE id", Params());
    if (h.ok() && h->rows() == 1) {
      const uint64_t head = static_cast<uint64_t>(h->int8(0, 0));
      if (head > read_head_.load()) {
        read_head_.store(head);
        notifier_.publish();
      }
      if (!replica_ && head > primary_head_.load()) primary_head_.store(head);
    }
    if (Clock::now() >= next_seal) {
      (void)seal_now();  // a failure here is found again by the next seal and by verify
      next_seal = Clock::now() + std::chrono::seconds(1);
    }
  }
}

Status PgStore::seal_now() {
  // cairn.seal() answers nothing both when everything is sealed and when another sealer (this process's
  // tailer, or another process) holds the sealing lock: then wait for it, a moment at most, until the seals
  // reach the head seen here. Callers verify the seals next and must see every commit before the call.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  int64_t target = -1;  // the head when the call began: later appends need not be waited for
  for (;;) {
    auto c = primary_->acquire();
    if (!c.ok()) return c.status();
    if (target < 0) {
      auto h = (*c)->prepared("cairn_head", "SELECT next_position FROM cairn.head WHERE id", Params());
      if (!h.ok()) return h.status();
      target = h->int8(0, 0);
    }
    Params p;
    p.int4(10'000);  // a seal's records sort in memory (work_mem) at this size
    auto r = (*c)->prepared("cairn_seal", "SELECT o_seal_no, o_end, o_chain FROM cairn.seal($1)", p);
    if (!r.ok()) return r.status();
    if (r->rows() > 0) continue;
    auto q = (*c)->prepared("cairn_sealed_through", "SELECT coalesce(max(end_position), 0) FROM cairn.seals", Params());
    if (!q.ok()) return q.status();
    if (q->int8(0, 0) >= target || Clock::now() >= deadline) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Result<PgResult> PgStore::read_query(const std::string& name, const std::string& sql, const Params& params,
                                     bool* unreachable) {
  for (int attempt = 0;; ++attempt) {
    auto c = read_conn();
    if (!c.ok()) {
      if (unreachable) *unreachable = c.status().code() != ErrorCode::kTimeout;  // a busy pool did answer
      return c.status();
    }
    auto r = (*c)->prepared(name, sql, params);
    // Each failed try drops its dead connection, so at most the whole pool's worth of them can fail.
    if (r.ok() || !(*c)->broken() || attempt > static_cast<int>(options_.pool)) {
      if (unreachable) *unreachable = !r.ok() && (*c)->broken();
      return r;
    }
  }
}

Status PgStore::reads_answer() {
  bool unreachable = false;
  auto r = read_query("cairn_head", "SELECT next_position FROM cairn.head WHERE id", Params(), &unreachable);
  if (r.ok()) return {};
  if (!unreachable) return r.status();
  return Status(ErrorCode::kUnavailable, "PostgreSQL does not answer, so the subscription cannot start; retry later: " +
                                             r.status().message());
}

Result<Pool::Lease> PgStore::read_conn() {
  if (replica_) {
    // Read-your-writes: wait (briefly) until the replica holds this process's own appends.
    const uint64_t want = primary_head_.load();
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (read_head_.load() < want && Clock::now() < deadline) {
      auto c = replica_->acquire();
      if (!c.ok()) break;
      auto h = (*c)->prepared("cairn_head", "SELECT next_position FROM cairn.head WHERE id", Params());
      if (h.ok() && h->rows() == 1) {
        const uint64_t head = static_cast<uint64_t>(h->int8(0, 0));
        if (head > read_head_.load()) read_head_.store(head);
        if (head >= want) return std::move(*c);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (read_head_.load() >= want) return replica_->acquire();
  }
  return primary_->acquire();
}

Result<ReadPage> PgStore::read_stream_stored(std::string_view stream, std::optional<uint64_t> from_revision,
                                             Direction direction, size_t limit) {
  CAIRN_RETURN_IF_ERROR(open_check());
  CAIRN_RETURN_IF_ERROR(store::validate_stream_name(stream, "stream", true));
  if (limit == 0) return Status::invalid_argument("limit: must be at least 1");
  Params p;
  p.text(stream);
  const bool fwd = direction == Direction::kForward;
  p.int8(from_revision ? static_cast<int64_t>(std::min<uint64_t>(*from_revision, INT64_MAX))
                       : (fwd ? 0 : INT64_MAX));
  p.int8(static_cast<int64_t>(std::min<size_t>(limit, 1'000'000) + 1));
  // One statement: the stream's existence and the page come from the same snapshot.
  const std::string sql = fmt::format(
      "SELECT s.last_revision, {} FROM cairn.streams s LEFT JOIN LATERAL (SELECT * FROM cairn.events e WHERE e.stream = $1 "
      "AND e.revision {} $2 ORDER BY e.revision {} LIMIT $3) ev ON true WHERE s.stream = $1 ORDER BY ev.revision {}",
      "ev.position, ev.commit_position, ev.stream, ev.revision, ev.event_id, ev.event_type, ev.recorded_ns, "
      "ev.content_type, ev.flags, ev.metadata, ev.data",
      fwd ? ">=" : "<=", fwd ? "ASC" : "DESC", fwd ? "ASC" : "DESC");
  auto r = read_query(fwd ? "cairn_read_stream_fwd" : "cairn_read_stream_bwd", sql, p);
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return Status::not_found(fmt::format("stream '{}' does not exist", stream));
  ReadPage page;
  for (int i = 0; i < r->rows(); ++i) {
    if (r->null(i, 1)) break;
    if (page.events.size() == limit) {
      page.next = static_cast<uint64_t>(r->int8(i, 4));
      break;
    }
    page.events.push_back(row_event(*r, i, 1));
  }
  return page;
}

Result<ReadPage> PgStore::read_all_stored(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                                          const Filter& filter) {
  CAIRN_RETURN_IF_ERROR(open_check());
  if (limit == 0) return Status::invalid_argument("limit: must be at least 1");
  const bool fwd = direction == Direction::kForward;
  Params p;
  p.int8(from_position ? static_cast<int64_t>(std::min<uint64_t>(*from_position, INT64_MAX)) : (fwd ? 0 : INT64_MAX));
  p.int8(static_cast<int64_t>(std::min<size_t>(limit, 1'000'000) + 1));
  p.int8(0);  // unused slot keeps the filter parameters at $4..$7 in every statement
  filter_params(p, filter);
  const std::string sql =
      fmt::format("SELECT {} FROM cairn.events WHERE position {} $1 AND $3::int8 = 0 {} ORDER BY position {} LIMIT $2",
                  kColumns, fwd ? ">=" : "<=", kFilterSql, fwd ? "ASC" : "DESC");
  auto r = read_query(fwd ? "cairn_read_all_fwd" : "cairn_read_all_bwd", sql, p);
  if (!r.ok()) return r.status();
  ReadPage page;
  for (int i = 0; i < r->rows(); ++i) {
    if (page.events.size() == limit) {
      page.next = static_cast<uint64_t>(r->int8(i, 0));
      break;
    }
    page.events.push_back(row_event(*r, i));
  }
  return page;
}

Status PgStore::scan(uint64_t from, const Filter& filter, const StoredEventVisitor& visit, bool open) {
  CAIRN_RETURN_IF_ERROR(open_check());
  // Up to the head at the start: a scan ends even while appends go on.
  uint64_t end = 0;
  {
    auto h = read_query("cairn_head", "SELECT next_position FROM cairn.head WHERE id", Params());
    if (!h.ok()) return h.status();
    end = static_cast<uint64_t>(h->int8(0, 0));
  }
  uint64_t cursor = from;
  while (cursor < end) {
    std::vector<RecordedEvent> page;
    std::vector<std::string> salts;  // exports carry each event's digest salt (an import reproduces the digest)
    {
      Params p;
      p.int8(static_cast<int64_t>(cursor));
      p.int8(static_cast<int64_t>(end));
      p.int8(2000);
      filter_params(p, filter);
      const std::string sql = fmt::format(
          "SELECT {}, salt FROM cairn.events WHERE position >= $1 AND position < $2 {} ORDER BY position LIMIT $3",
          kColumns, kFilterSql);
      auto r = read_query("cairn_scan", sql, p);
      if (!r.ok()) return r.status();
      for (int i = 0; i < r->rows(); ++i) {
        page.push_back(row_event(*r, i));
        salts.emplace_back(r->bytes(i, 11));
      }
      cursor = page.size() < 2000 ? end : page.back().position + 1;
    }
    for (size_t i = 0; i < page.size(); ++i) {
      if (open) CAIRN_RETURN_IF_ERROR(open_personal(page[i]));
      StoredEventView v;
      static_cast<EventView&>(v) = page[i].view();
      v.digest_salt = salts[i];
      if (!visit(v)) return {};
    }
  }
  return {};
}

// One exported commit as one commit, through cairn.import_commit (which checks revisions, times and ids
// under the head row lock). The digests are computed here, as for appends.
// The policies' begin_import is not called here: on this shared log the ledger's reference index catches up
// from the log before each check, so it reads imported events like anyone else's (recording them here too
// would count them twice).
Result<uint64_t> PgStore::import_commit(std::vector<ImportEvent> events) {
  CAIRN_RETURN_IF_ERROR(open_check());
  CAIRN_RETURN_IF_ERROR(store::validate_import(events, options_.limits));
  thread_local log::Sha256 sha;
  Params p;
  const auto column = [&](Oid type, auto&& add) {
    p.begin_array(type);
    for (const auto& e : events) add(e);
    p.end_array();
  };
  column(Oid::kText, [&](const ImportEvent& e) { p.el_text(e.stream); });
  column(Oid::kInt8, [&](const ImportEvent& e) { p.el_int8(static_cast<int64_t>(e.revision)); });
  column(Oid::kUuid, [&](const ImportEvent& e) { p.el_uuid(e.id); });
  column(Oid::kText, [&](const ImportEvent& e) { p.el_text(e.type); });
  column(Oid::kInt8, [&](const ImportEvent& e) { p.el_int8(e.recorded_ns); });
  column(Oid::kInt2, [&](const ImportEvent& e) { p.el_int2(static_cast<int16_t>(e.content_type)); });
  column(Oid::kInt2, [&](const ImportEvent& e) { p.el_int2(e.sealed_parts ? log::kEventFlagSealedParts : 0); });
  column(Oid::kBytea, [&](const ImportEvent& e) { p.el_text(e.metadata); });
  column(Oid::kBytea, [&](const ImportEvent& e) { p.el_text(e.data); });
  column(Oid::kBytea, [&](const ImportEvent& e) {
    p.el_text(std::string_view(reinterpret_cast<const char*>(e.digest_salt.data()), e.digest_salt.size()));
  });
  column(Oid::kBytea, [&](const ImportEvent& e) {
    const log::Hash d = log::event_digest(sha, e.digest_salt.data(), e.metadata, e.data, e.sealed_parts);
    p.el_text(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
  });
  auto c = primary_->acquire();
  if (!c.ok()) return c.status();
  auto r = (*c)->prepared("cairn_import",
                          "SELECT cairn.import_commit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", p);
  if (!r.ok()) {
    // The function's own errors name the event; strip the transport's prefix from them.
    const std::string& m = r.status().message();
    const auto at = m.find("postgres: ");
    return Status(r.status().code(), at == std::string::npos ? m : m.substr(at + 10));
  }
  const uint64_t first = static_cast<uint64_t>(r->int8(0, 0));
  const uint64_t end = first + events.size();
  committed_through(end);
  appended_commits_.fetch_add(1);
  appended_events_.fetch_add(events.size());
  return first;
}

Result<RecordedEvent> PgStore::read_position(uint64_t position) {
  CAIRN_RETURN_IF_ERROR(open_check());
  Params p;
  p.int8(static_cast<int64_t>(std::min<uint64_t>(position, INT64_MAX)));
  auto r = read_query("cairn_read_position", fmt::format("SELECT {} FROM cairn.events WHERE position = $1", kColumns), p);
  if (!r.ok()) return r.status();
  if (r->rows() == 0)
    return Status::not_found(fmt::format("position {} does not exist (the log holds {} events)", position, head_position()));
  RecordedEvent e = row_event(*r, 0);
  CAIRN_RETURN_IF_ERROR(open_personal(e));
  return e;
}

Result<RecordedEvent> PgStore::read_event(const Uuid& id) {
  CAIRN_RETURN_IF_ERROR(open_check());
  Params p;
  p.uuid(id);
  auto r = read_query("cairn_read_event", fmt::format("SELECT {} FROM cairn.events WHERE event_id = $1", kColumns), p);
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return Status::not_found(fmt::format("no event has id {}", id.to_string()));
  RecordedEvent e = row_event(*r, 0);
  CAIRN_RETURN_IF_ERROR(open_personal(e));
  return e;
}

Result<StreamInfo> PgStore::stream_info(std::string_view stream) {
  CAIRN_RETURN_IF_ERROR(open_check());
  CAIRN_RETURN_IF_ERROR(store::validate_stream_name(stream, "stream", true));
  Params p;
  p.text(stream);
  auto r = read_query("cairn_stream_info",
                          "SELECT last_revision, last_position, first_position FROM cairn.streams WHERE stream = $1", p);
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return Status::not_found(fmt::format("stream '{}' does not exist", stream));
  return StreamInfo{std::string(stream), static_cast<uint64_t>(r->int8(0, 0)), static_cast<uint64_t>(r->int8(0, 1)),
                    static_cast<uint64_t>(r->int8(0, 2))};
}

Result<StreamListing> PgStore::list_streams(std::optional<std::string> after, size_t limit, std::string_view prefix) {
  CAIRN_RETURN_IF_ERROR(open_check());
  if (limit == 0) return Status::invalid_argument("limit: must be at least 1");
  Params p;
  if (after) p.text(*after); else p.null(Oid::kText);
  p.text(prefix);
  p.int8(static_cast<int64_t>(std::min<size_t>(limit, 100'000) + 1));
  // Byte order of the names (COLLATE "C"): stable, and the same on every server.
  auto r = read_query("cairn_list_streams",
                          "SELECT stream, last_revision, last_position, first_position FROM cairn.streams "
                          "WHERE ($1::text IS NULL OR stream COLLATE \"C\" > $1::text COLLATE \"C\") AND starts_with(stream, $2) "
                          "ORDER BY stream COLLATE \"C\" LIMIT $3",
                          p);
  if (!r.ok()) return r.status();
  StreamListing out;
  for (int i = 0; i < r->rows(); ++i) {
    if (out.streams.size() == limit) {
      out.next = out.streams.back().stream;
      break;
    }
    out.streams.push_back(StreamInfo{std::string(r->bytes(i, 0)), static_cast<uint64_t>(r->int8(i, 1)),
                                     static_cast<uint64_t>(r->int8(i, 2)), static_cast<uint64_t>(r->int8(i, 3))});
  }
  return out;
}


Result<std::unique_ptr<Store>> open_pg_store(const PostgresOptions& options, store::Extensions extensions) {
  auto s = PgStore::open(options, std::move(extensions));
  if (!s.ok()) return s.status();
  return std::unique_ptr<Store>(std::move(*s));
}

}  // namespace cairn::pg
