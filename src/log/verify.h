// The integrity walk over segments already mapped: what verify_log() runs over a directory, what the privacy
// purge runs over an open store's sealed segments before it rewrites any, and over each rewritten segment
// before it replaces the old one (its proof that the chain did not change). Reads only; the segments must not
// change while it runs.
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

// Verifies one whole segment on its own, from the chain head, position and time its header names: checksums,
// dense positions, times, every payload digest and every commit's chain head (stream revisions only within
// the segment). The purge runs it on a rewritten segment before that takes the old one's place.
VerifyReport verify_segment_alone(const SegmentExtent& seg, const ProgressFn& progress);

// The chain head (hex) after the segment's last whole commit, as its commit headers state it (headers checked,
// bodies not): the chain_before of the segment after it.
Result<std::string> segment_end_head(const SegmentExtent& seg);

}  // namespace cairn::log
