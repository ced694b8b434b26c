// Store::forget on every backend (docs/privacy.md "Forgetting a subject"): checks the request, counts the
// events holding the subject's parts, destroys its keys durably, then appends privacy.subject.forgotten to
// $privacy through the store. A second forget returns the first one's result with already = true.
// Thread safety: callers serialize forgets of one store (each backend holds a mutex around it).
#pragma once

#include <string_view>

#include "cairn/store.h"
#include "privacy/keystore.h"

namespace cairn::privacy {

inline constexpr std::string_view kPrivacyStream = "$privacy";
inline constexpr std::string_view kForgottenType = "privacy.subject.forgotten";
inline constexpr std::string_view kPurgedType = "privacy.purge.completed";

Result<ForgetResult> forget_subject(Store& store, KeyStore& keys, std::string_view subject, std::string_view reason,
                                    std::string_view actor_json);

// Appends one of the store's own privacy records to $privacy (actor_json, if any, as metadata.actor).
Result<uint64_t> record_privacy_event(Store& store, std::string_view type, std::string data, std::string_view actor_json);

}  // namespace cairn::privacy
