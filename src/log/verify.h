// The integrity walk over segments already mapped: what verify_log() runs over a directory, and what the
// privacy purge runs over an open store's sealed segments before and after it rewrites them (its proof that
// the chain did not change). Reads only; the segments must not change while it runs.
#pragma once

#include <memory>
#include <vector>

#include "cairn/maintenance.h"
#include "log/segment.h"

namespace cairn::log {

struct SegmentExtent {
  std::shared_ptr<Segment> segment;
  uint64_t size = 0;  // bytes of the segment to walk
};

// Verifies segs as the first segments of a log, in order: headers, checksums, dense positions, stream
// revisions, times, payload digests and the hash chain. allow_torn_tail: the last segment may end in an
// incomplete commit (reported as torn_tail_bytes). A broken log is a report with ok == false.
VerifyReport verify_segments(const std::vector<SegmentExtent>& segs, bool allow_torn_tail, const ProgressFn& progress);

}  // namespace cairn::log
