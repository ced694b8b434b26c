// The record codec and CRC-32C, tested below the store: encode, check, decode, and classify damage.
#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "log/crc32c.h"
#include "log/record.h"
#include "log/sha256.h"

namespace cairn::log {
namespace {

// An independent table-driven CRC-32C (reflected Castagnoli polynomial 0x82F63B78), written here so the
// production code (hardware crc32 instruction when the CPU has SSE4.2) is checked against a second
// implementation rather than against itself.
uint32_t reference_crc32c(const void* data, size_t n, uint32_t crc = 0) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  EXPECT_EQ(crc32c("a"), 0xC1D04330u);
  // RFC 3720 (iSCSI) appendix B.4.
  std::array<uint8_t, 32> buf{};
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x8A9136AAu);
  buf.fill(0xFF);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x62A8AB43u);
  for (size_t i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x46DD794Eu);
  for (size_t i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x113FDB5Cu);
  // The reference implementation agrees on the same vectors (so the comparisons below mean something).
  EXPECT_EQ(reference_crc32c("123456789", 9), 0xE3069283u);
}

TEST(Crc32c, ProductionPathAgreesWithTableImplementation) {
  std::mt19937_64 rng(12345);
  std::vector<uint8_t> buf(4096 + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  // Every length up to 300 at every alignment 0..7 (exercises the 8-byte loop and the byte tail), then
  // some long ones.
  for (size_t align = 0; align < 8; ++align)
    for (size_t n = 0; n <= 300; ++n)
      ASSERT_EQ(crc32c(buf.data() + align, n), reference_crc32c(buf.data() + align, n))
          << "align " << align << " length " << n << " hardware " << crc32c_is_hardware();
  for (size_t n : {1000u, 4095u, 4096u})
    ASSERT_EQ(crc32c(buf.data() + 3, n), reference_crc32c(buf.data() + 3, n)) << n;
  // extend() chains: crc(a||b) == extend(crc(a), b).
  for (size_t split = 0; split <= 100; ++split)
    ASSERT_EQ(crc32c_extend(crc32c(buf.data(), split), buf.data() + split, 100 - split), crc32c(buf.data(), 100));
  RecordProperty("crc32c_hardware", crc32c_is_hardware() ? "yes" : "no");
}

// ---------------------------------------------------------------------------------------------------------

struct Owned {
  std::string stream, type, metadata, data;
  uint64_t revision = 0;
  Uuid id;
  int64_t recorded_ns = 0;
  ContentType ct = ContentType::kJson;
  std::array<uint8_t, kSaltSize> salt{};
};

std::vector<Owned> sample_events() {
  std::vector<Owned> v(4);
  v[0] = {"order-1", "OrderPlaced", R"({"correlation_id":"c1"})", R"({"total":12.5})", 0, {}, 1'700'000'000'000'000'001, ContentType::kJson, {}};
  v[1] = {"order-1", "OrderPaid", "", R"({})", 1, {}, 1'700'000'000'000'000'001, ContentType::kJson, {}};
  v[2] = {"customer-7", "Blob", "", std::string("\0\x01\xff binary\0", 11), 41, {}, 1'700'000'000'000'000'002, ContentType::kBinary, {}};
  v[3] = {"x", "T", "", "", 0, {}, 1'700'000'000'000'000'003, ContentType::kBinary, {}};
  for (size_t i = 0; i < v.size(); ++i) {
    for (size_t b = 0; b < 16; ++b) v[i].id.bytes[b] = static_cast<uint8_t>(i * 16 + b + 1);
    for (size_t b = 0; b < kSaltSize; ++b) v[i].salt[b] = static_cast<uint8_t>(0xC0 + i + b);
  }
  return v;
}

std::vector<EventInput> inputs_of(const std::vector<Owned>& v) {
  std::vector<EventInput> in;
  for (const auto& e : v)
    in.push_back(EventInput{e.stream, e.revision, e.id, e.type, e.recorded_ns, e.ct, e.metadata, e.data, e.salt.data()});
  return in;
}

const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

TEST(RecordCodec, RoundTrip) {
  const auto events = sample_events();
  const auto in = inputs_of(events);
  Hash prev{};
  for (size_t i = 0; i < prev.size(); ++i) prev[i] = static_cast<uint8_t>(i * 3);
  CommitEncoder enc;
  std::string out = "prefix";  // the encoder appends after whatever is there
  const Hash head = enc.encode(out, 1000, in, prev);
  const std::string frame = out.substr(6);
  ASSERT_EQ(out.substr(0, 6), "prefix");

  size_t expect_size = kFrameHeaderSize;
  for (const auto& e : in) expect_size += encoded_event_size(e);
  ASSERT_EQ(frame.size(), expect_size);

  FrameCheck c = check_frame(u8(frame), frame.size(), true);
  ASSERT_EQ(c.state, FrameState::kOk) << c.problem;
  EXPECT_EQ(c.header.frame_size, frame.size());
  EXPECT_EQ(c.header.type, kFrameTypeCommit);
  EXPECT_EQ(c.header.first_position, 1000u);
  EXPECT_EQ(c.header.event_count, events.size());
  EXPECT_EQ(c.header.chain_head, head);
  EXPECT_EQ(c.header.body_crc, crc32c(frame.data() + kFrameHeaderSize, frame.size() - kFrameHeaderSize));
  EXPECT_EQ(load32(u8(frame)), crc32c(frame.data() + 4, kFrameHeaderSize - 4));

  // The chain head follows from prev, the header's position fields and each record's covered bytes.
  Sha256 sha;
  ChainHasher chain(sha);
  chain.begin(prev, u8(frame));
  size_t i = 0;
  Sha256 dsha;
  Status st = for_each_event(c.header, u8(frame) + kFrameHeaderSize, [&](const StoredEventView& v, const uint8_t* rec, uint32_t size) {
    const Owned& e = events[i];
    EXPECT_EQ(v.position, 1000 + i);
    EXPECT_EQ(v.stream, e.stream);
    EXPECT_EQ(v.revision, e.revision);
    EXPECT_EQ(v.id, e.id);
    EXPECT_EQ(v.type, e.type);
    EXPECT_EQ(v.recorded_ns, e.recorded_ns);
    EXPECT_EQ(v.content_type, e.ct);
    EXPECT_EQ(v.metadata, e.metadata);
    EXPECT_EQ(v.data, e.data);
    EXPECT_FALSE(v.payload_removed);
    EXPECT_EQ(v.digest_salt, std::string_view(reinterpret_cast<const char*>(e.salt.data()), kSaltSize));
    EXPECT_EQ(size, encoded_event_size(in[i]));
    const Hash d = payload_digest(dsha, e.salt.data(), e.metadata, e.data);
    EXPECT_EQ(0, std::memcmp(d.data(), rec + 56, 32)) << "payload digest of event " << i;
    // decode_event agrees with the iteration.
    StoredEventView w;
    uint32_t wsize = 0;
    EXPECT_TRUE(decode_event(rec, size, v.position, &w, &wsize).ok());
    EXPECT_EQ(wsize, size);
    EXPECT_EQ(w.data, v.data);
    chain.add_event(rec);
    ++i;
    return true;
  });
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(i, events.size());
  EXPECT_EQ(chain.finish(), head);

  // A second commit continues the chain from the first and is framed independently.
  std::string two = frame;
  const Hash head2 = enc.encode(two, 1000 + events.size(), std::span(in).subspan(0, 1), head);
  FrameCheck c1 = check_frame(u8(two), two.size(), true);
  ASSERT_EQ(c1.state, FrameState::kOk);
  EXPECT_EQ(c1.header.frame_size, frame.size());
  FrameCheck c2 = check_frame(u8(two) + frame.size(), two.size() - frame.size(), true);
  ASSERT_EQ(c2.state, FrameState::kOk) << c2.problem;
  EXPECT_EQ(c2.header.first_position, 1000 + events.size());
  EXPECT_EQ(c2.header.chain_head, head2);
  EXPECT_NE(head2, head);
  EXPECT_EQ(check_frame(u8(two) + two.size(), 0, true).state, FrameState::kEnd);
}

TEST(RecordCodec, SegmentHeaderRoundTripAndEveryBitFlipIsDetected) {
  SegmentHeader h;
  h.first_position = 123456789;
  h.last_time_before = 1'700'000'000'123'456'789;
  for (size_t i = 0; i < 32; ++i) h.chain_before[i] = static_cast<uint8_t>(255 - i);
  uint8_t buf[kSegmentHeaderSize];
  encode_segment_header(h, buf);
  auto d = decode_segment_header(buf, sizeof buf);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d->first_position, h.first_position);
  EXPECT_EQ(d->last_time_before, h.last_time_before);
  EXPECT_EQ(d->chain_before, h.chain_before);
  EXPECT_FALSE(decode_segment_header(buf, kSegmentHeaderSize - 1).ok());
  for (size_t byte = 0; byte < kSegmentHeaderSize; ++byte)
    for (int bit = 0; bit < 8; ++bit) {
      uint8_t b[kSegmentHeaderSize];
      std::memcpy(b, buf, sizeof b);
      b[byte] ^= static_cast<uint8_t>(1u << bit);
      auto r = decode_segment_header(b, sizeof b);
      ASSERT_FALSE(r.ok()) << "flip of byte " << byte << " bit " << bit << " went unnoticed";
      EXPECT_EQ(r.status().code(), ErrorCode::kCorruption);
      EXPECT_FALSE(r.status().message().empty());
    }
}

std::string sample_frame() {
  const auto events = sample_events();
  const auto in = inputs_of(events);
  CommitEncoder enc;
  std::string out;
  enc.encode(out, 7, in, Hash{});
  return out;
}

TEST(RecordCodec, EveryPrefixOfAFrameIsTorn) {
  const std::string f = sample_frame();
  EXPECT_EQ(check_frame(u8(f), 0, true).state, FrameState::kEnd);
  for (size_t n = 1; n < f.size(); ++n) {
    FrameCheck c = check_frame(u8(f), n, true);
    ASSERT_EQ(c.state, FrameState::kTorn) << "prefix of " << n << " of " << f.size() << " bytes: " << c.problem;
    EXPECT_FALSE(c.problem.empty());
  }
  EXPECT_EQ(check_frame(u8(f), f.size(), true).state, FrameState::kOk);
}

TEST(RecordCodec, ZeroFilledBytesAreTornNotCorrupt) {
  // The file was extended (with zeros) before its data reached the disk.
  for (size_t n : {1u, 63u, 64u, 65u, 200u, 4096u}) {
    const std::string zeros(n, '\0');
    FrameCheck c = check_frame(u8(zeros), zeros.size(), true);
    EXPECT_EQ(c.state, FrameState::kTorn) << n << " zero bytes: " << c.problem;
  }
  // Part of a header followed by zeros.
  const std::string f = sample_frame();
  for (size_t n = 1; n < kFrameHeaderSize; ++n) {
    std::string g = f.substr(0, n) + std::string(f.size() - n, '\0');
    FrameCheck c = check_frame(u8(g), g.size(), true);
    EXPECT_EQ(c.state, FrameState::kTorn) << n << " header bytes then zeros: " << c.problem;
  }
}

TEST(RecordCodec, EveryBitFlipInACompleteFrameIsCorrupt) {
  const std::string f = sample_frame();
  for (size_t byte = 0; byte < f.size(); ++byte)
    for (int bit = 0; bit < 8; ++bit) {
      std::string g = f;
      g[byte] = static_cast<char>(static_cast<uint8_t>(g[byte]) ^ (1u << bit));
      FrameCheck c = check_frame(u8(g), g.size(), true);
      ASSERT_EQ(c.state, FrameState::kCorrupt) << "flip of byte " << byte << " bit " << bit << ": " << c.problem;
      EXPECT_FALSE(c.problem.empty());
      // Followed by more data (a frame in the middle of a segment), still corrupt, never torn or ok.
      std::string h = g + f;
      FrameCheck c2 = check_frame(u8(h), h.size(), true);
      ASSERT_EQ(c2.state, FrameState::kCorrupt) << "flip of byte " << byte << " bit " << bit << " (mid-segment)";
    }
}

TEST(RecordCodec, HeaderOnlyCheckAcceptsBodyDamageButFullCheckDoesNot) {
  std::string f = sample_frame();
  f[kFrameHeaderSize + 100] ^= 0x10;
  EXPECT_EQ(check_frame(u8(f), f.size(), false).state, FrameState::kOk);
  FrameCheck c = check_frame(u8(f), f.size(), true);
  EXPECT_EQ(c.state, FrameState::kCorrupt);
  EXPECT_NE(c.problem.find("checksum"), std::string::npos) << c.problem;
}

TEST(RecordCodec, InconsistentRecordSizesWithValidCrcsAreCorrupt) {
  // A writer bug (or a forged frame) with consistent checksums but a record size that disagrees.
  std::string f = sample_frame();
  auto* p = reinterpret_cast<uint8_t*>(f.data());
  store32(p + kFrameHeaderSize, load32(p + kFrameHeaderSize) + 1);  // first record claims one byte more
  store32(p + 8, crc32c(p + kFrameHeaderSize, f.size() - kFrameHeaderSize));
  store32(p, crc32c(p + 4, kFrameHeaderSize - 4));
  FrameCheck c = check_frame(p, f.size(), true);
  EXPECT_EQ(c.state, FrameState::kCorrupt) << c.problem;
  // An event count larger than the body holds.
  std::string g = sample_frame();
  auto* q = reinterpret_cast<uint8_t*>(g.data());
  store32(q + 24, load32(q + 24) + 1);
  store32(q, crc32c(q + 4, kFrameHeaderSize - 4));
  EXPECT_EQ(check_frame(q, g.size(), true).state, FrameState::kCorrupt);
}

}  // namespace
}  // namespace cairn::log
