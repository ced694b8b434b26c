#include "store/subscription.h"

#include <atomic>

namespace cairn::store {
namespace {

using Clock = std::chrono::steady_clock;

class SubscriptionBase : public Subscription {
 public:
  SubscriptionBase(const LogReader& reader, subscribe::Notifier& notifier) : reader_(reader), notifier_(notifier) {}

  Result<std::vector<RecordedEvent>> next(size_t max_events, std::chrono::milliseconds timeout) override {
    if (max_events == 0) return Status::invalid_argument("max_events: must be at least 1");
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (cancelled_.load()) return Status(ErrorCode::kClosed, "the subscription was cancelled");
      if (notifier_.closed()) return Status(ErrorCode::kClosed, "the store was closed");
      const uint64_t end = reader_.durable_end();
      std::vector<RecordedEvent> out;
      CAIRN_RETURN_IF_ERROR(poll(end, max_events, &out));
      if (!out.empty()) return out;
      const auto now = Clock::now();
      if (now >= deadline) return out;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + std::chrono::milliseconds(1);
      notifier_.wait_beyond(end, [this] { return reader_.durable_end(); }, left, cancelled_);
    }
  }

  void cancel() override {
    cancelled_.store(true);
    notifier_.publish();
  }

 protected:
  // Appends up to max events visible below `end` after the cursor, advancing the cursor past everything
  // it looked at.
  virtual Status poll(uint64_t end, size_t max, std::vector<RecordedEvent>* out) = 0;

  const LogReader& reader_;
  subscribe::Notifier& notifier_;
  std::atomic<bool> cancelled_{false};
};

class AllSubscription final : public SubscriptionBase {
 public:
  AllSubscription(const LogReader& r, subscribe::Notifier& n, uint64_t from, Filter filter)
      : SubscriptionBase(r, n), cursor_(from), filter_(std::move(filter)) {}
  uint64_t cursor() const override { return cursor_; }

 private:
  Status poll(uint64_t end, size_t max, std::vector<RecordedEvent>* out) override {
    if (cursor_ >= end) return {};
    bool full = false;
    CAIRN_RETURN_IF_ERROR(reader_.scan(cursor_, end, [&](const EventView& v) {
      cursor_ = v.position + 1;
      if (filter_.empty() || filter_.matches(v.stream, v.type)) out->push_back(v.to_owned());
      full = out->size() >= max;
      return !full;
    }));
    if (!full) cursor_ = end;  // everything below end was looked at
    return {};
  }

  uint64_t cursor_;
  Filter filter_;
};

class StreamSubscription final : public SubscriptionBase {
 public:
  StreamSubscription(const LogReader& r, subscribe::Notifier& n, std::string stream, uint64_t from)
      : SubscriptionBase(r, n), stream_(std::move(stream)), cursor_(from) {}
  uint64_t cursor() const override { return cursor_; }

 private:
  Status poll(uint64_t end, size_t max, std::vector<RecordedEvent>* out) override {
    auto tip = reader_.stream_tip(stream_, end);
    if (!tip.ok()) return tip.status();
    if (!*tip || (*tip)->revision < cursor_) return {};
    const uint64_t hi = std::min<uint64_t>((*tip)->revision, cursor_ + max - 1);
    CAIRN_RETURN_IF_ERROR(reader_.stream_events(stream_, cursor_, hi, end, [&](const EventView& v) {
      out->push_back(v.to_owned());
      return true;
    }));
    if (!out->empty()) cursor_ = out->back().revision + 1;
    return {};
  }

  std::string stream_;
  uint64_t cursor_;
};

}  // namespace

std::unique_ptr<Subscription> make_all_subscription(const LogReader& reader, subscribe::Notifier& notifier,
                                                    uint64_t from_position, Filter filter) {
  return std::make_unique<AllSubscription>(reader, notifier, from_position, std::move(filter));
}

std::unique_ptr<Subscription> make_stream_subscription(const LogReader& reader, subscribe::Notifier& notifier,
                                                       std::string stream, uint64_t from_revision) {
  return std::make_unique<StreamSubscription>(reader, notifier, std::move(stream), from_revision);
}

}  // namespace cairn::store
