#include "cairn/status.h"

namespace cairn {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kWrongExpectedRevision: return "wrong_expected_revision";
    case ErrorCode::kDuplicateEventId: return "duplicate_event_id";
    case ErrorCode::kLimitExceeded: return "limit_exceeded";
    case ErrorCode::kCorruption: return "corruption";
    case ErrorCode::kIoError: return "io_error";
    case ErrorCode::kPoisoned: return "poisoned";
    case ErrorCode::kClosed: return "closed";
    case ErrorCode::kBusy: return "busy";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kConflict: return "conflict";
    case ErrorCode::kFaulted: return "faulted";
    case ErrorCode::kInvalidEvent: return "invalid_event";
    case ErrorCode::kUnavailable: return "unavailable";
  }
  return "unknown";
}

Status::Status(ErrorCode code, std::string message) {
  if (code != ErrorCode::kOk) detail_ = std::make_shared<const Detail>(Detail{code, std::move(message), -1});
}

Status Status::wrong_expected_revision(std::string m, int64_t actual_revision) {
  Status s;
  s.detail_ = std::make_shared<const Detail>(Detail{ErrorCode::kWrongExpectedRevision, std::move(m), actual_revision});
  return s;
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return detail_ ? detail_->message : kEmpty;
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(error_code_name(code())) + ": " + detail_->message;
}

}  // namespace cairn
