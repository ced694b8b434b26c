// The file layer every write of the store goes through, so that tests can inject write and sync failures
// (tests/log/fault_fs.h) the way LevelDB's Env and RocksDB's FileSystem allow.
//
// Durability contract: append() only hands bytes to the operating system; they are durable once sync()
// (fdatasync) returned ok. A file created by create_file() is durable in its directory only after
// sync_dir() on that directory. rename() is atomic; it is durable after sync_dir().
// Thread safety: a WritableFile is used by one thread at a time; a FileSystem is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "cairn/status.h"

namespace cairn::base {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status append(const void* data, size_t n) = 0;
  virtual Status sync() = 0;
  virtual Status truncate(uint64_t size) = 0;  // also moves the append offset to size
  virtual uint64_t size() const = 0;
  virtual const std::string& path() const = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Creates path, failing if it exists.
  virtual Result<std::unique_ptr<WritableFile>> create_file(const std::string& path) = 0;
  // Opens an existing file to append at its end.
  virtual Result<std::unique_ptr<WritableFile>> open_for_append(const std::string& path) = 0;
  virtual Status rename(const std::string& from, const std::string& to) = 0;
  virtual Status remove(const std::string& path) = 0;
  virtual Status sync_dir(const std::string& dir) = 0;
};

// The real one (POSIX, fdatasync).
FileSystem* posix_fs();

// Helpers on plain paths (reads are not routed through FileSystem: they cannot lose data).
Result<std::string> read_whole_file(const std::string& path);
bool path_exists(const std::string& path);
Status make_dirs(const std::string& path);
std::string errno_text(int err);

// The data directory's write lock (flock on DIR/LOCK): held by the one process that writes a directory.
// kBusy if another process holds it. writer_is_live: whether another process holds it right now.
Result<int> lock_data_dir(const std::string& dir);
void unlock_data_dir(int fd);
bool writer_is_live(const std::string& dir);

// Writes a small file atomically and durably: temp file, sync, rename, sync the directory.
Status write_file_atomically(FileSystem* fs, const std::string& dir, const std::string& name,
                             std::string_view contents);

}  // namespace cairn::base
