#include "privacy/keystore.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "base/text.h"
#include "codec/event_json.h"
#include "log/crc32c.h"
#include "base/file.h"

namespace cairn::privacy {
namespace {

constexpr std::string_view kHeader = "cairn-keys v1";
constexpr std::string_view kFile = "keys.v1";
// Subkey ids for crypto_kdf_derive_from_key (context "cairnkey").
constexpr uint64_t kWrapSubkey = 1, kIndexSubkey = 2;
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES] = {'c', 'a', 'i', 'r', 'n', 'k', 'e', 'y'};

bool init_sodium() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

std::string b64(std::string_view bytes) { return base::base64_encode(bytes); }

bool unb64(std::string_view text, std::string* out) {
  auto bytes = base::base64_decode(text);
  if (!bytes.ok()) return false;
  *out = std::move(*bytes);
  return true;
}

std::string with_crc(std::string line) {
  const uint32_t crc = log::crc32c(line);
  return fmt::format("{} {:08x}\n", line, crc);
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    size_t j = line.find(' ', i);
    if (j == std::string_view::npos) j = line.size();
    out.push_back(line.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::string key_id(std::string_view subject, uint32_t generation) { return fmt::format("{}/{}", subject, generation); }

}  // namespace

Result<Key> parse_master_key(std::string_view base64) {
  if (!init_sodium()) return Status(ErrorCode::kIoError, "libsodium could not be initialized");
  std::string bytes;
  if (!unb64(base64, &bytes) || bytes.size() != 32)
    return Status::invalid_argument("master key: must be 32 bytes in standard base64 (44 characters, e.g. from `openssl rand -base64 32`)");
  Key k;
  std::copy(bytes.begin(), bytes.end(), k.begin());
  sodium_memzero(bytes.data(), bytes.size());
  return k;
}

Result<std::string> load_master_key_text(const std::string& file) {
  std::string key;
  if (!file.empty()) {
    auto text = base::read_whole_file(file);
    if (!text.ok()) return Status::invalid_argument(fmt::format("--master-key-file: {}", text.status().message()));
    key = std::move(*text);
  } else if (const char* env = std::getenv("CAIRN_MASTER_KEY")) {
    key = env;
  } else {
    return Status::invalid_argument("--key-store needs the master key: set CAIRN_MASTER_KEY or give --master-key-file");
  }
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
  return key;
}

bool is_subject_id(std::string_view s) { return base::is_hex_id(s, "hs:"); }

SealingKey sealing_key(const Key& key) {
  init_sodium();
  SealingKey k;
  k.key = key;
  static constexpr std::string_view kLabel = "cairn nonce prf v1";
  crypto_generichash(k.nonce_key.data(), k.nonce_key.size(), reinterpret_cast<const unsigned char*>(kLabel.data()),
                     kLabel.size(), key.data(), key.size());
  return k;
}

Sealed seal(const SealingKey& key, std::string_view plaintext, std::string_view associated) {
  init_sodium();
  Sealed s;
  // The nonce is derived from the key, the place and the plaintext (as in SIV modes), not drawn at random:
  // sealing the same part of the same event again gives the same bytes, so an append retried with the same
  // event id is recognized as a replay. Different places (the event id is in `associated`) get unrelated
  // nonces, and nobody without the key can compute one. The PRF is SipHash-2-4 with a 128-bit output, keyed
  // by a key derived from the subject key (8x cheaper here than keyed BLAKE2b over the same bytes); a
  // collision needs about 2^64 parts under one subject key. The nonce's last 8 bytes stay zero.
  thread_local std::string input;
  const uint64_t alen = associated.size();
  input.assign(reinterpret_cast<const char*>(&alen), sizeof alen);
  input.append(associated);
  input.append(plaintext);
  crypto_shorthash_siphashx24(s.nonce.data(), reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                              key.nonce_key.data());
  s.ciphertext.resize(plaintext.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long n = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(reinterpret_cast<unsigned char*>(s.ciphertext.data()), &n,
                                             reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(),
                                             reinterpret_cast<const unsigned char*>(associated.data()), associated.size(),
                                             nullptr, s.nonce.data(), key.key.data());
  s.ciphertext.resize(n);
  return s;
}

Result<std::string> unseal(const Key& key, const Sealed& sealed, std::string_view associated) {
  init_sodium();
  if (sealed.ciphertext.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return Status::corruption("a sealed part is shorter than its authentication tag");
  std::string out(sealed.ciphertext.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long n = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(out.data()), &n, nullptr,
                                                 reinterpret_cast<const unsigned char*>(sealed.ciphertext.data()),
                                                 sealed.ciphertext.size(),
                                                 reinterpret_cast<const unsigned char*>(associated.data()), associated.size(),
                                                 sealed.nonce.data(), key.data()) != 0)
    return Status::corruption("a sealed part does not authenticate (wrong key, or altered ciphertext, nonce or place)");
  out.resize(n);
  return out;
}

Result<std::unique_ptr<KeyStore>> KeyStore::open(const std::string& dir, const Key& master) {
  if (!init_sodium()) return Status(ErrorCode::kIoError, "libsodium could not be initialized");
  CAIRN_RETURN_IF_ERROR(base::make_dirs(dir));
  auto ks = std::unique_ptr<KeyStore>(new KeyStore());
  ks->dir_ = dir;
  Key wrap{};
  crypto_kdf_derive_from_key(wrap.data(), wrap.size(), kWrapSubkey, kKdfContext, master.data());
  ks->wrap_key_ = sealing_key(wrap);
  sodium_memzero(wrap.data(), wrap.size());
  crypto_kdf_derive_from_key(ks->index_key_.data(), ks->index_key_.size(), kIndexSubkey, kKdfContext, master.data());
  // HMAC's keyed inner and outer states, computed once: each subject id then costs two compressions, not four.
  ks->index_mac_ = std::make_unique<crypto_auth_hmacsha256_state>();
  crypto_auth_hmacsha256_init(ks->index_mac_.get(), ks->index_key_.data(), ks->index_key_.size());
  const std::string path = dir + "/" + std::string(kFile);
  if (!base::path_exists(path))
    CAIRN_RETURN_IF_ERROR(base::write_file_atomically(base::posix_fs(), dir, std::string(kFile), std::string(kHeader) + "\n"));
  auto text = base::read_whole_file(path);
  if (!text.ok()) return text.status();
  // A line without its newline at the end is an append a crash cut short: its key was never handed out.
  size_t complete = text->rfind('\n');
  complete = complete == std::string::npos ? 0 : complete + 1;
  std::string_view body(text->data(), complete);
  size_t line_no = 0, offset = 0;
  std::unordered_map<std::string, uint32_t> forgotten_upto;
  while (offset < body.size()) {
    const size_t end = body.find('\n', offset);
    std::string_view line = body.substr(offset, end - offset);
    ++line_no;
    auto where = [&](std::string_view what) {
      return Status::corruption(fmt::format("{}: line {}: {}", path, line_no, what));
    };
    if (line_no == 1) {
      if (line != kHeader) return where(fmt::format("not a Cairn key store (expected '{}')", kHeader));
      offset = end + 1;
      continue;
    }
    const size_t sp = line.rfind(' ');
    uint32_t crc = 0;
    if (sp == std::string_view::npos ||
        std::from_chars(line.data() + sp + 1, line.data() + line.size(), crc, 16).ec != std::errc() ||
        log::crc32c(line.substr(0, sp)) != crc)
      return where("checksum mismatch");
    auto w = words(line.substr(0, sp));
    uint32_t gen = 0;
    if (w.size() >= 3 && std::from_chars(w[2].data(), w[2].data() + w[2].size(), gen).ec != std::errc())
      return where("bad generation");
    const std::string subject(w.size() >= 2 ? w[1] : std::string_view());
    if (w.size() == 5 && w[0] == "key") {
      std::string nonce, wrapped;
      if (!unb64(w[3], &nonce) || nonce.size() != 24 || !unb64(w[4], &wrapped)) return where("bad base64");
      Sealed s;
      std::copy(nonce.begin(), nonce.end(), s.nonce.begin());
      s.ciphertext = wrapped;
      auto plain = unseal(ks->wrap_key_.key, s, key_id(subject, gen));
      if (!plain.ok() || plain->size() != 32)
        return Status::invalid_argument(fmt::format(
            "{}: line {}: the key does not unwrap: the master key is not the one this key store was written with", path, line_no));
      Entry e;
      e.generation = gen;
      Key k{};
      std::copy(plain->begin(), plain->end(), k.begin());
      e.key = sealing_key(k);
      sodium_memzero(k.data(), k.size());
      sodium_memzero(plain->data(), plain->size());
      e.line = std::string(line) + "\n";
      e.offset = offset;
      ks->subjects_[subject].push_back(std::move(e));
    } else if (w.size() == 3 && w[0] == "forgotten") {
      uint32_t& upto = forgotten_upto[subject];
      upto = std::max(upto, gen);
      ks->forgotten_lines_.push_back(std::string(line) + "\n");
    } else {
      return where("unknown record");
    }
    offset = end + 1;
  }
  // Generations up to a forget are destroyed; their keys' lines are gone from the file, so they come back
  // as entries without a key (which keep the generation count and answer "destroyed").
  for (auto& [subject, upto] : forgotten_upto) {
    auto& entries = ks->subjects_[subject];
    for (uint32_t g = 1; g <= upto; ++g) {
      auto it = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.generation == g; });
      if (it == entries.end()) entries.push_back(Entry{g, true, SealingKey{}, "", 0});
      else it->destroyed = true;
    }
  }
  for (auto& [_, entries] : ks->subjects_)
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.generation < b.generation; });
  if (complete != text->size()) {
    auto f = base::posix_fs()->open_for_append(path);
    if (!f.ok()) return f.status();
    CAIRN_RETURN_IF_ERROR((*f)->truncate(complete));
    CAIRN_RETURN_IF_ERROR((*f)->sync());
  }
  auto f = base::posix_fs()->open_for_append(path);
  if (!f.ok()) return f.status();
  ks->file_ = std::move(*f);
  return ks;
}

KeyStore::~KeyStore() {
  for (auto& [_, entries] : subjects_)
    for (auto& e : entries) sodium_memzero(&e.key, sizeof e.key);
  sodium_memzero(&wrap_key_, sizeof wrap_key_);
  sodium_memzero(index_key_.data(), index_key_.size());
  if (index_mac_) sodium_memzero(index_mac_.get(), sizeof *index_mac_);
}

std::string KeyStore::subject_id(std::string_view subject) const {
  uint8_t mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st = *index_mac_;
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(subject.data()), subject.size());
  crypto_auth_hmacsha256_final(&st, mac);
  char hex[33];
  sodium_bin2hex(hex, sizeof hex, mac, 16);
  return std::string("hs:") + hex;
}

Status KeyStore::append_line(const std::string& line) {
  CAIRN_RETURN_IF_ERROR(file_->append(line.data(), line.size()));
  return file_->sync();
}

Result<std::pair<std::string, SealingKey>> KeyStore::key_for_write(std::string_view subject) {
  if (!is_subject_id(subject))
    return Status::invalid_argument("subject id: must be a keyed hash from subject_id() (hs: and 32 hex digits)");
  {
    // The common case, a subject with a live key: a shared lock, so concurrent appends do not queue here.
    base::ReaderLock g(mu_);
    auto it = subjects_.find(subject);
    if (it != subjects_.end() && !it->second.empty() && !it->second.back().destroyed)
      return std::pair{key_id(subject, it->second.back().generation), it->second.back().key};
  }
  base::WriterLock g(mu_);
  auto& entries = subjects_[std::string(subject)];
  if (!entries.empty() && !entries.back().destroyed) return std::pair{key_id(subject, entries.back().generation), entries.back().key};
  return create_locked(subject, entries);
}

// A new generation for `name` (a subject id or a data key id), durable before it is returned. Under mu_.
Result<std::pair<std::string, SealingKey>> KeyStore::create_locked(std::string_view name, std::vector<Entry>& entries) {
  Entry e;
  e.generation = entries.empty() ? 1 : entries.back().generation + 1;
  Key fresh{};
  randombytes_buf(fresh.data(), fresh.size());
  e.key = sealing_key(fresh);
  sodium_memzero(fresh.data(), fresh.size());
  const Sealed wrapped = seal(wrap_key_, std::string_view(reinterpret_cast<const char*>(e.key.key.data()), e.key.key.size()),
                              key_id(name, e.generation));
  e.line = with_crc(fmt::format("key {} {} {} {}", name, e.generation, b64(std::string_view(reinterpret_cast<const char*>(wrapped.nonce.data()), wrapped.nonce.size())),
                                b64(wrapped.ciphertext)));
  e.offset = file_->size();
  CAIRN_RETURN_IF_ERROR(append_line(e.line));
  entries.push_back(e);
  return std::pair{key_id(name, e.generation), e.key};
}

// Data keys are stored like subject keys: one generation under their own id, destroyed like a forget.
Result<std::pair<std::string, DataKey>> KeyStore::create_data_key() {
  uint8_t random[16];
  randombytes_buf(random, sizeof random);
  char hex[33];
  sodium_bin2hex(hex, sizeof hex, random, sizeof random);
  const std::string id = std::string("dk:") + hex;
  base::WriterLock g(mu_);
  auto& entries = subjects_[id];
  auto made = create_locked(id, entries);
  if (!made.ok()) {
    subjects_.erase(id);
    return made.status();
  }
  return std::pair{id, made->second.key};
}

Result<std::optional<DataKey>> KeyStore::data_key(std::string_view id) const {
  if (!is_data_key_id(id))
    return Status::invalid_argument(fmt::format("data key id: '{}' is not dk: and 32 hex digits", id.substr(0, 64)));
  return key(key_id(id, 1));
}

Status KeyStore::destroy_data_key(std::string_view id) {
  if (!is_data_key_id(id))
    return Status::invalid_argument(fmt::format("data key id: '{}' is not dk: and 32 hex digits", id.substr(0, 64)));
  auto n = destroy(id);
  return n.ok() ? Status() : n.status();
}

Result<std::optional<Key>> KeyStore::key(std::string_view id) const {
  const size_t slash = id.rfind('/');
  uint32_t gen = 0;
  if (slash == std::string_view::npos ||
      std::from_chars(id.data() + slash + 1, id.data() + id.size(), gen).ec != std::errc())
    return Status::invalid_argument(fmt::format("key id: '{}' is not <subject id>/<generation>", id.substr(0, 64)));
  base::ReaderLock g(mu_);
  auto it = subjects_.find(id.substr(0, slash));
  if (it != subjects_.end())
    for (const Entry& e : it->second)
      if (e.generation == gen) return e.destroyed ? std::optional<Key>() : std::optional<Key>(e.key.key);
  return Status::not_found(fmt::format("no key has id '{}'", id.substr(0, 64)));
}

bool KeyStore::forgotten(std::string_view subject) const {
  base::ReaderLock g(mu_);
  auto it = subjects_.find(std::string(subject));
  return it != subjects_.end() && !it->second.empty() && it->second.back().destroyed;
}

size_t KeyStore::live_keys() const {
  base::ReaderLock g(mu_);
  size_t n = 0;
  for (const auto& [name, entries] : subjects_)
    if (is_subject_id(name))
      for (const Entry& e : entries) n += !e.destroyed;
  return n;
}

Result<size_t> KeyStore::destroy(std::string_view subject) {
  base::WriterLock g(mu_);
  auto it = subjects_.find(std::string(subject));
  std::vector<Entry*> doomed;
  if (it != subjects_.end())
    for (Entry& e : it->second)
      if (!e.destroyed) doomed.push_back(&e);
  if (doomed.empty()) return size_t{0};
  const uint32_t upto = it->second.back().generation;
  // The new file: every key still alive, and the record that this subject's keys up to `upto` are gone.
  std::string content = std::string(kHeader) + "\n";
  forgotten_lines_.push_back(with_crc(fmt::format("forgotten {} {}", subject, upto)));
  std::vector<std::pair<Entry*, uint64_t>> offsets;
  for (auto& [_, entries] : subjects_)
    for (Entry& e : entries) {
      const bool dies = std::find(doomed.begin(), doomed.end(), &e) != doomed.end();
      if (e.destroyed || dies) continue;
      offsets.push_back({&e, content.size()});
      content += e.line;
    }
  for (const auto& l : forgotten_lines_) content += l;
  const std::string path = dir_ + "/" + std::string(kFile);
  // Keep the old file open: its bytes are overwritten once the new file is in place.
  const int old_fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  Status st = base::write_file_atomically(base::posix_fs(), dir_, std::string(kFile), content);
  if (!st.ok()) {
    forgotten_lines_.pop_back();
    if (old_fd >= 0) ::close(old_fd);
    return st;
  }
  for (Entry* e : doomed) {
    e->destroyed = true;
    sodium_memzero(&e->key, sizeof e->key);
  }
  for (auto& [e, off] : offsets) e->offset = off;
  // Best effort against the old file's blocks: overwrite the destroyed wrapped keys in place. (On SSDs and
  // copy-on-write filesystems old blocks may survive; docs/privacy.md says what that means.)
  if (old_fd >= 0) {
    for (Entry* e : doomed) {
      const std::string blank(e->line.size(), '#');
      (void)!::pwrite(old_fd, blank.data(), blank.size(), static_cast<off_t>(e->offset));
    }
    (void)::fdatasync(old_fd);
    ::close(old_fd);
  }
  auto f = base::posix_fs()->open_for_append(path);
  if (!f.ok()) return f.status();
  file_ = std::move(*f);
  return doomed.size();
}

Status check_key_store_outside(const std::string& key_dir, const std::string& data_dir) {
  if (key_dir.empty() || data_dir.empty()) return {};
  std::error_code ec;
  const auto keys_dir = std::filesystem::weakly_canonical(key_dir, ec).string() + "/";
  const auto data = std::filesystem::weakly_canonical(data_dir, ec).string() + "/";
  if (keys_dir.starts_with(data) || data.starts_with(keys_dir))
    return Status::invalid_argument(fmt::format("key_store_dir: '{}' must be outside the data directory '{}' (and not contain it)",
                                                key_dir, data_dir));
  return {};
}

Result<std::unique_ptr<KeyStore>> open_configured(const std::string& key_dir, const std::string& master_base64,
                                                  const std::string& data_dir) {
  if (key_dir.empty() && master_base64.empty()) return std::unique_ptr<KeyStore>();
  if (key_dir.empty() || master_base64.empty())
    return Status::invalid_argument("key_store_dir, master_key: personal data needs both a key store and its master key");
  CAIRN_RETURN_IF_ERROR(check_key_store_outside(key_dir, data_dir));
  auto master = parse_master_key(master_base64);
  if (!master.ok()) return master.status();
  auto keys = KeyStore::open(key_dir, *master);
  master->fill(0);
  return keys;
}

}  // namespace cairn::privacy
