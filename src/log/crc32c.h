// CRC-32C (Castagnoli), the checksum of every segment header, commit header and commit body.
// Hand-written because Debian 12 packages no C/C++ CRC-32C library; uses the SSE4.2 crc32 instruction
// when the CPU has it (checked once at startup) and a table otherwise. Thread-safe, no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cairn::log {

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }
bool crc32c_is_hardware();

}  // namespace cairn::log
