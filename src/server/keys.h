// API keys: who may call cairnd, with which role, on which streams.
//
// Keys are stored only as SHA-256 hashes of their secrets, in DIR/keys.jsonl (one JSON object per key,
// rewritten atomically on every change). A secret is 160 random bits, shown once when the key is created;
// with that much entropy a plain hash is enough (no password-stretching needed), and lookups are by hash.
// Roles: reader (reads), writer (reads and appends), admin (everything, including keys). A key may be
// scoped to stream-name prefixes; a scoped key never sees events of other streams, nor '$' streams.
// Thread safety: all methods are safe from any thread; revocation is visible to the next authenticate().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cairn/status.h"
#include "base/mutex.h"

namespace cairn::server {

enum class Role : uint8_t { kReader = 1, kWriter = 2, kAdmin = 3 };
std::string_view role_name(Role r);
Result<Role> parse_role(std::string_view s);

struct ApiKey {
  std::string id;    // public identifier, e.g. key_3f9a0c1d2e4b
  std::string name;  // free text for humans
  Role role = Role::kReader;
  std::vector<std::string> prefixes;  // empty: every stream
  std::string hash_hex;               // SHA-256 of the secret
  int64_t created_ns = 0;
  int64_t revoked_ns = 0;             // 0: active

  bool allows(Role needed) const { return static_cast<uint8_t>(role) >= static_cast<uint8_t>(needed); }
  bool scoped() const { return !prefixes.empty(); }
  // Whether this key may see events of `stream` at all.
  bool can_see(std::string_view stream) const;
};

class KeyStore {
 public:
  // Not analysed: fills the guarded fields of a store no other thread can see yet, without mu_.
  static Result<std::unique_ptr<KeyStore>> open(const std::string& data_dir) CAIRN_NO_THREAD_SAFETY_ANALYSIS;

  bool empty() const;
  // Creates a key; returns it and its secret (the only time the secret exists in clear).
  Result<std::pair<ApiKey, std::string>> create(Role role, std::vector<std::string> prefixes, std::string name);
  // Adds a key with a secret chosen by the operator (CAIRN_BOOTSTRAP_ADMIN_KEY).
  Result<ApiKey> add_with_secret(Role role, std::string_view secret, std::string name);
  std::optional<ApiKey> authenticate(std::string_view secret) const;
  bool is_active(std::string_view id) const;
  std::vector<ApiKey> list() const;
  Status revoke(std::string_view id);

 private:
  KeyStore() = default;
  Status save_locked() const CAIRN_REQUIRES(mu_);
  Result<ApiKey> insert_locked(Role role, std::vector<std::string> prefixes, std::string name, std::string_view secret)
      CAIRN_REQUIRES(mu_);

  std::string dir_;
  mutable base::Mutex mu_;  // guards keys_ and by_hash_; the *_locked functions require it held
  std::vector<ApiKey> keys_ CAIRN_GUARDED_BY(mu_);
  std::unordered_map<std::string, size_t> by_hash_ CAIRN_GUARDED_BY(mu_);
};

}  // namespace cairn::server
