#include "cli/commands.h"
#include "cli/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "cairn/maintenance.h"
#include "cli/ndjson.h"
#include "codec/verify_report.h"
#include "privacy/keystore.h"

namespace cairn::cli {

Result<Options> backend_options(const StoreFlags& f, Durability durability, bool read_only) {
  Options o;
  if (f.backend.empty()) {
    EmbeddedOptions e;
    e.dir = f.data;
    e.durability = durability;
    e.read_only = read_only;
    e.segment_size = f.segment_size;
    o = std::move(e);
  } else {
    PostgresOptions p;
    p.connection = f.backend;
    o = std::move(p);
  }
  if (f.key_store.empty()) return o;
  auto master = privacy::load_master_key_text(f.master_key_file);
  if (!master.ok()) return master.status();
  // The embedded store checks this itself; on PostgreSQL, --data still holds projection state.
  CAIRN_RETURN_IF_ERROR(privacy::check_key_store_outside(f.key_store, f.data));
  common_options(o).key_store_dir = f.key_store;
  common_options(o).master_key = std::move(*master);
  return o;
}

namespace {

// The store of a reading command: the embedded one in dir, opened read-only, or PostgreSQL.
Options read_only_options(const std::string& dir, const std::string& backend) {
  if (!backend.empty()) {
    PostgresOptions p;
    p.connection = backend;
    return p;
  }
  EmbeddedOptions e;
  e.dir = dir;
  e.read_only = true;
  return e;
}

int fail(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
  const auto c = st.code();
  return (c == ErrorCode::kInvalidArgument || c == ErrorCode::kLimitExceeded || c == ErrorCode::kInvalidEvent) ? 2 : 1;
}



Result<ExpectedRevision> parse_expected(std::string_view s) {
  if (s == "any") return ExpectedRevision::any();
  if (s == "no_stream") return ExpectedRevision::no_stream();
  if (s == "exists") return ExpectedRevision::exists();
  uint64_t v = 0;
  if (s.empty()) return Status::invalid_argument("--expected: empty");
  for (char c : s) {
    if (c < '0' || c > '9')
      return Status::invalid_argument(
          fmt::format("--expected: '{}' is not any, no_stream, exists or a revision number", s));
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return ExpectedRevision::exact(v);
}

}  // namespace

Result<Options> store_options(const StoreFlags& f, bool read_only) {
  if (f.durability != "fsync" && f.durability != "none")
    return Status::invalid_argument(fmt::format("--durability: '{}' is not fsync or none", f.durability));
  auto o = backend_options(f, f.durability == "none" ? Durability::kNone : Durability::kFsync, read_only);
  if (!o.ok()) return o.status();
  if (f.durability == "none" && !read_only)
    std::fprintf(stderr, "durability: none — appends are not synced to disk (tests and benchmarks only)\n");
  return o;
}

Result<std::string> read_input(const std::string& path) {
  std::ostringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::not_found(fmt::format("cannot read {}", path));
  ss << in.rdbuf();
  return ss.str();
}

namespace {

// Parses NDJSON text line by line (empty lines skipped); the first bad line stops it, named by number.
template <typename T, typename Parse>
Status parse_lines(const std::string& text, Parse parse, std::vector<T>* out) {
  std::istringstream in(text);
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    auto v = parse(line, n);
    if (!v.ok()) return v.status();
    out->push_back(std::move(*v));
  }
  return {};
}

std::string human_line(const EventView& e) {
  std::string data;
  if (e.payload_removed) data = "<payload removed>";
  else if (e.content_type == ContentType::kBinary) data = fmt::format("<{} bytes binary>", e.data.size());
  else data = std::string(e.data.substr(0, 160)) + (e.data.size() > 160 ? "…" : "");
  return fmt::format("{:>8}  {}@{}  {}  {}  {}", e.position, e.stream, e.revision, e.type,
                     format_rfc3339_ns(e.recorded_ns), data);
}

void print_event(const EventView& e, bool json) {
  const std::string line = json ? event_json(e) : human_line(e);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
}


}  // namespace

int cmd_append(const StoreFlags& f, const AppendArgs& a) {
  auto expected = parse_expected(a.expected);
  if (!expected.ok()) return fail(expected.status());
  StreamAppend req{a.stream, *expected, {}};
  if (!a.events_file.empty()) {
    auto text = read_input(a.events_file);
    if (!text.ok()) return fail(text.status());
    Status st = parse_lines(*text, parse_event_line, &req.events);
    if (!st.ok()) return fail(st);
  } else {
    if (a.type.empty()) return fail(Status::invalid_argument("TYPE: required (or use --events FILE)"));
    EventData e;
    e.type = a.type;
    e.metadata = a.metadata;
    auto ct = parse_content_type(a.content_type);
    if (!ct.ok()) return fail(ct.status());
    e.content_type = *ct;
    if (!a.id.empty()) {
      auto id = Uuid::parse(a.id);
      if (!id.ok()) return fail(Status::invalid_argument("--id: " + id.status().message()));
      e.id = *id;
    }
    if (!a.data_file.empty() || (a.data && *a.data == "-")) {
      auto d = read_input(a.data_file.empty() ? "-" : a.data_file);
      if (!d.ok()) return fail(d.status());
      e.data = std::move(*d);
    } else if (a.data) {
      e.data = *a.data;
    } else {
      e.data = "{}";
    }
    req.events.push_back(std::move(e));
  }
  auto o = store_options(f, false);
  if (!o.ok()) return fail(o.status());
  auto store = open_store(*o);
  if (!store.ok()) return fail(store.status());
  auto r = (*store)->append(std::move(req));
  if (!r.ok()) return fail(r.status());
  const auto& s = r->streams[0];
  if (a.json) {
    std::string out = "{\"stream\":";
    append_json_string(out, s.stream);
    out += fmt::format(",\"first_position\":{},\"last_position\":{},\"first_revision\":{},\"last_revision\":{},"
                       "\"replayed\":{}}}",
                       s.first_position, s.last_position, s.first_revision, s.last_revision, r->replayed);
    std::puts(out.c_str());
  } else {
    std::printf("%s %llu event(s) to '%s': positions %llu..%llu, revision now %llu\n",
                r->replayed ? "already appended (idempotent retry):" : "appended",
                (unsigned long long)(s.last_position - s.first_position + 1), s.stream.c_str(),
                (unsigned long long)s.first_position, (unsigned long long)s.last_position,
                (unsigned long long)s.last_revision);
  }
  Status st = (*store)->close();
  return st.ok() ? 0 : fail(st);
}

int cmd_read(const StoreFlags& f, const ReadArgs& a) {
  auto o = store_options(f, true);
  if (!o.ok()) return fail(o.status());
  auto store = open_store(*o);
  if (!store.ok()) return fail(store.status());
  Store& s = **store;
  const Direction dir = a.backward ? Direction::kBackward : Direction::kForward;
  uint64_t left = a.limit.value_or(UINT64_MAX);
  if (left == 0) return fail(Status::invalid_argument("--limit: must be at least 1"));
  std::optional<uint64_t> from = a.from;
  Filter filter{a.types, a.type_prefix, a.stream_prefix, a.category};
  if (!a.stream.empty() && !filter.empty())
    return fail(Status::invalid_argument("filters (--type, --type-prefix, --stream-prefix, --category) apply to $all, "
                                         "not to a single stream"));
  if (a.stream.empty() && !a.backward && filter.types.empty()) {
    // The fast path for $all forward: a zero-copy scan.
    Status st = s.scan_all(from.value_or(0), filter, [&](const EventView& v) {
      print_event(v, a.json);
      return --left > 0;
    });
    return st.ok() ? 0 : fail(st);
  }
  for (;;) {
    const size_t page_size = static_cast<size_t>(std::min<uint64_t>(left, 1000));
    auto page = a.stream.empty() ? s.read_all(from, dir, page_size, filter) : s.read_stream(a.stream, from, dir, page_size);
    if (!page.ok()) return fail(page.status());
    for (const auto& e : page->events) print_event(e.view(), a.json);
    left -= std::min<uint64_t>(left, page->events.size());
    if (!page->next || left == 0) break;
    from = page->next;
  }
  return 0;
}

int cmd_tail(const StoreFlags& f, const ReadArgs& a) {
  auto o = store_options(f, true);
  if (!o.ok()) return fail(o.status());
  Filter filter{a.types, a.type_prefix, a.stream_prefix, a.category};
  uint64_t cursor = 0;
  bool first = true;
  const auto started = std::chrono::steady_clock::now();
  for (;;) {
    if (!first) {
      // Reopen only when a writer has published something new since the last look.
      auto head = published_head(f.data);
      if (head.ok() && *head <= cursor) {
        if (a.follow_for_seconds &&
            std::chrono::steady_clock::now() - started >= std::chrono::duration<double>(*a.follow_for_seconds))
          return 0;
        std::this_thread::sleep_for(std::chrono::duration<double>(a.poll_seconds));
        continue;
      }
    }
    // Each round opens the directory read-only: the writer may be another process, and a reader must see
    // only what it has made durable (the store bounds read-only opens by the writer's published end).
    auto store = open_store(*o);
    if (!store.ok()) return fail(store.status());
    Store& s = **store;
    if (first) {
      const uint64_t head = s.head_position();
      if (a.from) {
        cursor = *a.from;
      } else {
        // The last N matching events: walk back from the end.
        cursor = head;
        uint64_t found = 0;
        if (a.last_n > 0 && head > 0) {
          auto page = s.read_all(std::nullopt, Direction::kBackward, a.last_n, filter);
          if (!page.ok()) return fail(page.status());
          found = page->events.size();
          if (found > 0) cursor = page->events.back().position;
        }
      }
      first = false;
    }
    Status st = s.scan_all(cursor, filter, [&](const EventView& v) {
      print_event(v, a.json);
      return true;
    });
    if (!st.ok()) return fail(st);
    cursor = std::max(cursor, s.head_position());
    std::fflush(stdout);
    (void)s.close();
    if (!a.follow) return 0;
    if (a.follow_for_seconds &&
        std::chrono::steady_clock::now() - started >= std::chrono::duration<double>(*a.follow_for_seconds))
      return 0;
    std::this_thread::sleep_for(std::chrono::duration<double>(a.poll_seconds));
  }
}

int cmd_verify(const std::string& dir, bool json) {
  Progress progress("verifying");
  auto r = verify_log(dir, [&](uint64_t done, uint64_t total) { progress.update(done, total, "bytes"); });
  progress.done();
  if (!r.ok()) {
    if (r.status().code() == ErrorCode::kBusy)
      return fail(Status(ErrorCode::kBusy, r.status().message() +
                                               "; while cairnd serves it, verify through the server: cairn verify "
                                               "--url http://HOST:PORT --key ADMIN_KEY"));
    return fail(r.status());
  }
  const std::string out = json ? codec::verify_report_json(*r) + "\n" : codec::verify_report_text(*r);
  std::fputs(out.c_str(), stdout);
  return r->ok ? 0 : 1;
}

int cmd_reindex(const std::string& dir) {
  Progress progress("reindexing");
  auto r = reindex(dir, [&](uint64_t done, uint64_t total) { progress.update(done, total, "events"); });
  progress.done();
  if (!r.ok()) return fail(r.status());
  std::printf("reindexed %llu events into %llu index run(s)\n", (unsigned long long)r->events,
              (unsigned long long)r->runs);
  return 0;
}

int cmd_stats(const std::string& dir, bool json) {
  EmbeddedOptions o;
  o.dir = dir;
  o.read_only = true;
  auto store = open_store(o);
  if (!store.ok()) return fail(store.status());
  const StoreStats s = (*store)->stats();
  const StoreMetrics m = (*store)->metrics();
  if (json) {
    std::printf(
        "{\"events\":%llu,\"commits_in_tail\":%llu,\"segments\":%llu,\"log_bytes\":%llu,\"index_runs\":%llu,"
        "\"index_memtable_events\":%llu,\"indexed_through\":%llu,\"chain_head\":\"%s\"}\n",
        (unsigned long long)s.events, (unsigned long long)s.commits, (unsigned long long)s.segments,
        (unsigned long long)s.log_bytes, (unsigned long long)m.index_runs, (unsigned long long)m.index_memtable_events,
        (unsigned long long)m.indexed_through, s.chain_head_hex.c_str());
  } else {
    std::printf("events:          %llu (positions 0..%lld)\n", (unsigned long long)s.events, (long long)s.events - 1);
    std::printf("segments:        %llu (%llu bytes of log)\n", (unsigned long long)s.segments,
                (unsigned long long)s.log_bytes);
    std::printf("index:           %llu run(s) through position %llu, %llu event(s) replayed from the log tail\n",
                (unsigned long long)m.index_runs, (unsigned long long)m.indexed_through,
                (unsigned long long)m.index_memtable_events);
    std::printf("chain head:      %s\n", s.chain_head_hex.c_str());
  }
  return 0;
}

int cmd_streams(const std::string& dir, const std::string& prefix, std::optional<uint64_t> limit, bool json,
                const std::string& backend) {
  auto store = open_store(read_only_options(dir, backend));
  if (!store.ok()) return fail(store.status());
  uint64_t left = limit.value_or(UINT64_MAX);
  std::optional<std::string> after;
  while (left > 0) {
    auto page = (*store)->list_streams(after, static_cast<size_t>(std::min<uint64_t>(left, 1000)), prefix);
    if (!page.ok()) return fail(page.status());
    for (const auto& s : page->streams) {
      if (left == 0) break;
      --left;
      if (json) {
        std::string line = "{\"stream\":";
        append_json_string(line, s.stream);
        line += fmt::format(",\"revision\":{},\"count\":{},\"first_position\":{},\"last_position\":{}}}", s.last_revision,
                            s.last_revision + 1, s.first_position, s.last_position);
        std::puts(line.c_str());
      } else {
        std::printf("%-40s revision %-8llu events %-8llu positions %llu..%llu\n", s.stream.c_str(),
                    (unsigned long long)s.last_revision, (unsigned long long)(s.last_revision + 1),
                    (unsigned long long)s.first_position, (unsigned long long)s.last_position);
      }
    }
    if (!page->next) break;
    after = page->next;
  }
  return 0;
}

int cmd_export(const std::string& dir, const std::string& out_path, uint64_t from, const std::string& backend) {
  auto store = open_store(read_only_options(dir, backend));
  if (!store.ok()) return fail(store.status());
  FILE* out = stdout;
  if (!out_path.empty() && out_path != "-") {
    out = std::fopen(out_path.c_str(), "wb");
    if (!out) return fail(Status::io_error(fmt::format("cannot write {}", out_path)));
  }
  const uint64_t head = (*store)->head_position();
  Progress progress("exporting");
  uint64_t n = 0;
  bool write_failed = false;
  // As stored: an export is a backup, and personal parts must stay sealed in it.
  Status st = (*store)->scan_stored(from, Filter{}, [&](const StoredEventView& v) {
    std::string line = codec::export_json(v);
    line.push_back('\n');
    if (std::fwrite(line.data(), 1, line.size(), out) != line.size()) {
      write_failed = true;
      return false;
    }
    if ((++n & 4095) == 0) progress.update(v.position + 1, head, "events");
    return true;
  });
  progress.update(head, head, "events");
  progress.done();
  const bool close_failed = out != stdout ? std::fclose(out) != 0 : std::fflush(out) != 0;
  if (!st.ok()) return fail(st);
  if (write_failed || close_failed) return fail(Status::io_error("writing the export failed"));
  std::fprintf(stderr, "exported %llu events\n", (unsigned long long)n);
  return 0;
}

int cmd_import(const StoreFlags& f, const std::string& in_path) {
  auto text = read_input(in_path);
  if (!text.ok()) return fail(text.status());
  auto o = store_options(f, false);
  if (!o.ok()) return fail(o.status());
  // Parse everything first: a bad line changes nothing.
  std::vector<ExportLine> lines;
  if (Status st = parse_lines(*text, parse_export_line, &lines); !st.ok()) return fail(st);
  auto store = open_store(*o);
  if (!store.ok()) return fail(store.status());
  Store& s = **store;
  const bool into_empty = s.head_position() == 0;
  Progress progress("importing");
  uint64_t commits = 0;
  bool same_positions = true;
  for (size_t i = 0; i < lines.size();) {
    size_t j = i;
    std::vector<ImportEvent> commit;
    const uint64_t first = lines[i].position;
    while (j < lines.size() && lines[j].commit_position == lines[i].commit_position) commit.push_back(std::move(lines[j++].event));
    auto r = s.import_commit(std::move(commit));
    if (!r.ok())
      return fail(Status(r.status().code(), fmt::format("commit starting at exported position {} (line {}): {}",
                                                        first, i + 1, r.status().message())));
    same_positions = same_positions && *r == first;
    ++commits;
    i = j;
    progress.update(i, lines.size(), "events");
  }
  progress.done();
  const StoreStats st = s.stats();
  std::printf("imported %zu events in %llu commits; chain head %s\n", lines.size(), (unsigned long long)commits,
              st.chain_head_hex.c_str());
  if (!into_empty || !same_positions)
    std::printf("note: the events got new positions, so the chain head differs from the exporting store's\n");
  Status cs = s.close();
  return cs.ok() ? 0 : fail(cs);
}

}  // namespace cairn::cli
