// Status and Result: how every expected failure in Cairn is reported.
//
// Contract: a Status is a value (copyable, cheap when ok). Errors carry a code that callers branch on and
// a message for humans that says what was wrong and where. Exceptions are reserved for programmer errors
// (e.g. calling value() on an error Result), never for expected failures.
// Thread safety: immutable after construction; safe to share.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace cairn {

enum class ErrorCode : uint8_t {
  kOk = 0,
  kInvalidArgument,        // bad input: names the field and what is wrong with it
  kNotFound,               // stream, event or position does not exist
  kWrongExpectedRevision,  // optimistic concurrency check failed; actual_revision() tells the truth
  kDuplicateEventId,       // an event id was reused with different content or in another place
  kLimitExceeded,          // an event or an append is over a configured limit
  kCorruption,             // stored bytes fail a checksum or are inconsistent; names file and offset
  kIoError,                // the operating system refused a read, write or sync
  kPoisoned,               // an earlier write or sync failed: no further append can be acknowledged
  kClosed,                 // the store was closed
  kBusy,                   // another process holds the store
  kTimeout,                // a wait ran out
  kConflict,               // the request contradicts what exists (e.g. a projection version with another definition)
  kFaulted,                // a projection stopped on a reducer error; the message names the event
  kInvalidEvent,           // an event breaks its type's rules (the AI ledger's vocabulary) or names what does not exist
  kUnavailable,            // the backend server (PostgreSQL) did not answer: nothing was done; retry later
};

// Stable snake_case name of a code, as used in CLI output and the HTTP API (whose status for each code is the
// server's business: src/server/http_util.cc).
std::string_view error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(ErrorCode code, std::string message);

  static Status invalid_argument(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
  static Status not_found(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
  static Status conflict(std::string m) { return {ErrorCode::kConflict, std::move(m)}; }
  static Status invalid_event(std::string m) { return {ErrorCode::kInvalidEvent, std::move(m)}; }
  static Status limit_exceeded(std::string m) { return {ErrorCode::kLimitExceeded, std::move(m)}; }
  static Status corruption(std::string m) { return {ErrorCode::kCorruption, std::move(m)}; }
  static Status io_error(std::string m) { return {ErrorCode::kIoError, std::move(m)}; }
  static Status duplicate_event_id(std::string m) { return {ErrorCode::kDuplicateEventId, std::move(m)}; }
  // expected/actual: -1 means "no stream"; expected may also be a negative sentinel described in message.
  static Status wrong_expected_revision(std::string m, int64_t actual_revision);

  bool ok() const { return detail_ == nullptr; }
  explicit operator bool() const { return ok(); }
  ErrorCode code() const { return detail_ ? detail_->code : ErrorCode::kOk; }
  const std::string& message() const;
  // Only meaningful for kWrongExpectedRevision: the stream's current revision, -1 if it does not exist.
  int64_t actual_revision() const { return detail_ ? detail_->actual_revision : -1; }
  // "code: message", or "ok".
  std::string to_string() const;

 private:
  struct Detail {
    ErrorCode code;
    std::string message;
    int64_t actual_revision = -1;
  };
  std::shared_ptr<const Detail> detail_;
};

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(v_).ok()) throw std::logic_error("Result constructed from an ok Status");
  }

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return checked(); }
  const T& value() const& { return const_cast<Result*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }
  T* operator->() { return &checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->checked(); }
  T& operator*() & { return checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->checked(); }
  T&& operator*() && { return std::move(checked()); }

 private:
  T& checked() {
    if (!ok()) throw std::logic_error("Result::value() on error: " + std::get<Status>(v_).to_string());
    return std::get<T>(v_);
  }
  std::variant<T, Status> v_;
};

}  // namespace cairn

#define CAIRN_RETURN_IF_ERROR(expr)           \
  do {                                        \
    ::cairn::Status cairn_status_ = (expr);   \
    if (!cairn_status_.ok()) return cairn_status_; \
  } while (0)
