#include "server/keys.h"

#include <openssl/rand.h>

#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "log/sha256.h"

namespace cairn::server {
namespace {

constexpr const char* kFile = "keys.jsonl";

std::string sha256_hex(std::string_view s) {
  log::Sha256 sha;
  sha.update(s);
  return log::hex(sha.final());
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::string> random_hex(size_t bytes) {
  std::vector<uint8_t> b(bytes);
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) return Status::io_error("RAND_bytes failed");
  return log::hex(b.data(), b.size());
}

}  // namespace

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kReader: return "reader";
    case Role::kWriter: return "writer";
    case Role::kAdmin: return "admin";
  }
  return "?";
}

Result<Role> parse_role(std::string_view s) {
  if (s == "reader") return Role::kReader;
  if (s == "writer") return Role::kWriter;
  if (s == "admin") return Role::kAdmin;
  return Status::invalid_argument(fmt::format("role: '{}' is not reader, writer or admin", s.substr(0, 40)));
}

bool ApiKey::can_see(std::string_view stream) const {
  if (prefixes.empty()) return true;
  if (!stream.empty() && stream[0] == '$') return false;
  for (const auto& p : prefixes)
    if (stream.starts_with(p)) return true;
  return false;
}

Result<std::unique_ptr<KeyStore>> KeyStore::open(const std::string& data_dir) {
  std::unique_ptr<KeyStore> ks(new KeyStore());
  ks->dir_ = data_dir;
  auto text = base::read_whole_file(data_dir + "/" + kFile);
  if (!text.ok()) {
    if (text.status().code() == ErrorCode::kNotFound) return ks;
    return text.status();
  }
  size_t line_no = 0, start = 0;
  while (start < text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    const std::string line = text->substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return Status::corruption(fmt::format("{}/{} line {}: not a JSON object", data_dir, kFile, line_no));
    try {
      ApiKey k;
      k.id = j.at("id").get<std::string>();
      k.name = j.value("name", "");
      auto role = parse_role(j.at("role").get<std::string>());
      if (!role.ok()) return Status::corruption(fmt::format("{}/{} line {}: {}", data_dir, kFile, line_no, role.status().message()));
      k.role = *role;
      k.prefixes = j.value("streams", std::vector<std::string>{});
      k.hash_hex = j.at("sha256").get<std::string>();
      k.created_ns = j.value("created_ns", int64_t{0});
      k.revoked_ns = j.value("revoked_ns", int64_t{0});
      ks->by_hash_[k.hash_hex] = ks->keys_.size();
      ks->keys_.push_back(std::move(k));
    } catch (const nlohmann::json::exception& e) {
      return Status::corruption(fmt::format("{}/{} line {}: {}", data_dir, kFile, line_no, e.what()));
    }
  }
  return ks;
}

bool KeyStore::empty() const {
  base::MutexLock g(mu_);
  return keys_.empty();
}

Status KeyStore::save_locked() const {
  std::string out;
  for (const auto& k : keys_) {
    nlohmann::json j = {{"id", k.id},          {"name", k.name},         {"role", role_name(k.role)},
                        {"streams", k.prefixes}, {"sha256", k.hash_hex}, {"created_ns", k.created_ns}};
    if (k.revoked_ns) j["revoked_ns"] = k.revoked_ns;
    out += j.dump();
    out += '\n';
  }
  return base::write_file_atomically(base::posix_fs(), dir_, kFile, out);
}

Result<ApiKey> KeyStore::insert_locked(Role role, std::vector<std::string> prefixes, std::string name,
                                       std::string_view secret) {
  for (auto& p : prefixes) {
    if (!p.empty() && p.back() == '*') p.pop_back();  // "conv-*" and "conv-" mean the same
    if (p.empty()) return Status::invalid_argument("streams: a prefix must not be empty (omit streams for all)");
    if (p[0] == '$') return Status::invalid_argument("streams: '$' streams cannot be granted by prefix");
  }
  ApiKey k;
  auto id = random_hex(6);
  if (!id.ok()) return id.status();
  k.id = "key_" + *id;
  k.name = std::move(name);
  k.role = role;
  k.prefixes = std::move(prefixes);
  k.hash_hex = sha256_hex(secret);
  k.created_ns = now_ns();
  if (by_hash_.count(k.hash_hex)) return Status::invalid_argument("a key with this secret exists already");
  keys_.push_back(k);
  by_hash_[k.hash_hex] = keys_.size() - 1;
  Status st = save_locked();
  if (!st.ok()) {
    by_hash_.erase(k.hash_hex);
    keys_.pop_back();
    return st;
  }
  return k;
}

Result<std::pair<ApiKey, std::string>> KeyStore::create(Role role, std::vector<std::string> prefixes, std::string name) {
  auto secret = random_hex(20);
  if (!secret.ok()) return secret.status();
  std::string s = "cairn_" + *secret;
  base::MutexLock g(mu_);
  auto k = insert_locked(role, std::move(prefixes), std::move(name), s);
  if (!k.ok()) return k.status();
  return std::make_pair(std::move(*k), std::move(s));
}

Result<ApiKey> KeyStore::add_with_secret(Role role, std::string_view secret, std::string name) {
  if (secret.size() < 16) return Status::invalid_argument("the bootstrap key must be at least 16 characters");
  base::MutexLock g(mu_);
  return insert_locked(role, {}, std::move(name), secret);
}

std::optional<ApiKey> KeyStore::authenticate(std::string_view secret) const {
  const std::string h = sha256_hex(secret);
  base::MutexLock g(mu_);
  auto it = by_hash_.find(h);
  if (it == by_hash_.end() || keys_[it->second].revoked_ns != 0) return std::nullopt;
  return keys_[it->second];
}

bool KeyStore::is_active(std::string_view id) const {
  base::MutexLock g(mu_);
  for (const auto& k : keys_)
    if (k.id == id) return k.revoked_ns == 0;
  return false;
}

std::vector<ApiKey> KeyStore::list() const {
  base::MutexLock g(mu_);
  return keys_;
}

Status KeyStore::revoke(std::string_view id) {
  base::MutexLock g(mu_);
  for (auto& k : keys_) {
    if (k.id != id) continue;
    if (k.revoked_ns) return {};  // revoking twice changes nothing
    k.revoked_ns = now_ns();
    Status st = save_locked();
    if (!st.ok()) k.revoked_ns = 0;
    return st;
  }
  return Status::not_found(fmt::format("no key has id '{}'", id.substr(0, 64)));
}

}  // namespace cairn::server
