// What every crash loop reads from its environment: the number of kills (CAIRN_CRASH_ITERATIONS, fewer by
// default under AddressSanitizer, which slows children and checks several times) and the seed
// (CAIRN_CRASH_SEED, decimal or 0x hex; random by default) that fixes content and kill delays.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>

namespace cairn::crash {

inline constexpr bool kUnderAsan =
#if defined(__SANITIZE_ADDRESS__)
    true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

inline int iterations(int normal, int under_asan) {
  int n = kUnderAsan ? under_asan : normal;
  if (const char* e = std::getenv("CAIRN_CRASH_ITERATIONS"); e && *e) n = std::max(1, std::atoi(e));
  return n;
}

inline uint64_t seed() {
  if (const char* e = std::getenv("CAIRN_CRASH_SEED"); e && *e) return std::strtoull(e, nullptr, 0);
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace cairn::crash
