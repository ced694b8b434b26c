#include "pg/pg_store.h"

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <semaphore>
#include <thread>
#include <unordered_set>

#include <fmt/format.h>
#include <simdjson.h>

#include "codec/event_json.h"
#include "ledger/references.h"
#include "log/record.h"
#include "log/sha256.h"
#include "pg/admin.h"
#include "pg/client.h"
#include "pg/verify.h"
#include "privacy/forget.h"
#include "privacy/keystore.h"
#include "privacy/personal.h"
#include "store/prepare.h"
#include "store/validate.h"
#include "subscribe/notifier.h"

namespace cairn::pg {
namespace {

using Clock = std::chrono::steady_clock;

// The largest group the writer sends in one call (events and bytes), so one transaction stays bounded.
constexpr size_t kGroupEvents = 50'000;
constexpr size_t kGroupBytes = 64u << 20;

constexpr const char* kAppendSql =
    "SELECT o_status, o_actual, o_position, o_revision, o_detail FROM cairn.append($1, $2, $3, $4, $5, $6, $7, $8, $9, "
    "$10, $11, $12, $13)";

constexpr const char* kColumns =
    "position, commit_position, stream, revision, event_id, event_type, recorded_ns, content_type, flags, metadata, data";

RecordedEvent row_event(const PgResult& r, int i, int c0 = 0) {
  RecordedEvent e;
  e.position = static_cast<uint64_t>(r.int8(i, c0 + 0));
  e.commit_position = static_cast<uint64_t>(r.int8(i, c0 + 1));
  e.stream = std::string(r.bytes(i, c0 + 2));
  e.revision = static_cast<uint64_t>(r.int8(i, c0 + 3));
  e.id = r.uuid(i, c0 + 4);
  e.type = std::string(r.bytes(i, c0 + 5));
  e.recorded_ns = r.int8(i, c0 + 6);
  e.content_type = static_cast<ContentType>(r.int2(i, c0 + 7));
  e.sealed_parts = (r.int2(i, c0 + 8) & log::kEventFlagSealedParts) != 0;
  e.metadata = std::string(r.bytes(i, c0 + 9));
  e.data = std::string(r.bytes(i, c0 + 10));
  return e;
}

// The $all filter as parameters: NULL means "no filter" for each field.
void filter_params(Params& p, const Filter& f) {
  if (f.types.empty()) {
    p.null(Oid::kTextArray);
  } else {
    p.begin_array(Oid::kText);
    for (const auto& t : f.types) p.el_text(t);
    p.end_array();
  }
  if (f.type_prefix.empty()) p.null(Oid::kText); else p.text(f.type_prefix);
  if (f.stream_prefix.empty()) p.null(Oid::kText); else p.text(f.stream_prefix);
  if (f.category.empty()) p.null(Oid::kText); else p.text(f.category);
}

// $4..$7: types, type prefix, stream prefix, category (the part of the name before the first '-').
constexpr const char* kFilterSql =
    " AND ($4::text[] IS NULL OR event_type = ANY($4::text[]))"
    " AND ($5::text IS NULL OR starts_with(event_type, $5::text))"
    " AND ($6::text IS NULL OR starts_with(stream, $6::text))"
    " AND ($7::text IS NULL OR (strpos($7::text, '-') = 0 AND (stream = $7::text OR starts_with(stream, $7::text || '-'))))";

int64_t expected_code(const ExpectedRevision& e) {
  switch (e.kind) {
    case ExpectedRevision::Kind::kAny: return -1;
    case ExpectedRevision::Kind::kNoStream: return -2;
    case ExpectedRevision::Kind::kExists: return -3;
    case ExpectedRevision::Kind::kExact: return static_cast<int64_t>(e.revision);
  }
  return -1;
}

class PgStore;

class PgSubscription final : public Subscription {
 public:
  PgSubscription(PgStore& store, uint64_t from, Filter filter, std::optional<std::string> stream)
      : store_(store), cursor_(from), filter_(std::move(filter)), stream_(std::move(stream)) {}
  Result<std::vector<RecordedEvent>> next(size_t max_events, std::chrono::milliseconds timeout) override;
  uint64_t cursor() const override { return cursor_; }
  void cancel() override;

 private:
  PgStore& store_;
  uint64_t cursor_;
  Filter filter_;
  std::optional<std::string> stream_;
  std::atomic<bool> cancelled_{false};
};

class PgStore final : public Store {
 public:
  static Result<std::unique_ptr<PgStore>> open(const Options& options);
  ~PgStore() override { (void)close(); }

  Result<AppendResult> append(StreamAppend request) override {
    std::vector<StreamAppend> v;
    v.push_back(std::move(request));
    return do_append(std::move(v), false, false);
  }
  Result<AppendResult> append_multi(std::vector<StreamAppend> requests) override {
    if (requests.empty()) return Status::invalid_argument("appends: at least one stream append is required");
    return do_append(std::move(requests), true, false);
  }
  Result<AppendResult> append_reserved(StreamAppend request) override {
    if (request.stream.empty() || request.stream[0] != '$')
      return Status::invalid_argument(fmt::format("stream: '{}' is not a reserved stream (they start with '$')", request.stream));
    std::vector<StreamAppend> v;
    v.push_back(std::move(request));
    return do_append(std::move(v), false, true);
  }

  Result<ForgetResult> forget(std::string_view subject, std::string_view reason, std::string_view actor_json) override;
  Result<PurgeResult> purge(std::string_view actor_json, const std::function<void(uint64_t, uint64_t)>& progress) override;
  Result<std::string> subject_id(std::string_view subject) const override {
    if (!keys_) return Status::invalid_argument("subject: this store has no key store (docs/privacy.md)");
    if (subject.empty() || subject.size() > 256) return Status::invalid_argument("subject: required, 1 to 256 bytes");
    return keys_->subject_id(subject);
  }
  Result<VerifyReport> verify_chain() override {
    CAIRN_RETURN_IF_ERROR(open_check());
    CAIRN_RETURN_IF_ERROR(seal_now());
    return verify_seals(options_.postgres, {});
  }

  Result<ReadPage> read_stream(std::string_view stream, std::optional<uint64_t> from_revision, Direction direction,
                               size_t limit) override {
    auto page = read_stream_stored(stream, from_revision, direction, limit);
    if (page.ok())
      for (auto& e : page->events) CAIRN_RETURN_IF_ERROR(open_personal(e));
    return page;
  }
  Result<ReadPage> read_all(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                            const Filter& filter) override {
    auto page = read_all_stored(from_position, direction, limit, filter);
    if (page.ok())
      for (auto& e : page->events) CAIRN_RETURN_IF_ERROR(open_personal(e));
    return page;
  }
  Status scan_all(uint64_t from_position, const Filter& filter, const EventVisitor& visit) override {
    return scan(from_position, filter, visit, true);
  }
  Status scan_stored(uint64_t from_position, const Filter& filter, const EventVisitor& visit) override {
    return scan(from_position, filter, visit, false);
  }
  Result<RecordedEvent> read_position(uint64_t position) override;
  Result<RecordedEvent> read_event(const Uuid& id) override;
  Result<StreamInfo> stream_info(std::string_view stream) override;
  Result<StreamListing> list_streams(std::optional<std::string> after, size_t limit, std::string_view prefix) override;
  Result<std::unique_ptr<Subscription>> subscribe_all(uint64_t from_position, Filter filter) override {
    CAIRN_RETURN_IF_ERROR(open_check());
    return std::unique_ptr<Subscription>(new PgSubscription(*this, from_position, std::move(filter), std::nullopt));
  }
  Result<std::unique_ptr<Subscription>> subscribe_stream(std::string stream, uint64_t from_revision) override {
    CAIRN_RETURN_IF_ERROR(open_check());
    CAIRN_RETURN_IF_ERROR(store::validate_stream_name(stream, "stream", true));
    return std::unique_ptr<Subscription>(new PgSubscription(*this, from_revision, Filter{}, std::move(stream)));
  }
  Result<uint64_t> import_commit(std::vector<ImportEvent> events) override;
  uint64_t head_position() const override { return std::max(primary_head_.load(), read_head_.load()); }
  StoreStats stats() const override;
  Status close() override;

  // For subscriptions: one page after a cursor, with the read server's head from the same snapshot.
  Status poll_all(uint64_t* cursor, const Filter& filter, size_t max, std::vector<RecordedEvent>* out, uint64_t* seen_head);
  Status poll_stream(const std::string& stream, uint64_t* cursor, size_t max, std::vector<RecordedEvent>* out,
                     uint64_t* seen_head);
  subscribe::Notifier& notifier() { return notifier_; }
  uint64_t read_head() const { return read_head_.load(); }
  Status open_personal(RecordedEvent& e) const {
    if (!e.sealed_parts || !keys_) return {};
    bool redacted = false;
    auto opened = privacy::open_data(*keys_, e.id, e.data, &redacted);
    if (!opened.ok())
      return Status(opened.status().code(), fmt::format("event at position {}: {}", e.position, opened.status().message()));
    e.data = std::move(*opened);
    return {};
  }

 private:
  struct Request {
    std::vector<store::PreparedAppend>* appends = nullptr;
    size_t events = 0;
    size_t bytes = 0;
    Status status;
    AppendResult result;
    std::binary_semaphore done{0};
  };

  PgStore() = default;
  Status open_check() const {
    if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
    return {};
  }
  Result<AppendResult> do_append(std::vector<StreamAppend> requests, bool multi, bool reserved);
  Result<AppendResult> submit(std::vector<store::PreparedAppend> appends);
  void run_writer();
  void run_tailer();
  // Takes the queued requests that fit one group (mu_ held).
  void take_group(std::vector<Request*>* group);
  // Sends one group's cairn.append call on writer connection `conn` without waiting.
  Status send_group(int conn, std::vector<Request*>& group);
  static Params append_params(const std::vector<Request*>& group);
  // Sends each request of a failed group alone, all in one round trip (pipeline mode, a sync after each, so
  // one request's failure ends only its own transaction), and answers each.
  void retry_alone(int conn, std::vector<Request*>& group);
  // Waits for that call's result and answers every request of the group.
  void finish_group(int conn, std::vector<Request*>& group);
  // Answers each request of a group whose call failed: the outcome is unknown if the connection broke,
  // else each request is sent again alone (one bad request must not fail the others).
  void group_failed(int conn, std::vector<Request*>& group, const Status& st);
  void answer_group(std::vector<Request*>& group, const PgResult& res);
  // This process committed positions below `end`: moves the heads it knows and wakes its subscribers.
  void committed_through(uint64_t end);
  // Answers the requests of a group that could not be sent: nothing of it reached the server.
  void refuse_unsent(std::vector<Request*>& group, const Status& st);
  // A pooled connection for reads: the replica's once it holds this process's own appends, else the primary's.
  Result<Pool::Lease> read_conn();
  // One read on a read_conn(), run again on another connection while the one it got turns out dead (the
  // server restarted under the pool). Reads are idempotent, so retrying is safe.
  Result<PgResult> read_query(const std::string& name, const std::string& sql, const Params& params);
  Result<ReadPage> read_stream_stored(std::string_view stream, std::optional<uint64_t> from_revision,
                                      Direction direction, size_t limit);
  Result<ReadPage> read_all_stored(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                                   const Filter& filter);
  Status scan(uint64_t from, const Filter& filter, const EventVisitor& visit, bool open);
  Status refresh_references();
  Status seal_now();

  Options options_;
  std::unique_ptr<Pool> primary_;
  std::unique_ptr<Pool> replica_;
  std::unique_ptr<privacy::KeyStore> keys_;
  subscribe::Notifier notifier_;
  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> primary_head_{0};  // the head after this process's latest commit (or as last read)
  std::atomic<uint64_t> read_head_{0};     // the head the read server (replica or primary) was seen at
  std::atomic<uint64_t> appended_commits_{0}, appended_events_{0}, groups_{0};
  std::array<std::atomic<uint64_t>, 10> group_buckets_{};  // events per cairn.append call, as StoreStats has them

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable tail_cv_;
  std::deque<Request*> queue_;
  bool stopping_ = false;
  // Two connections, so that the next group is already waiting on the head row while one commits: the
  // server goes from one group to the next without a round trip to this process in between.
  std::array<std::unique_ptr<Connection>, 2> writer_conns_;
  std::thread writer_;
  std::thread tailer_;

  // The AI ledger's reference index, caught up from the log before each check (other processes append too).
  std::mutex references_mu_;
  ledger::ReferenceIndex references_;
  uint64_t references_through_ = 0;
  std::mutex forget_mu_, purge_mu_;
  std::atomic<uint64_t> purges_{0}, purged_parts_{0};
  std::atomic<bool> purge_running_{false};
};

Result<std::unique_ptr<PgStore>> PgStore::open(const Options& options) {
  std::unique_ptr<PgStore> s(new PgStore());
  s->options_ = options;
  {
    auto keys = privacy::open_configured(options.key_store_dir, options.master_key, options.dir);
    if (!keys.ok()) return keys.status();
    s->keys_ = std::move(*keys);
  }
  auto conn = Connection::connect(options.postgres);
  if (!conn.ok()) return conn.status();
  CAIRN_RETURN_IF_ERROR(check_engine(**conn, options.postgres));
  CAIRN_RETURN_IF_ERROR(check_schema(**conn));
  auto head = (*conn)->query("SELECT next_position FROM cairn.head WHERE id", Params());
  if (!head.ok()) return head.status();
  s->primary_head_ = s->read_head_ = static_cast<uint64_t>(head->int8(0, 0));
  s->writer_conns_[0] = std::move(*conn);
  s->primary_ = std::make_unique<Pool>(options.postgres, std::max<size_t>(1, options.postgres_pool));
  if (!options.postgres_read_replica.empty()) {
    auto rc = Connection::connect(options.postgres_read_replica);
    if (!rc.ok()) return Status(rc.status().code(), "read replica: " + rc.status().message());
    CAIRN_RETURN_IF_ERROR(check_schema(**rc));
    auto rh = (*rc)->query("SELECT next_position FROM cairn.head WHERE id", Params());
    if (!rh.ok()) return Status(rh.status().code(), "read replica: " + rh.status().message());
    s->read_head_ = static_cast<uint64_t>(rh->int8(0, 0));
    s->replica_ = std::make_unique<Pool>(options.postgres_read_replica, std::max<size_t>(1, options.postgres_pool));
  }
  s->writer_ = std::thread([p = s.get()] { p->run_writer(); });
  s->tailer_ = std::thread([p = s.get()] { p->run_tailer(); });
  return s;
}

Status PgStore::close() {
  if (closed_.exchange(true)) return {};
  {
    std::lock_guard g(mu_);
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
  s.appended_commits = appended_commits_.load();
  s.appended_events = appended_events_.load();
  s.groups = groups_.load();
  for (size_t i = 0; i < s.group_buckets.size(); ++i) s.group_buckets[i] = group_buckets_[i].load();
  s.group_events = appended_events_.load();
  s.purge_running = purge_running_.load();
  s.purges = purges_.load();
  s.purged_parts = purged_parts_.load();
  return s;
}

Result<AppendResult> PgStore::do_append(std::vector<StreamAppend> requests, bool multi, bool reserved) {
  CAIRN_RETURN_IF_ERROR(open_check());
  auto batch = store::prepare_appends(std::move(requests), multi, reserved, options_.limits, keys_.get(),
                                      [this](const Uuid& id) -> Result<std::optional<RecordedEvent>> {
                                        auto e = read_event(id);
                                        if (e.ok()) return std::optional<RecordedEvent>(std::move(*e));
                                        if (e.status().code() == ErrorCode::kNotFound) return std::optional<RecordedEvent>();
                                        return e.status();
                                      });
  if (!batch.ok()) return batch.status();
  if (!batch->has_references) return submit(std::move(batch->appends));
  // The reference rules need every proposal and decision so far, including other processes' (docs/scaling.md
  // says what two processes racing on the same proposal can do).
  std::lock_guard g(references_mu_);
  CAIRN_RETURN_IF_ERROR(refresh_references());
  CAIRN_RETURN_IF_ERROR(references_.check_and_reserve(batch->ledger_events, [this](const Uuid& id) {
    auto e = read_event(id);
    return e.ok();
  }));
  auto result = submit(std::move(batch->appends));
  references_.finish(batch->ledger_events, result.ok());
  if (result.ok()) references_through_ = std::max(references_through_, result->streams.back().last_position + 1);
  return result;
}

Status PgStore::refresh_references() {
  Filter f;
  f.types = {"ai.proposal.made", "human.decision.recorded"};
  return scan(references_through_, f, [&](const EventView& v) {
    EventData d{v.id, std::string(v.type), v.content_type, std::string(v.metadata), std::string(v.data)};
    auto refs = ledger::check_event(d, "event");
    if (refs.ok()) references_.record(v.id, *refs);
    references_through_ = v.position + 1;
    return true;
  }, true);
}

Result<AppendResult> PgStore::submit(std::vector<store::PreparedAppend> appends) {
  Request r;
  r.appends = &appends;
  for (const auto& a : appends) {
    r.events += a.append.events.size();
    for (const auto& e : a.append.events) r.bytes += e.data.size() + e.metadata.size() + e.type.size() + 64;
  }
  {
    std::lock_guard g(mu_);
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
      std::unique_lock lk(mu_);
      if (inflight.empty()) cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
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

Status PgStore::send_group(int conn, std::vector<Request*>& group) {
  auto& c = writer_conns_[conn];
  if (!c || c->broken()) {
    auto fresh = Connection::connect(options_.postgres);
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
    if (static_cast<double>(group_events) <= StoreStats::kGroupBucketsEvents[i]) group_buckets_[i].fetch_add(1);
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

// Follows the read server's head (other processes append too) and seals committed events.
void PgStore::run_tailer() {
  std::unique_ptr<Connection> conn;
  const std::string& target = replica_ ? options_.postgres_read_replica : options_.postgres;
  auto next_seal = Clock::now();
  for (;;) {
    {
      std::unique_lock lk(mu_);
      if (tail_cv_.wait_for(lk, std::chrono::milliseconds(10), [&] { return stopping_; })) return;
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
  for (;;) {
    auto c = primary_->acquire();
    if (!c.ok()) return c.status();
    Params p;
    p.int4(10'000);  // a seal's records sort in memory (work_mem) at this size
    auto r = (*c)->prepared("cairn_seal", "SELECT o_seal_no, o_end, o_chain FROM cairn.seal($1)", p);
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return {};
  }
}

Result<PgResult> PgStore::read_query(const std::string& name, const std::string& sql, const Params& params) {
  for (int attempt = 0;; ++attempt) {
    auto c = read_conn();
    if (!c.ok()) return c.status();
    auto r = (*c)->prepared(name, sql, params);
    // Each failed try drops its dead connection, so at most the whole pool's worth of them can fail.
    if (r.ok() || !(*c)->broken() || attempt > static_cast<int>(options_.postgres_pool)) return r;
  }
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

Status PgStore::scan(uint64_t from, const Filter& filter, const EventVisitor& visit, bool open) {
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
      EventView v = page[i].view();
      v.digest_salt = salts[i];
      if (!visit(v)) return {};
    }
  }
  return {};
}

Status PgStore::poll_all(uint64_t* cursor, const Filter& filter, size_t max, std::vector<RecordedEvent>* out,
                         uint64_t* seen_head) {
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
  auto r = read_query("cairn_poll_all", sql, p);
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
                            uint64_t* seen_head) {
  CAIRN_RETURN_IF_ERROR(open_check());
  Params p;
  p.text(stream);
  p.int8(static_cast<int64_t>(*cursor));
  p.int8(static_cast<int64_t>(std::min<size_t>(max, 100'000)));
  const std::string sql = fmt::format(
      "SELECT h.next_position, ev.* FROM cairn.head h LEFT JOIN LATERAL (SELECT {} FROM cairn.events WHERE stream = $1 "
      "AND revision >= $2 ORDER BY revision LIMIT $3) ev ON true WHERE h.id ORDER BY ev.revision",
      kColumns);
  auto r = read_query("cairn_poll_stream", sql, p);
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

// One exported commit as one commit, through cairn.import_commit (which checks revisions, times and ids
// under the head row lock). The digests are computed here, as for appends.
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

Result<ForgetResult> PgStore::forget(std::string_view subject, std::string_view reason, std::string_view actor_json) {
  CAIRN_RETURN_IF_ERROR(open_check());
  if (!keys_) return Status::invalid_argument("forget: this store has no key store (docs/privacy.md)");
  std::lock_guard g(forget_mu_);
  return privacy::forget_subject(*this, *keys_, subject, reason, actor_json);
}

// The purge on PostgreSQL: every event with sealed parts not yet purged is read; parts under destroyed keys
// are replaced by their markers (same length), and cairn.purge_parts swaps them in. That function runs as
// cairn_purger, the only role the update trigger lets through, and only for data with the stored digest.
Result<PurgeResult> PgStore::purge(std::string_view actor_json, const std::function<void(uint64_t, uint64_t)>& progress) {
  CAIRN_RETURN_IF_ERROR(open_check());
  if (!keys_) return Status::invalid_argument("purge: this store has no key store (docs/privacy.md)");
  if (!actor_json.empty())
    CAIRN_RETURN_IF_ERROR(store::validate_metadata(fmt::format(R"({{"actor":{}}})", actor_json), "body"));
  std::lock_guard g(purge_mu_);
  purge_running_ = true;
  struct Finished {
    std::atomic<bool>& running;
    ~Finished() { running = false; }
  } finished{purge_running_};
  const auto start = Clock::now();
  PurgeResult out;
  // The chain first, so the report can show it unchanged by the purge.
  CAIRN_RETURN_IF_ERROR(seal_now());
  auto before = verify_seals(options_.postgres, {});
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
      auto replaced = privacy::purge_parts(*keys_, e.data, &purged, &key_ids);
      if (!replaced.ok()) return Status(replaced.status().code(), fmt::format("event at position {}: {}", e.position,
                                                                             replaced.status().message()));
      if (purged == 0) continue;
      ++out.events;
      out.parts += purged;
      for (size_t k = 0; k < e.data.size(); ++k) out.bytes_replaced += e.data[k] != (*replaced)[k] ? 1 : 0;
      for (auto& kid : key_ids) subjects.insert(kid.substr(0, kid.find('/')));
      // The function checks the new data against the redacted form the digest commits to.
      auto redacted = privacy::redactable_form(e.data);
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
  auto after = verify_seals(options_.postgres, {});
  if (!after.ok()) return after.status();
  out.chain_head_after = after->chain_head_hex;
  if (!after->ok || after->events < before->events)
    return Status::corruption(fmt::format("purge: the log does not verify after the purge (position {}: {}); this is a bug, "
                                          "report it", after->position.value_or(0), after->problem));
  // Every seal was recomputed from the purged events and matched; the seal that ended the chain before the
  // purge gives the chain head after it at the same place (the sealer may have added seals meanwhile).
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
  auto r = privacy::record_privacy_event(*this, privacy::kPurgedType, std::move(data), actor_json);
  if (!r.ok())
    return Status(r.status().code(), fmt::format("the purge is done (and committed), but recording it failed: {}", r.status().message()));
  out.position = *r;
  return out;
}

Result<std::vector<RecordedEvent>> PgSubscription::next(size_t max_events, std::chrono::milliseconds timeout) {
  if (max_events == 0) return Status::invalid_argument("max_events: must be at least 1");
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cancelled_.load()) return Status(ErrorCode::kClosed, "the subscription was cancelled");
    if (store_.notifier().closed()) return Status(ErrorCode::kClosed, "the store was closed");
    std::vector<RecordedEvent> out;
    uint64_t seen = 0;
    Status st = stream_ ? store_.poll_stream(*stream_, &cursor_, max_events, &out, &seen)
                        : store_.poll_all(&cursor_, filter_, max_events, &out, &seen);
    if (!st.ok()) return st;
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

}  // namespace

Result<std::unique_ptr<Store>> open_pg_store(const Options& options) {
  auto s = PgStore::open(options);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Store>(std::move(*s));
}

}  // namespace cairn::pg
