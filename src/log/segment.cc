#include "log/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include <fmt/format.h>

#include "base/file.h"

namespace cairn::log {

Result<std::shared_ptr<Segment>> Segment::open(const std::string& path, uint64_t map_capacity,
                                               bool tolerate_bad_header) {
  std::shared_ptr<Segment> s(new Segment());
  s->path_ = path;
  s->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (s->fd_ < 0) return Status::io_error(fmt::format("cannot open segment {}: {}", path, base::errno_text(errno)));
  struct stat st {};
  if (::fstat(s->fd_, &st) != 0) return Status::io_error(fmt::format("cannot stat {}: {}", path, base::errno_text(errno)));
  s->file_size_ = static_cast<uint64_t>(st.st_size);
  s->capacity_ = std::max<uint64_t>(map_capacity, s->file_size_);
  if (s->capacity_ == 0) s->capacity_ = 1;
  void* m = ::mmap(nullptr, s->capacity_, PROT_READ, MAP_SHARED, s->fd_, 0);
  if (m == MAP_FAILED) return Status::io_error(fmt::format("cannot map {}: {}", path, base::errno_text(errno)));
  s->map_ = static_cast<uint8_t*>(m);
  ::madvise(m, s->capacity_, MADV_SEQUENTIAL);
  auto h = decode_segment_header(s->map_, s->file_size_);
  if (!h.ok()) {
    Status err = Status::corruption(fmt::format("{} offset 0: {}", path, h.status().message()));
    uint64_t first = 0;
    if (!tolerate_bad_header || !parse_segment_file_name(s->name(), &first)) return err;
    s->header_error_ = err;
    s->header_.first_position = first;
  } else {
    s->header_ = *h;
  }
  s->durable_size_.store(s->file_size_);
  return s;
}

Segment::~Segment() {
  if (map_ != nullptr) ::munmap(map_, capacity_);
  if (fd_ >= 0) ::close(fd_);
}

std::string Segment::name() const {
  auto slash = path_.rfind('/');
  return slash == std::string::npos ? path_ : path_.substr(slash + 1);
}

std::string segment_file_name(uint64_t first_position) { return fmt::format("{:020}.seg", first_position); }

bool parse_segment_file_name(const std::string& name, uint64_t* first_position) {
  if (name.size() != 24 || name.substr(20) != ".seg") return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  *first_position = v;
  return true;
}

}  // namespace cairn::log
