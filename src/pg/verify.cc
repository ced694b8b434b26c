#include "pg/verify.h"

#include <cstring>
#include <unordered_map>

#include <fmt/format.h>

#include "log/record.h"
#include "log/sha256.h"
#include "pg/client.h"

namespace cairn::pg {
namespace {

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct Seal {
  int64_t no;
  uint64_t first, end;
  std::string before, after;
};

}  // namespace

Result<VerifyReport> verify_seals(const std::string& conninfo, const ProgressFn& progress) {
  auto conn = Connection::connect(conninfo);
  if (!conn.ok()) return conn.status();
  Connection& c = **conn;
  // One snapshot for the whole check, so concurrent appends and seals cannot make it inconsistent.
  if (auto r = c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !r.ok()) return r.status();
  auto sr = c.query("SELECT seal_no, first_position, end_position, chain_before, chain_after FROM cairn.seals "
                    "ORDER BY seal_no", Params());
  if (!sr.ok()) return sr.status();
  std::vector<Seal> seals;
  for (int i = 0; i < sr->rows(); ++i)
    seals.push_back(Seal{sr->int8(i, 0), static_cast<uint64_t>(sr->int8(i, 1)), static_cast<uint64_t>(sr->int8(i, 2)),
                         std::string(sr->bytes(i, 3)), std::string(sr->bytes(i, 4))});
  auto hr = c.query("SELECT next_position FROM cairn.head WHERE id", Params());
  if (!hr.ok()) return hr.status();
  const uint64_t head = static_cast<uint64_t>(hr->int8(0, 0));

  VerifyReport rep;
  rep.segments = seals.size();  // on PostgreSQL: seals
  const auto fail = [&](uint64_t position, std::string problem) {
    rep.ok = false;
    rep.file = "cairn.events";
    rep.position = position;
    rep.problem = std::move(problem);
    return rep;
  };
  log::Sha256 chain, digest;
  std::string prev(32, '\0');
  uint64_t pos = 0;
  size_t seal_i = 0;
  bool in_seal = false;
  std::unordered_map<std::string, uint64_t> next_revision;
  int64_t last_ns = 0;
  uint64_t last_commit = 0;
  std::string record;
  const auto begin_seal = [&]() -> std::optional<std::string> {
    const Seal& s = seals[seal_i];
    if (s.no != static_cast<int64_t>(seal_i) + 1) return fmt::format("seal {} follows seal {}", s.no, seal_i);
    if (s.first != pos) return fmt::format("seal {} starts at position {}, the one before ended at {}", s.no, s.first, pos);
    if (s.before != prev) return fmt::format("seal {} does not continue the chain of the seal before it", s.no);
    if (s.end > head) return fmt::format("seal {} ends at {}, past the head {}", s.no, s.end, head);
    chain.update(prev);
    in_seal = true;
    return std::nullopt;
  };
  if (!seals.empty())
    if (auto p = begin_seal()) return fail(pos, *p);
  while (pos < head) {
    Params p;
    p.int8(static_cast<int64_t>(pos));
    auto r = c.prepared("cairn_verify_page",
                        "SELECT position, commit_position, stream, revision, event_id, event_type, recorded_ns, "
                        "content_type, flags, metadata, data, salt, digest FROM cairn.events WHERE position >= $1 "
                        "ORDER BY position LIMIT 5000",
                        p);
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return fail(pos, fmt::format("positions {} to {} are missing (the head is {})", pos, head - 1, head));
    for (int i = 0; i < r->rows() && pos < head; ++i) {
      const uint64_t position = static_cast<uint64_t>(r->int8(i, 0));
      if (position != pos) return fail(pos, fmt::format("position {} is missing (the next row is {})", pos, position));
      const uint64_t commit = static_cast<uint64_t>(r->int8(i, 1));
      const std::string_view stream = r->bytes(i, 2);
      const uint64_t revision = static_cast<uint64_t>(r->int8(i, 3));
      const int64_t ns = r->int8(i, 6);
      const int16_t flags = r->int2(i, 8);
      const std::string_view metadata = r->bytes(i, 9), data = r->bytes(i, 10), salt = r->bytes(i, 11),
                             stored = r->bytes(i, 12);
      if (commit > position || commit < last_commit || (commit != last_commit && commit != position))
        return fail(pos, fmt::format("commit position {} is not the start of a commit that reaches here", commit));
      last_commit = commit;
      auto [it, fresh] = next_revision.try_emplace(std::string(stream), 0);
      if (revision != it->second)
        return fail(pos, fmt::format("stream '{}' revision {} where {} was due", stream, revision, it->second));
      it->second = revision + 1;
      if (ns < last_ns) return fail(pos, "the recorded time goes back");
      last_ns = ns;
      if (salt.size() != log::kSaltSize || stored.size() != 32) return fail(pos, "the salt or the digest has the wrong size");
      const log::Hash d = log::event_digest(digest, reinterpret_cast<const uint8_t*>(salt.data()), metadata, data,
                                            (flags & log::kEventFlagSealedParts) != 0);
      if (std::memcmp(d.data(), stored.data(), 32) != 0)
        return fail(pos, "the payload does not match its digest (the data or metadata changed after it was committed)");
      if (in_seal) {
        record.clear();
        put_be(record, position, 8);
        put_be(record, commit, 8);
        put_be(record, revision, 8);
        put_be(record, static_cast<uint64_t>(ns), 8);
        record.append(r->bytes(i, 4));
        put_be(record, static_cast<uint16_t>(r->int2(i, 7)), 2);
        put_be(record, static_cast<uint16_t>(flags & ~log::kEventFlagSealedPartsPurged), 2);
        record.append(stored);
        put_be(record, stream.size(), 4);
        record.append(stream);
        put_be(record, r->bytes(i, 5).size(), 4);
        record.append(r->bytes(i, 5));
        chain.update(record);
      }
      ++pos;
      ++rep.events;
      rep.bytes += metadata.size() + data.size();
      if (in_seal && pos == seals[seal_i].end) {
        const log::Hash h = chain.final();
        const std::string got(reinterpret_cast<const char*>(h.data()), 32);
        if (got != seals[seal_i].after)
          return fail(pos - 1, fmt::format("seal {} (positions {} to {}) does not match the events: they were changed, "
                                           "added or removed after they were sealed", seals[seal_i].no,
                                           seals[seal_i].first, seals[seal_i].end - 1));
        prev = got;
        ++rep.commits;
        in_seal = false;
        if (++seal_i < seals.size())
          if (auto p2 = begin_seal()) return fail(pos, *p2);
      }
    }
    if (progress) progress(pos, head);
  }
  if (in_seal) return fail(pos, fmt::format("seal {} ends at {}, but the log ends at {}", seals[seal_i].no, seals[seal_i].end, pos));
  rep.streams = next_revision.size();
  rep.chain_head_hex = log::hex(reinterpret_cast<const uint8_t*>(prev.data()), 32);
  (void)c.exec("COMMIT");
  return rep;
}

}  // namespace cairn::pg
