#include "store/embedded_store.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <charconv>
#include <unordered_set>

#include <fmt/format.h>
#include <simdjson.h>

#include "codec/event_json.h"
#include "store/prepare.h"
#include "store/validate.h"
#include "store/subscription.h"

namespace cairn::store {

// The policies look up durable events through the store's reader: never an event still in flight.
class EmbeddedStore::Host final : public PolicyHost {
 public:
  explicit Host(EmbeddedStore& s) : s_(s) {}
  Result<std::optional<RecordedEvent>> find_durable(const Uuid& id) override {
    return s_.reader_->find_by_id(id, s_.reader_->durable_end());
  }
  bool exists(const Uuid& id) override {
    auto found = s_.reader_->find_by_id(id, s_.reader_->durable_end());
    return found.ok() && found->has_value();
  }
  // Through the type index, as stored (nothing is opened).
  Status scan_types(uint64_t from, const std::vector<std::string>& types, const EventVisitor& visit) override {
    Filter f;
    f.types = types;
    std::optional<uint64_t> at = from;
    while (at) {
      ReadPage page;
      CAIRN_RETURN_IF_ERROR(s_.read_all_by_type(*at, s_.reader_->durable_end(), Direction::kForward, 10'000, f, &page));
      for (const auto& e : page.events)
        if (!visit(e.view())) return {};
      at = page.next;
    }
    return {};
  }
  bool shared_log() const override { return false; }

 private:
  EmbeddedStore& s_;
};

Result<std::unique_ptr<EmbeddedStore>> EmbeddedStore::open(const EmbeddedOptions& options, base::FileSystem* fs,
                                                           const ProgressFn& replay_progress, Extensions extensions) {
  if (options.dir.empty()) return Status::invalid_argument("dir: a data directory is required");
  if (options.segment_size < 4096)
    return Status::invalid_argument(fmt::format("segment_size: {} is too small (at least 4096)", options.segment_size));
  if (options.limits.max_event_bytes == 0 || options.limits.max_append_bytes < options.limits.max_event_bytes)
    return Status::invalid_argument("limits: max_append_bytes must be at least max_event_bytes, both above 0");
  std::unique_ptr<EmbeddedStore> s(new EmbeddedStore());
  s->options_ = options;
  s->fs_ = fs;
  s->ext_ = std::move(extensions);
  s->host_ = std::make_unique<Host>(*s);
  if (!options.read_only) {
    CAIRN_RETURN_IF_ERROR(base::make_dirs(options.dir));
    auto fd = base::lock_data_dir(options.dir);
    if (!fd.ok()) return fd.status();
    s->lock_fd_ = *fd;
  }
  log::LogOptions lo;
  lo.fs = fs;
  lo.segment_size = options.segment_size;
  // The largest frame: every event's fixed part, names and salt on top of the byte limit.
  lo.max_commit_bytes = uint64_t{options.limits.max_append_bytes} +
                        uint64_t{options.limits.max_events_per_append} * (log::kEventFixedSize + 512 + log::kSaltSize) +
                        log::kFrameHeaderSize;
  lo.read_only = options.read_only;
  lo.repair = options.repair;
  lo.sync = options.durability == Durability::kFsync;
  if (options.read_only && base::writer_is_live(options.dir)) {
    auto head = log::read_head_hint(options.dir);
    lo.max_position = head.ok() ? *head : 0;
  }
  auto lg = log::Log::open(options.dir, lo);
  if (!lg.ok()) return lg.status();
  s->log_ = std::move(*lg);
  auto idx = index::Index::open(options.dir, fs, options.index_memtable_events, options.read_only);
  if (!idx.ok()) return idx.status();
  s->index_ = std::move(*idx);
  if (s->index_->indexed_through() > s->log_->durable_end()) {
    // The index covers events the log no longer has (a repair cut them, or durability none lost them):
    // the log is the truth, so the index starts over.
    CAIRN_RETURN_IF_ERROR(s->index_->reset());
  }
  s->reader_ = std::make_unique<LogReader>(*s->log_, *s->index_);
  CAIRN_RETURN_IF_ERROR(s->replay_index(replay_progress));
  if (!options.read_only)
    s->writer_ = std::make_unique<Writer>(*s->log_, *s->index_, *s->reader_, [p = s.get()] { p->notifier_.publish(); });
  return s;
}

EmbeddedStore::~EmbeddedStore() { (void)close(); }

// Indexes the log from the index's checkpoint to the end: the only part of history an open reads.
Status EmbeddedStore::replay_index(const ProgressFn& progress) {
  const uint64_t from = index_->indexed_through();
  const uint64_t end = log_->durable_end();
  if (from >= end) return {};
  auto seg = log_->segment_for(from);
  if (!seg) return {};
  auto e = index_->sparse_floor(seg->first_position(), from);
  index::IndexBatch batch;
  Status inner;
  Status st = log_->visit_frames(seg, e ? e->value : log::kSegmentHeaderSize, end,
                                 [&](const log::FrameRef& r, const uint8_t* f) {
                                   const auto& h = r.header;
                                   if (h.first_position + h.event_count <= from) return true;
                                   inner = log::Log::check_frame_body(r, f);
                                   if (!inner.ok()) return false;
                                   if (log::frame_needs_sparse_entry(r.offset, h.frame_size))
                                     batch.sparse.push_back({h.first_position, r.offset});
                                   inner = log::for_each_event(h, f + log::kFrameHeaderSize,
                                                               [&](const EventView& v, const uint8_t*, uint32_t) {
                                                                 batch.streams.push_back({index::hash_name(v.stream), v.revision, v.position});
                                                                 batch.types.push_back({index::hash_name(v.type), v.position});
                                                                 batch.ids.push_back({index::hash_id(v.id), v.position});
                                                                 return true;
                                                               });
                                   if (!inner.ok()) return false;
                                   if (batch.streams.size() >= 65536) {
                                     batch.end_position = h.first_position + h.event_count;
                                     index_->add(batch);
                                     batch.clear();
                                     if (progress) progress(batch.end_position - from, end - from);
                                   }
                                   return true;
                                 }, /*ignore_header_error=*/true);
  CAIRN_RETURN_IF_ERROR(st);
  CAIRN_RETURN_IF_ERROR(inner);
  batch.end_position = end;
  index_->add(batch);
  if (progress) progress(end - from, end - from);
  return {};
}

Status EmbeddedStore::writable() const {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  if (!writer_) return Status::invalid_argument("the store was opened read-only");
  return {};
}

Result<AppendResult> EmbeddedStore::append(StreamAppend request) {
  std::vector<StreamAppend> v;
  v.push_back(std::move(request));
  return do_append(std::move(v), false, false);
}

Result<AppendResult> EmbeddedStore::append_reserved(StreamAppend request) {
  if (request.stream.empty() || request.stream[0] != '$')
    return Status::invalid_argument(fmt::format("stream: '{}' is not a reserved stream (they start with '$')", request.stream));
  std::vector<StreamAppend> v;
  v.push_back(std::move(request));
  return do_append(std::move(v), false, true);
}

Result<AppendResult> EmbeddedStore::append_multi(std::vector<StreamAppend> requests) {
  if (requests.empty()) return Status::invalid_argument("appends: at least one stream append is required");
  return do_append(std::move(requests), true, false);
}

Result<AppendResult> EmbeddedStore::do_append(std::vector<StreamAppend> requests, bool multi, bool reserved) {
  CAIRN_RETURN_IF_ERROR(writable());
  auto batch = prepare_appends(std::move(requests), multi, reserved, options_.limits, ext_.policies, *host_);
  if (!batch.ok()) return batch.status();
  return submit_prepared(*batch, [this](std::vector<PreparedAppend> a) { return writer_->submit(std::move(a)); });
}

void EmbeddedStore::append_async(StreamAppend request, AppendCallback done) {
  std::vector<StreamAppend> v;
  v.push_back(std::move(request));
  do_append_async(std::move(v), false, std::move(done));
}

void EmbeddedStore::append_multi_async(std::vector<StreamAppend> requests, AppendCallback done) {
  if (requests.empty()) return done(Status::invalid_argument("appends: at least one stream append is required"));
  do_append_async(std::move(requests), true, std::move(done));
}

void EmbeddedStore::do_append_async(std::vector<StreamAppend> requests, bool multi, AppendCallback done) {
  if (Status st = writable(); !st.ok()) return done(st);
  auto batch = prepare_appends(std::move(requests), multi, false, options_.limits, ext_.policies, *host_);
  if (!batch.ok()) return done(batch.status());
  submit_prepared_async(
      std::move(*batch), [this](std::vector<PreparedAppend> a, AppendCallback cb) { writer_->submit_async(std::move(a), std::move(cb)); },
      std::move(done));
}

Result<uint64_t> EmbeddedStore::import_commit(std::vector<ImportEvent> events) {
  CAIRN_RETURN_IF_ERROR(writable());
  CAIRN_RETURN_IF_ERROR(validate_import(events, options_.limits));
  std::vector<std::unique_ptr<AppendPolicy::Run>> runs;
  for (auto& p : ext_.policies)
    if (auto run = p->begin_import(events)) runs.push_back(std::move(run));
  auto first = writer_->import(std::move(events));
  const AppendResult durable;
  for (auto& run : runs) run->finish(first.ok() ? &durable : nullptr);
  return first;
}

Status EmbeddedStore::open_personal(RecordedEvent& e) const {
  if (!e.sealed_parts || !ext_.sealed) return {};
  auto opened = ext_.sealed->open_data(e.id, e.data);
  if (!opened.ok()) return Status(opened.status().code(), fmt::format("event at position {}: {}", e.position, opened.status().message()));
  e.data = std::move(*opened);
  return {};
}

Result<ReadPage> EmbeddedStore::read_stream(std::string_view stream, std::optional<uint64_t> from_revision,
                                            Direction direction, size_t limit) {
  auto page = read_stream_stored(stream, from_revision, direction, limit);
  if (page.ok())
    for (auto& e : page->events) CAIRN_RETURN_IF_ERROR(open_personal(e));
  return page;
}

Result<ReadPage> EmbeddedStore::read_stream_stored(std::string_view stream, std::optional<uint64_t> from_revision,
                                                   Direction direction, size_t limit) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  CAIRN_RETURN_IF_ERROR(validate_stream_name(stream, "stream", true));
  if (limit == 0) return Status::invalid_argument("limit: must be at least 1");
  const uint64_t end = reader_->durable_end();
  auto tip = reader_->stream_tip(stream, end);
  if (!tip.ok()) return tip.status();
  if (!*tip) return Status::not_found(fmt::format("stream '{}' does not exist", stream));
  const uint64_t last = (*tip)->revision;
  ReadPage page;
  uint64_t lo, hi;
  if (direction == Direction::kForward) {
    lo = from_revision.value_or(0);
    if (lo > last) return page;
    hi = lo + std::min<uint64_t>(limit - 1, last - lo);
  } else {
    hi = std::min(from_revision.value_or(last), last);
    lo = hi + 1 >= limit ? hi + 1 - limit : 0;
  }
  CAIRN_RETURN_IF_ERROR(reader_->stream_events(stream, lo, hi, end, [&](const EventView& v) {
    page.events.push_back(v.to_owned());
    return true;
  }));
  if (page.events.size() != hi - lo + 1)
    return Status::corruption(fmt::format(
        "stream '{}': the index has {} of revisions {}..{}; run `cairn reindex` (the log is intact)", stream,
        page.events.size(), lo, hi));
  if (direction == Direction::kForward) {
    if (hi < last) page.next = hi + 1;
  } else {
    std::reverse(page.events.begin(), page.events.end());
    if (lo > 0) page.next = lo - 1;
  }
  return page;
}

Status EmbeddedStore::read_all_by_type(uint64_t lo, uint64_t hi, Direction direction, size_t limit,
                                       const Filter& filter, ReadPage* page) {
  // Candidates come from the type index in chunks; each is confirmed against its record (hash collisions,
  // the other filters), and chunks continue until the page is full or the range is exhausted.
  const bool forward = direction == Direction::kForward;
  std::vector<uint64_t> positions;
  for (;;) {
    positions.clear();
    for (const auto& t : filter.types) index_->type_positions(index::hash_name(t), lo, hi, forward, limit, &positions);
    std::sort(positions.begin(), positions.end());
    positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
    if (positions.size() > limit) {
      if (forward) positions.resize(limit);
      else positions.erase(positions.begin(), positions.end() - static_cast<ptrdiff_t>(limit));
    }
    if (positions.empty()) return {};
    std::vector<RecordedEvent> chunk;
    CAIRN_RETURN_IF_ERROR(reader_->read_positions(positions, [&](const EventView& v) {
      if (filter.matches(v.stream, v.type)) chunk.push_back(v.to_owned());
      return true;
    }));
    if (!forward) std::reverse(chunk.begin(), chunk.end());
    for (auto& e : chunk) {
      if (page->events.size() == limit) {
        page->next = e.position;  // the first match that did not fit starts the next page
        return {};
      }
      page->events.push_back(std::move(e));
    }
    if (forward) {
      if (positions.back() >= hi) return {};
      lo = positions.back() + 1;
    } else {
      if (positions.front() <= lo) return {};
      hi = positions.front() - 1;
    }
    if (page->events.size() == limit) {
      page->next = forward ? lo : hi;
      return {};
    }
  }
}

Result<ReadPage> EmbeddedStore::read_all(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                                         const Filter& filter) {
  auto page = read_all_stored(from_position, direction, limit, filter);
  if (page.ok())
    for (auto& e : page->events) CAIRN_RETURN_IF_ERROR(open_personal(e));
  return page;
}

Result<ReadPage> EmbeddedStore::read_all_stored(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                                                const Filter& filter) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  if (limit == 0) return Status::invalid_argument("limit: must be at least 1");
  const uint64_t end = reader_->durable_end();
  ReadPage page;
  if (end == 0) return page;
  if (direction == Direction::kForward) {
    const uint64_t from = from_position.value_or(0);
    if (from >= end) return page;
    if (!filter.types.empty()) {
      CAIRN_RETURN_IF_ERROR(read_all_by_type(from, end - 1, direction, limit, filter, &page));
      return page;
    }
    uint64_t last = from;
    bool full = false;
    CAIRN_RETURN_IF_ERROR(reader_->scan(from, end, [&](const EventView& v) {
      last = v.position;
      if (filter.matches(v.stream, v.type)) page.events.push_back(v.to_owned());
      full = page.events.size() >= limit;
      return !full;
    }));
    if (full && last + 1 < end) page.next = last + 1;
    return page;
  }
  const uint64_t from = std::min(from_position.value_or(end - 1), end - 1);
  if (!filter.types.empty()) {
    CAIRN_RETURN_IF_ERROR(read_all_by_type(0, from, direction, limit, filter, &page));
    return page;
  }
  uint64_t last = from;
  bool full = false;
  CAIRN_RETURN_IF_ERROR(reader_->scan_backward(from, 0, [&](const EventView& v) {
    last = v.position;
    if (filter.matches(v.stream, v.type)) page.events.push_back(v.to_owned());
    full = page.events.size() >= limit;
    return !full;
  }));
  if (full && last > 0) page.next = last - 1;
  return page;
}

Status EmbeddedStore::scan_log(uint64_t from_position, const Filter& filter, const ViewFn& visit) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  if (filter.empty()) return reader_->scan(from_position, reader_->durable_end(), visit);
  return reader_->scan(from_position, reader_->durable_end(),
                       [&](const EventView& v) { return !filter.matches(v.stream, v.type) || visit(v); });
}

Status EmbeddedStore::scan_stored(uint64_t from_position, const Filter& filter, const StoredEventVisitor& visit) {
  // The reader's views are StoredEventViews (store/reader.h).
  return scan_log(from_position, filter, [&](const EventView& v) { return visit(static_cast<const StoredEventView&>(v)); });
}

Status EmbeddedStore::scan_all(uint64_t from_position, const Filter& filter, const EventVisitor& visit) {
  if (!ext_.sealed) return scan_log(from_position, filter, visit);
  Status opening;
  std::string opened;
  CAIRN_RETURN_IF_ERROR(scan_log(from_position, filter, [&](const EventView& v) {
    if (!v.sealed_parts) return visit(v);
    auto data = ext_.sealed->open_data(v.id, v.data);
    if (!data.ok()) {
      opening = Status(data.status().code(), fmt::format("event at position {}: {}", v.position, data.status().message()));
      return false;
    }
    opened = std::move(*data);
    EventView copy = v;
    copy.data = opened;
    return visit(copy);
  }));
  return opening;
}

Result<RecordedEvent> EmbeddedStore::read_position(uint64_t position) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  auto e = reader_->read_position(position);
  if (e.ok()) CAIRN_RETURN_IF_ERROR(open_personal(*e));
  return e;
}

Result<RecordedEvent> EmbeddedStore::read_event(const Uuid& id) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  auto ev = reader_->find_by_id(id, reader_->durable_end());
  if (!ev.ok()) return ev.status();
  if (!*ev) return Status::not_found(fmt::format("no event has id {}", id.to_string()));
  CAIRN_RETURN_IF_ERROR(open_personal(**ev));
  return std::move(**ev);
}

Result<StreamInfo> EmbeddedStore::stream_info(std::string_view stream) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  CAIRN_RETURN_IF_ERROR(validate_stream_name(stream, "stream", true));
  auto tip = reader_->stream_tip(stream, reader_->durable_end());
  if (!tip.ok()) return tip.status();
  if (!*tip) return Status::not_found(fmt::format("stream '{}' does not exist", stream));
  // The first position: revision 0's entry.
  uint64_t first = (*tip)->position;
  Status st = reader_->stream_events(stream, 0, 0, reader_->durable_end(), [&](const EventView& v) {
    first = v.position;
    return false;
  });
  if (!st.ok()) return st;
  return StreamInfo{std::string(stream), (*tip)->revision, (*tip)->position, first};
}

Result<StreamListing> EmbeddedStore::list_streams(std::optional<std::string> after, size_t limit,
                                                  std::string_view prefix) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  if (limit == 0) return Status::invalid_argument("limit: must be at least 1");
  // The cursor is the hash key of the last stream listed, in hex.
  std::optional<uint64_t> cursor;
  if (after) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(after->data(), after->data() + after->size(), v, 16);
    if (ec != std::errc() || p != after->data() + after->size() || after->empty())
      return Status::invalid_argument(fmt::format("after: '{}' is not a cursor from an earlier page", after->substr(0, 40)));
    cursor = v;
  }
  const uint64_t end = reader_->durable_end();
  StreamListing out;
  std::vector<std::pair<uint64_t, std::vector<uint64_t>>> keys;
  for (;;) {
    keys.clear();
    const size_t want = limit - out.streams.size();
    index_->stream_keys(cursor, std::max<size_t>(want, 16), &keys);
    if (keys.empty()) return out;
    for (const auto& [key, firsts] : keys) {
      for (uint64_t pos : firsts) {
        if (pos >= end) continue;
        auto first = reader_->read_position(pos);
        if (!first.ok()) return first.status();
        if (index::hash_name(first->stream) != key || first->revision != 0) continue;  // a stale candidate
        if (!prefix.empty() && !std::string_view(first->stream).starts_with(prefix)) continue;
        auto tip = reader_->stream_tip(first->stream, end);
        if (!tip.ok()) return tip.status();
        if (!*tip) continue;
        out.streams.push_back(StreamInfo{first->stream, (*tip)->revision, (*tip)->position, pos});
      }
      cursor = key;
      if (out.streams.size() >= limit) {
        out.next = fmt::format("{:x}", key);
        return out;
      }
    }
  }
}

namespace {
// Delivers events with their personal parts opened (or redacted), like every other read.
class OpeningSubscription final : public Subscription {
 public:
  OpeningSubscription(std::unique_ptr<Subscription> inner, std::function<Status(RecordedEvent&)> open)
      : inner_(std::move(inner)), open_(std::move(open)) {}
  Result<std::vector<RecordedEvent>> next(size_t max_events, std::chrono::milliseconds timeout) override {
    auto batch = inner_->next(max_events, timeout);
    if (batch.ok())
      for (auto& e : *batch) CAIRN_RETURN_IF_ERROR(open_(e));
    return batch;
  }
  uint64_t cursor() const override { return inner_->cursor(); }
  void cancel() override { inner_->cancel(); }

 private:
  std::unique_ptr<Subscription> inner_;
  std::function<Status(RecordedEvent&)> open_;
};
}  // namespace

Result<std::unique_ptr<Subscription>> EmbeddedStore::subscribe_all(uint64_t from_position, Filter filter) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  auto sub = make_all_subscription(*reader_, notifier_, from_position, std::move(filter));
  if (!ext_.sealed) return sub;
  return std::unique_ptr<Subscription>(
      new OpeningSubscription(std::move(sub), [this](RecordedEvent& e) { return open_personal(e); }));
}

Result<std::unique_ptr<Subscription>> EmbeddedStore::subscribe_stream(std::string stream, uint64_t from_revision) {
  if (closed_.load()) return Status(ErrorCode::kClosed, "the store is closed");
  CAIRN_RETURN_IF_ERROR(validate_stream_name(stream, "stream", true));
  auto sub = make_stream_subscription(*reader_, notifier_, std::move(stream), from_revision);
  if (!ext_.sealed) return sub;
  return std::unique_ptr<Subscription>(
      new OpeningSubscription(std::move(sub), [this](RecordedEvent& e) { return open_personal(e); }));
}

uint64_t EmbeddedStore::head_position() const { return log_->durable_end(); }

StoreStats EmbeddedStore::stats() const {
  StoreStats s;
  s.events = log_->durable_end();
  s.commits = log_->recovered_commits() + (writer_ ? writer_->commits() : 0);
  s.segments = log_->segments().size();
  s.log_bytes = log_->total_bytes();
  s.durability = options_.durability;
  // The chain head after the last durable commit is in that commit's header.
  s.chain_head_hex = log::hex(log_->recovered_chain_head());
  const uint64_t end = log_->durable_end();
  if (end > 0) {
    if (auto seg = log_->segment_for(end - 1)) {
      auto e = index_->sparse_floor(seg->first_position(), end - 1);
      (void)log_->visit_frames(seg, e ? e->value : log::kSegmentHeaderSize, end,
                               [&](const log::FrameRef& r, const uint8_t*) {
                                 s.chain_head_hex = log::hex(r.header.chain_head);
                                 return true;
                               });
    }
  }
  return s;
}

StoreMetrics EmbeddedStore::metrics() const {
  StoreMetrics m;
  const auto is = index_->stats();
  m.index_runs = is.runs;
  m.index_memtable_events = is.memtable_events;
  m.indexed_through = is.indexed_through;
  if (writer_) writer_->fill_metrics(&m);
  m.purge_running = purge_running_.load(std::memory_order_relaxed);
  m.purge_done_bytes = purge_done_bytes_.load(std::memory_order_relaxed);
  m.purge_total_bytes = purge_total_bytes_.load(std::memory_order_relaxed);
  m.purges = purges_.load(std::memory_order_relaxed);
  m.purged_parts = purged_parts_.load(std::memory_order_relaxed);
  return m;
}

Status EmbeddedStore::close() {
  if (closed_.exchange(true)) return {};
  if (writer_) writer_->stop();
  notifier_.close();
  Status st = index_ ? index_->close() : Status();
  base::unlock_data_dir(lock_fd_);
  lock_fd_ = -1;
  return st;
}

}  // namespace cairn::store
