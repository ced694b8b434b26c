#include "log/sealed_form.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/text.h"
#include "log/sha256.h"

namespace cairn::log {
namespace {

constexpr std::string_view kSealedPrefix = R"({"$cairn.sealed":{"v":1,"k":")";
constexpr std::string_view kPurgedPrefix = R"({"$cairn.purged":")";
constexpr size_t kDigestHex = 64;

}  // namespace

void append_envelope(std::string& out, std::string_view key_id, std::string_view pointer, const SealedBytes& sealed) {
  out += kSealedPrefix;
  out += key_id;
  out += R"(","p":)";
  base::append_json_string(out, pointer);
  out += R"(,"n":")";
  out += base::base64_encode(std::string_view(reinterpret_cast<const char*>(sealed.nonce.data()), sealed.nonce.size()));
  out += R"(","c":")";
  out += base::base64_encode(sealed.ciphertext);
  out += "\"}}";
}

void append_purged_marker(std::string& out, const SealedBytes& sealed, size_t width) {
  thread_local Sha256 sha;  // a context costs more to create than to hash one part
  sha.update(sealed.nonce.data(), sealed.nonce.size());
  sha.update(sealed.ciphertext);
  const size_t start = out.size();
  out += kPurgedPrefix;
  out += hex(sha.final());
  out += "\"}";
  const size_t used = out.size() - start;
  if (width > used) out.append(width - used, ' ');
}

bool has_sealed_parts(std::string_view stored_data) {
  return stored_data.find(kSealedKey) != std::string_view::npos || stored_data.find(kPurgedKey) != std::string_view::npos;
}

Result<Envelope> read_envelope(std::string_view text, size_t at) {
  auto bad = [&](std::string_view what) {
    return Status::corruption(fmt::format("the sealed part at byte {} of the stored data: {}", at, what));
  };
  if (text.substr(at, kSealedPrefix.size()) != kSealedPrefix) return bad("not a version-1 envelope {v, k, p, n, c}");
  Envelope e;
  e.begin = at;
  size_t i = at + kSealedPrefix.size();
  auto until_quote = [&](std::string_view* field) {
    const size_t close = text.find('"', i);
    if (close == std::string_view::npos) return false;
    *field = text.substr(i, close - i);
    i = close + 1;
    return true;
  };
  auto expect = [&](std::string_view s) {
    if (text.substr(i, s.size()) != s) return false;
    i += s.size();
    return true;
  };
  if (!until_quote(&e.key_id) || !expect(R"(,"p":")")) return bad("not a version-1 envelope {v, k, p, n, c}");
  const size_t p_begin = i;
  bool escaped = false;
  while (i < text.size() && text[i] != '"') i += text[i] == '\\' ? (escaped = true, 2) : 1;
  if (i >= text.size()) return bad("its pointer is not a JSON string");
  const std::string_view raw_pointer = text.substr(p_begin, i - p_begin);
  ++i;
  if (!escaped) {
    e.pointer = std::string(raw_pointer);
  } else {
    const auto j = nlohmann::json::parse(std::string("\"").append(raw_pointer).append("\""), nullptr, false);
    if (!j.is_string()) return bad("its pointer is not a JSON string");
    e.pointer = j.get<std::string>();
  }
  std::string_view nonce, ciphertext;
  if (!expect(R"(,"n":")") || !until_quote(&nonce) || !expect(R"(,"c":")") || !until_quote(&ciphertext) || !expect("}}"))
    return bad("not a version-1 envelope {v, k, p, n, c}");
  auto n = base::base64_decode(nonce);
  if (!n.ok() || n->size() != e.sealed.nonce.size()) return bad("a bad nonce");
  std::copy(n->begin(), n->end(), e.sealed.nonce.begin());
  auto c = base::base64_decode(ciphertext);
  if (!c.ok()) return bad("bad ciphertext base64");
  e.sealed.ciphertext = std::move(*c);
  e.end = i;
  return e;
}

Result<size_t> purged_marker_end(std::string_view text, size_t at) {
  const size_t hex_at = at + kPurgedPrefix.size();
  if (text.size() < hex_at + kDigestHex + 2 || text.substr(hex_at + kDigestHex, 2) != "\"}")
    return Status::corruption(fmt::format("the purged part at byte {} of the stored data is not a purge marker", at));
  return hex_at + kDigestHex + 2;
}

Result<std::string> redactable_form(std::string_view stored_data) {
  if (!has_sealed_parts(stored_data)) return std::string(stored_data);
  std::string out;
  out.reserve(stored_data.size());
  size_t copied = 0;
  CAIRN_RETURN_IF_ERROR(scan_parts(stored_data, [&](size_t at, PartKind kind) -> Result<size_t> {
    if (kind == PartKind::kPurged) return purged_marker_end(stored_data, at);  // already in redactable form
    auto env = read_envelope(stored_data, at);
    if (!env.ok()) return env.status();
    out += stored_data.substr(copied, at - copied);
    append_purged_marker(out, env->sealed, env->end - env->begin);
    return copied = env->end;
  }));
  out += stored_data.substr(copied);
  return out;
}

}  // namespace cairn::log
