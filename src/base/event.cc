#include <openssl/rand.h>

#include <atomic>
#include <chrono>
#include <algorithm>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "cairn/event.h"
#include "cairn/store.h"
#include "base/mutex.h"

namespace cairn {

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<Uuid> Uuid::parse(std::string_view text) {
  if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-')
    return Status::invalid_argument(fmt::format("'{}' is not a UUID (expected the form 8-4-4-4-12 hex digits)",
                                                text.substr(0, 64)));
  Uuid u;
  size_t j = 0;
  for (size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      ++i;
      continue;
    }
    int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0)
      return Status::invalid_argument(fmt::format("'{}' is not a UUID: bad hex digit at offset {}", text, hi < 0 ? i : i + 1));
    u.bytes[j++] = static_cast<uint8_t>(hi * 16 + lo);
    i += 2;
  }
  return u;
}

void Uuid::generate_v7(Uuid* out, size_t n) {
  // RFC 9562 §5.7: 48-bit Unix milliseconds, version 7, 12 bits of a per-process counter (monotonic within
  // a millisecond, method 1 of §6.2), variant, 62 random bits. One RAND_bytes call for the whole batch:
  // each call takes OpenSSL's DRBG lock and a getpid() fork check.
  static base::Mutex mu;
  static uint64_t last_ms = 0;
  static uint16_t counter = 0;
  constexpr size_t kChunk = 512;
  uint8_t random[kChunk * 8];
  for (size_t done = 0; done < n; done += kChunk) {
    const size_t m = std::min(kChunk, n - done);
    if (RAND_bytes(random, static_cast<int>(m * 8)) != 1) throw std::runtime_error("RAND_bytes failed");
    const uint64_t now_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    base::MutexLock g(mu);
    for (size_t i = 0; i < m; ++i) {
      uint64_t ms = now_ms;
      if (ms <= last_ms) {
        ms = last_ms;
        if (++counter > 0x0fff) {  // counter exhausted: borrow the next millisecond
          ++ms;
          counter = 0;
        }
      } else {
        counter = 0;
      }
      last_ms = ms;
      Uuid& u = out[done + i];
      std::memcpy(u.bytes.data() + 8, random + i * 8, 8);
      for (int k = 0; k < 6; ++k) u.bytes[k] = static_cast<uint8_t>(ms >> (8 * (5 - k)));
      u.bytes[6] = static_cast<uint8_t>(0x70 | ((counter >> 8) & 0x0f));
      u.bytes[7] = static_cast<uint8_t>(counter & 0xff);
      u.bytes[8] = static_cast<uint8_t>(0x80 | (u.bytes[8] & 0x3f));
    }
  }
}

Uuid Uuid::generate_v7() {
  Uuid u;
  generate_v7(&u, 1);
  return u;
}

std::string Uuid::to_string() const {
  static constexpr char d[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(d[bytes[i] >> 4]);
    s.push_back(d[bytes[i] & 15]);
  }
  return s;
}

bool Uuid::is_nil() const {
  for (auto b : bytes)
    if (b) return false;
  return true;
}

std::string_view content_type_name(ContentType type) {
  return type == ContentType::kJson ? "application/json" : "application/octet-stream";
}

Result<ContentType> parse_content_type(std::string_view name) {
  if (name == "application/json" || name == "json") return ContentType::kJson;
  if (name == "application/octet-stream" || name == "binary") return ContentType::kBinary;
  return Status::invalid_argument(fmt::format(
      "content type '{}' is not supported (use application/json or application/octet-stream)", name.substr(0, 100)));
}

RecordedEvent EventView::to_owned() const {
  RecordedEvent e;
  e.position = position;
  e.commit_position = commit_position;
  e.stream = std::string(stream);
  e.revision = revision;
  e.id = id;
  e.type = std::string(type);
  e.recorded_ns = recorded_ns;
  e.content_type = content_type;
  e.metadata = std::string(metadata);
  e.data = std::string(data);
  e.payload_removed = payload_removed;
  e.sealed_parts = sealed_parts;
  return e;
}

EventView RecordedEvent::view() const {
  EventView v;
  v.position = position;
  v.commit_position = commit_position;
  v.stream = stream;
  v.revision = revision;
  v.id = id;
  v.type = type;
  v.recorded_ns = recorded_ns;
  v.content_type = content_type;
  v.metadata = metadata;
  v.data = data;
  v.payload_removed = payload_removed;
  v.sealed_parts = sealed_parts;
  return v;
}

std::string_view stream_category(std::string_view stream) {
  auto dash = stream.find('-');
  return dash == std::string_view::npos ? stream : stream.substr(0, dash);
}

std::string format_rfc3339_ns(int64_t unix_ns) {
  int64_t secs = unix_ns / 1'000'000'000;
  int64_t frac = unix_ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

Result<int64_t> parse_rfc3339_ns(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  auto bad = [&] {
    return Status::invalid_argument(fmt::format("'{}' is not an RFC 3339 time", text.substr(0, 64)));
  };
  auto num = [&](size_t at, size_t n, int* out) {
    if (at + n > text.size()) return false;
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      v = v * 10 + (text[i] - '0');
    }
    *out = v;
    return true;
  };
  int Y, M, D, h, m, s;
  if (!num(0, 4, &Y) || text.size() < 20 || text[4] != '-' || !num(5, 2, &M) || text[7] != '-' || !num(8, 2, &D) ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || !num(11, 2, &h) || text[13] != ':' ||
      !num(14, 2, &m) || text[16] != ':' || !num(17, 2, &s))
    return bad();
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || s > 60) return bad();
  size_t i = 19;
  int64_t frac = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    int digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (digits < 9) {
        frac = frac * 10 + (text[i] - '0');
        ++digits;
      }
      ++i;
    }
    if (digits == 0) return bad();
    for (; digits < 9; ++digits) frac *= 10;
  }
  int64_t offset_s = 0;
  if (i < text.size() && (text[i] == 'Z' || text[i] == 'z')) {
    ++i;
  } else if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    int oh, om;
    if (!num(i + 1, 2, &oh) || i + 3 >= text.size() || text[i + 3] != ':' || !num(i + 4, 2, &om)) return bad();
    offset_s = (oh * 3600 + om * 60) * (text[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return bad();
  }
  if (i != text.size()) return bad();
  std::tm tm{};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = s;
  const int64_t secs = static_cast<int64_t>(timegm(&tm)) - offset_s;
  // Nanoseconds since the epoch fit in int64 from 1677-09-21 to 2262-04-11 only.
  constexpr int64_t kMaxSecs = INT64_MAX / 1'000'000'000 - 1;
  if (secs > kMaxSecs || secs < -kMaxSecs)
    return Status::invalid_argument(
        fmt::format("'{}' is outside the times Cairn can represent (1677-09-22 to 2262-04-11 UTC)", text.substr(0, 64)));
  return secs * 1'000'000'000 + frac;
}

std::string_view durability_name(Durability d) { return d == Durability::kFsync ? "fsync" : "none"; }

std::string ExpectedRevision::to_string() const {
  switch (kind) {
    case Kind::kAny: return "any";
    case Kind::kNoStream: return "no_stream";
    case Kind::kExists: return "exists";
    case Kind::kExact: return std::to_string(revision);
  }
  return "?";
}

bool Filter::matches(std::string_view stream, std::string_view type) const {
  if (!types.empty()) {
    bool any = false;
    for (const auto& t : types)
      if (t == type) {
        any = true;
        break;
      }
    if (!any) return false;
  }
  if (!type_prefix.empty() && !type.starts_with(type_prefix)) return false;
  if (!stream_prefix.empty() && !stream.starts_with(stream_prefix)) return false;
  if (!category.empty() && stream_category(stream) != category) return false;
  return true;
}

}  // namespace cairn
