// Wakes subscribers when the durable end moves. The writer calls publish() after it advanced the durable
// end; a subscriber waits until the end passes what it has seen, a timeout, its cancellation or close().
// Thread safety: all methods from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>

#include "base/mutex.h"

namespace cairn::subscribe {

class Notifier {
 public:
  void publish();
  void close();
  bool closed() const { return closed_.load(std::memory_order_acquire); }
  // True when durable_end() > seen; false on timeout, cancellation or close.
  bool wait_beyond(uint64_t seen, const std::function<uint64_t()>& durable_end, std::chrono::milliseconds timeout,
                   const std::atomic<bool>& cancelled);

 private:
  // mu_ guards no data: a publisher takes it once after storing the durable end, so that a waiter that checked
  // the end under it cannot miss the wake-up (the check and the wait are atomic with respect to it).
  base::Mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> closed_{false};
};

}  // namespace cairn::subscribe
