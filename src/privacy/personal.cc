#include "privacy/personal.h"

#include <simdjson.h>

#include <algorithm>

#include <fmt/format.h>

namespace cairn::privacy {
namespace {

namespace od = simdjson::ondemand;

// What a reader sees in place of a part whose subject was forgotten. The stored forms (envelope, purged
// marker) are the log's format: log/sealed_form.h.
constexpr std::string_view kRedactedMarker = R"({"$cairn.redacted":{"reason":"subject forgotten"}})";
constexpr size_t kMaxSubjectBytes = 256;

std::string associated(const Uuid& id, std::string_view pointer) { return id.to_string() + "\n" + std::string(pointer); }

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// Whether text holds `key` as an object key (the quoted name followed by a colon): inside a JSON string an
// unescaped quote cannot occur, so this is exact on valid JSON.
bool has_object_key(std::string_view text, std::string_view quoted_key) {
  for (size_t at = text.find(quoted_key); at != std::string_view::npos; at = text.find(quoted_key, at + 1)) {
    size_t i = at + quoted_key.size();
    while (i < text.size() && is_ws(text[i])) ++i;
    if (i < text.size() && text[i] == ':') return true;
  }
  return false;
}

// simdjson's On-Demand API needs padding after the text; small documents share one parser and buffer per
// thread (a parser keeps the capacity of the largest document it saw, so large ones get their own).
constexpr size_t kSharedParserMax = 64 * 1024;
struct Padded {
  od::parser parser;
  std::string buffer;
  simdjson::padded_string_view pad(std::string_view text) {
    buffer.assign(text);
    buffer.resize(text.size() + simdjson::SIMDJSON_PADDING);
    return simdjson::padded_string_view(buffer.data(), text.size(), buffer.size());
  }
};
template <typename F>
auto with_padded(size_t size, F&& f) {
  if (size <= kSharedParserMax) {
    thread_local Padded shared;
    return f(shared);
  }
  Padded own;
  return f(own);
}

// RFC 6901: "" or "/"-separated reference tokens, "~" only as "~0" or "~1". The tokens, unescaped.
bool split_pointer(std::string_view pointer, std::vector<std::string>* tokens) {
  tokens->clear();
  if (pointer.empty()) return true;
  if (pointer[0] != '/') return false;
  std::string token;
  for (size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens->push_back(std::move(token));
      token.clear();
      continue;
    }
    if (pointer[i] == '~') {
      if (i + 1 >= pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1')) return false;
      token.push_back(pointer[i + 1] == '0' ? '~' : '/');
      ++i;
      continue;
    }
    token.push_back(pointer[i]);
  }
  return true;
}

// An array index token: "0" or digits without a leading zero.
bool array_index(const std::string& token, size_t* index) {
  if (token.empty() || token.size() > 9 || (token.size() > 1 && token[0] == '0')) return false;
  size_t n = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  *index = n;
  return true;
}

// The byte range, in the text `doc` iterates (whose first byte is at `base`), of the value the tokens name.
// Keys are compared unescaped; with duplicate keys the first one counts. False when it names nothing.
bool locate(od::document& doc, const char* base, const std::vector<std::string>& tokens, Span* out) {
  doc.rewind();
  od::value v;
  if (doc.get_value().get(v)) return false;
  for (const std::string& token : tokens) {
    od::json_type t;
    if (v.type().get(t)) return false;
    bool found = false;
    if (t == od::json_type::object) {
      od::object o;
      if (v.get_object().get(o)) return false;
      for (auto field : o) {
        od::field f;
        std::string_view key;
        if (std::move(field).get(f) || f.unescaped_key().get(key)) return false;
        if (key == token) {
          v = f.value();
          found = true;
          break;
        }
      }
    } else if (t == od::json_type::array) {
      size_t index = 0;
      if (!array_index(token, &index)) return false;
      od::array a;
      if (v.get_array().get(a)) return false;
      size_t i = 0;
      for (auto element : a) {
        if (i++ == index) {
          if (element.get(v)) return false;
          found = true;
          break;
        }
      }
    }
    if (!found) return false;
  }
  od::json_type t;
  if (v.type().get(t)) return false;
  std::string_view raw;
  if (t == od::json_type::object) {
    od::object o;
    if (v.get_object().get(o) || o.raw_json().get(raw)) return false;
  } else if (t == od::json_type::array) {
    od::array a;
    if (v.get_array().get(a) || a.raw_json().get(raw)) return false;
  } else {
    raw = v.raw_json_token();
  }
  raw = trim(raw);  // raw JSON runs up to the next token, spaces included
  out->begin = static_cast<size_t>(raw.data() - base);
  out->end = out->begin + raw.size();
  return true;
}

// "<what>.metadata.privacy" in an error message.
struct PrivacyField {
  std::string_view what;
};

}  // namespace
}  // namespace cairn::privacy

template <>
struct fmt::formatter<cairn::privacy::PrivacyField> : fmt::formatter<std::string_view> {
  auto format(const cairn::privacy::PrivacyField& f, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{}.metadata.privacy", f.what);
  }
};

namespace cairn::privacy {

namespace {

// The declaration as the metadata states it, before its form is checked.
struct RawDeclaration {
  std::string subject;
  Span subject_token;
  bool has_subject = false, has_personal = false, has_parts = false, empty_parts = false, all = false;
  std::vector<PersonalPart> parts;
};

// A subject string: where names the field in errors; its token's byte range is taken relative to base.
template <typename Where>
Status read_subject(od::value v, const Where& where, const char* base, Span* token, std::string* out) {
  std::string_view s;
  const std::string_view tok = trim(v.raw_json_token());
  if (v.get_string().get(s) || s.empty() || s.size() > kMaxSubjectBytes)
    return Status::invalid_argument(fmt::format("{}.subject: required, a string of 1 to {} bytes", where(), kMaxSubjectBytes));
  *out = std::string(s);
  token->begin = static_cast<size_t>(tok.data() - base);
  token->end = token->begin + tok.size();
  return {};
}

// privacy.personal: "all" or a non-empty array of JSON Pointers.
Status read_personal(od::value v, const PrivacyField& at, RawDeclaration* raw) {
  raw->has_personal = true;
  od::json_type t;
  if (v.type().get(t)) return Status::invalid_argument(fmt::format("{}.personal: not valid JSON", at));
  std::string_view s;
  od::array a;
  if (t == od::json_type::string && !v.get_string().get(s) && s == "all") {
    raw->all = true;
    return {};
  }
  if (t != od::json_type::array || v.get_array().get(a))
    return Status::invalid_argument(fmt::format("{}.personal: required, \"all\" or a non-empty array of JSON Pointers", at));
  size_t i = 0;
  for (auto item : a) {
    std::string_view ptr;
    if (item.get_string().get(ptr))
      return Status::invalid_argument(fmt::format("{}.personal[{}]: must be a JSON Pointer string", at, i));
    raw->parts.push_back({std::string(ptr), "", {}, {}});
    ++i;
  }
  if (i == 0)
    return Status::invalid_argument(fmt::format("{}.personal: required, \"all\" or a non-empty array of JSON Pointers", at));
  return {};
}

// privacy.parts: a non-empty array of {subject, pointer}.
Status read_parts(od::value v, const PrivacyField& at, const char* base, RawDeclaration* raw) {
  raw->has_parts = true;
  od::array a;
  if (v.get_array().get(a)) return Status::invalid_argument(fmt::format("{}.parts: a non-empty array of {{subject, pointer}}", at));
  size_t i = 0;
  for (auto item : a) {
    const size_t index = i++;
    auto where = [&] { return fmt::format("{}.parts[{}]", at, index); };
    od::object o;
    if (item.get_object().get(o))
      return Status::invalid_argument(fmt::format("{}: an object {{subject, pointer}} with pointer a string", where()));
    PersonalPart part;
    bool has_pointer = false, has_subject = false;
    for (auto pf : o) {
      od::field g;
      std::string_view k;
      if (std::move(pf).get(g) || g.unescaped_key().get(k)) return Status::invalid_argument(fmt::format("{}: not valid JSON", where()));
      if (k == "pointer") {
        std::string_view ptr;
        if (g.value().get_string().get(ptr))
          return Status::invalid_argument(fmt::format("{}: an object {{subject, pointer}} with pointer a string", where()));
        part.pointer = std::string(ptr);
        has_pointer = true;
      } else if (k == "subject") {
        has_subject = true;
        CAIRN_RETURN_IF_ERROR(read_subject(g.value(), where, base, &part.subject_token, &part.subject));
      } else {
        return Status::invalid_argument(
            fmt::format("{}.{}: not a field of a part (subject, pointer)", where(), std::string(k.substr(0, 64))));
      }
    }
    if (!has_pointer)
      return Status::invalid_argument(fmt::format("{}: an object {{subject, pointer}} with pointer a string", where()));
    if (!has_subject)
      return Status::invalid_argument(fmt::format("{}.subject: required, a string of 1 to {} bytes", where(), kMaxSubjectBytes));
    raw->parts.push_back(std::move(part));
  }
  raw->empty_parts = i == 0;  // reported after a mix of forms, which is the bigger mistake
  return {};
}

// The metadata, read with On-Demand (it was validated as a JSON object before): the declaration, and the byte
// range of each subject's string so that sealing can splice its keyed hash in. kNotFound: no privacy field.
Status read_raw_declaration(std::string_view metadata, std::string_view what, const PrivacyField& at, RawDeclaration* raw) {
  return with_padded(metadata.size(), [&](Padded& p) -> Status {
    const simdjson::padded_string_view text = p.pad(metadata);
    const char* base = p.buffer.data();
    od::document doc;
    od::object top;
    if (p.parser.iterate(text).get(doc) || doc.get_object().get(top))
      return Status::invalid_argument(fmt::format("{}.metadata: must be a JSON object", what));
    od::value privacy;
    bool found = false;
    for (auto field : top) {
      od::field f;
      std::string_view key;
      if (std::move(field).get(f) || f.unescaped_key().get(key)) return Status::invalid_argument(fmt::format("{}.metadata: not valid JSON", what));
      if (key == "privacy") {
        privacy = f.value();
        found = true;
        break;
      }
    }
    if (!found) return Status::not_found("");
    od::object po;
    if (privacy.get_object().get(po))
      return Status::invalid_argument(fmt::format("{}: must be an object {{subject, personal}} or {{parts}}", at));
    for (auto field : po) {
      od::field f;
      std::string_view key;
      if (std::move(field).get(f) || f.unescaped_key().get(key)) return Status::invalid_argument(fmt::format("{}: not valid JSON", at));
      if (key == "subject") {
        raw->has_subject = true;
        CAIRN_RETURN_IF_ERROR(read_subject(f.value(), [&] { return fmt::format("{}", at); }, base, &raw->subject_token, &raw->subject));
      } else if (key == "personal") {
        CAIRN_RETURN_IF_ERROR(read_personal(f.value(), at, raw));
      } else if (key == "parts") {
        CAIRN_RETURN_IF_ERROR(read_parts(f.value(), at, base, raw));
      } else {
        return Status::invalid_argument(
            fmt::format("{}.{}: not a field of privacy (subject, personal, parts)", at, std::string(key.substr(0, 64))));
      }
    }
    return {};
  });
}

// The declaration's form checked: either {subject, personal} (every part under that subject) or {parts}.
Result<Declaration> resolve_declaration(RawDeclaration raw, ContentType type, const PrivacyField& at) {
  if (type != ContentType::kJson)
    return Status::invalid_argument(fmt::format("{}: personal parts are supported on JSON events only", at));
  if (raw.has_parts && (raw.has_subject || raw.has_personal))
    return Status::invalid_argument(fmt::format("{}: give either subject and personal, or parts", at));
  if (raw.empty_parts) return Status::invalid_argument(fmt::format("{}.parts: a non-empty array of {{subject, pointer}}", at));
  Declaration d;
  if (raw.has_parts) {
    d.parts = std::move(raw.parts);
    return d;
  }
  if (!raw.has_subject)
    return Status::invalid_argument(fmt::format("{}.subject: required, a string of 1 to {} bytes", at, kMaxSubjectBytes));
  if (!raw.has_personal)
    return Status::invalid_argument(fmt::format("{}.personal: required, \"all\" or a non-empty array of JSON Pointers", at));
  if (raw.all) raw.parts = {PersonalPart{"", "", {}, {}}};
  for (PersonalPart& part : raw.parts) {
    part.subject = raw.subject;
    part.subject_token = raw.subject_token;
  }
  d.parts = std::move(raw.parts);
  return d;
}

// Every pointer must name a value in the data, and no part may contain another: fills each part's value span.
// listed: the parts came from privacy.personal (errors name personal[i]) rather than privacy.parts.
Status locate_parts(std::string_view data, std::string_view what, const PrivacyField& at, bool listed, Declaration& d) {
  std::vector<std::string> tokens;
  return with_padded(data.size(), [&](Padded& p) -> Status {
    const simdjson::padded_string_view text = p.pad(data);
    od::document doc;
    if (p.parser.iterate(text).get(doc)) return Status::invalid_argument(fmt::format("{}.data: not valid JSON", what));
    for (size_t i = 0; i < d.parts.size(); ++i) {
      PersonalPart& part = d.parts[i];
      const std::string& ptr = part.pointer;
      auto where = [&] { return listed ? fmt::format("{}.personal[{}]", at, i) : fmt::format("{}.parts[{}].pointer", at, i); };
      if (ptr.empty()) {
        if (d.parts.size() > 1)
          return Status::invalid_argument(fmt::format("{}: the whole data cannot be one part among others", where()));
        const std::string_view whole = trim(data);
        part.value = {static_cast<size_t>(whole.data() - data.data()), static_cast<size_t>(whole.data() - data.data()) + whole.size()};
        continue;
      }
      if (!split_pointer(ptr, &tokens))
        return Status::invalid_argument(fmt::format(
            "{}: '{}' is not a JSON Pointer (RFC 6901: \"\" or /token/token, ~0 for ~, ~1 for /)", where(), ptr.substr(0, 128)));
      if (!locate(doc, p.buffer.data(), tokens, &part.value))
        return Status::invalid_argument(fmt::format("{}: '{}' names nothing in the data", where(), ptr.substr(0, 128)));
      for (size_t j = 0; j < i; ++j) {
        const std::string& other = d.parts[j].pointer;
        if (other == ptr || ptr.starts_with(other + "/") || other.starts_with(ptr + "/"))
          return Status::invalid_argument(fmt::format("{}: '{}' overlaps '{}'", where(), ptr.substr(0, 128), other.substr(0, 128)));
      }
    }
    return {};
  });
}

}  // namespace

Result<std::optional<Declaration>> read_declaration(std::string_view metadata, std::string_view data, ContentType type,
                                                    std::string_view what) {
  if (metadata.empty() || metadata.find("\"privacy\"") == std::string_view::npos) return std::optional<Declaration>();
  const PrivacyField at{what};  // formatted only into errors: the path of every append stays free of it
  RawDeclaration raw;
  Status declared = read_raw_declaration(metadata, what, at, &raw);
  if (declared.code() == ErrorCode::kNotFound) return std::optional<Declaration>();
  CAIRN_RETURN_IF_ERROR(declared);
  const bool listed = !raw.has_parts;
  auto d = resolve_declaration(std::move(raw), type, at);
  if (!d.ok()) return d.status();
  // The data may not hold the keys the store's envelopes use (a reader would take them for the store's own).
  if (has_object_key(data, log::kSealedKey) || has_object_key(data, log::kPurgedKey))
    return Status::invalid_argument(fmt::format(
        "{}.data: an event with personal parts may not use the keys \"$cairn.sealed\" or \"$cairn.purged\" (reserved)", what));
  CAIRN_RETURN_IF_ERROR(locate_parts(data, what, at, listed, *d));
  return std::optional<Declaration>(std::move(*d));
}

Result<SealedEvent> seal_event(KeyStore& keys, const Uuid& id, std::string_view data, std::string_view metadata,
                               const Declaration& declaration) {
  // The parts in data order, so that one pass splices every envelope and its purged marker.
  std::vector<const PersonalPart*> order;
  order.reserve(declaration.parts.size());
  for (const PersonalPart& p : declaration.parts) order.push_back(&p);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->value.begin < b->value.begin; });
  SealedEvent out;
  out.data.reserve(data.size() + 160 * order.size());
  out.redactable.reserve(data.size() + 64 * order.size());
  std::vector<std::pair<Span, std::string>> subject_tokens;  // metadata ranges -> keyed hash, one per token
  size_t copied = 0;
  for (const PersonalPart* part : order) {
    if (part->value.begin < copied || part->value.end > data.size())
      return Status::invalid_argument("seal_event: the declaration was not read from this data");
    std::string subject = keys.subject_id(part->subject);
    if (std::find(out.subjects.begin(), out.subjects.end(), subject) == out.subjects.end()) out.subjects.push_back(subject);
    auto key = keys.key_for_write(subject);
    if (!key.ok()) return key.status();
    if (std::none_of(subject_tokens.begin(), subject_tokens.end(),
                     [&](const auto& t) { return t.first.begin == part->subject_token.begin; }))
      subject_tokens.emplace_back(part->subject_token, std::move(subject));
    const Sealed s = seal(key->second, data.substr(part->value.begin, part->value.end - part->value.begin),
                          associated(id, part->pointer));
    const std::string_view before = data.substr(copied, part->value.begin - copied);
    out.data += before;
    const size_t envelope_start = out.data.size();
    log::append_envelope(out.data, key->first, part->pointer, s);
    out.redactable += before;
    log::append_purged_marker(out.redactable, s, out.data.size() - envelope_start);
    copied = part->value.end;
  }
  out.data += data.substr(copied);
  out.redactable += data.substr(copied);
  // The metadata keeps the declaration, with subjects only as keyed hashes.
  std::sort(subject_tokens.begin(), subject_tokens.end(), [](const auto& a, const auto& b) { return a.first.begin < b.first.begin; });
  copied = 0;
  out.metadata.reserve(metadata.size() + 40 * subject_tokens.size());
  for (const auto& [span, hash] : subject_tokens) {
    if (span.begin < copied || span.end > metadata.size())
      return Status::invalid_argument("seal_event: the declaration was not read from this metadata");
    out.metadata += metadata.substr(copied, span.begin - copied);
    out.metadata += '"';
    out.metadata += hash;
    out.metadata += '"';
    copied = span.end;
  }
  out.metadata += metadata.substr(copied);
  return out;
}

Result<std::string> open_data(const KeyStore& keys, const Uuid& id, std::string_view stored_data, bool* redacted) {
  *redacted = false;
  if (!has_sealed_parts(stored_data)) return std::string(stored_data);
  std::string out;
  out.reserve(stored_data.size());
  size_t copied = 0;
  std::vector<std::string> tokens;
  CAIRN_RETURN_IF_ERROR(log::scan_parts(stored_data, [&](size_t at, log::PartKind kind) -> Result<size_t> {
    out += stored_data.substr(copied, at - copied);
    if (kind == log::PartKind::kPurged) {
      auto end_or = log::purged_marker_end(stored_data, at);
      if (!end_or.ok()) return end_or.status();
      const size_t end = *end_or;
      out += kRedactedMarker;
      *redacted = true;
      size_t next = end;
      while (next < stored_data.size() && stored_data[next] == ' ') ++next;  // the purge's padding
      return copied = next;
    }
    auto env = log::read_envelope(stored_data, at);
    if (!env.ok()) return env.status();
    // The envelope's pointer is bound to the ciphertext (associated data); that it names the envelope's own
    // place keeps a part from being moved to another field of the event.
    if (!split_pointer(env->pointer, &tokens))
      return Status::corruption(fmt::format("the sealed part at byte {}: its pointer is not a JSON Pointer", at));
    if (!tokens.empty()) {
      Span where;
      const bool found = with_padded(stored_data.size(), [&](Padded& p) {
        od::document doc;
        return !p.parser.iterate(p.pad(stored_data)).get(doc) && locate(doc, p.buffer.data(), tokens, &where);
      });
      if (!found || where.begin != at || where.end != env->end)
        return Status::corruption(fmt::format("the sealed part at byte {} is not at its place '{}'", at, env->pointer.substr(0, 128)));
    } else if (trim(stored_data) != stored_data.substr(at, env->end - at)) {
      return Status::corruption(fmt::format("the sealed part at byte {} is not the whole data its place '' says", at));
    }
    auto key = keys.key(env->key_id);
    if (!key.ok()) return key.status();
    if (!*key) {
      out += kRedactedMarker;
      *redacted = true;
      return copied = env->end;
    }
    auto plain = unseal(**key, env->sealed, associated(id, env->pointer));
    if (!plain.ok()) return plain.status();
    out += *plain;
    return copied = env->end;
  }));
  out += stored_data.substr(copied);
  return out;
}

Result<std::string> purge_parts(const KeyStore& keys, std::string_view stored_data, size_t* purged,
                                std::vector<std::string>* key_ids) {
  *purged = 0;
  std::string out;
  out.reserve(stored_data.size());
  size_t copied = 0;
  CAIRN_RETURN_IF_ERROR(log::scan_parts(stored_data, [&](size_t at, log::PartKind kind) -> Result<size_t> {
    if (kind == log::PartKind::kPurged) return log::purged_marker_end(stored_data, at);
    auto env = log::read_envelope(stored_data, at);
    if (!env.ok()) return env.status();
    auto key = keys.key(env->key_id);
    // A key this key store never had (data imported from elsewhere) is not one it forgot: kept.
    if (!key.ok() && key.status().code() == ErrorCode::kNotFound) return env->end;
    if (!key.ok()) return key.status();
    if (*key) return env->end;
    out += stored_data.substr(copied, at - copied);
    log::append_purged_marker(out, env->sealed, env->end - env->begin);
    ++*purged;
    if (key_ids) key_ids->emplace_back(env->key_id);
    return copied = env->end;
  }));
  out += stored_data.substr(copied);
  return out;
}

}  // namespace cairn::privacy
