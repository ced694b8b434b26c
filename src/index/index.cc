#include "index/index.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL  // header-only use of Debian's libxxhash-dev: no shared library call on the hot path
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <span>
#include <sstream>

#include <fmt/format.h>

#include "log/crc32c.h"
#include "log/record.h"

namespace cairn::index {

// UINT64_MAX marks an empty slot in the memtable's tables, so no key may be it (one value in 2^64 moves).
uint64_t hash_name(std::string_view name) { return std::min(XXH3_64bits(name.data(), name.size()), UINT64_MAX - 1); }
uint64_t hash_id(const Uuid& id) { return std::min(XXH3_64bits(id.bytes.data(), id.bytes.size()), UINT64_MAX - 1); }

namespace {

// Open addressing with linear probing from u64 keys (already XXH3 hashes, so their low bits are uniform)
// to u64 values; equal keys may repeat. Hand-written because the standard node-based maps cost an
// allocation per event on the writer's path and a free per event when a memtable is dropped.
class FlatMultiMap {
 public:
  static constexpr uint64_t kEmpty = UINT64_MAX;  // hash_name/hash_id never return it

  void insert(uint64_t key, uint64_t value) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    size_t i = key & mask_;
    while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
    slots_[i] = {key, value};
    ++size_;
  }
  uint64_t* find_first(uint64_t key) {
    if (slots_.empty()) return nullptr;
    for (size_t i = key & mask_; slots_[i].key != kEmpty; i = (i + 1) & mask_)
      if (slots_[i].key == key) return &slots_[i].value;
    return nullptr;
  }
  template <typename F>
  void for_each(uint64_t key, F&& f) const {
    if (slots_.empty()) return;
    for (size_t i = key & mask_; slots_[i].key != kEmpty; i = (i + 1) & mask_)
      if (slots_[i].key == key) f(slots_[i].value);
  }
  template <typename F>
  void for_all(F&& f) const {
    for (const auto& s : slots_)
      if (s.key != kEmpty) f(s.key, s.value);
  }
  size_t size() const { return size_; }

 private:
  void grow() {
    std::vector<KeyPos> old = std::move(slots_);
    slots_.assign(std::max<size_t>(64, old.size() * 2), KeyPos{kEmpty, 0});
    mask_ = slots_.size() - 1;
    size_ = 0;
    for (const auto& s : old)
      if (s.key != kEmpty) insert(s.key, s.value);
  }
  std::vector<KeyPos> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace

struct Memtable {
  uint64_t from = 0;
  uint64_t to = 0;
  uint64_t events = 0;
  FlatMultiMap stream_slot;  // stream key -> index into stream_lists (one list per key)
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> stream_lists;  // (revision, position), ascending
  std::vector<uint64_t> stream_keys;                                     // the key of each list
  std::unordered_map<uint64_t, std::vector<uint64_t>> types;              // key -> positions (few keys)
  FlatMultiMap ids;                                                       // key -> position
  std::vector<KeyPos> sparse;                                             // ascending positions

  const std::vector<std::pair<uint64_t, uint64_t>>* stream_list(uint64_t key) const {
    const uint64_t* slot = const_cast<FlatMultiMap&>(stream_slot).find_first(key);
    return slot ? &stream_lists[*slot] : nullptr;
  }
};

namespace {

constexpr char kRunMagic[8] = {'C', 'A', 'I', 'R', 'N', 'I', 'D', 'X'};
constexpr uint32_t kRunVersion = 1;
constexpr size_t kRunHeaderSize = 64;
constexpr const char* kManifest = "MANIFEST";

// Function objects, not functions: std::sort and std::merge inline them (a function pointer they cannot).
struct StreamLess {
  bool operator()(const StreamEntry& a, const StreamEntry& b) const {
    return std::tie(a.key, a.revision, a.position) < std::tie(b.key, b.revision, b.position);
  }
};
constexpr StreamLess stream_less{};
struct KeyPosLess {
  bool operator()(const KeyPos& a, const KeyPos& b) const { return std::tie(a.key, a.value) < std::tie(b.key, b.value); }
};
constexpr KeyPosLess keypos_less{};

std::string run_file_name(uint64_t from, uint64_t to) { return fmt::format("run-{:020}-{:020}.idx", from, to); }

}  // namespace

// One immutable sorted run file, mapped.
class Run {
 public:
  static Result<std::shared_ptr<Run>> open(const std::string& path) {
    std::shared_ptr<Run> r(new Run());
    r->path_ = path;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::io_error(fmt::format("cannot open {}: {}", path, base::errno_text(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      return Status::io_error(fmt::format("cannot stat {}: {}", path, base::errno_text(e)));
    }
    r->size_ = static_cast<uint64_t>(st.st_size);
    if (r->size_ < kRunHeaderSize + 4) {
      ::close(fd);
      return Status::corruption(fmt::format("{}: too short for an index run", path));
    }
    void* m = ::mmap(nullptr, r->size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) return Status::io_error(fmt::format("cannot map {}: {}", path, base::errno_text(errno)));
    r->map_ = static_cast<const uint8_t*>(m);
    const uint8_t* p = r->map_;
    if (std::memcmp(p, kRunMagic, 8) != 0 || log::load32(p + 8) != kRunVersion)
      return Status::corruption(fmt::format("{}: not an index run of this version", path));
    if (log::crc32c(p, kRunHeaderSize - 4) != log::load32(p + kRunHeaderSize - 4))
      return Status::corruption(fmt::format("{}: run header checksum mismatch", path));
    r->from_ = log::load64(p + 12);
    r->to_ = log::load64(p + 20);
    const uint64_t ns = log::load64(p + 28), nt = log::load64(p + 36), ni = log::load64(p + 44),
                   nsp = log::load64(p + 52);
    const uint64_t need = kRunHeaderSize + ns * sizeof(StreamEntry) + (nt + ni + nsp) * sizeof(KeyPos) + 4;
    if (need != r->size_) return Status::corruption(fmt::format("{}: section sizes do not add up", path));
    if (log::crc32c(p, r->size_ - 4) != log::load32(p + r->size_ - 4))
      return Status::corruption(fmt::format("{}: run checksum mismatch", path));
    const uint8_t* q = p + kRunHeaderSize;
    r->streams_ = std::span<const StreamEntry>(reinterpret_cast<const StreamEntry*>(q), ns);
    q += ns * sizeof(StreamEntry);
    r->types_ = std::span<const KeyPos>(reinterpret_cast<const KeyPos*>(q), nt);
    q += nt * sizeof(KeyPos);
    r->ids_ = std::span<const KeyPos>(reinterpret_cast<const KeyPos*>(q), ni);
    q += ni * sizeof(KeyPos);
    r->sparse_ = std::span<const KeyPos>(reinterpret_cast<const KeyPos*>(q), nsp);
    return r;
  }

  // A section's entries, produced in order into `put` (in chunks, so a merge never holds a whole run).
  using Put = std::function<Status(const void*, size_t)>;
  struct Section {
    uint64_t count;
    std::function<Status(const Put&)> emit;
  };
  template <typename T>
  static Section from_vector(const std::vector<T>& v) {
    return {v.size(), [&v](const Put& put) { return put(v.data(), v.size() * sizeof(T)); }};
  }
  template <typename T, typename Less>
  static Section merged(std::span<const T> a, std::span<const T> b, Less less) {
    return {a.size() + b.size(), [a, b, less](const Put& put) -> Status {
              std::vector<T> chunk;
              chunk.reserve(8192);
              auto ia = a.begin(), ib = b.begin();
              while (ia != a.end() || ib != b.end()) {
                if (ib == b.end() || (ia != a.end() && !less(*ib, *ia))) chunk.push_back(*ia++);
                else chunk.push_back(*ib++);
                if (chunk.size() == chunk.capacity()) {
                  CAIRN_RETURN_IF_ERROR(put(chunk.data(), chunk.size() * sizeof(T)));
                  chunk.clear();
                }
              }
              return put(chunk.data(), chunk.size() * sizeof(T));
            }};
  }

  // Writes a run file durably (temp file, fsync, rename, directory fsync) from sorted sections in the
  // order streams, types, ids, sparse.
  static Status write(base::FileSystem* fs, const std::string& dir, uint64_t from, uint64_t to,
                      const Section& streams, const Section& types, const Section& ids, const Section& sparse) {
    uint8_t h[kRunHeaderSize] = {};
    std::memcpy(h, kRunMagic, 8);
    log::store32(h + 8, kRunVersion);
    log::store64(h + 12, from);
    log::store64(h + 20, to);
    log::store64(h + 28, streams.count);
    log::store64(h + 36, types.count);
    log::store64(h + 44, ids.count);
    log::store64(h + 52, sparse.count);
    log::store32(h + kRunHeaderSize - 4, log::crc32c(h, kRunHeaderSize - 4));
    const std::string name = run_file_name(from, to);
    const std::string tmp = dir + "/" + name + ".tmp";
    CAIRN_RETURN_IF_ERROR(fs->remove(tmp));
    auto f = fs->create_file(tmp);
    if (!f.ok()) return f.status();
    uint32_t crc = log::crc32c(h, sizeof h);
    CAIRN_RETURN_IF_ERROR((*f)->append(h, sizeof h));
    const Put put = [&](const void* data, size_t n) -> Status {
      crc = log::crc32c_extend(crc, data, n);
      return (*f)->append(data, n);
    };
    for (const Section* sec : {&streams, &types, &ids, &sparse}) CAIRN_RETURN_IF_ERROR(sec->emit(put));
    uint8_t footer[4];
    log::store32(footer, crc);
    CAIRN_RETURN_IF_ERROR((*f)->append(footer, 4));
    CAIRN_RETURN_IF_ERROR((*f)->sync());
    f->reset();
    CAIRN_RETURN_IF_ERROR(fs->rename(tmp, dir + "/" + name));
    return fs->sync_dir(dir);
  }

  ~Run() {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
    if (remove_when_unused_) ::unlink(path_.c_str());
  }

  uint64_t from() const { return from_; }
  uint64_t to() const { return to_; }
  uint64_t bytes() const { return size_; }
  uint64_t events() const { return streams_.size(); }
  const std::string& path() const { return path_; }
  std::string name() const { return path_.substr(path_.rfind('/') + 1); }
  std::span<const StreamEntry> streams() const { return streams_; }
  std::span<const KeyPos> types() const { return types_; }
  std::span<const KeyPos> ids() const { return ids_; }
  std::span<const KeyPos> sparse() const { return sparse_; }
  void remove_when_unused() { remove_when_unused_ = true; }

 private:
  Run() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  uint64_t from_ = 0, to_ = 0;
  std::span<const StreamEntry> streams_;
  std::span<const KeyPos> types_, ids_, sparse_;
  bool remove_when_unused_ = false;
};

Result<std::unique_ptr<Index>> Index::open(const std::string& dir, base::FileSystem* fs, uint64_t memtable_limit,
                                           bool read_only) {
  std::unique_ptr<Index> idx(new Index());
  idx->dir_ = dir + "/index";
  idx->fs_ = fs;
  idx->memtable_limit_ = std::max<uint64_t>(memtable_limit, 1);
  idx->read_only_ = read_only;
  idx->active_ = std::make_unique<Memtable>();
  if (!read_only) CAIRN_RETURN_IF_ERROR(base::make_dirs(idx->dir_));

  auto manifest = base::read_whole_file(idx->dir_ + "/" + kManifest);
  if (manifest.ok()) {
    // Format: "cairn-index 1\nthrough N\nrun NAME\n...\ncrc C\n"; any damage means: rebuild.
    const std::string& text = *manifest;
    const auto crc_at = text.rfind("crc ");
    bool good = crc_at != std::string::npos &&
                std::to_string(log::crc32c(text.data(), crc_at)) + "\n" == text.substr(crc_at + 4);
    std::istringstream in(text.substr(0, good ? crc_at : 0));
    std::string word;
    uint64_t through = 0;
    std::vector<std::shared_ptr<Run>> runs;
    if (good && in >> word && word == "cairn-index" && in >> word && word == "1" && in >> word &&
        word == "through" && in >> through) {
      uint64_t expect_from = 0;
      while (good && in >> word) {
        std::string name;
        if (word != "run" || !(in >> name)) { good = false; break; }
        auto r = Run::open(idx->dir_ + "/" + name);
        if (!r.ok() || (*r)->from() != expect_from) { good = false; break; }
        expect_from = (*r)->to();
        runs.push_back(std::move(*r));
      }
      if (good && expect_from != through) good = false;
    } else {
      good = false;
    }
    if (good) {
      idx->runs_ = std::move(runs);
      idx->indexed_through_ = through;
    } else {
      idx->rebuilt_ = true;
      if (!read_only) CAIRN_RETURN_IF_ERROR(idx->reset());
    }
  } else if (manifest.status().code() != ErrorCode::kNotFound) {
    return manifest.status();
  }
  if (!read_only && !idx->rebuilt_) {
    // Files the manifest does not list are leftovers of a crash between writing a run and the manifest
    // (or before a merged-away run was unlinked): derived, unreferenced, safe to drop.
    std::vector<std::string> keep{kManifest};
    for (const auto& r : idx->runs_) keep.push_back(r->name());
    if (DIR* d = ::opendir(idx->dir_.c_str())) {
      std::vector<std::string> stale;
      while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != ".." && std::find(keep.begin(), keep.end(), n) == keep.end()) stale.push_back(n);
      }
      ::closedir(d);
      for (const auto& n : stale) CAIRN_RETURN_IF_ERROR(fs->remove(idx->dir_ + "/" + n));
    }
  }
  idx->active_->from = idx->active_->to = idx->indexed_through_;
  if (!read_only) idx->flusher_ = std::thread([p = idx.get()] { p->flusher_loop(); });
  return idx;
}

Index::~Index() { (void)close(); }

Status Index::reset() {
  base::WriterLock lock(mu_);
  for (auto& r : runs_) r->remove_when_unused();
  runs_.clear();
  indexed_through_ = 0;
  active_ = std::make_unique<Memtable>();
  frozen_.reset();
  if (read_only_) return {};
  // Remove every file of the index folder (runs, manifest, temp files): all derived, all rebuildable.
  if (DIR* d = ::opendir(dir_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      Status st = fs_->remove(dir_ + "/" + n);
      if (!st.ok()) {
        ::closedir(d);
        return st;
      }
    }
    ::closedir(d);
  }
  return fs_->sync_dir(dir_);
}

uint64_t Index::indexed_through() const {
  base::ReaderLock lock(mu_);
  return indexed_through_;
}

void Index::add(const IndexBatch& b) {
  base::WriterLock lock(mu_);
  Memtable& m = *active_;
  for (const auto& e : b.streams) {
    uint64_t* slot = m.stream_slot.find_first(e.key);
    if (!slot) {
      m.stream_slot.insert(e.key, m.stream_lists.size());
      m.stream_lists.emplace_back();
      m.stream_keys.push_back(e.key);
      slot = m.stream_slot.find_first(e.key);
    }
    m.stream_lists[*slot].emplace_back(e.revision, e.position);
  }
  for (const auto& e : b.types) m.types[e.key].push_back(e.value);
  for (const auto& e : b.ids) m.ids.insert(e.key, e.value);
  m.sparse.insert(m.sparse.end(), b.sparse.begin(), b.sparse.end());
  m.events += b.streams.size();
  m.to = b.end_position;
  const bool freeze = !read_only_ && m.events >= memtable_limit_ && !frozen_;
  // Backpressure: if the flusher has fallen a whole memtable behind, the writer waits for it rather than
  // let the heap grow without bound.
  const bool behind = !read_only_ && !freeze && frozen_ && m.events >= 2 * memtable_limit_;
  if (freeze) freeze_locked();
  lock.unlock();  // lock order is flush_mu_ before mu_: never take flush_mu_ while holding mu_
  if (freeze) {
    base::MutexLock g(flush_mu_);
    flush_cv_.notify_one();
  }
  if (behind) {
    base::UniqueLock g(flush_mu_);
    while (!flush_caught_up_locked()) flushed_cv_.wait(g.native());
  }
}

bool Index::flush_caught_up_locked() const {
  base::ReaderLock l(mu_);
  return !frozen_ || stop_ || !background_error_.ok();
}

bool Index::flush_work_locked() const {
  base::ReaderLock lock(mu_);
  return stop_ || frozen_ != nullptr;
}

void Index::freeze_locked() {
  const uint64_t to = active_->to;
  frozen_ = std::shared_ptr<const Memtable>(std::move(active_));
  active_ = std::make_unique<Memtable>();
  active_->from = active_->to = to;
}

Status Index::write_run_from(const Memtable& m, uint64_t from, uint64_t to, std::shared_ptr<Run>* out) {
  // The memtable keeps each key's entries in position order, which for one stream is revision order:
  // sorting the keys and concatenating gives sorted sections without sorting every entry.
  std::vector<size_t> order(m.stream_lists.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return m.stream_keys[a] < m.stream_keys[b]; });
  std::vector<StreamEntry> streams;
  streams.reserve(m.events);
  for (size_t i : order) {
    const size_t start = streams.size();
    for (const auto& [rev, pos] : m.stream_lists[i]) streams.push_back({m.stream_keys[i], rev, pos});
    if (!std::is_sorted(streams.begin() + static_cast<ptrdiff_t>(start), streams.end(), stream_less))
      std::sort(streams.begin() + static_cast<ptrdiff_t>(start), streams.end(), stream_less);  // colliding streams
  }
  std::vector<uint64_t> type_keys;
  for (const auto& kv : m.types) type_keys.push_back(kv.first);
  std::sort(type_keys.begin(), type_keys.end());
  std::vector<KeyPos> types, ids;
  types.reserve(m.events);
  for (uint64_t key : type_keys)
    for (uint64_t pos : m.types.at(key)) types.push_back({key, pos});
  ids.reserve(m.ids.size());
  m.ids.for_all([&](uint64_t key, uint64_t pos) { ids.push_back({key, pos}); });
  std::sort(ids.begin(), ids.end(), keypos_less);
  CAIRN_RETURN_IF_ERROR(Run::write(fs_, dir_, from, to, Run::from_vector(streams), Run::from_vector(types),
                                   Run::from_vector(ids), Run::from_vector(m.sparse)));
  auto r = Run::open(dir_ + "/" + run_file_name(from, to));
  if (!r.ok()) return r.status();
  *out = std::move(*r);
  return {};
}

Status Index::write_manifest(uint64_t through, const std::vector<std::shared_ptr<Run>>& runs) {
  std::string text = fmt::format("cairn-index 1\nthrough {}\n", through);
  for (const auto& r : runs) text += "run " + r->name() + "\n";
  text += fmt::format("crc {}\n", log::crc32c(text.data(), text.size()));
  return base::write_file_atomically(fs_, dir_, kManifest, text);
}

// Merges the last two runs while the older is at most twice the newer (a binary-counter shape, as
// KurrentDB's PTable levels): O(log n) runs, each entry rewritten O(log n) times.
Status Index::merge_tail_runs() {
  for (;;) {
    std::vector<std::shared_ptr<Run>> runs;
    {
      base::ReaderLock lock(mu_);
      runs = runs_;
    }
    if (runs.size() < 2) return {};
    const auto& a = runs[runs.size() - 2];
    const auto& b = runs[runs.size() - 1];
    if (a->events() > 2 * b->events()) return {};
    // Streamed merge: heap use is a chunk per section, not the runs' size.
    CAIRN_RETURN_IF_ERROR(Run::write(fs_, dir_, a->from(), b->to(), Run::merged(a->streams(), b->streams(), stream_less),
                                     Run::merged(a->types(), b->types(), keypos_less),
                                     Run::merged(a->ids(), b->ids(), keypos_less),
                                     Run::merged(a->sparse(), b->sparse(), keypos_less)));
    auto merged = Run::open(dir_ + "/" + run_file_name(a->from(), b->to()));
    if (!merged.ok()) return merged.status();
    std::vector<std::shared_ptr<Run>> next(runs.begin(), runs.end() - 2);
    next.push_back(*merged);
    CAIRN_RETURN_IF_ERROR(write_manifest(b->to(), next));
    base::WriterLock lock(mu_);
    a->remove_when_unused();
    b->remove_when_unused();
    runs_ = std::move(next);
  }
}

void Index::flusher_loop() {
  for (;;) {
    std::shared_ptr<const Memtable> job;
    {
      base::UniqueLock g(flush_mu_);
      while (!flush_work_locked()) flush_cv_.wait(g.native());
      base::ReaderLock lock(mu_);
      job = frozen_;
      if (!job && stop_) return;
    }
    std::shared_ptr<Run> run;
    Status st = write_run_from(*job, job->from, job->to, &run);
    std::vector<std::shared_ptr<Run>> next;
    if (st.ok()) {
      base::ReaderLock lock(mu_);
      next = runs_;
    }
    if (st.ok()) {
      next.push_back(run);
      st = write_manifest(job->to, next);
    }
    {
      base::MutexLock g(flush_mu_);  // flush_mu_ before mu_, as everywhere
      base::WriterLock lock(mu_);
      if (st.ok()) {
        runs_ = std::move(next);
        indexed_through_ = job->to;
        frozen_.reset();
      }
    }
    flushed_cv_.notify_all();
    if (st.ok()) st = merge_tail_runs();
    if (!st.ok()) {
      // The index is derived: a failed flush loses nothing (the log has it). Keep serving from memory and
      // report the error at close; stop trying so as not to spin on a full disk.
      {
        base::MutexLock g(flush_mu_);
        background_error_ = st;
      }
      flushed_cv_.notify_all();
      return;
    }
  }
}

Status Index::close() {
  if (read_only_) return {};
  {
    base::MutexLock g(flush_mu_);
    if (stop_ && !flusher_.joinable()) return background_error_;
    stop_ = true;
    flush_cv_.notify_all();
  }
  if (flusher_.joinable()) flusher_.join();
  base::MutexLock g(flush_mu_);
  if (!background_error_.ok()) return background_error_;
  base::WriterLock lock(mu_);
  if (frozen_) return {};  // flusher stopped early; the log replay on open covers it
  if (active_->events == 0) return {};
  std::shared_ptr<Run> run;
  // Read outside the lock below, as before: the flusher has stopped, and close() follows the last add().
  const Memtable& active = *active_;
  lock.unlock();
  CAIRN_RETURN_IF_ERROR(write_run_from(active, active.from, active.to, &run));
  lock.lock();
  runs_.push_back(run);
  indexed_through_ = active_->to;
  CAIRN_RETURN_IF_ERROR(write_manifest(indexed_through_, runs_));
  active_ = std::make_unique<Memtable>();
  active_->from = active_->to = indexed_through_;
  return {};
}

void Index::stream_range(uint64_t key, uint64_t lo, uint64_t hi, std::vector<StreamEntry>* out) const {
  const size_t start = out->size();
  base::ReaderLock lock(mu_);
  for (const auto& r : runs_) {
    auto s = r->streams();
    auto it = std::lower_bound(s.begin(), s.end(), StreamEntry{key, lo, 0}, stream_less);
    for (; it != s.end() && it->key == key && it->revision <= hi; ++it) out->push_back(*it);
  }
  auto from_mem = [&](const Memtable* m) {
    if (!m) return;
    const auto* list = m->stream_list(key);
    if (!list) return;
    // Ascending by position, and (for one stream) by revision: binary search the window.
    auto it = std::lower_bound(list->begin(), list->end(), std::make_pair(lo, uint64_t{0}));
    bool sorted = true;
    for (; it != list->end(); ++it) {
      if (it->first > hi) {
        if (sorted) break;  // a colliding stream could interleave lower revisions after this
        continue;
      }
      if (it->first < lo) continue;
      out->push_back({key, it->first, it->second});
    }
  };
  from_mem(frozen_.get());
  from_mem(active_.get());
  std::sort(out->begin() + static_cast<ptrdiff_t>(start), out->end(), stream_less);
}

std::optional<uint64_t> Index::max_revision(uint64_t key) const {
  std::optional<uint64_t> best;
  auto take = [&](uint64_t r) {
    if (!best || r > *best) best = r;
  };
  base::ReaderLock lock(mu_);
  for (const auto& r : runs_) {
    auto s = r->streams();
    auto it = std::lower_bound(s.begin(), s.end(), StreamEntry{key + 1, 0, 0}, stream_less);
    if (key != UINT64_MAX && it != s.begin() && std::prev(it)->key == key) take(std::prev(it)->revision);
    if (key == UINT64_MAX && !s.empty() && s.back().key == key) take(s.back().revision);
  }
  for (const Memtable* m : {static_cast<const Memtable*>(frozen_.get()), static_cast<const Memtable*>(active_.get())}) {
    if (!m) continue;
    if (const auto* list = m->stream_list(key))
      for (const auto& e : *list) take(e.first);
  }
  return best;
}

void Index::stream_keys(std::optional<uint64_t> after, size_t limit,
                        std::vector<std::pair<uint64_t, std::vector<uint64_t>>>* out) const {
  std::map<uint64_t, std::vector<uint64_t>> found;  // key -> revision-0 positions
  auto keep = [&](uint64_t key) {
    // Only the `limit` smallest keys matter; drop the rest as we go.
    if (found.size() < limit) return true;
    return key < std::prev(found.end())->first;
  };
  auto trim = [&] {
    while (found.size() > limit) found.erase(std::prev(found.end()));
  };
  base::ReaderLock lock(mu_);
  for (const auto& r : runs_) {
    auto s = r->streams();
    auto it = after ? std::upper_bound(s.begin(), s.end(), StreamEntry{*after, UINT64_MAX, UINT64_MAX}, stream_less)
                    : s.begin();
    size_t taken = 0;
    while (it != s.end() && taken < limit && keep(it->key)) {
      const uint64_t key = it->key;
      auto& positions = found[key];
      for (; it != s.end() && it->key == key && it->revision == 0; ++it) positions.push_back(it->position);
      it = std::upper_bound(it, s.end(), StreamEntry{key, UINT64_MAX, UINT64_MAX}, stream_less);  // the next key
      ++taken;
    }
    trim();
  }
  for (const Memtable* m : {static_cast<const Memtable*>(frozen_.get()), static_cast<const Memtable*>(active_.get())}) {
    if (!m) continue;
    for (size_t i = 0; i < m->stream_keys.size(); ++i) {
      const uint64_t key = m->stream_keys[i];
      if ((after && key <= *after) || !keep(key)) continue;
      auto& positions = found[key];
      for (const auto& [rev, pos] : m->stream_lists[i])
        if (rev == 0) positions.push_back(pos);
      trim();
    }
  }
  for (auto& [key, positions] : found) {
    std::sort(positions.begin(), positions.end());
    out->emplace_back(key, std::move(positions));
  }
}

void Index::id_positions(uint64_t key, std::vector<uint64_t>* out) const {
  base::ReaderLock lock(mu_);
  for (const auto& r : runs_) {
    auto s = r->ids();
    auto it = std::lower_bound(s.begin(), s.end(), KeyPos{key, 0}, keypos_less);
    for (; it != s.end() && it->key == key; ++it) out->push_back(it->value);
  }
  for (const Memtable* m : {static_cast<const Memtable*>(frozen_.get()), static_cast<const Memtable*>(active_.get())}) {
    if (!m) continue;
    m->ids.for_each(key, [&](uint64_t pos) { out->push_back(pos); });
  }
}

void Index::type_positions(uint64_t key, uint64_t lo, uint64_t hi, bool forward, size_t limit,
                           std::vector<uint64_t>* out) const {
  std::vector<uint64_t> got;
  base::ReaderLock lock(mu_);
  for (const auto& r : runs_) {
    if (r->to() <= lo || r->from() > hi) continue;
    auto s = r->types();
    auto a = std::lower_bound(s.begin(), s.end(), KeyPos{key, lo}, keypos_less);
    auto b = std::upper_bound(s.begin(), s.end(), KeyPos{key, hi}, keypos_less);
    if (forward) {
      for (auto it = a; it != b && got.size() < limit; ++it) got.push_back(it->value);
    } else {
      size_t n = 0;
      for (auto it = b; it != a && n < limit; ++n) got.push_back((--it)->value);
    }
  }
  for (const Memtable* m : {static_cast<const Memtable*>(frozen_.get()), static_cast<const Memtable*>(active_.get())}) {
    if (!m) continue;
    auto f = m->types.find(key);
    if (f == m->types.end()) continue;
    const auto& v = f->second;
    auto a = std::lower_bound(v.begin(), v.end(), lo);
    auto b = std::upper_bound(v.begin(), v.end(), hi);
    if (forward) {
      for (auto it = a; it != b && static_cast<size_t>(it - a) < limit; ++it) got.push_back(*it);
    } else {
      size_t n = 0;
      for (auto it = b; it != a && n < limit; ++n) got.push_back(*--it);
    }
  }
  std::sort(got.begin(), got.end());
  if (got.size() > limit) {
    if (forward) got.resize(limit);
    else got.erase(got.begin(), got.end() - static_cast<ptrdiff_t>(limit));
  }
  if (!forward) std::reverse(got.begin(), got.end());
  out->insert(out->end(), got.begin(), got.end());
}

std::optional<KeyPos> Index::sparse_floor(uint64_t segment_first, uint64_t position) const {
  std::optional<KeyPos> best;
  auto consider = [&](std::span<const KeyPos> s) {
    auto it = std::upper_bound(s.begin(), s.end(), position,
                               [](uint64_t p, const KeyPos& e) { return p < e.key; });
    if (it == s.begin()) return;
    const KeyPos& e = *std::prev(it);
    if (e.key >= segment_first && (!best || e.key > best->key)) best = e;
  };
  base::ReaderLock lock(mu_);
  for (const auto& r : runs_)
    if (r->from() <= position) consider(r->sparse());
  if (frozen_) consider(frozen_->sparse);
  consider(active_->sparse);
  return best;
}

IndexStats Index::stats() const {
  base::ReaderLock lock(mu_);
  IndexStats s;
  s.runs = runs_.size();
  s.memtable_events = active_->events + (frozen_ ? frozen_->events : 0);
  s.indexed_through = indexed_through_;
  for (const auto& r : runs_) s.run_bytes += r->bytes();
  return s;
}

}  // namespace cairn::index
