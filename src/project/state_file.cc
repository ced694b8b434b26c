#include "project/state_file.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <simdjson.h>
#include <sodium.h>

#include "base/text.h"
#include "codec/event_json.h"
#include "log/sha256.h"

namespace cairn::project {

Result<StateDump> dump_state(ReducerEngine& engine) {
  StateDump d;
  log::Sha256 sha;
  std::string after;
  for (;;) {
    auto keys = engine.keys(after, 1024);
    if (keys.empty()) break;
    for (const auto& k : keys) {
      auto s = engine.state_json(k);
      if (!s.ok()) return s.status();
      if (!*s) continue;
      const size_t start = d.lines.size();
      d.lines.push_back('[');
      base::append_json_string(d.lines, k);
      d.lines.push_back(',');
      d.lines.append(**s);
      d.lines.append("]\n");
      sha.update(std::string_view(d.lines).substr(start));
      ++d.partitions;
    }
    after = keys.back();
    if (keys.size() < 1024) break;
  }
  d.sha256_hex = log::hex(sha.final());
  return d;
}

namespace {

constexpr std::string_view kKeyFile = "KEY";
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;

std::string sealed_header(const std::string& name, uint32_t version, uint64_t position, std::string_view key_id,
                          std::string_view nonce) {
  std::string h = "{\"cairn_projection_state\":2,\"name\":";
  base::append_json_string(h, name);
  h += fmt::format(",\"version\":{},\"position\":{},\"key\":", version, position);
  base::append_json_string(h, key_id);
  h += ",\"nonce\":";
  base::append_json_string(h, base::base64_encode(nonce));
  h += "}";
  return h;
}

// The key id a KEY file holds (its text, without the trailing newline).
Result<std::string> read_key_file(const std::string& path) {
  auto text = base::read_whole_file(path);
  if (!text.ok()) return text.status();
  std::string id = std::move(*text);
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

// The file's text in clear: format 1, or format 2 opened with key.
Result<std::string> open_sealed(const std::string& path, std::string text, const StateKey* key) {
  const size_t nl = text.find('\n');
  if (nl == std::string::npos) return Status::corruption(fmt::format("{}: no header line", path));
  simdjson::dom::parser parser;
  simdjson::dom::element header;
  if (parser.parse(text.data(), nl).get(header)) return Status::corruption(fmt::format("{}: the header is not JSON", path));
  int64_t format = 0;
  if (header["cairn_projection_state"].get(format))
    return Status::corruption(fmt::format("{}: the header lacks its format", path));
  if (format == 1) {
    if (key)
      return Status::corruption(fmt::format("{}: written in clear, but this store keeps projection state sealed "
                                            "(a file from before the key store is never served)", path));
    return text;
  }
  std::string_view key_id, nonce_b64;
  if (format != 2 || header["key"].get(key_id) || header["nonce"].get(nonce_b64))
    return Status::corruption(fmt::format("{}: unknown format or a sealed header without key and nonce", path));
  if (!key) return Status::corruption(fmt::format("{}: sealed under data key {}, and this store has no key store", path, key_id));
  if (key_id != key->id)
    return Status::corruption(fmt::format("{}: sealed under data key {}, not under the directory's key {}", path, key_id, key->id));
  auto nonce = base::base64_decode(nonce_b64);
  if (!nonce.ok() || nonce->size() != kNonceBytes) return Status::corruption(fmt::format("{}: a bad nonce", path));
  const std::string_view cipher = std::string_view(text).substr(nl + 1);
  if (cipher.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return Status::corruption(fmt::format("{}: shorter than its authentication tag", path));
  std::string plain(cipher.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long n = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &n, nullptr, reinterpret_cast<const unsigned char*>(cipher.data()),
          cipher.size(), reinterpret_cast<const unsigned char*>(text.data()), nl,
          reinterpret_cast<const unsigned char*>(nonce->data()), key->key.data()) != 0)
    return Status::corruption(fmt::format("{}: does not authenticate under data key {} (altered or truncated)", path, key_id));
  plain.resize(n);
  return plain;
}

}  // namespace

Result<std::optional<StateKey>> state_key(base::FileSystem* fs, DataKeys* keys, const std::string& dir, bool create) {
  if (!keys) return std::optional<StateKey>();
  const std::string path = dir + "/" + std::string(kKeyFile);
  std::string why;
  if (auto id = read_key_file(path); id.ok()) {
    auto k = keys->data_key(*id);
    if (k.ok() && *k) return std::optional<StateKey>(StateKey{*id, **k});
    why = k.ok() ? fmt::format("its data key {} was destroyed", *id) : k.status().message();
  } else {
    why = "it has no KEY file";
  }
  if (!create) return Status::not_found(fmt::format("{}: no usable data key: {}", dir, why));
  CAIRN_RETURN_IF_ERROR(base::make_dirs(dir));
  for (const auto& f : list_state_files(dir)) CAIRN_RETURN_IF_ERROR(fs->remove(f.path));
  auto made = keys->create_data_key();
  if (!made.ok()) return made.status();
  CAIRN_RETURN_IF_ERROR(base::write_file_atomically(fs, dir, std::string(kKeyFile), made->first + "\n"));
  return std::optional<StateKey>(StateKey{made->first, made->second});
}

Status remove_state_dir(DataKeys* keys, const std::string& dir) {
  std::error_code ec;
  if (keys && std::filesystem::is_directory(dir, ec)) {
    for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->path().filename() != kKeyFile) continue;
      auto id = read_key_file(it->path().string());
      if (!id.ok()) return id.status();
      if (is_data_key_id(*id)) CAIRN_RETURN_IF_ERROR(keys->destroy_data_key(*id));
    }
    if (ec) return Status(ErrorCode::kIoError, fmt::format("{}: listing it failed: {}", dir, ec.message()));
  }
  std::filesystem::remove_all(dir, ec);
  if (ec) return Status(ErrorCode::kIoError, fmt::format("{}: removing it failed: {}", dir, ec.message()));
  return {};
}

Status write_state_file(base::FileSystem* fs, const std::string& dir, const std::string& name, uint32_t version,
                        uint64_t position, bool snapshot, const StateDump& dump, const StateKey* key) {
  std::string text = "{\"cairn_projection_state\":1,\"name\":";
  base::append_json_string(text, name);
  text += fmt::format(",\"version\":{},\"position\":{},\"partitions\":{},\"sha256\":\"{}\"}}\n", version, position,
                      dump.partitions, dump.sha256_hex);
  text.append(dump.lines);
  const std::string file = fmt::format("{}-{:020}.ndjson", snapshot ? "snapshot" : "checkpoint", position);
  if (!key) return base::write_file_atomically(fs, dir, file, text);
  // Sealed: the clear header would say too much (the digest of a small state confirms a guessed value).
  std::string nonce(kNonceBytes, '\0');
  randombytes_buf(nonce.data(), nonce.size());
  std::string out = sealed_header(name, version, position, key->id, nonce);
  const size_t header_len = out.size();
  out.push_back('\n');
  out.resize(header_len + 1 + text.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long n = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(out.data() + header_len + 1), &n, reinterpret_cast<const unsigned char*>(text.data()),
      text.size(), reinterpret_cast<const unsigned char*>(out.data()), header_len, nullptr,
      reinterpret_cast<const unsigned char*>(nonce.data()), key->key.data());
  out.resize(header_len + 1 + n);
  sodium_memzero(text.data(), text.size());
  return base::write_file_atomically(fs, dir, file, out);
}

std::vector<StateFileInfo> list_state_files(const std::string& dir) {
  std::vector<StateFileInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string n = entry.path().filename().string();
    bool snapshot = n.starts_with("snapshot-");
    if (!(snapshot || n.starts_with("checkpoint-")) || !n.ends_with(".ndjson")) continue;
    const std::string digits = n.substr(snapshot ? 9 : 11, 20);
    if (digits.size() != 20 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    out.push_back({entry.path().string(), std::stoull(digits), snapshot});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.position > b.position; });
  return out;
}

Result<uint64_t> load_state_file(const std::string& path, const std::string& name, uint32_t version,
                                 ReducerEngine* engine, std::optional<std::string_view> only_key, const StateKey* key) {
  std::string wanted;  // the line prefix of only_key's partition: [ "key" ,
  if (only_key) {
    wanted = "[";
    base::append_json_string(wanted, *only_key);
    wanted += ",";
  }
  auto raw = base::read_whole_file(path);
  if (!raw.ok()) return raw.status();
  auto text = open_sealed(path, std::move(*raw), key);
  if (!text.ok()) return text.status();
  const std::string_view all(*text);
  const size_t nl = all.find('\n');
  if (nl == std::string_view::npos) return Status::corruption(fmt::format("{}: no header line", path));
  simdjson::dom::parser parser;
  simdjson::dom::element header;
  if (parser.parse(all.data(), nl).get(header))
    return Status::corruption(fmt::format("{}: the header is not JSON", path));
  int64_t format = 0;
  std::string_view hname, digest;
  uint64_t hversion = 0, position = 0, partitions = 0;
  if (header["cairn_projection_state"].get(format) || format != 1 || header["name"].get(hname) ||
      header["version"].get(hversion) || header["position"].get(position) || header["partitions"].get(partitions) ||
      header["sha256"].get(digest))
    return Status::corruption(fmt::format("{}: the header lacks a field or has an unknown format", path));
  if (hname != name || hversion != version)
    return Status::corruption(fmt::format("{}: holds {} v{}, expected {} v{}", path, hname, hversion, name, version));
  const std::string_view body = all.substr(nl + 1);
  log::Sha256 sha;
  sha.update(body);
  if (log::hex(sha.final()) != digest)
    return Status::corruption(fmt::format("{}: the partition lines do not match the digest in the header", path));
  uint64_t count = 0;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find('\n', at);
    if (end == std::string_view::npos) return Status::corruption(fmt::format("{}: the last line is cut", path));
    if (only_key && !body.substr(at, end - at).starts_with(wanted)) {
      ++count;
      at = end + 1;
      continue;
    }
    simdjson::dom::element line;
    simdjson::dom::array pair;
    if (parser.parse(body.data() + at, end - at).get(line) || line.get(pair) || pair.size() != 2)
      return Status::corruption(fmt::format("{}: partition line {} is not [key, state]", path, count + 1));
    std::string_view key;
    if (pair.at(0).get(key)) return Status::corruption(fmt::format("{}: partition line {} has no key", path, count + 1));
    const std::string state = simdjson::minify(pair.at(1).value_unsafe());
    CAIRN_RETURN_IF_ERROR(engine->restore(key, state));
    ++count;
    at = end + 1;
  }
  if (count != partitions)
    return Status::corruption(fmt::format("{}: {} partitions, the header says {}", path, count, partitions));
  return position;
}

}  // namespace cairn::project
