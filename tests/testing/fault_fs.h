// A FileSystem that wraps the real one and fails chosen operations on demand, to test what the store does
// when a write or an fsync fails (it must stop acknowledging appends and say why).
// Thread safety: the switches are atomics; set them from the test thread while the store runs.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/file.h"

namespace cairn::testing {

class FaultFs final : public base::FileSystem {
 public:
  // Each counter: fail the Nth next such operation from now (1 = the next one); 0 = never.
  std::atomic<int> fail_write_after{0};
  std::atomic<int> fail_sync_after{0};
  std::atomic<int> fail_create_after{0};
  // Counts of operations seen, for tests that need to know a path was exercised.
  std::atomic<int> writes{0};
  std::atomic<int> syncs{0};

  Result<std::unique_ptr<base::WritableFile>> create_file(const std::string& path) override;
  Result<std::unique_ptr<base::WritableFile>> open_for_append(const std::string& path) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status remove(const std::string& path) override;
  Status sync_dir(const std::string& dir) override;

  // True when the operation should fail now (decrements the matching counter).
  bool trip(std::atomic<int>& counter);

 private:
  std::unique_ptr<base::WritableFile> wrap(std::unique_ptr<base::WritableFile> f);
};

}  // namespace cairn::testing
