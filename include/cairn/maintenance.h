// Offline maintenance of an embedded data directory: verify and reindex.
//
// Both take the directory's write lock for their duration, so they fail with kBusy while a store has it
// open. verify_log() only reads. reindex() deletes the derived index files and rebuilds them from the log by
// opening the store, which (like every open) cuts an incomplete, unacknowledged commit at the very end.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "cairn/status.h"

namespace cairn {

using ProgressFn = std::function<void(uint64_t done_bytes, uint64_t total_bytes)>;

struct VerifyReport {
  bool ok = true;
  uint64_t segments = 0;
  uint64_t commits = 0;
  uint64_t events = 0;
  uint64_t bytes = 0;
  uint64_t removed_payloads = 0;  // events whose payload the privacy purge removed (digest kept)
  uint64_t streams = 0;
  std::string chain_head_hex;     // after the last verified commit
  uint64_t torn_tail_bytes = 0;   // an unacknowledged partial commit at the very end (cut on the next open)
  // The first broken place, when !ok.
  std::string file;
  uint64_t offset = 0;
  std::optional<uint64_t> position;
  std::string problem;
};

// Walks every segment: headers, checksums, positions, per-stream revisions, times, payload digests and
// the hash chain. A broken log is a report with ok == false; an error Result means it could not be read.
Result<VerifyReport> verify_log(const std::string& dir, const ProgressFn& progress = {});

struct ReindexReport {
  uint64_t events = 0;
  uint64_t runs = 0;
};
Result<ReindexReport> reindex(const std::string& dir, const ProgressFn& progress = {});

// The durable end (number of durable events) that the last writer of dir published: a cheap hint for
// followers in other processes (`cairn tail -f`) to see whether anything new may be there. Never synced;
// the log is the truth. kNotFound if no writer has opened dir yet.
Result<uint64_t> published_head(const std::string& dir);

}  // namespace cairn
