// Small text encodings every layer needs, from the log's format (sealed parts' base64) to the JSON of events:
// a JSON string literal, and standard base64 (RFC 4648 §4, with padding) through OpenSSL's EVP coder.
// Stateless and thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "cairn/status.h"

namespace cairn::base {

// Appends s as a JSON string literal, quotes included (control characters escaped).
void append_json_string(std::string& out, std::string_view s);
std::string base64_encode(std::string_view bytes);
// invalid_argument when text is not padded base64.
Result<std::string> base64_decode(std::string_view text);

// Whether s is `prefix` and 32 lowercase hex digits: the form of Cairn's ids of keys ("dk:", data keys,
// include/cairn/data_keys.h, defined here so that the projection runtime does not need privacy) and of
// subjects ("hs:").
bool is_hex_id(std::string_view s, std::string_view prefix);

}  // namespace cairn::base
