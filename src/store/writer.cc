#include "store/writer.h"

#include <chrono>

#include <fmt/format.h>

namespace cairn::store {

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr size_t kMaxGroupBytes = 32u << 20;      // a group is cut once it holds this much event data
constexpr size_t kRevisionCacheLimit = 1'000'000;  // streams; past this the cache starts over (misses read the index)

constexpr size_t kMaxGroupsInFlight = 8;  // written, waiting for the syncer

}  // namespace

struct Writer::Existing {
  std::string stream;
  uint64_t revision = 0;
  uint64_t position = 0;
  std::string type;
  ContentType content_type = ContentType::kJson;
  std::string metadata;
  std::string data;
  uint64_t commit_first = 0;
  uint64_t commit_end = 0;  // 0: unknown (found in the log)
};

namespace {
std::string event_where(bool multi, size_t i, size_t j) {
  return multi ? fmt::format("appends[{}].events[{}]", i, j) : fmt::format("events[{}]", j);
}

bool same_content(const Writer::Existing& x, const EventData& e) {
  return x.type == e.type && x.content_type == e.content_type && x.metadata == e.metadata && x.data == e.data;
}
}  // namespace

struct Writer::Tentative {
  uint64_t next_position = 0;
  int64_t last_time_ns = 0;
  std::unordered_map<std::string, uint64_t> revisions;  // streams written earlier in this group
  std::unordered_map<Uuid, Existing, UuidHash> ids;     // supplied ids written earlier in this group
};

Writer::Writer(log::Log& log, index::Index& index, const LogReader& reader, std::function<void()> on_publish)
    : log_(log), index_(index), reader_(reader), on_publish_(std::move(on_publish)) {
  next_position_ = log.durable_end();
  chain_head_ = log.recovered_chain_head();
  last_time_ns_ = log.recovered_last_time_ns();
  unsynced_ids_ = std::make_unique<std::unordered_map<Uuid, Existing, UuidHash>>();
  thread_ = std::thread([this] { run(); });
  syncer_ = std::thread([this] { run_syncer(); });
}

Writer::~Writer() { stop(); }

void Writer::stop() {
  {
    base::MutexLock g(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (thread_.joinable()) thread_.join();  // answers or hands over everything queued, then marks writer_done_
  if (syncer_.joinable()) syncer_.join();
}

uint64_t Writer::commits() const { return commits_.load(std::memory_order_relaxed); }

void Writer::fill_metrics(StoreMetrics* s) const {
  s->appended_commits = commits_.load(std::memory_order_relaxed);
  s->appended_events = appended_events_.load(std::memory_order_relaxed);
  s->appended_bytes = appended_bytes_.load(std::memory_order_relaxed);
  for (size_t b = 0; b < s->sync_buckets.size(); ++b) s->sync_buckets[b] = sync_buckets_[b].load(std::memory_order_relaxed);
  s->syncs = syncs_.load(std::memory_order_relaxed);
  s->sync_seconds = static_cast<double>(sync_nanos_.load(std::memory_order_relaxed)) / 1e9;
  for (size_t b = 0; b < s->group_buckets.size(); ++b) s->group_buckets[b] = group_buckets_[b].load(std::memory_order_relaxed);
  s->groups = groups_.load(std::memory_order_relaxed);
  s->group_events = s->appended_events;
}

bool Writer::enqueue(Request* r) {
  {
    base::MutexLock g(mu_);
    if (stopping_) return false;
    queue_.push_back(r);
  }
  queue_cv_.notify_one();
  return true;
}

Status Writer::wait(Request& r) {
  if (!enqueue(&r)) return Status(ErrorCode::kClosed, "the store is closed");
  r.done.acquire();
  return r.status;
}

void Writer::answer(Request* r) {
  if (!r->on_answer) {
    r->done.release();  // the waiting caller owns r from here on
    return;
  }
  AppendCallback done = std::move(r->on_answer);
  Result<AppendResult> out = r->status.ok() ? Result<AppendResult>(std::move(r->result)) : Result<AppendResult>(r->status);
  delete r;
  done(std::move(out));
}

namespace {
size_t append_bytes(const std::vector<PreparedAppend>& appends) {
  size_t bytes = 0;
  for (const auto& a : appends)
    for (const auto& e : a.append.events) bytes += e.data.size() + e.metadata.size() + e.type.size();
  return bytes;
}
}  // namespace

Result<AppendResult> Writer::submit(std::vector<PreparedAppend> appends) {
  Request r;
  r.appends = &appends;
  r.bytes = append_bytes(appends);
  CAIRN_RETURN_IF_ERROR(wait(r));
  return std::move(r.result);
}

void Writer::submit_async(std::vector<PreparedAppend> appends, AppendCallback done) {
  auto r = std::make_unique<Request>();
  r->owned = std::move(appends);
  r->appends = &r->owned;
  r->bytes = append_bytes(r->owned);
  r->on_answer = std::move(done);
  if (enqueue(r.get())) {
    (void)r.release();  // answer() deletes it
    return;
  }
  done = std::move(r->on_answer);
  done(Status(ErrorCode::kClosed, "the store is closed"));
}

Result<uint64_t> Writer::import(std::vector<ImportEvent> events) {
  Request r;
  r.imports = &events;
  for (const auto& e : events) r.bytes += e.data.size() + e.metadata.size() + e.type.size();
  CAIRN_RETURN_IF_ERROR(wait(r));
  return r.import_position;
}

Status Writer::roll() {
  Request r;
  r.roll = true;
  return wait(r);
}

void Writer::run() {
  std::vector<Request*> group;
  for (;;) {
    {
      base::UniqueLock g(mu_);
      while (queue_.empty() && !stopping_) queue_cv_.wait(g.native());
      if (queue_.empty()) {  // stopping, and everything queued was handed over
        base::MutexLock s(sync_mu_);
        writer_done_ = true;
        sync_cv_.notify_all();
        return;
      }
      size_t bytes = 0;
      group.clear();
      while (!queue_.empty() && (group.empty() || bytes + queue_.front()->bytes <= kMaxGroupBytes)) {
        bytes += queue_.front()->bytes;
        group.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    std::unique_ptr<Written> w = process_group(group);
    base::UniqueLock s(sync_mu_);
    while (written_.size() >= kMaxGroupsInFlight) sync_room_cv_.wait(s.native());
    in_flight_.fetch_add(1, std::memory_order_acq_rel);
    written_.push_back(std::move(w));
    sync_cv_.notify_one();
  }
}

void Writer::run_syncer() {
  std::vector<std::unique_ptr<Written>> batch;
  for (;;) {
    {
      base::UniqueLock s(sync_mu_);
      while (written_.empty() && !writer_done_) sync_cv_.wait(s.native());
      if (written_.empty()) return;
      batch.clear();
      while (!written_.empty()) {
        batch.push_back(std::move(written_.front()));
        written_.pop_front();
      }
      sync_room_cv_.notify_all();
    }
    // One sync covers every group handed over: each was fully written before it was handed over.
    bool any_write = false;
    for (const auto& w : batch) any_write = any_write || (w->failed.ok() && w->commits > 0);
    const auto sync_start = std::chrono::steady_clock::now();
    Status st = any_write ? log_.sync() : log_.poisoned();
    if (any_write && st.ok()) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - sync_start).count();
      for (size_t b = 0; b < StoreMetrics::kSyncBucketsSeconds.size(); ++b)
        if (secs <= StoreMetrics::kSyncBucketsSeconds[b]) sync_buckets_[b].fetch_add(1, std::memory_order_relaxed);
      syncs_.fetch_add(1, std::memory_order_relaxed);
      sync_nanos_.fetch_add(static_cast<uint64_t>(secs * 1e9), std::memory_order_relaxed);
      uint64_t events = 0;
      for (const auto& w : batch) events += w->failed.ok() ? w->events : 0;
      for (size_t b = 0; b < StoreMetrics::kGroupBucketsEvents.size(); ++b)
        if (static_cast<double>(events) <= StoreMetrics::kGroupBucketsEvents[b])
          group_buckets_[b].fetch_add(1, std::memory_order_relaxed);
      groups_.fetch_add(1, std::memory_order_relaxed);
    }
    for (auto& w : batch) {
      if (st.ok() && w->failed.ok()) {
        if (w->commits > 0) {
          w->batch.end_position = w->end_position;
          index_.add(w->batch);
          log_.publish(w->segment, w->end_offset, w->end_position);
          commits_.fetch_add(w->commits, std::memory_order_relaxed);
          appended_events_.fetch_add(w->events, std::memory_order_relaxed);
          appended_bytes_.fetch_add(w->bytes, std::memory_order_relaxed);
        }
      } else {
        // Nothing of this group is acknowledged; the log is poisoned and acknowledges nothing more.
        const Status why = !w->failed.ok() ? w->failed : (log_.poisoned().ok() ? st : log_.poisoned());
        for (Request* r : w->requests) {
          r->status = why;
          r->result = {};
        }
      }
    }
    on_publish_();
    for (auto& w : batch) {
      for (Request* r : w->requests) answer(r);
      in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

Result<std::optional<uint64_t>> Writer::current_revision(const std::string& stream, const Tentative& t) {
  if (auto it = t.revisions.find(stream); it != t.revisions.end()) return std::optional<uint64_t>(it->second);
  if (auto it = revision_cache_.find(stream); it != revision_cache_.end()) return std::optional<uint64_t>(it->second);
  auto tip = reader_.stream_tip(stream, log_.durable_end());
  if (!tip.ok()) return tip.status();
  if (!*tip) return std::optional<uint64_t>{};
  if (revision_cache_.size() >= kRevisionCacheLimit) {
    if (in_flight_.load(std::memory_order_acquire) != 0) return std::optional<uint64_t>((*tip)->revision);
    revision_cache_.clear();
  }
  revision_cache_[stream] = (*tip)->revision;
  return std::optional<uint64_t>((*tip)->revision);
}

Result<std::optional<uint64_t>> Writer::revision_in_request(const std::string& stream,
                                                           const std::unordered_map<std::string, uint64_t>& local,
                                                           const Tentative& t) {
  if (auto it = local.find(stream); it != local.end()) return std::optional<uint64_t>(it->second);
  return current_revision(stream, t);
}

Status Writer::plan_append(Request& r, Tentative& t, std::vector<log::EventInput>* inputs) {
  FoundIds found;
  size_t existing = 0;
  CAIRN_RETURN_IF_ERROR(find_existing(*r.appends, t, &found, &existing));
  if (existing > 0) return answer_retry(r, found);
  return plan_new_events(r, t, inputs);
}

// Idempotency: looks up every supplied id, in this group first, then in the log.
Status Writer::find_existing(const std::vector<PreparedAppend>& appends, const Tentative& t, FoundIds* found,
                             size_t* existing) {
  found->assign(appends.size(), {});
  *existing = 0;
  for (size_t i = 0; i < appends.size(); ++i) {
    const auto& a = appends[i];
    (*found)[i].resize(a.append.events.size());
    for (size_t j = 0; j < a.append.events.size(); ++j) {
      if (!a.id_supplied[j]) continue;
      const Uuid& id = *a.append.events[j].id;
      if (auto it = t.ids.find(id); it != t.ids.end()) {
        (*found)[i][j] = it->second;
      } else if (auto u = unsynced_ids_->find(id); u != unsynced_ids_->end()) {
        (*found)[i][j] = u->second;
      } else {
        auto ev = reader_.find_by_id(id, log_.durable_end());
        if (!ev.ok()) return ev.status();
        if (*ev) {
          const RecordedEvent& x = **ev;
          (*found)[i][j] = Existing{x.stream, x.revision, x.position, x.type, x.content_type, x.metadata, x.data,
                                    x.commit_position, 0};
        }
      }
      if ((*found)[i][j]) ++*existing;
    }
  }
  return {};
}

// An append some of whose ids exist: a retry, answered from the original append if it repeats it exactly,
// else refused (kDuplicateEventId naming the first event that differs).
Status Writer::answer_retry(Request& r, const FoundIds& found) {
  auto& appends = *r.appends;
  const bool multi = appends.size() > 1;
  auto where = [&](size_t i, size_t j) { return event_where(multi, i, j); };
  // A retry must repeat the whole original append: same ids, same content, same streams, in order.
  for (size_t i = 0; i < appends.size(); ++i) {
    const auto& a = appends[i].append;
    for (size_t j = 0; j < a.events.size(); ++j) {
      const auto& f = found[i][j];
      if (!f) {
        // Name the first id that exists, to say why this is not a plain new append.
        for (size_t x = 0; x < appends.size(); ++x)
          for (size_t y = 0; y < found[x].size(); ++y)
            if (found[x][y])
              return Status::duplicate_event_id(fmt::format(
                  "{}.id: event id {} already exists (position {}, stream '{}'), but this append is not a "
                  "repeat of the one that wrote it",
                  where(x, y), appends[x].append.events[y].id->to_string(), found[x][y]->position,
                  found[x][y]->stream));
      }
      const bool in_place = f->stream == a.stream && (j == 0 || f->revision == found[i][j - 1]->revision + 1) &&
                            same_content(*f, a.events[j]);
      if (!in_place)
        return Status::duplicate_event_id(fmt::format(
            "{}.id: event id {} already exists (position {}, stream '{}', revision {}) with {}", where(i, j),
            a.events[j].id->to_string(), f->position, f->stream, f->revision,
            f->stream != a.stream ? "another stream" : "different content or order"));
    }
    const uint64_t first_rev = found[i][0]->revision;
    bool expected_ok = true;
    switch (a.expected.kind) {
      case ExpectedRevision::Kind::kAny: break;
      case ExpectedRevision::Kind::kNoStream: expected_ok = first_rev == 0; break;
      case ExpectedRevision::Kind::kExists: expected_ok = first_rev > 0; break;
      case ExpectedRevision::Kind::kExact: expected_ok = first_rev == a.expected.revision + 1; break;
    }
    if (!expected_ok)
      return Status::duplicate_event_id(fmt::format(
          "{}.id: event id {} was appended at revision {} of stream '{}', which expected revision {} "
          "cannot have produced",
          where(i, 0), a.events[0].id->to_string(), first_rev, a.stream, a.expected.to_string()));
  }
  {
    // ... and exactly one whole commit: consecutive positions from its first to its last event.
    const auto not_whole = [&] {
      return Status::duplicate_event_id(fmt::format(
          "{}.id: event id {} was appended (position {}) in a commit that this append does not repeat exactly "
          "(a retry must resend the whole original append)",
          where(0, 0), appends[0].append.events[0].id->to_string(), found[0][0]->position));
    };
    uint64_t expect_pos = found[0][0]->position;
    for (size_t i = 0; i < appends.size(); ++i)
      for (size_t j = 0; j < found[i].size(); ++j)
        if (found[i][j]->position != expect_pos++)
          return not_whole();
    const Existing& first = *found[0][0];
    const Existing& last = *found.back().back();
    if (first.commit_first != first.position) return not_whole();
    uint64_t end = last.commit_end;
    if (end == 0) {
      end = last.position + 1;
      if (end < log_.durable_end()) {
        auto nx = reader_.read_position(end);
        if (!nx.ok()) return nx.status();
        if (nx->commit_position == first.commit_first) end = UINT64_MAX;
      }
    }
    if (end != last.position + 1) return not_whole();
  }
  r.result.replayed = true;
  for (size_t i = 0; i < appends.size(); ++i) {
    const auto& f = found[i];
    r.result.streams.push_back(StreamAppendResult{appends[i].append.stream, f.front()->position,
                                                  f.back()->position, f.front()->revision, f.back()->revision});
  }
  return {};
}

// A new append: checks the expected revisions against a request-local view (so a failure leaves the group
// untouched), encodes the events, then commits the request's effects to the group view.
Status Writer::plan_new_events(Request& r, Tentative& t, std::vector<log::EventInput>* inputs) {
  auto& appends = *r.appends;
  const bool multi = appends.size() > 1;
  std::unordered_map<std::string, uint64_t> local;
  const int64_t time = std::max(now_ns(), t.last_time_ns);
  uint64_t pos = t.next_position;
  for (size_t i = 0; i < appends.size(); ++i) {
    auto& pa = appends[i];
    const StreamAppend& a = pa.append;
    auto seen = revision_in_request(a.stream, local, t);
    if (!seen.ok()) return seen.status();
    const std::optional<uint64_t> cur = *seen;
    bool ok = true;
    switch (a.expected.kind) {
      case ExpectedRevision::Kind::kAny: break;
      case ExpectedRevision::Kind::kNoStream: ok = !cur.has_value(); break;
      case ExpectedRevision::Kind::kExists: ok = cur.has_value(); break;
      case ExpectedRevision::Kind::kExact: ok = cur.has_value() && *cur == a.expected.revision; break;
    }
    if (!ok)
      return Status::wrong_expected_revision(
          fmt::format("{}stream '{}': expected revision {}, but the stream {}", multi ? fmt::format("appends[{}].", i) : "",
                      a.stream, a.expected.to_string(),
                      cur ? fmt::format("is at revision {}", *cur) : std::string("does not exist")),
          cur ? static_cast<int64_t>(*cur) : -1);
    const uint64_t first_rev = cur ? *cur + 1 : 0;
    StreamAppendResult res{a.stream, pos, pos + a.events.size() - 1, first_rev, first_rev + a.events.size() - 1};
    for (size_t j = 0; j < a.events.size(); ++j) {
      const EventData& e = a.events[j];
      inputs->push_back(log::EventInput{a.stream, first_rev + j, *e.id, e.type, time, e.content_type, e.metadata,
                                        e.data, pa.salts[j].data(), pa.digests[j].data(),
                                        pa.flags.empty() ? uint8_t{0} : pa.flags[j]});
    }
    pos += a.events.size();
    local[a.stream] = res.last_revision;
    r.result.streams.push_back(std::move(res));
  }
  // Commit the request's effects to the group view.
  for (auto& [s, rev] : local) t.revisions[s] = rev;
  for (size_t i = 0, k = 0; i < appends.size(); ++i)
    for (size_t j = 0; j < appends[i].append.events.size(); ++j, ++k)
      if (appends[i].id_supplied[j]) {
        const EventData& e = appends[i].append.events[j];
        t.ids[*e.id] = Existing{appends[i].append.stream, (*inputs)[k].revision, t.next_position + k, e.type,
                                e.content_type, e.metadata, e.data, t.next_position, t.next_position + inputs->size()};
      }
  t.last_time_ns = time;
  return {};
}

Status Writer::plan_import(Request& r, Tentative& t, std::vector<log::EventInput>* inputs) {
  auto& events = *r.imports;
  std::unordered_map<std::string, uint64_t> local;
  int64_t last_time = t.last_time_ns;
  for (size_t i = 0; i < events.size(); ++i) {
    const ImportEvent& e = events[i];
    auto seen = revision_in_request(e.stream, local, t);
    if (!seen.ok()) return seen.status();
    const std::optional<uint64_t> cur = *seen;
    const uint64_t expect = cur ? *cur + 1 : 0;
    if (e.revision != expect)
      return Status::wrong_expected_revision(
          fmt::format("events[{}]: stream '{}' revision {} does not continue the stream (its next revision is {})", i,
                      e.stream, e.revision, expect),
          cur ? static_cast<int64_t>(*cur) : -1);
    if (e.recorded_ns < last_time)
      return Status::invalid_argument(fmt::format(
          "events[{}].recorded_at: {} is earlier than the log's last recorded time {}; recorded times never go back",
          i, format_rfc3339_ns(e.recorded_ns), format_rfc3339_ns(last_time)));
    last_time = e.recorded_ns;
    bool dup = t.ids.count(e.id) > 0 || unsynced_ids_->count(e.id) > 0;
    for (size_t k = 0; k < i && !dup; ++k) dup = events[k].id == e.id;
    if (!dup) {
      auto ev = reader_.find_by_id(e.id, log_.durable_end());
      if (!ev.ok()) return ev.status();
      dup = ev->has_value();
    }
    if (dup)
      return Status::duplicate_event_id(fmt::format("events[{}].id: event id {} already exists", i, e.id.to_string()));
    local[e.stream] = e.revision;
    inputs->push_back(log::EventInput{e.stream, e.revision, e.id, e.type, e.recorded_ns, e.content_type, e.metadata,
                                      e.data, e.digest_salt.data(), nullptr,
                                      e.sealed_parts ? log::kEventFlagSealedParts : uint8_t{0}});
  }
  r.import_position = t.next_position;
  for (auto& [s, rev] : local) t.revisions[s] = rev;
  for (size_t i = 0; i < events.size(); ++i)
    t.ids[events[i].id] = Existing{events[i].stream, events[i].revision, t.next_position + i, events[i].type,
                                   events[i].content_type, events[i].metadata, events[i].data, t.next_position,
                                   t.next_position + events.size()};
  t.last_time_ns = last_time;
  return {};
}

std::unique_ptr<Writer::Written> Writer::process_group(std::vector<Request*>& group) {
  auto w = std::make_unique<Written>();
  w->requests = group;
  // Supplied ids below the published durable end are in the index now.
  const uint64_t durable = log_.durable_end();
  for (auto it = unsynced_ids_->begin(); it != unsynced_ids_->end();)
    it = it->second.position < durable ? unsynced_ids_->erase(it) : std::next(it);
  if (in_flight_.load(std::memory_order_acquire) == 0 && revision_cache_.size() >= kRevisionCacheLimit)
    revision_cache_.clear();

  Tentative t;
  t.next_position = next_position_;
  t.last_time_ns = last_time_ns_;
  log::Hash chain = chain_head_;
  pending_.clear();
  std::vector<log::EventInput> inputs;

  for (Request* r : group) {
    if (!log_.poisoned().ok()) {
      w->failed = log_.poisoned();
      break;
    }
    if (r->roll) {
      // Commits planned before it in this group go to the segment being sealed.
      Status st = log_.maybe_roll(t.next_position, chain, t.last_time_ns, pending_, /*force=*/true);
      if (!st.ok()) {
        w->failed = log_.poisoned().ok() ? st : log_.poisoned();
        break;
      }
      continue;
    }
    inputs.clear();
    const int64_t time_before = t.last_time_ns;
    Status st = r->imports ? plan_import(*r, t, &inputs) : plan_append(*r, t, &inputs);
    if (!st.ok()) {
      r->status = st;
      r->result = {};
      continue;
    }
    if (inputs.empty()) continue;  // an idempotent retry, answered from the log
    st = log_.maybe_roll(t.next_position, chain, time_before, pending_);
    if (!st.ok()) {
      w->failed = log_.poisoned().ok() ? st : log_.poisoned();
      break;
    }
    const uint64_t offset = log_.active_offset() + pending_.size();
    const size_t before = pending_.size();
    chain = encoder_.encode(pending_, t.next_position, inputs, chain);
    w->bytes += pending_.size() - before;
    if (log::frame_needs_sparse_entry(offset, pending_.size() - before))
      w->batch.sparse.push_back({t.next_position, offset});
    uint64_t pos = t.next_position;
    for (const auto& in : inputs) {
      w->batch.streams.push_back({index::hash_name(in.stream), in.revision, pos});
      w->batch.types.push_back({index::hash_name(in.type), pos});
      w->batch.ids.push_back({index::hash_id(in.id), pos});
      ++pos;
    }
    w->events += pos - t.next_position;
    t.next_position = pos;
    ++w->commits;
  }
  if (w->failed.ok() && w->commits > 0) {
    Status st = log_.write(pending_);
    if (!st.ok()) w->failed = log_.poisoned().ok() ? st : log_.poisoned();
  }
  if (!w->failed.ok()) return w;  // the log is poisoned: nothing of this group will be acknowledged
  w->segment = log_.active_segment();
  w->end_offset = log_.active_offset();
  w->end_position = t.next_position;
  // The writer's view moves on now; the syncer makes it durable and visible.
  next_position_ = t.next_position;
  chain_head_ = chain;
  last_time_ns_ = t.last_time_ns;
  for (auto& [stream, rev] : t.revisions) revision_cache_[stream] = rev;
  for (auto& [id, ex] : t.ids) unsynced_ids_->insert_or_assign(id, std::move(ex));
  return w;
}

}  // namespace cairn::store
