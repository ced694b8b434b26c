#include "project/runner.h"

#include <fmt/format.h>


namespace cairn::project {

using Clock = std::chrono::steady_clock;

namespace {
// Below this lag the runner follows with a subscription; above it, it scans (no copies, much faster).
constexpr uint64_t kFollowLag = 2048;
constexpr size_t kMaxSnapshots = 64;
constexpr size_t kKeepNewestSnapshots = 8;
// Problems the runner handles itself (a damaged state file, a failed checkpoint) are reported on stderr;
// faults are reported through status() and $projections.
template <typename... Args>
void report(fmt::format_string<Args...> f, Args&&... args) {
  fmt::print(stderr, "cairn projections: {}\n", fmt::format(f, std::forward<Args>(args)...));
}
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

KeyExtractor::KeyExtractor(Partitioning p) : p_(std::move(p)) {
  size_t at = 0;
  while (!p_.field.empty() && at <= p_.field.size()) {
    size_t dot = p_.field.find('.', at);
    if (dot == std::string::npos) dot = p_.field.size();
    path_.push_back(p_.field.substr(at, dot - at));
    at = dot + 1;
  }
}

std::optional<std::string_view> KeyExtractor::key(const EventView& e) {
  switch (p_.by) {
    case PartitionBy::kNone: return std::string_view();
    case PartitionBy::kStream: return e.stream;
    case PartitionBy::kCategory: {
      const std::string_view c = stream_category(e.stream);  // "" for a stream named "-..."
      if (c.empty()) return std::nullopt;
      return c;
    }
    case PartitionBy::kMetadata:
    case PartitionBy::kData: break;
  }
  const std::string_view text = p_.by == PartitionBy::kMetadata ? e.metadata : e.data;
  if (text.empty() || (p_.by == PartitionBy::kData && e.content_type != ContentType::kJson)) return std::nullopt;
  simdjson::dom::element v;
  if (parser_.parse(text.data(), text.size(), true).get(v)) return std::nullopt;
  for (const auto& part : path_)
    if (v.at_key(part).get(v)) return std::nullopt;
  switch (v.type()) {
    case simdjson::dom::element_type::STRING: {
      std::string_view s = v.get_string().value_unsafe();
      if (s.empty()) return std::nullopt;
      scratch_.assign(s);
      return std::string_view(scratch_);
    }
    case simdjson::dom::element_type::INT64: scratch_ = std::to_string(v.get_int64().value_unsafe()); break;
    case simdjson::dom::element_type::UINT64: scratch_ = std::to_string(v.get_uint64().value_unsafe()); break;
    case simdjson::dom::element_type::BOOL: scratch_ = v.get_bool().value_unsafe() ? "true" : "false"; break;
    default: return std::nullopt;  // objects, arrays, null and fractions are not keys
  }
  return std::string_view(scratch_);
}

Status replay_range(Store& store, const RunnerSpec& spec, ReducerEngine& engine, uint64_t from, uint64_t to,
                    std::optional<std::string_view> only_key, std::atomic<uint64_t>* progress) {
  KeyExtractor keys(spec.partition);
  Status fault;
  Status scan = store.scan_all(from, spec.source, [&](const EventView& v) {
    if (v.position >= to) return false;
    if (progress) progress->store(v.position, std::memory_order_relaxed);
    if (!spec.include_reserved && !v.stream.empty() && v.stream[0] == '$') return true;
    auto key = keys.key(v);
    if (!key || (only_key && *key != *only_key)) return true;
    Status st = engine.apply(*key, v);
    if (st.ok()) return true;
    fault = Status(ErrorCode::kFaulted, fmt::format("the reducer fails on the event at position {} (stream '{}', type "
                                                    "'{}'): {}", v.position, v.stream, v.type, st.message()));
    return false;
  });
  if (!fault.ok()) return fault;
  CAIRN_RETURN_IF_ERROR(scan);
  if (progress) progress->store(to, std::memory_order_relaxed);
  if (Status pure = engine.check_purity(); !pure.ok())
    return Status(ErrorCode::kFaulted, fmt::format("replaying the events below position {}: {}", to, pure.message()));
  return {};
}

Runner::Runner(Store& store, base::FileSystem* fs, RunnerSpec spec)
    : store_(store), fs_(fs), spec_(std::move(spec)), keys_(spec_.partition) {}

Runner::~Runner() { stop(false); }

Status Runner::load() {
  CAIRN_RETURN_IF_ERROR(base::make_dirs(spec_.dir));
  auto key = state_key(fs_, spec_.keys, spec_.dir, true);
  if (!key.ok()) return key.status();
  key_ = std::move(*key);
  for (const auto& f : list_state_files(spec_.dir)) {
    auto engine = spec_.factory();
    if (!engine.ok()) return engine.status();
    auto pos = load_state_file(f.path, spec_.name, spec_.version, engine->get(), std::nullopt, key_ ? &*key_ : nullptr);
    if (!pos.ok()) {
      report("projection {} v{}: ignoring state file: {}", spec_.name, spec_.version, pos.status().message());
      continue;
    }
    if (*pos > store_.head_position()) {
      report("projection {} v{}: ignoring {}: it is past the log's head {}", spec_.name, spec_.version, f.path,
                   store_.head_position());
      continue;
    }
    engine_ = std::move(*engine);
    position_ = *pos;
    checkpoint_position_ = *pos;
    break;
  }
  if (!engine_) {
    auto engine = spec_.factory();
    if (!engine.ok()) return engine.status();
    engine_ = std::move(*engine);
    position_ = 0;
    checkpoint_position_ = 0;
  }
  next_snapshot_ = spec_.snapshot_every ? (position_ / spec_.snapshot_every + 1) * spec_.snapshot_every : UINT64_MAX;
  publish_partitions();
  return {};
}

void Runner::publish_partitions() { partitions_.store(engine_ ? engine_->partitions() : 0, std::memory_order_relaxed); }

void Runner::yield_to_queries(base::UniqueLock& lock, uint64_t next) {
  if (waiting_queries_.load(std::memory_order_relaxed) == 0) return;
  position_ = next;
  publish_partitions();
  lock.unlock(state_mu_);
  {
    // Wait until every query that was waiting has had the lock: a plain unlock + lock would usually take
    // it straight back (mutexes are not fair).
    base::UniqueLock w(queries_mu_);
    queries_cv_.wait(w.native(), [&] { return waiting_queries_.load() == 0 || stop_.load(); });
  }
  lock.lock(state_mu_);
}

// Not analysed: load() sets engine_ before the runner thread exists, without state_mu_ (as before).
Status Runner::start() CAIRN_NO_THREAD_SAFETY_ANALYSIS {
  CAIRN_RETURN_IF_ERROR(load());
  last_checkpoint_ = rate_since_ = Clock::now();
  rate_position_ = position_;
  thread_ = std::thread([this] { run(); });
  return {};
}

void Runner::stop(bool checkpoint) {
  final_checkpoint_ = checkpoint;
  stop_ = true;
  {
    base::MutexLock g(state_mu_);
    position_cv_.notify_all();  // a waiting query re-resolves the version (a rebuild may have replaced it)
  }
  {
    base::MutexLock g(sub_mu_);
    if (sub_) sub_->cancel();
  }
  {
    base::MutexLock g(wake_mu_);
    wake_cv_.notify_all();
  }
  {
    base::MutexLock g(queries_mu_);
    queries_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

bool Runner::process(const EventView& v, Status* fault) {
  if (!spec_.include_reserved && !v.stream.empty() && v.stream[0] == '$') return true;
  auto key = keys_.key(v);
  if (!key) return true;
  Status st = engine_->apply(*key, v);
  if (!st.ok()) {
    *fault = std::move(st);
    return false;
  }
  applied_.store(applied_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // one writer: no locked add
  ++applied_since_checkpoint_;
  return true;
}

void Runner::on_fault(const EventView& v, const Status& st) {
  ProjectionFault f{v.position, v.id, std::string(v.stream), std::string(v.type), st.message(), now_ns()};
  report("projection {} v{} faulted at position {}: {}", spec_.name, spec_.version, v.position, st.message());
  // The engine may hold a half-applied event: go back to the last checkpoint and replay up to the fault.
  const uint64_t applied_before = applied_.load();
  Status restored = [&]() CAIRN_REQUIRES(state_mu_) -> Status {
    engine_.reset();
    const uint64_t target = v.position;
    CAIRN_RETURN_IF_ERROR(load());
    Status inner;
    // scan_all calls back synchronously, still under state_mu_ (so do the other scans below).
    Status scan = store_.scan_all(position_, spec_.source, [&](const EventView& e) CAIRN_REQUIRES(state_mu_) {
      if (e.position >= target) return false;
      return process(e, &inner);
    });
    if (!inner.ok()) return inner;
    CAIRN_RETURN_IF_ERROR(scan);
    position_ = target;
    return {};
  }();
  applied_ = applied_before;  // the replay re-applied events that were counted already
  if (!restored.ok()) {
    f.message += fmt::format(" (and restoring the state before it failed: {})", restored.message());
    serve_checkpoint();
  }
  set_fault(std::move(f));
}

// Back to the last checkpoint as it is (or to the empty state), so that state and position agree.
void Runner::serve_checkpoint() {
  engine_.reset();
  if (!load().ok()) {
    auto fresh = spec_.factory();
    engine_ = fresh.ok() ? std::move(*fresh) : nullptr;
    position_ = 0;
  }
}

void Runner::set_fault(ProjectionFault f) {
  {
    base::MutexLock g(fault_mu_);
    fault_ = std::move(f);
  }
  publish_partitions();
  faulted_ = true;
  position_cv_.notify_all();
}

// A problem found after the fact (a state that cannot be saved, a purity check that fails) belongs to some
// event since the last checkpoint: replay from there, checking after each event, and fault at the first one
// that shows it. If none does, the reducer is not deterministic: fault where it was found.
void Runner::locate_fault(const Status& detected, uint64_t end) {
  const uint64_t applied_before = applied_.load();
  engine_.reset();
  Status st = load();
  std::optional<RecordedEvent> culprit;
  Status why;
  if (st.ok()) {
    KeyExtractor keys(spec_.partition);
    st = store_.scan_all(position_, spec_.source, [&](const EventView& v) CAIRN_REQUIRES(state_mu_) {
      if (v.position >= end) return false;
      Status fault;
      if (!process(v, &fault)) {
        culprit = v.to_owned();
        why = fault;
        return false;
      }
      if (!spec_.include_reserved && !v.stream.empty() && v.stream[0] == '$') return true;
      auto key = keys.key(v);
      if (!key) return true;
      if (auto s = engine_->state_json(*key); !s.ok()) why = s.status();
      else if (Status p = engine_->check_purity(); !p.ok()) why = p;
      if (why.ok()) return true;
      culprit = v.to_owned();
      return false;
    });
  }
  applied_ = applied_before;
  if (culprit) {
    on_fault(culprit->view(), why);
    return;
  }
  ProjectionFault f{end, Uuid{}, "", "",
                    fmt::format("{} (found after the events below position {}; replaying them one by one did not "
                                "reproduce it: the reducer is not deterministic{})",
                                detected.message(), end, st.ok() ? "" : ", or the replay failed: " + st.message()),
                    now_ns()};
  report("projection {} v{} faulted: {}", spec_.name, spec_.version, f.message);
  if (st.ok()) position_ = end;  // the replay applied everything below end: state and position agree
  else serve_checkpoint();
  set_fault(std::move(f));
}

void Runner::catch_up(uint64_t head) {
  base::UniqueLock lock(state_mu_);
  size_t count = 0;
  bool stopped = false;
  uint64_t next = position_;
  Status fault;
  std::optional<RecordedEvent> faulting;
  const auto deadline = Clock::now() + std::chrono::milliseconds(50);
  Status scan = store_.scan_all(position_, spec_.source, [&](const EventView& v) CAIRN_REQUIRES(state_mu_) {
    if (v.position >= head) return false;
    if (!process(v, &fault)) {
      faulting = v.to_owned();
      stopped = true;
      return false;
    }
    next = v.position + 1;
    if (++count >= spec_.batch_events || (count % 256 == 0 && Clock::now() > deadline)) {
      stopped = true;
      return false;
    }
    yield_to_queries(lock, next);
    return true;
  });
  if (faulting) {
    on_fault(faulting->view(), fault);
    return;
  }
  if (!scan.ok()) {
    if (scan.code() != ErrorCode::kClosed) report("projection {}: reading the log failed: {}", spec_.name, scan.message());
    lock.unlock();
    base::UniqueLock w(wake_mu_);
    wake_cv_.wait_for(w.native(), std::chrono::milliseconds(200), [&] { return stop_.load(); });
    return;
  }
  (void)finish_batch(lock, stopped ? next : head);
}

bool Runner::finish_batch(base::UniqueLock& lock, uint64_t end) {
  // The purity check comes before the batch is published: a status or query must not see the position move
  // past events that the check then finds at fault.
  if (Status pure = engine_->check_purity(); !pure.ok()) {
    locate_fault(pure, end);
    return false;
  }
  position_ = end;
  publish_partitions();
  if (snapshot_due()) {
    Status st = checkpoint_locked(lock, true);
    if (!st.ok()) report("projection {}: snapshot failed: {}", spec_.name, st.message());
  }
  position_cv_.notify_all();
  return true;
}

void Runner::follow() {
  Subscription* current = nullptr;  // sub_ is replaced only by this thread: valid outside sub_mu_ too
  {
    base::MutexLock g(sub_mu_);
    if (stop_) return;
    if (!sub_ || sub_->cursor() != position_) {
      auto sub = store_.subscribe_all(position_, Filter{});
      if (!sub.ok()) {
        report("projection {}: cannot subscribe: {}", spec_.name, sub.status().message());
        return;
      }
      sub_ = std::move(*sub);
    }
    current = sub_.get();
  }
  auto events = current->next(spec_.batch_events, std::chrono::milliseconds(250));
  if (!events.ok()) {
    base::MutexLock g(sub_mu_);
    sub_.reset();
    return;
  }
  base::UniqueLock lock(state_mu_);
  Status fault;
  for (const auto& e : *events) {
    const EventView v = e.view();
    if (!spec_.source.empty() && !spec_.source.matches(v.stream, v.type)) continue;
    if (!process(v, &fault)) {
      on_fault(v, fault);
      base::MutexLock g(sub_mu_);
      sub_.reset();
      return;
    }
    yield_to_queries(lock, v.position + 1);
  }
  if (!finish_batch(lock, current->cursor())) {
    base::MutexLock g(sub_mu_);
    sub_.reset();
  }
}

Status Runner::checkpoint_locked(base::UniqueLock& lock, bool snapshot) {
  const auto started = Clock::now();
  const uint64_t pos = position_;
  auto dump = dump_state(*engine_);
  if (!dump.ok()) {
    // The state cannot be saved (e.g. a function in it): the reducer's fault, at the event that did it.
    locate_fault(Status::invalid_argument(fmt::format("the state cannot be saved: {}", dump.status().message())), pos);
    return dump.status();
  }
  lock.unlock(state_mu_);
  Status st = write_state_file(fs_, spec_.dir, spec_.name, spec_.version, pos, snapshot, *dump, key_ ? &*key_ : nullptr);
  lock.lock(state_mu_);
  if (!st.ok()) return st;
  checkpoint_position_ = pos;
  applied_since_checkpoint_ = 0;
  const auto now = Clock::now();
  last_checkpoint_cost_ = now - started;
  last_checkpoint_ = now;
  if (snapshot && spec_.snapshot_every) next_snapshot_ = (pos / spec_.snapshot_every + 1) * spec_.snapshot_every;
  // Older checkpoints are superseded; snapshots stay for as-of queries, thinned out as they accumulate:
  // past kMaxSnapshots, every other one of the older ones goes, so old history keeps coarser snapshots.
  auto files = list_state_files(spec_.dir);  // newest first
  size_t snapshots = 0;
  for (const auto& f : files) {
    if (!f.snapshot && f.position < pos) (void)fs_->remove(f.path);
    snapshots += f.snapshot ? 1 : 0;
  }
  if (snapshots > kMaxSnapshots) {
    size_t seen = 0;
    for (const auto& f : files)
      if (f.snapshot && ++seen > kKeepNewestSnapshots && seen % 2 == 0) (void)fs_->remove(f.path);
  }
  return {};
}

// A snapshot is due at each snapshot_every boundary, but never sooner than ten times what the previous
// state file took to write, so that dumping a large state costs the runner at most about a tenth of its time.
bool Runner::snapshot_due() const {
  return position_ >= next_snapshot_ && Clock::now() - last_checkpoint_ >= 10 * last_checkpoint_cost_;
}

void Runner::maybe_checkpoint() {
  if (position_ == checkpoint_position_) return;
  const auto since = Clock::now() - last_checkpoint_;
  if (since < spec_.checkpoint_interval && applied_since_checkpoint_ < spec_.checkpoint_events) return;
  if (since < 10 * last_checkpoint_cost_) return;  // same budget as snapshot_due()
  base::UniqueLock lock(state_mu_);
  if (faulted_) return;
  Status st = checkpoint_locked(lock, false);
  if (!st.ok()) report("projection {} v{}: checkpoint failed: {}", spec_.name, spec_.version, st.message());
}

void Runner::update_rate() {
  const auto now = Clock::now();
  const double secs = std::chrono::duration<double>(now - rate_since_).count();
  if (secs < 1.0) return;
  const uint64_t pos = position_;
  rate_ = static_cast<double>(pos - std::min(pos, rate_position_)) / secs;
  rate_position_ = pos;
  rate_since_ = now;
}

void Runner::run() {
  while (!stop_) {
    if (faulted_) {
      base::UniqueLock w(wake_mu_);
      wake_cv_.wait(w.native(), [&] { return stop_.load(); });
      break;
    }
    const uint64_t head = store_.head_position();
    const uint64_t pos = position_;
    if (pos < head && (head - pos > kFollowLag || !live_)) {
      live_ = false;
      catch_up(head);
      if (position_ >= head) live_ = true;
    } else {
      live_ = true;
      follow();
    }
    update_rate();
    maybe_checkpoint();
  }
  {
    base::MutexLock g(sub_mu_);
    sub_.reset();
  }
  if (final_checkpoint_ && !faulted_ && position_ != checkpoint_position_) {
    base::UniqueLock lock(state_mu_);
    Status st = checkpoint_locked(lock, false);
    if (!st.ok()) report("projection {} v{}: final checkpoint failed: {}", spec_.name, spec_.version, st.message());
  }
}

Status Runner::with_state(const std::function<Status(ReducerEngine&, uint64_t)>& f) {
  waiting_queries_.fetch_add(1);
  base::UniqueLock g(state_mu_);
  if (waiting_queries_.fetch_sub(1) == 1) {
    base::MutexLock w(queries_mu_);
    queries_cv_.notify_all();
  }
  if (!engine_) return Status(ErrorCode::kClosed, "the projection is not running");
  return f(*engine_, position_);
}

Status Runner::wait_past(uint64_t position, std::chrono::milliseconds timeout) {
  base::UniqueLock lock(state_mu_);
  // The predicate reads atomics only: nothing for the analysis to check in it.
  const bool ok =
      position_cv_.wait_for(lock.native(), timeout, [&] { return position_ > position || faulted_ || stop_; });
  if (position_ > position) return {};
  if (stop_) return Status(ErrorCode::kClosed, fmt::format("projection {} v{} stopped", spec_.name, spec_.version));
  if (faulted_) {
    base::MutexLock f(fault_mu_);
    if (fault_)
      return Status(ErrorCode::kFaulted, fmt::format("projection {} v{} is faulted at position {}: {}", spec_.name,
                                                  spec_.version, fault_->position, fault_->message));
  }
  (void)ok;
  return Status(ErrorCode::kTimeout, fmt::format("projection {} v{} is at position {}, not past {}, after {} ms",
                                                 spec_.name, spec_.version, position_.load(), position, timeout.count()));
}

RunnerStatus Runner::status() const {
  RunnerStatus s;
  s.position = position_;
  s.head = store_.head_position();
  s.events_per_second = rate_;
  s.events_applied = applied_;
  s.checkpoint_position = checkpoint_position_;
  {
    base::MutexLock g(fault_mu_);
    s.fault = fault_;
  }
  s.partitions = partitions_.load(std::memory_order_relaxed);
  if (faulted_) s.phase = ProjectionPhase::kFaulted;
  else if (stop_) s.phase = ProjectionPhase::kStopped;
  else if (s.position >= s.head || (live_ && s.position + kFollowLag >= s.head)) s.phase = ProjectionPhase::kLive;
  else s.phase = ProjectionPhase::kCatchingUp;
  return s;
}

}  // namespace cairn::project
