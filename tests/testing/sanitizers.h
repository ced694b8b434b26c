// Whether this test binary was built with a sanitizer: sanitized builds run the same tests on smaller
// workloads, and ThreadSanitizer's slowdown needs longer waits.
#pragma once

namespace cairn::testing {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitized = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitized = true;
#else
inline constexpr bool kThreadSanitized = false;
#endif
#else
inline constexpr bool kThreadSanitized = false;
#endif

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitized = true;
#else
inline constexpr bool kAddressSanitized = false;
#endif
#else
inline constexpr bool kAddressSanitized = false;
#endif

// Any sanitizer that slows the code down several times.
inline constexpr bool kSanitized = kThreadSanitized || kAddressSanitized;

}  // namespace cairn::testing
