// Subscriptions: catch up from a position (or stream revision), then follow live appends without a seam.
//
// A subscription is a cursor that pulls: next() returns the durable events after the cursor that pass its
// filter, waiting up to a timeout when there are none yet. It never sees an event past the durable
// position, never a gap, never a duplicate, always in order. It holds no buffer of its own that writers
// fill, so a slow subscriber never blocks writers: it simply reads from the log when it gets to it.
// Thread safety: one subscription is used by one thread at a time; cancel() may be called from any thread
// and wakes a waiting next(). Lifetime: must not outlive the Store that created it.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "cairn/event.h"
#include "cairn/status.h"

namespace cairn {

class Subscription {
 public:
  virtual ~Subscription() = default;

  // Up to max_events events; an empty vector when the timeout passed with nothing new.
  // Fails with kClosed after cancel() or when the store closes. A backend server that does not answer is
  // waited out (the PostgreSQL store: empty vectors meanwhile, see PostgresOptions::outage_timeout), and
  // fails it with kUnavailable only past that timeout; a failed read fails it with its own code.
  virtual Result<std::vector<RecordedEvent>> next(size_t max_events, std::chrono::milliseconds timeout) = 0;

  // For $all subscriptions: the next position to deliver. For stream subscriptions: the next revision.
  virtual uint64_t cursor() const = 0;

  virtual void cancel() = 0;
};

}  // namespace cairn
