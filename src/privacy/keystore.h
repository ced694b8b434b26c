// Per-subject keys for personal data (docs/privacy.md), kept apart from the log, and the sealing of one
// personal part under such a key.
//
// Cipher: XChaCha20-Poly1305-IETF (libsodium), associated data binding a ciphertext to its place (the caller
// passes e.g. event id ‖ JSON pointer), and a 24-byte nonce derived from key, place and plaintext (SipHash-2-4,
// 128-bit, keyed by a key derived from the subject key), so that sealing is deterministic: a retried append
// seals to the same bytes. Subject keys are random 32-byte
// keys, stored wrapped (sealed) under a key derived from the master key, which is given by configuration
// and never written by Cairn. Subjects are named by a keyed hash of their id, never in clear.
//
// The store's file (DIR/keys.v1) is append-only for new keys (each line fsynced before a key is returned) and
// rewritten whole when keys are destroyed (destroy() returns once the rewrite is durable, with the destroyed
// wrapped keys first overwritten in place). A key returned by key_for_write() is durable.
// Thread safety: every method may be called from any thread. Lifetime: owns its file.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <sodium.h>

#include "cairn/data_keys.h"
#include "cairn/status.h"
#include "base/mutex.h"
#include "log/sealed_form.h"

struct crypto_auth_hmacsha256_state;

namespace cairn::base {
class WritableFile;
}

namespace cairn::privacy {

using Key = std::array<uint8_t, 32>;

// The master key: 32 bytes, written in standard base64 (44 characters).
Result<Key> parse_master_key(std::string_view base64);
// The master key's text for cairnd and the CLI: from `file` when given (trailing whitespace ignored), else the
// environment variable CAIRN_MASTER_KEY; never a flag value (command lines are visible to other users).
Result<std::string> load_master_key_text(const std::string& file);

// Whether s is a subject id as subject_id() writes it: "hs:" and 32 lowercase hex digits.
bool is_subject_id(std::string_view s);

using Sealed = log::SealedBytes;  // the bytes of one sealed part, as the log's format stores them
// A key ready for sealing: the cipher key and, derived from it once, the key of the nonce's PRF.
struct SealingKey {
  Key key{};
  std::array<uint8_t, crypto_shorthash_siphashx24_KEYBYTES> nonce_key{};
};
SealingKey sealing_key(const Key& key);
Sealed seal(const SealingKey& key, std::string_view plaintext, std::string_view associated);
// kCorruption when the ciphertext, the nonce or the associated data do not match what was sealed.
Result<std::string> unseal(const Key& key, const Sealed& sealed, std::string_view associated);

// Also the store's DataKeys (cairn/data_keys.h): keys for projection state at rest, kept in the same file as
// `key dk:<32 hex> 1 …` lines and destroyed like a subject.
class KeyStore final : public DataKeys {
 public:
  // Opens (creating if needed) the store in dir. A wrong master key is detected on the first wrapped key.
  // (Not analysed: fills the guarded fields of a store no other thread can see yet, without mu_.)
  static Result<std::unique_ptr<KeyStore>> open(const std::string& dir, const Key& master)
      CAIRN_NO_THREAD_SAFETY_ANALYSIS;
  ~KeyStore() override;

  // The subject's keyed hash, "hs:" + 32 hex digits: the only form in which a subject is stored or reported.
  std::string subject_id(std::string_view subject) const;

  // The subject's current key and its id ("<subject id>/<generation>"), created if it has none. A subject
  // forgotten earlier gets a new generation: what is written from now on is readable again, what was written
  // before stays unreadable.
  Result<std::pair<std::string, SealingKey>> key_for_write(std::string_view subject_id);
  // A key by its id: nullopt when it was destroyed; kNotFound when no such key ever existed.
  Result<std::optional<Key>> key(std::string_view key_id) const;
  // Destroys every key of the subject. Returns how many were destroyed (0 when it had none left, which
  // makes a second forget a no-op). Durable on return.
  Result<size_t> destroy(std::string_view subject_id);
  bool forgotten(std::string_view subject_id) const;
  size_t live_keys() const;  // subject keys not destroyed (data keys not counted)

  Result<std::pair<std::string, DataKey>> create_data_key() override;
  Result<std::optional<DataKey>> data_key(std::string_view id) const override;
  Status destroy_data_key(std::string_view id) override;

 private:
  KeyStore() = default;
  struct Entry {
    uint32_t generation = 0;
    bool destroyed = false;
    SealingKey key{};
    std::string line;     // the file line holding it (to rewrite the file)
    uint64_t offset = 0;  // where that line is in the current file (to overwrite it once destroyed)
  };
  Status append_line(const std::string& line) CAIRN_REQUIRES(mu_);
  Result<std::pair<std::string, SealingKey>> create_locked(std::string_view name, std::vector<Entry>& entries)
      CAIRN_REQUIRES(mu_);
  std::string dir_;
  SealingKey wrap_key_{};
  Key index_key_{};
  std::unique_ptr<crypto_auth_hmacsha256_state> index_mac_;  // keyed with index_key_, copied per subject id
  std::unique_ptr<base::WritableFile> file_ CAIRN_PT_GUARDED_BY(mu_);
  // Looked up by string_view without building a string (C++20 heterogeneous lookup).
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // mu_ guards subjects_, forgotten_lines_ and appends to file_ (shared: lookups of live keys, the common
  // case of an append; exclusive: creating or destroying a key, which writes and syncs the file under it).
  // Functions named *_locked require it held exclusively.
  mutable base::SharedMutex mu_;
  std::unordered_map<std::string, std::vector<Entry>, NameHash, std::equal_to<>> subjects_
      CAIRN_GUARDED_BY(mu_);  // subject id -> keys by generation
  std::vector<std::string> forgotten_lines_ CAIRN_GUARDED_BY(mu_);
};

// The key store a store is configured with (its directory and the base64 master key), refusing a directory
// inside data_dir or containing it (a copy of the data must not carry the keys that read it). nullptr when
// neither is set; kInvalidArgument when only one is.
Result<std::unique_ptr<KeyStore>> open_configured(const std::string& key_dir, const std::string& master_base64,
                                                  const std::string& data_dir);
// open_configured's placement rule alone: kInvalidArgument when key_dir is inside data_dir or contains it.
// For a process whose local directory the store does not know (cairnd or the CLI on PostgreSQL).
Status check_key_store_outside(const std::string& key_dir, const std::string& data_dir);

}  // namespace cairn::privacy
