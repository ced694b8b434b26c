// The PostgreSQL store's internals, shared by its source files: pg_store.cc (open, reads, the tailer and
// sealer, import), pg_writer.cc (group commit through cairn.append), pg_subscription.cc (catch-up and live
// subscriptions) and pg_privacy.cc (forget and the purge). The contract is in pg/pg_store.h; nothing
// outside src/pg includes this file.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <optional>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cairn/store.h"
#include "base/mutex.h"
#include "base/reserved_appends.h"
#include "cairn/subscription.h"
#include "log/record.h"
#include "pg/client.h"
#include "pg/verify.h"
#include "store/policy.h"
#include "store/prepare.h"
#include "store/validate.h"
#include "subscribe/notifier.h"

namespace cairn::pg {

using Clock = std::chrono::steady_clock;

// The largest group the writer sends in one call (events and bytes), so one transaction stays bounded.
inline constexpr size_t kGroupEvents = 50'000;
inline constexpr size_t kGroupBytes = 64u << 20;

inline constexpr const char* kAppendSql =
    "SELECT o_status, o_actual, o_position, o_revision, o_detail FROM cairn.append($1, $2, $3, $4, $5, $6, $7, $8, $9, "
    "$10, $11, $12, $13)";

inline constexpr const char* kColumns =
    "position, commit_position, stream, revision, event_id, event_type, recorded_ns, content_type, flags, metadata, data";

inline RecordedEvent row_event(const PgResult& r, int i, int c0 = 0) {
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
inline void filter_params(Params& p, const Filter& f) {
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
inline constexpr const char* kFilterSql =
    " AND ($4::text[] IS NULL OR event_type = ANY($4::text[]))"
    " AND ($5::text IS NULL OR starts_with(event_type, $5::text))"
    " AND ($6::text IS NULL OR starts_with(stream, $6::text))"
    " AND ($7::text IS NULL OR (strpos($7::text, '-') = 0 AND (stream = $7::text OR starts_with(stream, $7::text || '-'))))";

inline int64_t expected_code(const ExpectedRevision& e) {
  switch (e.kind) {
    case ExpectedRevision::Kind::kAny: return -1;
    case ExpectedRevision::Kind::kNoStream: return -2;
    case ExpectedRevision::Kind::kExists: return -3;
    case ExpectedRevision::Kind::kExact: return static_cast<int64_t>(e.revision);
  }
  return -1;
}

class PgStore;

// A subscription rides out a database that does not answer (see PostgresOptions::outage_timeout): next()
// keeps its cursor, retries with a growing pause (up to a second) and returns empty batches meanwhile, so
// the caller goes on heartbeating; it fails with kUnavailable once the outage outlasted the timeout.
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
  std::optional<Clock::time_point> away_since_;  // the first failed poll of the current outage
  std::chrono::milliseconds retry_pause_{50};
};

// It is also the host of its policies (store::PolicyHost): they look events up through its reads.
class PgStore final : public Store, public base::ReservedAppends, private store::PolicyHost {
 public:
  static Result<std::unique_ptr<PgStore>> open(const PostgresOptions& options, store::Extensions extensions);
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
  DataKeys* data_keys() override { return ext_.sealed ? ext_.sealed->data_keys() : nullptr; }
  Result<std::string> subject_id(std::string_view subject) const override {
    if (!ext_.sealed) return Status::invalid_argument("subject: this store has no key store (docs/privacy.md)");
    return ext_.sealed->subject_id(subject);
  }
  Result<VerifyReport> verify_chain() override {
    CAIRN_RETURN_IF_ERROR(open_check());
    CAIRN_RETURN_IF_ERROR(seal_now());
    return verify_seals(options_.connection, {});
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
  Status scan_stored(uint64_t from_position, const Filter& filter, const StoredEventVisitor& visit) override {
    return scan(from_position, filter, visit, false);
  }
  Result<RecordedEvent> read_position(uint64_t position) override;
  Result<RecordedEvent> read_event(const Uuid& id) override;
  Result<StreamInfo> stream_info(std::string_view stream) override;
  Result<StreamListing> list_streams(std::optional<std::string> after, size_t limit, std::string_view prefix) override;
  Result<std::unique_ptr<Subscription>> subscribe_all(uint64_t from_position, Filter filter) override {
    CAIRN_RETURN_IF_ERROR(open_check());
    CAIRN_RETURN_IF_ERROR(reads_answer());
    return std::unique_ptr<Subscription>(new PgSubscription(*this, from_position, std::move(filter), std::nullopt));
  }
  Result<std::unique_ptr<Subscription>> subscribe_stream(std::string stream, uint64_t from_revision) override {
    CAIRN_RETURN_IF_ERROR(open_check());
    CAIRN_RETURN_IF_ERROR(store::validate_stream_name(stream, "stream", true));
    CAIRN_RETURN_IF_ERROR(reads_answer());
    return std::unique_ptr<Subscription>(new PgSubscription(*this, from_revision, Filter{}, std::move(stream)));
  }
  Result<uint64_t> import_commit(std::vector<ImportEvent> events) override;
  uint64_t head_position() const override { return std::max(primary_head_.load(), read_head_.load()); }
  StoreStats stats() const override;
  StoreMetrics metrics() const override;
  Status close() override;

  // For subscriptions: one page after a cursor, with the read server's head from the same snapshot. On a
  // failure, *unreachable says whether the server did not answer (see read_query); the cursor is unchanged.
  Status poll_all(uint64_t* cursor, const Filter& filter, size_t max, std::vector<RecordedEvent>* out, uint64_t* seen_head,
                  bool* unreachable);
  Status poll_stream(const std::string& stream, uint64_t* cursor, size_t max, std::vector<RecordedEvent>* out,
                     uint64_t* seen_head, bool* unreachable);
  std::chrono::milliseconds outage_timeout() const { return options_.outage_timeout; }
  subscribe::Notifier& notifier() { return notifier_; }
  uint64_t read_head() const { return read_head_.load(); }
  Status open_personal(RecordedEvent& e) const {
    if (!e.sealed_parts || !ext_.sealed) return {};
    auto opened = ext_.sealed->open_data(e.id, e.data);
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
  void take_group(std::vector<Request*>* group) CAIRN_REQUIRES(mu_);
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
  // server restarted under the pool). Reads are idempotent, so retrying is safe. On a failure, *unreachable
  // (if given) says whether the server did not answer: no connection could be made, or the one used broke;
  // an answer (an SQL error, a busy pool) is not that.
  Result<PgResult> read_query(const std::string& name, const std::string& sql, const Params& params,
                              bool* unreachable = nullptr);
  // A subscription starts only when the read server answers, so that a client learns of an outage before
  // its stream starts (kUnavailable), not from a stream that ends at once.
  Status reads_answer();
  Result<ReadPage> read_stream_stored(std::string_view stream, std::optional<uint64_t> from_revision,
                                      Direction direction, size_t limit);
  Result<ReadPage> read_all_stored(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                                   const Filter& filter);
  Status scan(uint64_t from, const Filter& filter, const StoredEventVisitor& visit, bool open);
  Status seal_now();
  // store::PolicyHost
  Result<std::optional<RecordedEvent>> find_durable(const Uuid& id) override;
  bool exists(const Uuid& id) override { return read_event(id).ok(); }
  Status scan_types(uint64_t from, const std::vector<std::string>& types, const EventVisitor& visit) override;
  bool shared_log() const override { return true; }

  PostgresOptions options_;
  std::unique_ptr<Pool> primary_;
  std::unique_ptr<Pool> replica_;
  store::Extensions ext_;  // the policies every append runs, and the sealed parts' reader (null: no key store)
  subscribe::Notifier notifier_;
  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> primary_head_{0};  // the head after this process's latest commit (or as last read)
  std::atomic<uint64_t> read_head_{0};     // the head the read server (replica or primary) was seen at
  std::atomic<uint64_t> appended_commits_{0}, appended_events_{0}, groups_{0};
  std::array<std::atomic<uint64_t>, 10> group_buckets_{};  // events per cairn.append call, as StoreMetrics has them

  // The append queue: mu_ guards queue_ and stopping_ (callers enqueue, the writer thread takes groups). Never
  // held during a database round trip.
  base::Mutex mu_;
  std::condition_variable cv_;
  std::condition_variable tail_cv_;
  std::deque<Request*> queue_ CAIRN_GUARDED_BY(mu_);
  bool stopping_ CAIRN_GUARDED_BY(mu_) = false;
  // Two connections, so that the next group is already waiting on the head row while one commits: the
  // server goes from one group to the next without a round trip to this process in between.
  std::array<std::unique_ptr<Connection>, 2> writer_conns_;
  std::thread writer_;
  std::thread tailer_;

  base::Mutex forget_mu_, purge_mu_;
  std::atomic<uint64_t> purges_{0}, purged_parts_{0};
  std::atomic<bool> purge_running_{false};
};

}  // namespace cairn::pg
