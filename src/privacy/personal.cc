#include "privacy/personal.h"

#include <sodium.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codec/event_json.h"
#include "log/sha256.h"

namespace cairn::privacy {
namespace {

using ojson = nlohmann::ordered_json;
constexpr std::string_view kSealed = "$cairn.sealed";
constexpr std::string_view kRedacted = "$cairn.redacted";
constexpr std::string_view kPurged = "$cairn.purged";
constexpr size_t kMaxSubjectBytes = 256;

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::strict); }

std::string b64(std::string_view bytes) { return codec::base64_encode(bytes); }

bool unb64(std::string_view text, std::string* out) {
  auto bytes = codec::base64_decode(text);
  if (!bytes.ok()) return false;
  *out = std::move(*bytes);
  return true;
}

// RFC 6901 escaping of one reference token.
std::string escape_token(std::string_view t) {
  std::string out;
  for (char c : t) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

bool is_envelope(const ojson& v, std::string_view key) { return v.is_object() && v.size() == 1 && v.contains(std::string(key)); }

std::string associated(const Uuid& id, std::string_view pointer) { return id.to_string() + "\n" + std::string(pointer); }

// Visits every sealed envelope (depth first), with its JSON Pointer; f may replace the value in place.
template <typename F>
Status walk(ojson& v, const std::string& pointer, F&& f) {
  if (is_envelope(v, kSealed)) return f(v, pointer);
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) CAIRN_RETURN_IF_ERROR(walk(it.value(), pointer + "/" + escape_token(it.key()), f));
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) CAIRN_RETURN_IF_ERROR(walk(v[i], pointer + "/" + std::to_string(i), f));
  }
  return {};
}

struct Envelope {
  std::string key_id;
  Sealed sealed;
};
Result<Envelope> read_envelope(const ojson& v, const std::string& pointer) {
  const ojson& e = v.at(std::string(kSealed));
  auto bad = [&](std::string_view what) { return Status::corruption(fmt::format("sealed part at '{}': {}", pointer, what)); };
  if (!e.is_object() || e.value("v", 0) != 1 || !e.contains("k") || !e["k"].is_string() || !e.contains("n") ||
      !e["n"].is_string() || !e.contains("c") || !e["c"].is_string())
    return bad("not a version-1 envelope {v, k, n, c}");
  Envelope out;
  out.key_id = e["k"].get<std::string>();
  std::string nonce;
  if (!unb64(e["n"].get<std::string>(), &nonce) || nonce.size() != out.sealed.nonce.size()) return bad("a bad nonce");
  std::copy(nonce.begin(), nonce.end(), out.sealed.nonce.begin());
  if (!unb64(e["c"].get<std::string>(), &out.sealed.ciphertext)) return bad("bad ciphertext base64");
  return out;
}

Result<ojson> parse(std::string_view text, std::string_view what) {
  ojson j = ojson::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::invalid_argument(fmt::format("{}: not valid JSON", what));
  return j;
}

}  // namespace

Result<std::optional<Declaration>> read_declaration(std::string_view metadata, std::string_view data, ContentType type,
                                                    std::string_view what) {
  if (metadata.empty() || metadata.find("\"privacy\"") == std::string_view::npos) return std::optional<Declaration>();
  auto m = parse(metadata, fmt::format("{}.metadata", what));
  if (!m.ok()) return m.status();
  if (!m->is_object() || !m->contains("privacy")) return std::optional<Declaration>();
  const ojson& p = (*m)["privacy"];
  const std::string at = fmt::format("{}.metadata.privacy", what);
  if (!p.is_object()) return Status::invalid_argument(fmt::format("{}: must be an object {{subject, personal}} or {{parts}}", at));
  for (auto it = p.begin(); it != p.end(); ++it)
    if (it.key() != "subject" && it.key() != "personal" && it.key() != "parts")
      return Status::invalid_argument(fmt::format("{}.{}: not a field of privacy (subject, personal, parts)", at, it.key().substr(0, 64)));
  if (type != ContentType::kJson)
    return Status::invalid_argument(fmt::format("{}: personal parts are supported on JSON events only", at));
  auto check_subject = [&](const ojson& s, const std::string& where) -> Result<std::string> {
    if (!s.is_string() || s.get<std::string>().empty() || s.get<std::string>().size() > kMaxSubjectBytes)
      return Status::invalid_argument(fmt::format("{}: required, a string of 1 to {} bytes", where, kMaxSubjectBytes));
    return s.get<std::string>();
  };
  Declaration d;
  if (p.contains("parts")) {
    if (p.contains("subject") || p.contains("personal"))
      return Status::invalid_argument(fmt::format("{}: give either subject and personal, or parts", at));
    const ojson& parts = p["parts"];
    if (!parts.is_array() || parts.empty())
      return Status::invalid_argument(fmt::format("{}.parts: a non-empty array of {{subject, pointer}}", at));
    for (size_t i = 0; i < parts.size(); ++i) {
      const std::string where = fmt::format("{}.parts[{}]", at, i);
      if (!parts[i].is_object() || !parts[i].contains("pointer") || !parts[i]["pointer"].is_string())
        return Status::invalid_argument(fmt::format("{}: an object {{subject, pointer}} with pointer a string", where));
      auto s = check_subject(parts[i].value("subject", ojson()), where + ".subject");
      if (!s.ok()) return s.status();
      d.parts.push_back({parts[i]["pointer"].get<std::string>(), *s});
    }
  } else {
    auto s = check_subject(p.value("subject", ojson()), at + ".subject");
    if (!s.ok()) return s.status();
    const ojson personal = p.value("personal", ojson());
    if (personal.is_string() && personal.get<std::string>() == "all") {
      d.parts.push_back({"", *s});
    } else if (personal.is_array() && !personal.empty()) {
      for (size_t i = 0; i < personal.size(); ++i) {
        if (!personal[i].is_string())
          return Status::invalid_argument(fmt::format("{}.personal[{}]: must be a JSON Pointer string", at, i));
        d.parts.push_back({personal[i].get<std::string>(), *s});
      }
    } else {
      return Status::invalid_argument(fmt::format("{}.personal: required, \"all\" or a non-empty array of JSON Pointers", at));
    }
  }
  // Every pointer must name a value in the data, and no part may contain another.
  auto doc = parse(data, fmt::format("{}.data", what));
  if (!doc.ok()) return doc.status();
  const bool list = !p.contains("parts");
  for (size_t i = 0; i < d.parts.size(); ++i) {
    const std::string& ptr = d.parts[i].pointer;
    const std::string where = list ? fmt::format("{}.personal[{}]", at, i) : fmt::format("{}.parts[{}].pointer", at, i);
    if (ptr.empty()) {
      if (d.parts.size() > 1) return Status::invalid_argument(fmt::format("{}: the whole data cannot be one part among others", where));
      continue;
    }
    try {
      const ojson::json_pointer jp(ptr);
      if (!doc->contains(jp)) return Status::invalid_argument(fmt::format("{}: '{}' names nothing in the data", where, ptr.substr(0, 128)));
    } catch (const ojson::exception&) {
      return Status::invalid_argument(fmt::format("{}: '{}' is not a JSON Pointer (RFC 6901: \"\" or /token/token, ~0 for ~, ~1 for /)",
                                                  where, ptr.substr(0, 128)));
    }
    for (size_t j = 0; j < i; ++j) {
      const std::string& other = d.parts[j].pointer;
      if (other == ptr || ptr.starts_with(other + "/") || other.starts_with(ptr + "/"))
        return Status::invalid_argument(fmt::format("{}: '{}' overlaps '{}'", where, ptr.substr(0, 128), other.substr(0, 128)));
    }
  }
  return std::optional<Declaration>(std::move(d));
}

Result<SealedEvent> seal_event(KeyStore& keys, const Uuid& id, std::string_view data, std::string_view metadata,
                               const Declaration& declaration) {
  auto doc = parse(data, "data");
  if (!doc.ok()) return doc.status();
  auto meta = parse(metadata, "metadata");
  if (!meta.ok()) return meta.status();
  SealedEvent out;
  for (const PersonalPart& part : declaration.parts) {
    const std::string subject = keys.subject_id(part.subject);
    if (std::find(out.subjects.begin(), out.subjects.end(), subject) == out.subjects.end()) out.subjects.push_back(subject);
    auto key = keys.key_for_write(subject);
    if (!key.ok()) return key.status();
    ojson& target = part.pointer.empty() ? *doc : (*doc)[ojson::json_pointer(part.pointer)];
    const Sealed s = seal(key->second, dump(target), associated(id, part.pointer));
    ojson env = ojson::object();
    env["v"] = 1;
    env["k"] = key->first;
    env["n"] = b64(std::string_view(reinterpret_cast<const char*>(s.nonce.data()), s.nonce.size()));
    env["c"] = b64(s.ciphertext);
    ojson wrapper = ojson::object();
    wrapper[std::string(kSealed)] = std::move(env);
    target = std::move(wrapper);
  }
  // The metadata keeps the declaration, with subjects only as keyed hashes.
  ojson& p = (*meta)["privacy"];
  if (p.contains("parts")) {
    for (auto& part : p["parts"]) part["subject"] = keys.subject_id(part["subject"].get<std::string>());
  } else {
    p["subject"] = keys.subject_id(p["subject"].get<std::string>());
  }
  out.data = dump(*doc);
  out.metadata = dump(*meta);
  return out;
}

bool has_sealed_parts(std::string_view stored_data) { return stored_data.find(kSealed) != std::string_view::npos; }

Result<std::string> open_data(const KeyStore& keys, const Uuid& id, std::string_view stored_data, bool* redacted) {
  *redacted = false;
  if (!has_sealed_parts(stored_data)) return std::string(stored_data);
  auto doc = parse(stored_data, "stored data");
  if (!doc.ok()) return Status::corruption(doc.status().message());
  CAIRN_RETURN_IF_ERROR(walk(*doc, "", [&](ojson& v, const std::string& pointer) -> Status {
    auto env = read_envelope(v, pointer);
    if (!env.ok()) return env.status();
    auto key = keys.key(env->key_id);
    if (!key.ok()) return key.status();
    if (!*key) {
      ojson marker = ojson::object();
      marker[std::string(kRedacted)] = {{"reason", "subject forgotten"}};
      v = std::move(marker);
      *redacted = true;
      return {};
    }
    auto plain = unseal(**key, env->sealed, associated(id, pointer));
    if (!plain.ok()) return plain.status();
    ojson value = ojson::parse(*plain, nullptr, false);
    if (value.is_discarded()) return Status::corruption(fmt::format("sealed part at '{}': its plaintext is not JSON", pointer));
    v = std::move(value);
    return {};
  }));
  return dump(*doc);
}

Result<std::string> redactable_form(std::string_view stored_data) {
  if (!has_sealed_parts(stored_data)) return std::string(stored_data);
  auto doc = parse(stored_data, "stored data");
  if (!doc.ok()) return Status::corruption(doc.status().message());
  CAIRN_RETURN_IF_ERROR(walk(*doc, "", [&](ojson& v, const std::string& pointer) -> Status {
    auto env = read_envelope(v, pointer);
    if (!env.ok()) return env.status();
    log::Sha256 sha;
    sha.update(env->sealed.nonce.data(), env->sealed.nonce.size());
    sha.update(env->sealed.ciphertext);
    ojson marker = ojson::object();
    marker[std::string(kPurged)] = log::hex(sha.final());
    v = std::move(marker);
    return {};
  }));
  return dump(*doc);
}

}  // namespace cairn::privacy
