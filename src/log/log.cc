#include "log/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace cairn::log {

Result<std::unique_ptr<Log>> Log::open(const std::string& dir, const LogOptions& options) {
  std::unique_ptr<Log> log(new Log());
  log->dir_ = dir;
  log->log_dir_ = dir + "/log";
  log->options_ = options;
  if (!base::path_exists(log->log_dir_)) {
    if (options.read_only) return Status::not_found(fmt::format("{} holds no Cairn log (no log/ folder)", dir));
    CAIRN_RETURN_IF_ERROR(base::make_dirs(log->log_dir_));
    CAIRN_RETURN_IF_ERROR(options.fs->sync_dir(dir));
  }

  std::vector<uint64_t> firsts;
  DIR* d = ::opendir(log->log_dir_.c_str());
  if (d == nullptr) return Status::io_error(fmt::format("cannot list {}: {}", log->log_dir_, base::errno_text(errno)));
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    uint64_t first = 0;
    if (parse_segment_file_name(name, &first)) {
      firsts.push_back(first);
    } else if (name.size() > 4 && name.ends_with(".tmp") && !options.read_only) {
      // A segment whose creation did not finish: it was never renamed into place, so it holds nothing.
      Status st = options.fs->remove(log->log_dir_ + "/" + name);
      if (!st.ok()) {
        ::closedir(d);
        return st;
      }
    }
  }
  ::closedir(d);
  std::sort(firsts.begin(), firsts.end());

  if (firsts.empty()) {
    if (options.read_only) return Status::not_found(fmt::format("{} holds no segments", log->log_dir_));
    CAIRN_RETURN_IF_ERROR(log->create_segment(0, Hash{}, 0));
  } else {
    if (firsts.front() != 0)
      return Status::corruption(fmt::format("{}: the first segment starts at position {}, not 0 (missing segment?)",
                                            log->log_dir_, firsts.front()));
    const uint64_t active_capacity = options.segment_size + options.max_commit_bytes + kSegmentHeaderSize;
    std::vector<std::shared_ptr<Segment>> segments;
    for (size_t i = 0; i < firsts.size(); ++i) {
      const std::string path = log->log_dir_ + "/" + segment_file_name(firsts[i]);
      const bool last = i + 1 == firsts.size();
      // A damaged header of a sealed segment costs reads of that segment, not the whole store; the last
      // segment's header is needed to continue the chain and positions, so damage there stops the open.
      auto seg = Segment::open(path, last ? active_capacity : 0, /*tolerate_bad_header=*/!last);
      if (!seg.ok()) return seg.status();
      if ((*seg)->first_position() != firsts[i])
        return Status::corruption(fmt::format("{} offset 16: header says first position {}, the file name says {}",
                                              path, (*seg)->first_position(), firsts[i]));
      segments.push_back(std::move(*seg));
    }
    // A reader capped at the writer's published end ignores segments that begin past it.
    while (segments.size() > 1 && segments.back()->first_position() > options.max_position) segments.pop_back();
    {
      base::WriterLock lock(log->segments_mu_);
      log->segments_ = std::move(segments);
    }
    CAIRN_RETURN_IF_ERROR(log->recover_tail());
  }
  if (!options.read_only) {
    log->head_fd_ = ::open((log->log_dir_ + "/HEAD").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (log->head_fd_ < 0)
      return Status::io_error(fmt::format("cannot open {}/HEAD: {}", log->log_dir_, base::errno_text(errno)));
    log->write_head_hint();
  }
  if (!firsts.empty()) {
    if (!options.read_only) {
      auto f = options.fs->open_for_append(log->active_segment()->path());
      if (!f.ok()) return f.status();
      log->active_file_ = std::shared_ptr<base::WritableFile>(std::move(*f));
    }
  }
  return log;
}

Log::~Log() {
  if (head_fd_ >= 0) ::close(head_fd_);
}

void Log::write_head_hint() {
  uint8_t b[8];
  store64(b, durable_end());
  // A hint only: a failure here costs other processes' readers freshness, never data.
  [[maybe_unused]] ssize_t n = ::pwrite(head_fd_, b, 8, 0);
}

Result<uint64_t> read_head_hint(const std::string& dir) {
  auto bytes = base::read_whole_file(dir + "/log/HEAD");
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() != 8) return Status::corruption(dir + "/log/HEAD: not 8 bytes");
  return load64(reinterpret_cast<const uint8_t*>(bytes->data()));
}

Status Log::recover_tail() {
  const std::shared_ptr<Segment> seg = active_segment();
  const uint8_t* base = seg->data();
  const uint64_t size = seg->file_size_at_open();
  uint64_t offset = kSegmentHeaderSize;
  uint64_t expect = seg->first_position();
  chain_head_ = seg->header().chain_before;
  last_time_ns_ = seg->header().last_time_before;
  for (;;) {
    FrameCheck c = check_frame(base + offset, size - offset, /*check_body=*/true);
    if (c.state == FrameState::kOk && c.header.first_position >= options_.max_position) break;
    if (c.state == FrameState::kOk && c.header.first_position != expect) {
      c.state = FrameState::kCorrupt;
      c.problem = fmt::format("commit starts at position {}, expected {}", c.header.first_position, expect);
    }
    if (c.state == FrameState::kEnd) break;
    if (c.state == FrameState::kOk) {
      // The recorded time of the commit's last event, so that time never goes back after a restart.
      Status st = for_each_event(c.header, base + offset + kFrameHeaderSize,
                                 [&](const EventView& v, const uint8_t*, uint32_t) {
                                   last_time_ns_ = v.recorded_ns;
                                   return true;
                                 });
      if (!st.ok()) return Status::corruption(fmt::format("{} offset {}: {}", seg->path(), offset, st.message()));
      chain_head_ = c.header.chain_head;
      expect += c.header.event_count;
      offset += c.header.frame_size;
      ++recovered_commits_;
      continue;
    }
    const bool corrupt = c.state == FrameState::kCorrupt;
    if (corrupt && !options_.repair)
      return Status::corruption(fmt::format(
          "{} offset {} (position {}): {}; the log tail is damaged. Nothing was changed. Run `cairn verify` for "
          "details; opening with repair cuts the log here and keeps a copy of the cut bytes",
          seg->path(), offset, expect, c.problem));
    if (options_.read_only) break;  // torn (or corrupt with repair asked): a reader stops there and changes nothing
    if (corrupt) {
      const std::string repair_dir = dir_ + "/repair";
      CAIRN_RETURN_IF_ERROR(base::make_dirs(repair_dir));
      CAIRN_RETURN_IF_ERROR(options_.fs->sync_dir(dir_));  // the copy must survive a crash before the cut does
      const std::string name = fmt::format("{}.{}.cut", seg->name(), offset);
      CAIRN_RETURN_IF_ERROR(base::write_file_atomically(
          options_.fs, repair_dir, name,
          std::string_view(reinterpret_cast<const char*>(base + offset), size - offset)));
    }
    auto f = options_.fs->open_for_append(seg->path());
    if (!f.ok()) return f.status();
    CAIRN_RETURN_IF_ERROR((*f)->truncate(offset));
    CAIRN_RETURN_IF_ERROR((*f)->sync());
    break;
  }
  seg->set_durable_size(offset);
  durable_end_.store(expect, std::memory_order_release);
  return {};
}

Status Log::create_segment(uint64_t first_position, const Hash& chain_before, int64_t last_time_before) {
  const std::string name = segment_file_name(first_position);
  const std::string tmp = log_dir_ + "/" + name + ".tmp";
  const std::string path = log_dir_ + "/" + name;
  uint8_t header[kSegmentHeaderSize];
  encode_segment_header(SegmentHeader{first_position, last_time_before, chain_before}, header);
  {
    CAIRN_RETURN_IF_ERROR(options_.fs->remove(tmp));
    auto f = options_.fs->create_file(tmp);
    if (!f.ok()) return f.status();
    CAIRN_RETURN_IF_ERROR((*f)->append(header, sizeof header));
    if (options_.sync) CAIRN_RETURN_IF_ERROR((*f)->sync());
  }
  CAIRN_RETURN_IF_ERROR(options_.fs->rename(tmp, path));
  if (options_.sync) CAIRN_RETURN_IF_ERROR(options_.fs->sync_dir(log_dir_));
  auto seg = Segment::open(path, options_.segment_size + options_.max_commit_bytes + kSegmentHeaderSize);
  if (!seg.ok()) return seg.status();
  (*seg)->set_durable_size(kSegmentHeaderSize);
  auto f = options_.fs->open_for_append(path);
  if (!f.ok()) return f.status();
  {
    base::MutexLock g(file_mu_);
    active_file_ = std::shared_ptr<base::WritableFile>(std::move(*f));
  }
  base::WriterLock lock(segments_mu_);
  segments_.push_back(std::move(*seg));
  return {};
}

Status Log::poison(Status s) {
  base::MutexLock g(poison_mu_);
  if (poison_.ok()) {
    poison_ = Status(ErrorCode::kPoisoned,
                     "the store stopped accepting appends after a failed write or sync: " + s.message());
    poisoned_.store(true, std::memory_order_release);
  }
  return poison_;
}

Status Log::poisoned() const {
  if (!poisoned_.load(std::memory_order_acquire)) return {};
  base::MutexLock g(poison_mu_);
  return poison_;
}

std::shared_ptr<Segment> Log::active_segment() const {
  base::ReaderLock lock(segments_mu_);
  return segments_.back();
}

Status Log::maybe_roll(uint64_t next_position, const Hash& chain_head, int64_t last_time_ns, std::string& pending,
                       bool force) {
  CAIRN_RETURN_IF_ERROR(poisoned());
  const uint64_t filled = active_file_->size() + pending.size();
  if ((!force && filled < options_.segment_size) || filled <= kSegmentHeaderSize) return {};
  CAIRN_RETURN_IF_ERROR(write(pending));
  pending.clear();
  // The sealed segment is synced whole before the next one exists, so a sync of the new active segment
  // covers every commit written so far.
  CAIRN_RETURN_IF_ERROR(sync());
  active_segment()->raise_durable_size(active_file_->size());  // sealed: all of it is durable now
  Status st = create_segment(next_position, chain_head, last_time_ns);
  if (!st.ok()) return poison(st);
  return {};
}

Status Log::write(const std::string& bytes) {
  CAIRN_RETURN_IF_ERROR(poisoned());
  if (bytes.empty()) return {};
  Status st = active_file_->append(bytes.data(), bytes.size());
  if (!st.ok()) return poison(st);
  return {};
}

Status Log::sync() {
  CAIRN_RETURN_IF_ERROR(poisoned());
  if (!options_.sync) return {};
  std::shared_ptr<base::WritableFile> file;
  {
    base::MutexLock g(file_mu_);
    file = active_file_;
  }
  Status st = file->sync();  // outside the lock: the writer keeps writing the next commits meanwhile
  if (!st.ok()) return poison(st);
  return poisoned();
}

void Log::publish(const std::shared_ptr<Segment>& segment, uint64_t end_offset, uint64_t durable_end) {
  segment->raise_durable_size(end_offset);
  durable_end_.store(durable_end, std::memory_order_release);
  write_head_hint();
}

Result<std::shared_ptr<Segment>> Log::replace_sealed_segment(const std::shared_ptr<Segment>& old,
                                                             const std::string& replacement) {
  {
    base::ReaderLock lock(segments_mu_);
    auto it = std::find(segments_.begin(), segments_.end(), old);
    if (it == segments_.end() || std::next(it) == segments_.end())
      return Status::invalid_argument(fmt::format("{}: not a sealed segment of this log", old->path()));
  }
  {
    // Checked before it takes the old one's place: a replacement must keep the header and every size.
    auto candidate = Segment::open(replacement, 0);
    if (!candidate.ok()) return candidate.status();
    if ((*candidate)->first_position() != old->first_position() || (*candidate)->file_size_at_open() != old->durable_size() ||
        (*candidate)->header().chain_before != old->header().chain_before)
      return Status::invalid_argument(fmt::format("{}: not a replacement of {} (header or size differs)", replacement, old->path()));
  }
  // The old file stays whole under its name until the rename, which is atomic: a crash leaves either file.
  CAIRN_RETURN_IF_ERROR(options_.fs->rename(replacement, old->path()));
  // Synced whatever the durability mode: the segment it replaces may have reached the disk long ago, and an
  // unsynced replacement could take its place empty after a power loss.
  CAIRN_RETURN_IF_ERROR(options_.fs->sync_dir(log_dir_));
  auto seg = Segment::open(old->path(), 0);
  if (!seg.ok()) return seg.status();
  (*seg)->set_durable_size((*seg)->file_size_at_open());
  base::WriterLock lock(segments_mu_);
  auto it = std::find(segments_.begin(), segments_.end(), old);
  if (it == segments_.end()) return Status::invalid_argument(fmt::format("{}: replaced twice at once", old->path()));
  *it = *seg;
  return *seg;
}

std::vector<std::shared_ptr<Segment>> Log::segments() const {
  base::ReaderLock lock(segments_mu_);
  return segments_;
}

std::shared_ptr<Segment> Log::segment_for(uint64_t position) const {
  if (position >= durable_end()) return nullptr;
  base::ReaderLock lock(segments_mu_);
  auto it = std::upper_bound(segments_.begin(), segments_.end(), position,
                             [](uint64_t p, const std::shared_ptr<Segment>& s) { return p < s->first_position(); });
  if (it == segments_.begin()) return nullptr;
  return *std::prev(it);
}

uint64_t Log::total_bytes() const {
  base::ReaderLock lock(segments_mu_);
  uint64_t n = 0;
  for (const auto& s : segments_) n += s->durable_size();
  return n;
}

Status Log::visit_frames(std::shared_ptr<Segment> segment, uint64_t offset, uint64_t end_position,
                         const std::function<bool(const FrameRef&, const uint8_t* frame)>& visit,
                         bool ignore_header_error) const {
  while (segment) {
    if (!ignore_header_error) CAIRN_RETURN_IF_ERROR(segment->header_error());
    const uint64_t size = segment->durable_size();
    const uint8_t* base = segment->data();
    while (offset < size) {
      FrameCheck c = check_frame(base + offset, size - offset, /*check_body=*/false);
      if (c.state != FrameState::kOk)
        return Status::corruption(fmt::format("{} offset {}: {}", segment->path(), offset, c.problem));
      if (c.header.first_position >= end_position) return {};
      FrameRef ref{segment, offset, c.header};
      if (!visit(ref, base + offset)) return {};
      offset += c.header.frame_size;
    }
    // On to the next segment, if any.
    base::ReaderLock lock(segments_mu_);
    auto it = std::find(segments_.begin(), segments_.end(), segment);
    if (it == segments_.end() || std::next(it) == segments_.end()) return {};
    segment = *std::next(it);
    offset = kSegmentHeaderSize;
  }
  return {};
}

Status Log::check_frame_body(const FrameRef& ref, const uint8_t* frame) {
  FrameCheck c = check_frame(frame, ref.header.frame_size, /*check_body=*/true);
  if (c.state == FrameState::kOk) return {};
  return Status::corruption(fmt::format("{} offset {} (positions {}..{}): {}", ref.segment->path(), ref.offset,
                                        ref.header.first_position,
                                        ref.header.first_position + ref.header.event_count - 1, c.problem));
}

}  // namespace cairn::log
