#include "log/sha256.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace cairn::log {
namespace {
const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);  // fetched once: fetching is slow
  return md;
}
}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()), init_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || init_ == nullptr || sha256_md() == nullptr ||
      EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(init_), sha256_md(), nullptr) != 1)
    throw std::runtime_error("OpenSSL SHA-256 unavailable");
  reset();
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(init_));
}

void Sha256::reset() {
  // EVP_DigestInit_ex looks up provider parameters by name on every call (strcmp-heavy in OpenSSL 3);
  // copying an initialized context skips that.
  if (EVP_MD_CTX_copy_ex(static_cast<EVP_MD_CTX*>(ctx_), static_cast<const EVP_MD_CTX*>(init_)) != 1)
    throw std::runtime_error("EVP_MD_CTX_copy_ex failed");
}

void Sha256::update(const void* data, size_t n) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n);
}

Hash Sha256::final() {
  Hash h{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), h.data(), &len);
  reset();
  return h;
}

std::string hex(const uint8_t* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[p[i] >> 4];
    s[2 * i + 1] = kDigits[p[i] & 15];
  }
  return s;
}

}  // namespace cairn::log
