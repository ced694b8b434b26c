// The byte layout of segments and commits (docs/format.md is the specification; keep them in step).
//
// A segment file is a 64-byte segment header followed by commit frames. A commit frame is the unit of
// atomicity: a 64-byte frame header (header CRC, size, body CRC, first position, event count, chain head)
// and a body of event records. Each event record has a fixed part and names that are never removed, and a
// payload (salt, metadata, data) that only the privacy purge may remove; the hash chain covers the fixed
// part and names, which include a salted digest of the payload, so removal keeps the chain verifiable.
// Stateless functions plus an encoder object; an encoder is single-threaded.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "cairn/event.h"
#include "log/sha256.h"

namespace cairn::log {

inline constexpr char kSegmentMagic[8] = {'C', 'A', 'I', 'R', 'N', 'S', 'E', 'G'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderSize = 64;
inline constexpr size_t kFrameHeaderSize = 64;
inline constexpr size_t kEventFixedSize = 88;
inline constexpr size_t kSaltSize = 16;
inline constexpr uint16_t kFrameTypeCommit = 1;
inline constexpr uint8_t kEventFlagPayloadRemoved = 1;
// The data holds personal parts sealed by the store; the payload digest covers the data's redactable form
// (privacy/personal.h), so that a purge of those parts keeps the chain.
inline constexpr uint8_t kEventFlagSealedParts = 2;
// Some of those parts were purged (privacy/purge.h): their envelopes hold purged markers, same width.
inline constexpr uint8_t kEventFlagSealedPartsPurged = 4;

struct SegmentHeader {
  uint64_t first_position = 0;
  int64_t last_time_before = 0;  // recorded time of the last event before this segment (0 if none)
  Hash chain_before{};  // chain head after the last commit of the previous segment (zeros for the first)
};
void encode_segment_header(const SegmentHeader& h, uint8_t out[kSegmentHeaderSize]);
// Fails with a message saying which field is wrong (magic, version, size, checksum).
Result<SegmentHeader> decode_segment_header(const uint8_t* p, size_t available);

struct FrameHeader {
  uint32_t frame_size = 0;
  uint32_t body_crc = 0;
  uint16_t type = 0;
  uint16_t flags = 0;
  uint64_t first_position = 0;
  uint32_t event_count = 0;
  Hash chain_head{};
};

enum class FrameState : uint8_t {
  kOk,
  kEnd,      // no bytes left
  kTorn,     // an incomplete frame at the end of what was written: a crash cut it
  kCorrupt,  // a complete frame that fails a check: the bytes were altered
};
struct FrameCheck {
  FrameState state = FrameState::kOk;
  FrameHeader header;
  std::string problem;  // for kTorn / kCorrupt
};
// Checks the frame at p with `available` bytes to the end of the written data. With check_body the body
// CRC and the event records' sizes are checked too.
FrameCheck check_frame(const uint8_t* p, size_t available, bool check_body);

// Decodes the event records of a checked frame body. Calls visit(view, record_ptr, record_size) per event;
// stops early when visit returns false. Fails on inconsistent record sizes.
template <typename Visit>
Status for_each_event(const FrameHeader& h, const uint8_t* body, Visit&& visit);

// Decodes one event record (no checks beyond sizes).
Status decode_event(const uint8_t* rec, size_t available, uint64_t position, StoredEventView* out, uint32_t* rec_size);

// The payload digest the chain covers: SHA-256(salt || metadata || data).
Hash payload_digest(Sha256& sha, const uint8_t* salt, std::string_view metadata, std::string_view data);

// The digest of an event as the record's flags define it: over the data's redactable form when it holds
// sealed personal parts, else payload_digest.
Hash event_digest(Sha256& sha, const uint8_t* salt, std::string_view metadata, std::string_view data, bool sealed_parts);

struct EventInput {
  std::string_view stream;
  uint64_t revision = 0;
  Uuid id;
  std::string_view type;
  int64_t recorded_ns = 0;
  ContentType content_type = ContentType::kJson;
  std::string_view metadata;
  std::string_view data;
  const uint8_t* salt = nullptr;  // kSaltSize random bytes
  // payload_digest(salt, metadata, data), when the caller computed it already (off the writer's thread);
  // null: the encoder computes it.
  const uint8_t* digest = nullptr;
  uint8_t flags = 0;  // kEventFlagSealedParts
};

size_t encoded_event_size(const EventInput& e);

class CommitEncoder {
 public:
  // Appends one complete commit frame to out and returns the new chain head.
  Hash encode(std::string& out, uint64_t first_position, std::span<const EventInput> events, const Hash& prev);

 private:
  Sha256 digest_;
  Sha256 chain_;
};

// The chain step, shared by the encoder and the verifier: H(prev || frame header[16..32) || each event's
// record bytes [5, kEventFixedSize + names)).
class ChainHasher {
 public:
  explicit ChainHasher(Sha256& sha) : sha_(sha) {}
  void begin(const Hash& prev, const uint8_t* frame_header);
  void add_event(const uint8_t* record);
  Hash finish();

 private:
  Sha256& sha_;
};

// Little-endian helpers.
inline uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t load64(const uint8_t* p) { return load32(p) | (static_cast<uint64_t>(load32(p + 4)) << 32); }
inline void store16(uint8_t* p, uint16_t v) { p[0] = static_cast<uint8_t>(v); p[1] = static_cast<uint8_t>(v >> 8); }
inline void store32(uint8_t* p, uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i)); }
inline void store64(uint8_t* p, uint64_t v) { for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i)); }

template <typename Visit>
Status for_each_event(const FrameHeader& h, const uint8_t* body, Visit&& visit) {
  const uint8_t* p = body;
  size_t left = h.frame_size - kFrameHeaderSize;
  for (uint32_t i = 0; i < h.event_count; ++i) {
    StoredEventView v;
    uint32_t size = 0;
    CAIRN_RETURN_IF_ERROR(decode_event(p, left, h.first_position + i, &v, &size));
    v.commit_position = h.first_position;
    if (!visit(v, p, size)) return {};
    p += size;
    left -= size;
  }
  return {};
}

}  // namespace cairn::log
