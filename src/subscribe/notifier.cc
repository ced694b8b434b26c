#include "subscribe/notifier.h"

namespace cairn::subscribe {

void Notifier::publish() {
  { base::MutexLock g(mu_); }  // orders the durable-end store before any waiter's check under the lock
  cv_.notify_all();
}

void Notifier::close() {
  closed_.store(true, std::memory_order_release);
  publish();
}

bool Notifier::wait_beyond(uint64_t seen, const std::function<uint64_t()>& durable_end,
                           std::chrono::milliseconds timeout, const std::atomic<bool>& cancelled) {
  base::UniqueLock g(mu_);
  cv_.wait_for(g.native(), timeout, [&] { return durable_end() > seen || cancelled.load() || closed(); });
  return durable_end() > seen && !cancelled.load() && !closed();
}

}  // namespace cairn::subscribe
