// The stored form of sealed personal parts, as docs/format.md defines it for records with flag bit 1: the
// envelope the store writes in place of a part, the purged marker that replaces it after a purge, and the
// redactable form (every envelope as its marker) the payload digest of such a record covers. This is the
// log's format, so it lives here; what a part means (declarations, keys, who may open it) is privacy's.
//
// Envelope: {"$cairn.sealed":{"v":1,"k":"<key id>","p":<pointer, a JSON string>,"n":"<nonce>","c":"<ciphertext>"}}
// Marker:   {"$cairn.purged":"<hex SHA-256(nonce ‖ ciphertext)>"}, padded with spaces to the envelope's width.
// Client data of an event whose parts are sealed may not hold these keys (checked on write), so every
// occurrence of their text in such stored data is one the store wrote: they are found by a text scan, and the
// client's bytes around them are never re-serialized. Stateless and thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cairn/status.h"

namespace cairn::log {

inline constexpr std::string_view kSealedKey = "\"$cairn.sealed\"";
inline constexpr std::string_view kPurgedKey = "\"$cairn.purged\"";

// One sealed part's bytes: the nonce and the ciphertext with its tag.
struct SealedBytes {
  std::array<uint8_t, 24> nonce{};
  std::string ciphertext;  // plaintext length + 16 (the tag)
};

// One envelope found in stored data: [begin, end) its bytes.
struct Envelope {
  size_t begin = 0, end = 0;
  std::string_view key_id;  // a view into the stored data
  std::string pointer;      // decoded
  SealedBytes sealed;
};

// Appends the envelope of one part.
void append_envelope(std::string& out, std::string_view key_id, std::string_view pointer, const SealedBytes& sealed);
// Appends the purged marker of a part, padded with spaces to `width` (the envelope's): a purge then keeps every
// record's size, so a rewritten segment keeps every offset (no index to rebuild) and data_len stays
// true. An envelope is always wider than its marker (its key id, nonce and tag alone take more).
void append_purged_marker(std::string& out, const SealedBytes& sealed, size_t width);

// Whether stored data holds envelopes or purged markers (a cheap check before anything else).
bool has_sealed_parts(std::string_view stored_data);

// Reads the envelope that starts at `at`. kCorruption, naming the byte, when it is not a version-1 envelope.
Result<Envelope> read_envelope(std::string_view text, size_t at);
// The end of the purged marker that starts at `at` (its padding not included). kCorruption when it is not one.
Result<size_t> purged_marker_end(std::string_view text, size_t at);

enum class PartKind { kSealed, kPurged };
// Calls f(at, kind) for each envelope and purged marker in stored data, in order; f returns the offset to go
// on from (a Result<size_t>), and its first error ends the scan.
template <typename F>
Status scan_parts(std::string_view text, F&& f) {
  constexpr std::string_view sealed_open = "{\"$cairn.sealed\":";
  constexpr std::string_view purged_open = "{\"$cairn.purged\":\"";
  size_t at = 0;
  while (true) {
    const size_t s = text.find(sealed_open, at);
    const size_t p = text.find(purged_open, at);
    if (s == std::string_view::npos && p == std::string_view::npos) return {};
    auto next = (s != std::string_view::npos && (p == std::string_view::npos || s < p)) ? f(s, PartKind::kSealed)
                                                                                        : f(p, PartKind::kPurged);
    if (!next.ok()) return next.status();
    at = *next;
  }
}

// Every envelope replaced by its purged marker: what the payload digest of a record with sealed parts covers,
// and what a purge leaves (so the chain survives it). Data without sealed parts comes back unchanged.
Result<std::string> redactable_form(std::string_view stored_data);

}  // namespace cairn::log
