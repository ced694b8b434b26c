#include "log/record.h"

#include <cstring>

#include <fmt/format.h>

#include "log/crc32c.h"
#include "log/sealed_form.h"

namespace cairn::log {
namespace {

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

}  // namespace

namespace {
uint32_t segment_header_crc(const uint8_t* p) { return crc32c_extend(crc32c(p, 12), p + 16, kSegmentHeaderSize - 16); }
}  // namespace

void encode_segment_header(const SegmentHeader& h, uint8_t out[kSegmentHeaderSize]) {
  std::memset(out, 0, kSegmentHeaderSize);
  std::memcpy(out, kSegmentMagic, 8);
  store16(out + 8, static_cast<uint16_t>(kFormatVersion));
  store16(out + 10, static_cast<uint16_t>(kSegmentHeaderSize));
  store64(out + 16, h.first_position);
  store64(out + 24, static_cast<uint64_t>(h.last_time_before));
  std::memcpy(out + 32, h.chain_before.data(), 32);
  store32(out + 12, segment_header_crc(out));
}

Result<SegmentHeader> decode_segment_header(const uint8_t* p, size_t available) {
  if (available < kSegmentHeaderSize)
    return Status::corruption(fmt::format("segment header is {} bytes, expected {}", available, kSegmentHeaderSize));
  if (std::memcmp(p, kSegmentMagic, 8) != 0) return Status::corruption("segment header: bad magic (not a Cairn segment)");
  if (segment_header_crc(p) != load32(p + 12)) return Status::corruption("segment header: checksum mismatch");
  const uint16_t version = load16(p + 8);
  if (version != kFormatVersion)
    return Status::corruption(fmt::format("segment header: format version {} is not supported (this build reads {})",
                                          version, kFormatVersion));
  if (load16(p + 10) != kSegmentHeaderSize) return Status::corruption("segment header: unexpected header size");
  SegmentHeader h;
  h.first_position = load64(p + 16);
  h.last_time_before = static_cast<int64_t>(load64(p + 24));
  std::memcpy(h.chain_before.data(), p + 32, 32);
  return h;
}

FrameCheck check_frame(const uint8_t* p, size_t available, bool check_body) {
  FrameCheck c;
  if (available == 0) {
    c.state = FrameState::kEnd;
    return c;
  }
  if (available < kFrameHeaderSize) {
    c.state = FrameState::kTorn;
    c.problem = fmt::format("incomplete commit header ({} of {} bytes)", available, kFrameHeaderSize);
    return c;
  }
  if (load32(p) != crc32c(p + 4, kFrameHeaderSize - 4)) {
    // A header written only in part and followed by nothing but zeros is a torn write (the file was
    // extended before its data reached the disk). Anything else is altered bytes.
    if (all_zero(p + kFrameHeaderSize, available - kFrameHeaderSize)) {
      c.state = FrameState::kTorn;
      c.problem = all_zero(p, kFrameHeaderSize) ? "zero-filled tail" : "incomplete commit header";
    } else {
      c.state = FrameState::kCorrupt;
      c.problem = "commit header checksum mismatch";
    }
    return c;
  }
  FrameHeader& h = c.header;
  h.frame_size = load32(p + 4);
  h.body_crc = load32(p + 8);
  h.type = load16(p + 12);
  h.flags = load16(p + 14);
  h.first_position = load64(p + 16);
  h.event_count = load32(p + 24);
  std::memcpy(h.chain_head.data(), p + 32, 32);
  if (h.type != kFrameTypeCommit || h.frame_size < kFrameHeaderSize || h.event_count == 0) {
    c.state = FrameState::kCorrupt;
    c.problem = fmt::format("commit header has impossible fields (type {}, size {}, events {})", h.type,
                            h.frame_size, h.event_count);
    return c;
  }
  if (h.frame_size > available) {
    c.state = FrameState::kTorn;
    c.problem = fmt::format("incomplete commit ({} of {} bytes written)", available, h.frame_size);
    return c;
  }
  if (check_body) {
    if (crc32c(p + kFrameHeaderSize, h.frame_size - kFrameHeaderSize) != h.body_crc) {
      // Zeros from inside the body to the very end of the file: the header reached the disk, later
      // pages did not (a file system may persist the new size before the data). That commit was never
      // synced, so never acknowledged: torn, not altered. The zero run must be at least a sector long
      // (or the whole body) so that a damaged commit that merely ends in a few zero bytes is not mistaken.
      size_t zeros = 0;
      while (zeros < available - kFrameHeaderSize && p[available - 1 - zeros] == 0) ++zeros;
      const size_t body = h.frame_size - kFrameHeaderSize;
      const size_t after = available - h.frame_size;
      // Lost writes are whole pages: the zero run must start at a 4 KiB page boundary inside the body.
      // p points into a mapping of the file that starts page-aligned, so address alignment is file-offset
      // alignment.
      const uintptr_t zero_start = reinterpret_cast<uintptr_t>(p) + available - zeros;
      const uintptr_t boundary = (zero_start + 4095) & ~uintptr_t{4095};
      const uintptr_t body_start = reinterpret_cast<uintptr_t>(p) + kFrameHeaderSize;
      const uintptr_t frame_end = reinterpret_cast<uintptr_t>(p) + h.frame_size;
      if (zeros > after && (zeros - after >= std::min<size_t>(512, body)) && boundary >= body_start &&
          boundary < frame_end) {
        c.state = FrameState::kTorn;
        c.problem = "incomplete commit (its last pages are zeros: written size without written data)";
        return c;
      }
      c.state = FrameState::kCorrupt;
      c.problem = "commit body checksum mismatch";
      return c;
    }
    size_t used = 0;
    Status st = for_each_event(h, p + kFrameHeaderSize, [&](const EventView&, const uint8_t*, uint32_t size) {
      used += size;
      return true;
    });
    if (!st.ok()) {
      c.state = FrameState::kCorrupt;
      c.problem = st.message();
      return c;
    }
    if (used != h.frame_size - kFrameHeaderSize) {
      c.state = FrameState::kCorrupt;
      c.problem = fmt::format("commit body holds {} bytes of events but is {} bytes", used,
                              h.frame_size - kFrameHeaderSize);
      return c;
    }
  }
  return c;
}

Status decode_event(const uint8_t* rec, size_t available, uint64_t position, StoredEventView* out, uint32_t* rec_size) {
  if (available < kEventFixedSize)
    return Status::corruption(fmt::format("event record at position {} is cut short", position));
  const uint32_t size = load32(rec);
  const uint8_t flags = rec[4];
  const uint16_t stream_len = load16(rec + 6);
  const uint16_t type_len = load16(rec + 8);
  const uint32_t meta_len = load32(rec + 12);
  const uint32_t data_len = load32(rec + 16);
  const bool removed = (flags & kEventFlagPayloadRemoved) != 0;
  const uint64_t names = kEventFixedSize + uint64_t{stream_len} + type_len;
  const uint64_t expect = removed ? names : names + kSaltSize + meta_len + data_len;
  if (size != expect || size > available)
    return Status::corruption(fmt::format("event record at position {} has inconsistent sizes", position));
  const uint8_t ct = rec[5];
  if (ct != static_cast<uint8_t>(ContentType::kJson) && ct != static_cast<uint8_t>(ContentType::kBinary))
    return Status::corruption(fmt::format("event record at position {} has unknown content type {}", position, ct));
  out->position = position;
  out->content_type = static_cast<ContentType>(ct);
  out->revision = load64(rec + 24);
  out->recorded_ns = static_cast<int64_t>(load64(rec + 32));
  std::memcpy(out->id.bytes.data(), rec + 40, 16);
  const char* s = reinterpret_cast<const char*>(rec + kEventFixedSize);
  out->stream = std::string_view(s, stream_len);
  out->type = std::string_view(s + stream_len, type_len);
  out->payload_removed = removed;
  out->sealed_parts = (flags & kEventFlagSealedParts) != 0;
  if (removed) {
    out->metadata = {};
    out->data = {};
    out->digest_salt = {};
  } else {
    const char* pl = s + stream_len + type_len;
    out->digest_salt = std::string_view(pl, kSaltSize);
    out->metadata = std::string_view(pl + kSaltSize, meta_len);
    out->data = std::string_view(pl + kSaltSize + meta_len, data_len);
  }
  *rec_size = size;
  return {};
}

Hash payload_digest(Sha256& sha, const uint8_t* salt, std::string_view metadata, std::string_view data) {
  sha.update(salt, kSaltSize);
  sha.update(metadata);
  sha.update(data);
  return sha.final();
}

Hash event_digest(Sha256& sha, const uint8_t* salt, std::string_view metadata, std::string_view data, bool sealed_parts) {
  if (!sealed_parts) return payload_digest(sha, salt, metadata, data);
  // The format defines this digest over the redactable form (docs/format.md, log/sealed_form.h). Stored data that is not valid sealed JSON gets a digest no
  // valid payload has (the all-0xFF hash), which verify then reports.
  auto form = redactable_form(data);
  if (!form.ok()) {
    Hash bad;
    bad.fill(0xFF);
    return bad;
  }
  return payload_digest(sha, salt, metadata, *form);
}

size_t encoded_event_size(const EventInput& e) {
  return kEventFixedSize + e.stream.size() + e.type.size() + kSaltSize + e.metadata.size() + e.data.size();
}

void ChainHasher::begin(const Hash& prev, const uint8_t* frame_header) {
  sha_.update(prev.data(), prev.size());
  sha_.update(frame_header + 16, 16);
}

void ChainHasher::add_event(const uint8_t* record) {
  const size_t names = load16(record + 6) + size_t{load16(record + 8)};
  sha_.update(record + 5, kEventFixedSize - 5 + names);
}

Hash ChainHasher::finish() { return sha_.final(); }

Hash CommitEncoder::encode(std::string& out, uint64_t first_position, std::span<const EventInput> events,
                           const Hash& prev) {
  size_t total = kFrameHeaderSize;
  for (const auto& e : events) total += encoded_event_size(e);
  const size_t start = out.size();
  out.resize(start + total);
  auto* base = reinterpret_cast<uint8_t*>(out.data()) + start;
  std::memset(base, 0, kFrameHeaderSize);
  store32(base + 4, static_cast<uint32_t>(total));
  store16(base + 12, kFrameTypeCommit);
  store64(base + 16, first_position);
  store32(base + 24, static_cast<uint32_t>(events.size()));

  uint8_t* p = base + kFrameHeaderSize;
  for (const auto& e : events) {
    const size_t size = encoded_event_size(e);
    std::memset(p, 0, kEventFixedSize);
    store32(p, static_cast<uint32_t>(size));
    p[4] = e.flags;
    p[5] = static_cast<uint8_t>(e.content_type);
    store16(p + 6, static_cast<uint16_t>(e.stream.size()));
    store16(p + 8, static_cast<uint16_t>(e.type.size()));
    store32(p + 12, static_cast<uint32_t>(e.metadata.size()));
    store32(p + 16, static_cast<uint32_t>(e.data.size()));
    store64(p + 24, e.revision);
    store64(p + 32, static_cast<uint64_t>(e.recorded_ns));
    std::memcpy(p + 40, e.id.bytes.data(), 16);
    if (e.digest != nullptr) {
      std::memcpy(p + 56, e.digest, 32);
    } else {
      const Hash d = event_digest(digest_, e.salt, e.metadata, e.data, (e.flags & kEventFlagSealedParts) != 0);
      std::memcpy(p + 56, d.data(), 32);
    }
    uint8_t* q = p + kEventFixedSize;
    std::memcpy(q, e.stream.data(), e.stream.size());
    q += e.stream.size();
    std::memcpy(q, e.type.data(), e.type.size());
    q += e.type.size();
    std::memcpy(q, e.salt, kSaltSize);
    q += kSaltSize;
    if (!e.metadata.empty()) std::memcpy(q, e.metadata.data(), e.metadata.size());
    q += e.metadata.size();
    if (!e.data.empty()) std::memcpy(q, e.data.data(), e.data.size());
    p += size;
  }

  ChainHasher chain(chain_);
  chain.begin(prev, base);
  p = base + kFrameHeaderSize;
  for (size_t i = 0; i < events.size(); ++i) {
    chain.add_event(p);
    p += load32(p);
  }
  const Hash head = chain.finish();
  std::memcpy(base + 32, head.data(), 32);
  store32(base + 8, crc32c(base + kFrameHeaderSize, total - kFrameHeaderSize));
  store32(base, crc32c(base + 4, kFrameHeaderSize - 4));
  return head;
}

}  // namespace cairn::log
