// SHA-256 through OpenSSL 3's EVP interface: payload digests and the commit hash chain.
// A Sha256 object is single-threaded and reusable (reset() after final()).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cairn::log {

using Hash = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void reset();
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  Hash final();

 private:
  void* ctx_;   // EVP_MD_CTX*
  void* init_;  // an initialized EVP_MD_CTX*: copying it is much cheaper than EVP_DigestInit_ex
};

std::string hex(const uint8_t* p, size_t n);
inline std::string hex(const Hash& h) { return hex(h.data(), h.size()); }

}  // namespace cairn::log
