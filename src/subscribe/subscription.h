// The store's subscriptions: cursors over the log (catch-up and live are the same loop, so there is no
// seam), woken by the Notifier. See include/cairn/subscription.h for the contract.
#pragma once

#include <memory>
#include <string>

#include "cairn/store.h"
#include "cairn/subscription.h"
#include "store/reader.h"
#include "subscribe/notifier.h"

namespace cairn::subscribe {

std::unique_ptr<Subscription> make_all_subscription(const store::LogReader& reader, Notifier& notifier,
                                                    uint64_t from_position, Filter filter);
std::unique_ptr<Subscription> make_stream_subscription(const store::LogReader& reader, Notifier& notifier,
                                                       std::string stream, uint64_t from_revision);

}  // namespace cairn::subscribe
