// The event model: what a client proposes (EventData) and what the store recorded (RecordedEvent, EventView;
// StoredEventView for exports).
//
// Ownership: EventData and RecordedEvent own their bytes. EventView borrows bytes from the store's mapped
// log and is valid only during the callback that receives it (so is StoredEventView); call to_owned() to keep it.
// Thread safety: plain values; no shared state.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cairn/status.h"

namespace cairn {

// A 128-bit UUID. Clients may supply any non-nil UUID; the store generates UUIDv7 (time-ordered) otherwise.
struct Uuid {
  std::array<uint8_t, 16> bytes{};

  static Result<Uuid> parse(std::string_view text);  // canonical 8-4-4-4-12 hex form, case-insensitive
  static Uuid generate_v7();                          // RFC 9562 version 7, thread-safe
  static void generate_v7(Uuid* out, size_t n);       // n of them, increasing, one call to the random source
  std::string to_string() const;                      // lowercase canonical form
  bool is_nil() const;
  friend bool operator==(const Uuid&, const Uuid&) = default;
  friend auto operator<=>(const Uuid&, const Uuid&) = default;
};

struct UuidHash {
  size_t operator()(const Uuid& u) const {
    size_t h = 0;
    for (size_t i = 8; i < 16; ++i) h = (h << 8) | u.bytes[i];  // the random half of v4 and v7 ids
    return h;
  }
};

enum class ContentType : uint8_t {
  kJson = 1,    // application/json: data is validated as JSON on append
  kBinary = 2,  // application/octet-stream: opaque bytes
};
std::string_view content_type_name(ContentType type);
Result<ContentType> parse_content_type(std::string_view name);

// An event as proposed by a client.
struct EventData {
  std::optional<Uuid> id;  // idempotency key; generated (UUIDv7) when absent
  std::string type;        // 1-256 bytes of UTF-8, no control characters; may not start with '$'
  ContentType content_type = ContentType::kJson;
  std::string metadata;    // a JSON object, or empty for {}
  std::string data;        // JSON text when content_type is kJson, else any bytes
};

// A stored event, borrowed from the log. payload_removed is true when the privacy purge removed the
// metadata and data bytes (the header and the integrity chain stay); such views have empty metadata/data.
struct EventView {
  uint64_t position = 0;
  uint64_t commit_position = 0;  // first position of the atomic commit (append call) that wrote this event
  std::string_view stream;
  uint64_t revision = 0;
  Uuid id;
  std::string_view type;
  int64_t recorded_ns = 0;  // UTC, nanoseconds since the Unix epoch; never decreases along the log
  ContentType content_type = ContentType::kJson;
  std::string_view metadata;
  std::string_view data;
  bool payload_removed = false;
  // True when the data holds personal parts the store sealed under their subjects' keys (docs/privacy.md).
  // Reads give them opened, or redacted once their subject was forgotten; only Store::scan_stored gives
  // them as stored ({"$cairn.sealed": …} envelopes).
  bool sealed_parts = false;

  struct RecordedEvent to_owned() const;
};

// An event exactly as the log holds it (Store::scan_stored): personal parts stay sealed in data, and the
// digest salt is there, so that an export of it imports into the same chain (ImportEvent).
struct StoredEventView : EventView {
  // The per-event random salt of the payload digest (empty once the payload is removed). It protects
  // purged data only because it is purged with it.
  std::string_view digest_salt;
};

// A stored event that owns its bytes.
struct RecordedEvent {
  uint64_t position = 0;
  uint64_t commit_position = 0;  // first position of the atomic commit (append call) that wrote this event
  std::string stream;
  uint64_t revision = 0;
  Uuid id;
  std::string type;
  int64_t recorded_ns = 0;
  ContentType content_type = ContentType::kJson;
  std::string metadata;
  std::string data;
  bool payload_removed = false;
  bool sealed_parts = false;  // see EventView

  EventView view() const;  // borrows from this event: valid while it lives unchanged
};

// The category of a stream: the part of its name before the first '-', or the whole name.
std::string_view stream_category(std::string_view stream);

// RFC 3339 UTC with nanoseconds, e.g. 2026-11-26T07:06:27.123456789Z.
std::string format_rfc3339_ns(int64_t unix_ns);
Result<int64_t> parse_rfc3339_ns(std::string_view text);

}  // namespace cairn
