// The embedded backend of the Store API: one data directory, one process.
//
// Layout of the directory: LOCK (held with flock while open for writing), log/ (segments: the truth),
// index/ (derived, rebuildable), repair/ (bytes cut by a repair, kept for inspection).
// See include/cairn/store.h for the durability and visibility contract; this class adds the file-system
// hook that tests use to inject faults.
#pragma once

#include <atomic>
#include <memory>

#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "base/mutex.h"
#include "index/index.h"
#include "base/file.h"
#include "base/reserved_appends.h"
#include "log/log.h"
#include "store/policy.h"
#include "store/reader.h"
#include "store/writer.h"
#include "subscribe/notifier.h"

namespace cairn::store {

class EmbeddedStore final : public Store, public base::ReservedAppends {
 public:
  // replay_progress, if set, is told (events indexed, events to index) while the index catches up.
  // extensions: the domain modules to run (runtime/compose.h builds them); none makes a store of plain events.
  static Result<std::unique_ptr<EmbeddedStore>> open(const EmbeddedOptions& options, base::FileSystem* fs,
                                                     const ProgressFn& replay_progress = {},
                                                     Extensions extensions = {});
  ~EmbeddedStore() override;

  Result<AppendResult> append(StreamAppend request) override;
  Result<AppendResult> append_multi(std::vector<StreamAppend> requests) override;
  void append_async(StreamAppend request, AppendCallback done) override;
  void append_multi_async(std::vector<StreamAppend> requests, AppendCallback done) override;
  Result<AppendResult> append_reserved(StreamAppend request) override;
  Result<ReadPage> read_stream(std::string_view stream, std::optional<uint64_t> from_revision, Direction direction,
                               size_t limit) override;
  Result<ReadPage> read_all(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                            const Filter& filter) override;
  Status scan_all(uint64_t from_position, const Filter& filter, const EventVisitor& visit) override;
  Status scan_stored(uint64_t from_position, const Filter& filter, const StoredEventVisitor& visit) override;
  Result<ForgetResult> forget(std::string_view subject, std::string_view reason, std::string_view actor_json) override;
  Result<PurgeResult> purge(std::string_view actor_json, const std::function<void(uint64_t, uint64_t)>& progress) override;
  Result<VerifyReport> verify_chain() override;
  Result<std::string> subject_id(std::string_view subject) const override;
  DataKeys* data_keys() override { return ext_.sealed ? ext_.sealed->data_keys() : nullptr; }
  Result<RecordedEvent> read_position(uint64_t position) override;
  Result<RecordedEvent> read_event(const Uuid& id) override;
  Result<StreamInfo> stream_info(std::string_view stream) override;
  Result<StreamListing> list_streams(std::optional<std::string> after, size_t limit, std::string_view prefix) override;
  Result<std::unique_ptr<Subscription>> subscribe_all(uint64_t from_position, Filter filter) override;
  Result<std::unique_ptr<Subscription>> subscribe_stream(std::string stream, uint64_t from_revision) override;
  Result<uint64_t> import_commit(std::vector<ImportEvent> events) override;
  uint64_t head_position() const override;
  StoreStats stats() const override;
  StoreMetrics metrics() const override;
  Status close() override;

 private:
  EmbeddedStore() = default;
  Status replay_index(const ProgressFn& progress);
  Result<AppendResult> do_append(std::vector<StreamAppend> requests, bool multi, bool reserved);
  void do_append_async(std::vector<StreamAppend> requests, bool multi, AppendCallback done);
  // $all from the log as stored, filtered (scan_all and scan_stored are built on it).
  Status scan_log(uint64_t from_position, const Filter& filter, const ViewFn& visit);
  Status writable() const;
  Status read_all_by_type(uint64_t lo, uint64_t hi, Direction direction, size_t limit, const Filter& filter,
                          ReadPage* page);

  EmbeddedOptions options_;
  base::FileSystem* fs_ = nullptr;
  int lock_fd_ = -1;
  std::unique_ptr<log::Log> log_;
  std::unique_ptr<index::Index> index_;
  std::unique_ptr<LogReader> reader_;
  subscribe::Notifier notifier_;
  std::unique_ptr<Writer> writer_;
  Extensions ext_;  // the policies every append runs, and the sealed parts' reader (null: no key store)
  class Host;       // what the policies may look up (PolicyHost over this store's reader)
  std::unique_ptr<Host> host_;
  std::atomic<bool> closed_{false};
  base::Mutex forget_mu_;                     // one forget at a time (destroy, then record)
  base::Mutex purge_mu_;                      // one purge at a time (the only writer of sealed segments)
  // A running purge's progress and the finished ones, for metrics() (written under purge_mu_, read anywhere).
  std::atomic<bool> purge_running_{false};
  std::atomic<uint64_t> purge_done_bytes_{0}, purge_total_bytes_{0}, purges_{0}, purged_parts_{0};
  // Opens the sealed personal parts of a stored event in place (no-op for others, and without a key store).
  Status open_personal(RecordedEvent& e) const;
  Result<ReadPage> read_stream_stored(std::string_view stream, std::optional<uint64_t> from_revision, Direction direction,
                                      size_t limit);
  Result<ReadPage> read_all_stored(std::optional<uint64_t> from_position, Direction direction, size_t limit,
                                   const Filter& filter);
};

}  // namespace cairn::store
