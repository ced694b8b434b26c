// The engine's own counters, for monitoring (cairnd's /metrics, `cairn stats`): how the index, the group
// commit, fdatasync and the privacy purge are doing. Nothing here says anything about the events; that is
// StoreStats (store.h). Fields a backend does not have stay 0 (PostgreSQL has no index runs, no segments
// of its own and no fdatasync of its own).
//
// A plain value: Store::metrics() fills one from relaxed atomic loads, so fields may be a moment apart.
#pragma once

#include <array>
#include <cstdint>

namespace cairn {

struct StoreMetrics {
  // The derived index (embedded store).
  uint64_t index_runs = 0;             // immutable runs on disk
  uint64_t index_memtable_events = 0;  // events indexed in memory, not yet in a run
  uint64_t indexed_through = 0;        // positions below this are in runs on disk

  // Since open, cumulative like Prometheus counters and histograms.
  uint64_t appended_commits = 0;  // acknowledged commits written by this process
  uint64_t appended_events = 0;
  uint64_t appended_bytes = 0;    // log bytes of those commits
  // fdatasync latency: count per bucket, each bucket counting syncs at or below its bound (cumulative).
  static constexpr std::array<double, 11> kSyncBucketsSeconds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                                 0.01,   0.025,   0.05,   0.1,   0.25};
  std::array<uint64_t, 11> sync_buckets{};
  uint64_t syncs = 0;
  double sync_seconds = 0;
  // Events per group commit (one write and one sync), cumulative buckets like the above.
  static constexpr std::array<double, 10> kGroupBucketsEvents = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
  std::array<uint64_t, 10> group_buckets{};
  uint64_t groups = 0;
  uint64_t group_events = 0;

  // The privacy purge (Store::purge): whether one runs now, its progress, and how many finished since open.
  bool purge_running = false;
  uint64_t purge_done_bytes = 0;
  uint64_t purge_total_bytes = 0;
  uint64_t purges = 0;
  uint64_t purged_parts = 0;  // parts purged by the purges finished since open
};

}  // namespace cairn
