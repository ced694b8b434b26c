#include "base/file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace cairn::base {

std::string errno_text(int err) { return fmt::format("{} (errno {})", std::strerror(err), err); }

namespace {

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path, uint64_t size) : fd_(fd), path_(std::move(path)), size_(size) {}
  ~PosixWritableFile() override { ::close(fd_); }

  Status append(const void* data, size_t n) override {
    const auto* p = static_cast<const char*>(data);
    size_t done = 0;
    while (done < n) {
      ssize_t w = ::pwrite(fd_, p + done, n - done, static_cast<off_t>(size_ + done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::io_error(fmt::format("write to {} at offset {} failed: {}", path_, size_ + done,
                                            errno_text(errno)));
      }
      done += static_cast<size_t>(w);
    }
    size_ += n;
    return {};
  }

  Status sync() override {
    if (::fdatasync(fd_) != 0)
      return Status::io_error(fmt::format("fdatasync of {} failed: {}", path_, errno_text(errno)));
    return {};
  }

  Status truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return Status::io_error(fmt::format("truncate of {} to {} failed: {}", path_, size, errno_text(errno)));
    size_ = size;
    return {};
  }

  uint64_t size() const override { return size_; }
  const std::string& path() const override { return path_; }

 private:
  int fd_;
  std::string path_;
  uint64_t size_;
};

class PosixFs final : public FileSystem {
 public:
  Result<std::unique_ptr<WritableFile>> create_file(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return Status::io_error(fmt::format("cannot create {}: {}", path, errno_text(errno)));
    return std::unique_ptr<WritableFile>(new PosixWritableFile(fd, path, 0));
  }

  Result<std::unique_ptr<WritableFile>> open_for_append(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return Status::io_error(fmt::format("cannot open {}: {}", path, errno_text(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int e = errno;
      ::close(fd);
      return Status::io_error(fmt::format("cannot stat {}: {}", path, errno_text(e)));
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(fd, path, static_cast<uint64_t>(st.st_size)));
  }

  Status rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0)
      return Status::io_error(fmt::format("cannot rename {} to {}: {}", from, to, errno_text(errno)));
    return {};
  }

  Status remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return Status::io_error(fmt::format("cannot remove {}: {}", path, errno_text(errno)));
    return {};
  }

  Status sync_dir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::io_error(fmt::format("cannot open directory {}: {}", dir, errno_text(errno)));
    int rc = ::fsync(fd);
    int e = errno;
    ::close(fd);
    if (rc != 0) return Status::io_error(fmt::format("fsync of directory {} failed: {}", dir, errno_text(e)));
    return {};
  }
};

}  // namespace

FileSystem* posix_fs() {
  static PosixFs fs;
  return &fs;
}

Result<std::string> read_whole_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::not_found(fmt::format("{} does not exist", path));
    return Status::io_error(fmt::format("cannot open {}: {}", path, errno_text(errno)));
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return Status::io_error(fmt::format("cannot read {}: {}", path, errno_text(e)));
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Status make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Status::io_error(fmt::format("cannot create directory {}: {}", path, ec.message()));
  return {};
}

Status write_file_atomically(FileSystem* fs, const std::string& dir, const std::string& name,
                             std::string_view contents) {
  const std::string tmp = dir + "/" + name + ".tmp";
  CAIRN_RETURN_IF_ERROR(fs->remove(tmp));
  auto file = fs->create_file(tmp);
  if (!file.ok()) return file.status();
  CAIRN_RETURN_IF_ERROR((*file)->append(contents.data(), contents.size()));
  CAIRN_RETURN_IF_ERROR((*file)->sync());
  file->reset();
  CAIRN_RETURN_IF_ERROR(fs->rename(tmp, dir + "/" + name));
  return fs->sync_dir(dir);
}

Result<int> lock_data_dir(const std::string& dir) {
  const std::string path = dir + "/LOCK";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::io_error(fmt::format("cannot open {}: {}", path, errno_text(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK)
      return Status(ErrorCode::kBusy, fmt::format("{} is open in another process (it holds {})", dir, path));
    return Status::io_error(fmt::format("cannot lock {}: {}", path, errno_text(e)));
  }
  return fd;
}

bool writer_is_live(const std::string& dir) {
  int fd = ::open((dir + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // releases the probe at once: a reader must never block a writer from opening
  return held;
}

void unlock_data_dir(int fd) {
  if (fd >= 0) ::close(fd);  // closing releases the flock
}

}  // namespace cairn::base
