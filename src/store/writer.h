// The single writer and its group commit.
//
// Callers (any thread) hand in validated appends; one writer thread takes every request queued at that
// moment, checks expected revisions and idempotency against the durable log plus the requests before it in
// the same group, encodes one commit frame per request, writes them with one write() and one fdatasync,
// then adds them to the index, publishes the new durable end and only then answers every request of the
// group. A request that fails its checks changes nothing and does not disturb the others in its group.
// If the write or the sync fails, the log is poisoned: that group and every later request fail.
// Thread safety: submit()/import() from any thread; stop() once, from the owner.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <semaphore>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cairn/store.h"
#include "index/index.h"
#include "log/log.h"
#include "store/reader.h"

namespace cairn::store {

// A validated stream append plus what the caller's thread prepared for it: ids (generated where absent)
// and one random payload-digest salt per event.
struct PreparedAppend {
  StreamAppend append;
  std::vector<bool> id_supplied;
  std::vector<std::array<uint8_t, log::kSaltSize>> salts;
  std::vector<log::Hash> digests;  // payload digests, computed in the caller's thread
};

class Writer {
 public:
  Writer(log::Log& log, index::Index& index, const LogReader& reader, std::function<void()> on_publish);
  ~Writer();

  Result<AppendResult> submit(std::vector<PreparedAppend> appends);
  Result<uint64_t> import(std::vector<ImportEvent> events);
  // Finishes what is queued, then refuses everything with kClosed.
  void stop();

  uint64_t commits() const;

 private:
  struct Request {
    std::vector<PreparedAppend>* appends = nullptr;
    std::vector<ImportEvent>* imports = nullptr;
    size_t bytes = 0;
    Status status;
    AppendResult result;
    uint64_t import_position = 0;
    // Released by the writer when the request is answered: each caller is woken alone, not the herd.
    std::binary_semaphore done{0};
  };
  struct Tentative;  // the effects of the group so far (revisions and ids not yet durable)

  void run();
  void process_group(std::vector<Request*>& group);
  Status plan_append(Request& r, Tentative& t, std::vector<log::EventInput>* inputs);
  Status plan_import(Request& r, Tentative& t, std::vector<log::EventInput>* inputs);
  Result<std::optional<uint64_t>> current_revision(const std::string& stream, const Tentative& t);
  Status wait(Request& r);

  log::Log& log_;
  index::Index& index_;
  const LogReader& reader_;
  std::function<void()> on_publish_;

  std::mutex mu_;
  std::condition_variable queue_cv_;
  std::deque<Request*> queue_;
  bool stopping_ = false;
  bool stopped_ = false;

  // Writer-thread state.
  uint64_t next_position_ = 0;
  log::Hash chain_head_{};
  int64_t last_time_ns_ = 0;
  std::unordered_map<std::string, uint64_t> revision_cache_;  // durable stream revisions seen recently
  log::CommitEncoder encoder_;
  std::string pending_;
  index::IndexBatch batch_;
  std::atomic<uint64_t> commits_{0};

  std::thread thread_;
};

}  // namespace cairn::store
