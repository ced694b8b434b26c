// The embedded store's subscriptions: cursors over its log reader (catch-up and live are the same loop, so
// there is no seam), woken by the Notifier. See include/cairn/subscription.h for the contract.
#pragma once

#include <memory>
#include <string>

#include "cairn/store.h"
#include "cairn/subscription.h"
#include "store/reader.h"
#include "subscribe/notifier.h"

namespace cairn::store {

std::unique_ptr<Subscription> make_all_subscription(const LogReader& reader, subscribe::Notifier& notifier,
                                                    uint64_t from_position, Filter filter);
std::unique_ptr<Subscription> make_stream_subscription(const LogReader& reader, subscribe::Notifier& notifier,
                                                       std::string stream, uint64_t from_revision);

}  // namespace cairn::store
