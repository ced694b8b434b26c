// The purge of forgotten personal parts from one sealed log segment (docs/privacy.md, "Purge compaction").
//
// Every sealed part whose key the KeyStore destroyed is replaced by its purged marker, padded to the same
// width, so each record, frame and offset keeps its size; the record gets flag bit 2 and its frame new body
// and header CRCs. Nothing the hash chain covers changes: the payload digest of such an event is over the
// redactable form, which is exactly what the purge leaves.
// The copy is written to a new file (`tmp_path`, created, filled, synced); the caller puts it in place with
// Log::replace_sealed_segment. A crash at any point leaves the old segment whole under its name (the store's
// open removes a leftover *.tmp). Stateless; the segment must be sealed (no writer appends to it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cairn/maintenance.h"
#include "cairn/status.h"
#include "base/file.h"
#include "log/segment.h"
#include "privacy/keystore.h"

namespace cairn::privacy {

struct SegmentPurge {
  bool rewritten = false;      // false: nothing forgotten in it, no file written
  uint64_t events = 0;         // events with at least one part purged now
  uint64_t parts = 0;          // parts purged now
  uint64_t bytes_replaced = 0; // bytes of envelopes overwritten by markers and padding
  std::vector<std::string> subjects;  // keyed hashes of the subjects whose parts were purged, unique
};

// Scans the first `size` bytes of `segment` (whole commits, body checks on) and, when it holds forgotten
// parts, writes the purged copy to tmp_path (synced when `sync`). A damaged commit is kCorruption naming the
// file and offset, and nothing is written. progress, if given, is told the bytes scanned so far.
Result<SegmentPurge> purge_segment(const log::Segment& segment, uint64_t size, const KeyStore& keys,
                                   base::FileSystem* fs, const std::string& tmp_path, bool sync,
                                   const std::function<void(uint64_t scanned)>& progress = {});

}  // namespace cairn::privacy
