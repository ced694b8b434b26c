// A file system over the real one that holds or fails a chosen fsync of a log segment, to put appends in
// flight at a known moment (races, retries, poisoning). Thread-safe; arm() from the test thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "base/file.h"

namespace cairn::testing {

// A file system over the real one. Syncs of files under log/ are counted from arm(); the block_on-th blocks
// until release(), the fail_on-th fails (without syncing). Appends to log files are counted.
class GateFs final : public base::FileSystem {
 public:
  void arm(int block_on, int fail_on) {
    std::lock_guard g(mu_);
    syncs_ = 0;
    block_on_ = block_on;
    fail_on_ = fail_on;
    blocked_ = false;
    released_ = false;
  }
  void release() {
    std::lock_guard g(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Waits (at most a minute, so a broken build fails instead of hanging) until pred() holds.
  template <typename P>
  bool wait(P pred) {
    std::unique_lock g(mu_);
    return cv_.wait_for(g, std::chrono::seconds(60), [&] { return pred(); });
  }
  bool blocked() const { return blocked_; }
  int syncs() const { return syncs_; }
  int log_writes() const { return writes_; }
  int log_writes_locked() {
    std::lock_guard g(mu_);
    return writes_;
  }

  Status on_sync(const std::string& path) {
    if (path.find("/log/") == std::string::npos) return {};
    std::unique_lock g(mu_);
    const int n = ++syncs_;
    cv_.notify_all();
    if (n == fail_on_) return Status::io_error("injected fdatasync failure on " + path);
    if (n == block_on_) {
      blocked_ = true;
      cv_.notify_all();
      cv_.wait(g, [&] { return released_; });
    }
    return {};
  }
  void on_write(const std::string& path) {
    if (path.find("/log/") == std::string::npos) return;
    std::lock_guard g(mu_);
    ++writes_;
    cv_.notify_all();
  }

  Result<std::unique_ptr<base::WritableFile>> create_file(const std::string& path) override {
    auto f = base::posix_fs()->create_file(path);
    if (!f.ok()) return f.status();
    return wrap(std::move(*f));
  }
  Result<std::unique_ptr<base::WritableFile>> open_for_append(const std::string& path) override {
    auto f = base::posix_fs()->open_for_append(path);
    if (!f.ok()) return f.status();
    return wrap(std::move(*f));
  }
  Status rename(const std::string& from, const std::string& to) override { return base::posix_fs()->rename(from, to); }
  Status remove(const std::string& path) override { return base::posix_fs()->remove(path); }
  Status sync_dir(const std::string& dir) override { return base::posix_fs()->sync_dir(dir); }

 private:
  class File final : public base::WritableFile {
   public:
    File(GateFs& fs, std::unique_ptr<base::WritableFile> in) : fs_(fs), in_(std::move(in)) {}
    Status append(const void* d, size_t n) override {
      Status st = in_->append(d, n);
      fs_.on_write(in_->path());
      return st;
    }
    Status sync() override {
      CAIRN_RETURN_IF_ERROR(fs_.on_sync(in_->path()));
      return in_->sync();
    }
    Status truncate(uint64_t size) override { return in_->truncate(size); }
    uint64_t size() const override { return in_->size(); }
    const std::string& path() const override { return in_->path(); }

   private:
    GateFs& fs_;
    std::unique_ptr<base::WritableFile> in_;
  };
  std::unique_ptr<base::WritableFile> wrap(std::unique_ptr<base::WritableFile> f) {
    return std::make_unique<File>(*this, std::move(f));
  }

  std::mutex mu_;
  std::condition_variable cv_;
  int syncs_ = 0, writes_ = 0, block_on_ = 0, fail_on_ = 0;
  bool blocked_ = false, released_ = false;
};

}  // namespace cairn::testing
