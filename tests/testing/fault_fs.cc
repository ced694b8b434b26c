#include "testing/fault_fs.h"

namespace cairn::testing {
namespace {

class FaultFile final : public base::WritableFile {
 public:
  FaultFile(FaultFs& fs, std::unique_ptr<base::WritableFile> inner) : fs_(fs), inner_(std::move(inner)) {}
  Status append(const void* data, size_t n) override {
    ++fs_.writes;
    if (fs_.trip(fs_.fail_write_after)) return Status::io_error("injected write failure on " + inner_->path());
    return inner_->append(data, n);
  }
  Status sync() override {
    ++fs_.syncs;
    if (fs_.trip(fs_.fail_sync_after)) return Status::io_error("injected fsync failure on " + inner_->path());
    return inner_->sync();
  }
  Status truncate(uint64_t size) override { return inner_->truncate(size); }
  uint64_t size() const override { return inner_->size(); }
  const std::string& path() const override { return inner_->path(); }

 private:
  FaultFs& fs_;
  std::unique_ptr<base::WritableFile> inner_;
};

}  // namespace

bool FaultFs::trip(std::atomic<int>& counter) {
  int v = counter.load();
  while (v > 0) {
    if (counter.compare_exchange_weak(v, v - 1)) return v == 1;
  }
  return false;
}

std::unique_ptr<base::WritableFile> FaultFs::wrap(std::unique_ptr<base::WritableFile> f) {
  return std::make_unique<FaultFile>(*this, std::move(f));
}

Result<std::unique_ptr<base::WritableFile>> FaultFs::create_file(const std::string& path) {
  if (trip(fail_create_after)) return Status::io_error("injected create failure on " + path);
  auto f = base::posix_fs()->create_file(path);
  if (!f.ok()) return f.status();
  return wrap(std::move(*f));
}

Result<std::unique_ptr<base::WritableFile>> FaultFs::open_for_append(const std::string& path) {
  auto f = base::posix_fs()->open_for_append(path);
  if (!f.ok()) return f.status();
  return wrap(std::move(*f));
}

Status FaultFs::rename(const std::string& from, const std::string& to) { return base::posix_fs()->rename(from, to); }
Status FaultFs::remove(const std::string& path) { return base::posix_fs()->remove(path); }
Status FaultFs::sync_dir(const std::string& dir) {
  ++syncs;
  if (trip(fail_sync_after)) return Status::io_error("injected directory fsync failure on " + dir);
  return base::posix_fs()->sync_dir(dir);
}

}  // namespace cairn::testing
