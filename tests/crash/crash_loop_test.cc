// The crash loop: a child process appends from several threads with Durability::kFsync and reports every
// acknowledged append through a pipe; the parent SIGKILLs it at a random moment, reopens the store and
// checks that every acknowledged event is there, byte for byte, at its position; that nothing partial is
// visible (every commit whole, every append in exactly one commit); that positions and revisions are
// dense; that verify_log passes; and that appending continues at head_position() with the next revisions.
//
// Child workload (threads, all running at once so that the writer groups their commits):
//   - single-stream appenders: "single-<t>", exact expected revisions, sometimes an immediate retry with
//     the same ids (must be answered as a replay with the same positions);
//   - multi-stream appenders: append_multi over 2-3 of "multi-<t>-<k>" (exact revisions) and sometimes
//     "shared" (any);
//   - a retry appender: "retry-<t>", announces each append before sending it; an append that was in
//     flight when the child was killed is retried (same ids, same expected revision) by the next child,
//     which must either be answered as a replay (it was durable) or be appended fresh (it was not).
// Event content is a pure function of (seed, iteration, thread, sequence), so the parent regenerates and
// compares every event in the log, acknowledged or not.
//
// Iterations: CAIRN_CRASH_ITERATIONS (default 50; 20 under AddressSanitizer, which slows the child and the
// checks several times). Seed: CAIRN_CRASH_SEED (default random); it is printed, and every failure
// message carries it. The seed fixes the content and the kill delays; where exactly a kill lands still
// depends on scheduling.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cairn/maintenance.h"
#include "crash_env.h"
#include "cairn/store.h"
#include "log/record.h"
#include "log/segment.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

constexpr uint64_t kSegmentSize = 64 * 1024;
constexpr int kSingleThreads = 2;  // threads 0, 1
constexpr int kMultiThreads = 2;   // threads 2, 3
constexpr int kRetryThread = 4;
constexpr int kChildThreads = 5;
constexpr int kParentThreadBase = 100;  // content keys of the parent's own appends
constexpr int kIterationsPerDirectory = 10;  // a fresh directory now and then keeps the checks' cost flat

bool is_single(int t) { return t < kSingleThreads; }
bool is_multi(int t) { return t >= kSingleThreads && t < kSingleThreads + kMultiThreads; }

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t content_hash(std::string_view type, ContentType ct, std::string_view metadata, std::string_view data) {
  uint64_t h = fnv1a(type);
  h = fnv1a(std::string_view("\0", 1), h);
  const char c = static_cast<char>(ct);
  h = fnv1a(std::string_view(&c, 1), h);
  h = fnv1a(metadata, h);
  h = fnv1a(std::string_view("\0", 1), h);
  return fnv1a(data, h);
}

struct Key {
  int iter = 0;
  int thread = 0;
  uint64_t seq = 0;
  friend auto operator<=>(const Key&, const Key&) = default;
  std::string str() const { return fmt::format("{}.{}.{}", iter, thread, seq); }
};

// The streams of a thread (for the multi threads: all three it owns).
std::vector<std::string> own_streams(int t) {
  if (is_single(t)) return {fmt::format("single-{}", t)};
  if (is_multi(t)) return {fmt::format("multi-{}-0", t), fmt::format("multi-{}-1", t), fmt::format("multi-{}-2", t)};
  return {fmt::format("retry-{}", t)};
}

// The content of one append: streams (in request order) and their events. Expected revisions are left
// `any`; the appender sets them. Every event's metadata carries "<iter>.<thread>.<seq>.<k>.<n>": its key,
// its index in the append and the append's event count, so that the parent can regroup the log.
std::vector<StreamAppend> make_append(uint64_t seed, const Key& key) {
  uint64_t g = seed ^ (static_cast<uint64_t>(key.iter) << 48) ^ (static_cast<uint64_t>(key.thread) << 40) ^ key.seq;
  splitmix(g);
  std::vector<std::string> streams;
  const int owner = key.thread >= kParentThreadBase ? key.thread - kParentThreadBase : key.thread;
  if (key.thread >= kParentThreadBase) {
    streams = own_streams(owner);  // the parent continues every stream of the thread
  } else if (is_multi(owner)) {
    const auto own = own_streams(owner);
    const uint64_t mask = 1 + splitmix(g) % 7;  // a non-empty subset, in order
    for (int k = 0; k < 3; ++k)
      if (mask & (1u << k)) streams.push_back(own[k]);
    if (streams.size() < 2 || splitmix(g) % 2 == 0) streams.push_back("shared");
  } else {
    streams = own_streams(owner);
  }
  std::vector<StreamAppend> out;
  size_t n = 0;
  std::vector<size_t> counts;
  for (size_t i = 0; i < streams.size(); ++i) {
    counts.push_back(1 + splitmix(g) % 3);
    n += counts.back();
  }
  size_t k = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    StreamAppend a;
    a.stream = streams[i];
    for (size_t j = 0; j < counts[i]; ++j, ++k) {
      EventData e;
      Uuid id;
      const uint64_t a1 = splitmix(g), a2 = splitmix(g);
      for (int b = 0; b < 8; ++b) {
        id.bytes[b] = static_cast<uint8_t>(a1 >> (8 * b));
        id.bytes[8 + b] = static_cast<uint8_t>(a2 >> (8 * b));
      }
      id.bytes[6] = static_cast<uint8_t>((id.bytes[6] & 0x0f) | 0x40);  // a version-4 shape, never nil
      e.id = id;
      e.type = fmt::format("Crash.E{}", splitmix(g) % 4);
      e.metadata = fmt::format(R"({{"correlation_id":"{}.{}"}})", key.str() + "." + std::to_string(k), n);
      const size_t len = splitmix(g) % 1200;
      if (splitmix(g) % 4 == 0) {
        e.content_type = ContentType::kBinary;
        e.data.resize(len);
        for (auto& c : e.data) c = static_cast<char>(splitmix(g));
      } else {
        e.content_type = ContentType::kJson;
        std::string pad(len, 'x');
        for (auto& c : pad) c = static_cast<char>('a' + splitmix(g) % 26);
        e.data = fmt::format(R"({{"v":{},"pad":"{}"}})", splitmix(g) % 1000000, pad);
      }
      a.events.push_back(std::move(e));
    }
    out.push_back(std::move(a));
  }
  return out;
}

// Parses "<iter>.<thread>.<seq>.<k>.<n>" out of an event's metadata.
bool parse_meta(std::string_view meta, Key* key, size_t* k, size_t* n) {
  const auto at = meta.find("\"correlation_id\":\"");
  if (at == std::string_view::npos) return false;
  std::string s(meta.substr(at + 18));
  unsigned long long seq = 0;
  int iter = 0, thread = 0;
  size_t kk = 0, nn = 0;
  if (std::sscanf(s.c_str(), "%d.%d.%llu.%zu.%zu", &iter, &thread, &seq, &kk, &nn) != 5) return false;
  *key = Key{iter, thread, seq};
  *k = kk;
  *n = nn;
  return true;
}

std::string hex_id(const Uuid& u) {
  std::string s;
  for (uint8_t b : u.bytes) s += fmt::format("{:02x}", b);
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// The child. No gtest here: it reports through the pipe and ends with _exit.

struct Pending {  // the retry thread's announced but unacknowledged append
  Key key;
  int64_t expected = -1;  // -1: no stream
};

struct ChildArgs {
  std::string dir;
  uint64_t seed = 0;
  int iter = 0;
  std::optional<Pending> pending;
};

class Reporter {
 public:
  explicit Reporter(int fd) : fd_(fd) {}
  // One write() per line: lines are under PIPE_BUF, so each reaches the parent whole or not at all.
  void line(std::string s) {
    if (s.size() >= PIPE_BUF) s = "ERR report line too long\n";
    std::lock_guard g(mu_);
    size_t done = 0;
    while (done < s.size()) {
      ssize_t w = ::write(fd_, s.data() + done, s.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) ::_exit(4);
      done += static_cast<size_t>(w);
    }
  }
  void error(const std::string& what) {
    std::string s = what;
    for (auto& c : s)
      if (c == '\n') c = ' ';
    line("ERR " + s + "\n");
  }

 private:
  int fd_;
  std::mutex mu_;
};

std::string ack_line(const Key& key, const std::vector<StreamAppend>& apps, const AppendResult& r) {
  std::string s = fmt::format("ACK {} {} {} {}", key.iter, key.thread, key.seq, r.replayed ? 1 : 0);
  size_t n = 0;
  for (const auto& a : apps) n += a.events.size();
  s += fmt::format(" {}", n);
  for (size_t i = 0; i < apps.size(); ++i)
    for (size_t j = 0; j < apps[i].events.size(); ++j) {
      const auto& e = apps[i].events[j];
      s += fmt::format(" {} {} {} {} {:016x}", r.streams[i].first_position + j, apps[i].stream,
                       r.streams[i].first_revision + j, hex_id(*e.id),
                       content_hash(e.type, e.content_type, e.metadata, e.data));
    }
  return s + "\n";
}

// Checks the shape of a result: one entry per stream, consecutive positions across the whole commit.
bool result_consistent(const std::vector<StreamAppend>& apps, const AppendResult& r, std::string* why) {
  if (r.streams.size() != apps.size()) {
    *why = "result has the wrong number of streams";
    return false;
  }
  uint64_t pos = r.streams[0].first_position;
  for (size_t i = 0; i < apps.size(); ++i) {
    const auto& s = r.streams[i];
    if (s.stream != apps[i].stream || s.first_position != pos ||
        s.last_position != pos + apps[i].events.size() - 1 ||
        s.last_revision != s.first_revision + apps[i].events.size() - 1) {
      *why = fmt::format("result for stream {} is not one contiguous commit", apps[i].stream);
      return false;
    }
    pos = s.last_position + 1;
  }
  return true;
}

ExpectedRevision exact_or_none(const std::optional<uint64_t>& rev) {
  return rev ? ExpectedRevision::exact(*rev) : ExpectedRevision::no_stream();
}

[[noreturn]] void child_main(const ChildArgs& args, int fd) {
  Reporter rep(fd);
  EmbeddedOptions o;
  o.dir = args.dir;
  o.durability = Durability::kFsync;
  o.segment_size = kSegmentSize;
  o.index_memtable_events = 1000;  // index runs are written (and interrupted) during the loop too
  auto opened = open_store(o);
  if (!opened.ok()) {
    rep.error("open: " + opened.status().to_string());
    ::_exit(2);
  }
  Store& s = **opened;
  rep.line(fmt::format("OPEN {}\n", s.head_position()));
  auto revision_of = [&](const std::string& stream) -> std::optional<uint64_t> {
    auto info = s.stream_info(stream);
    if (info.ok()) return info->last_revision;
    if (info.status().code() != ErrorCode::kNotFound) rep.error("stream_info " + stream + ": " + info.status().to_string());
    return std::nullopt;
  };

  std::atomic<bool> stop{false};
  auto run_thread = [&](int t) {
    std::map<std::string, std::optional<uint64_t>> revs;
    for (const auto& st : own_streams(t)) revs[st] = revision_of(st);
    std::string why;
    auto attempt = [&](const Key& key, std::vector<StreamAppend>& apps, bool may_replay) -> bool {
      auto r = apps.size() == 1 && !is_multi(t) ? s.append(apps[0]) : s.append_multi(apps);
      if (!r.ok()) {
        rep.error(fmt::format("thread {} append {}: {}", t, key.str(), r.status().to_string()));
        return false;
      }
      if (!result_consistent(apps, *r, &why) || (r->replayed && !may_replay)) {
        rep.error(fmt::format("thread {} append {}: {}", t, key.str(), r->replayed ? "unexpected replay" : why));
        return false;
      }
      for (size_t i = 0; i < apps.size(); ++i) {
        const auto& sr = r->streams[i];
        const auto& e = apps[i].expected;
        if (e.kind != ExpectedRevision::Kind::kAny) {
          const uint64_t want = e.kind == ExpectedRevision::Kind::kExact ? e.revision + 1 : 0;
          if (sr.first_revision != want) {
            rep.error(fmt::format("thread {} append {}: stream {} got revision {}, expected {}", t, key.str(),
                                  sr.stream, sr.first_revision, want));
            return false;
          }
        }
        if (revs.count(sr.stream)) revs[sr.stream] = sr.last_revision;
      }
      rep.line(ack_line(key, apps, *r));
      // An immediate retry with the same ids is answered from the log with the same result.
      if ((key.seq % 7 == 3 && !is_multi(t)) || t == kRetryThread) {
        auto again = apps.size() == 1 && !is_multi(t) ? s.append(apps[0]) : s.append_multi(apps);
        if (!again.ok() || !again->replayed || again->streams.size() != r->streams.size() ||
            again->streams[0].first_position != r->streams[0].first_position ||
            again->streams.back().last_revision != r->streams.back().last_revision) {
          rep.error(fmt::format("thread {} retry of {} was not replayed: {}", t, key.str(),
                                again.ok() ? "replayed=" + std::to_string(again->replayed) : again.status().to_string()));
          return false;
        }
      }
      return true;
    };

    if (t == kRetryThread && args.pending) {
      // The previous child was killed with this append in flight: retry it exactly.
      const Pending& p = *args.pending;
      auto apps = make_append(args.seed, p.key);
      apps[0].expected = p.expected < 0 ? ExpectedRevision::no_stream() : ExpectedRevision::exact(static_cast<uint64_t>(p.expected));
      rep.line(fmt::format("INT {} {} {} {}\n", p.key.iter, p.key.thread, p.key.seq, p.expected));
      if (!attempt(p.key, apps, /*may_replay=*/true)) return;
    }
    for (uint64_t seq = 0; !stop.load(); ++seq) {
      const Key key{args.iter, t, seq};
      auto apps = make_append(args.seed, key);
      for (auto& a : apps) a.expected = a.stream == "shared" ? ExpectedRevision::any() : exact_or_none(revs[a.stream]);
      if (t == kRetryThread) {
        const auto& rv = revs[apps[0].stream];
        rep.line(fmt::format("INT {} {} {} {}\n", key.iter, key.thread, key.seq, rv ? static_cast<int64_t>(*rv) : -1));
      }
      if (!attempt(key, apps, false)) return;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kChildThreads; ++t) threads.emplace_back(run_thread, t);
  // The parent kills us long before this; if it does not, stop cleanly but say so.
  std::this_thread::sleep_for(std::chrono::seconds(30));
  stop = true;
  for (auto& th : threads) th.join();
  rep.error("the child was not killed within 30 s");
  ::_exit(3);
}

// ---------------------------------------------------------------------------------------------------------
// The parent.

struct AckedEvent {
  uint64_t position = 0;
  std::string stream;
  uint64_t revision = 0;
  std::string id_hex;
  uint64_t hash = 0;
};

struct Ack {
  Key key;
  bool replayed = false;
  std::vector<AckedEvent> events;
};

struct ChildRun {
  std::vector<Ack> acks;
  std::vector<std::string> errors;
  std::vector<std::string> intents;  // raw INT lines in order
  bool opened = false;
  int wait_status = 0;
  bool killed = false;
  size_t torn_lines = 0;
};

bool parse_ack(const std::string& line, Ack* a, std::string* why) {
  std::istringstream in(line);
  std::string tag;
  int replayed = 0;
  size_t n = 0;
  in >> tag >> a->key.iter >> a->key.thread >> a->key.seq >> replayed >> n;
  a->replayed = replayed != 0;
  for (size_t i = 0; i < n; ++i) {
    AckedEvent e;
    std::string hash;
    in >> e.position >> e.stream >> e.revision >> e.id_hex >> hash;
    if (!in) break;
    e.hash = std::stoull(hash, nullptr, 16);
    a->events.push_back(std::move(e));
  }
  if (!in || a->events.size() != n || n == 0) {
    *why = "malformed ACK line: " + line;
    return false;
  }
  return true;
}

// Forks the child, lets it run for delay_us, SIGKILLs it, and collects what it acknowledged.
ChildRun run_child(const ChildArgs& args, uint64_t delay_us) {
  ChildRun run;
  int fds[2];
  if (::pipe(fds) != 0) {
    run.errors.push_back("pipe failed");
    return run;
  }
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    run.errors.push_back("fork failed");
    return run;
  }
  if (pid == 0) {
    ::close(fds[0]);
    child_main(args, fds[1]);
  }
  ::close(fds[1]);
  std::string buf;
  char chunk[65536];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(delay_us);
  bool eof = false;
  while (!eof) {
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    struct timespec ts {
      static_cast<time_t>(left.count() / 1000000), static_cast<long>((left.count() % 1000000) * 1000)
    };
    const int rc = ::ppoll(&p, 1, &ts, nullptr);
    if (rc > 0) {
      const ssize_t r = ::read(fds[0], chunk, sizeof chunk);
      if (r > 0) buf.append(chunk, static_cast<size_t>(r));
      else if (r == 0) eof = true;
    }
  }
  run.killed = ::kill(pid, SIGKILL) == 0;
  // Everything already in the pipe was acknowledged before the kill; read to the end.
  for (;;) {
    const ssize_t r = ::read(fds[0], chunk, sizeof chunk);
    if (r > 0) {
      buf.append(chunk, static_cast<size_t>(r));
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    break;
  }
  ::close(fds[0]);
  while (::waitpid(pid, &run.wait_status, 0) < 0 && errno == EINTR) {
  }
  size_t start = 0;
  for (;;) {
    const size_t nl = buf.find('\n', start);
    if (nl == std::string::npos) break;
    const std::string line = buf.substr(start, nl - start);
    start = nl + 1;
    if (line.rfind("ACK ", 0) == 0) {
      Ack a;
      std::string why;
      if (parse_ack(line, &a, &why)) run.acks.push_back(std::move(a));
      else run.errors.push_back(why);
    } else if (line.rfind("INT ", 0) == 0) {
      run.intents.push_back(line);
    } else if (line.rfind("OPEN ", 0) == 0) {
      run.opened = true;
    } else if (line.rfind("ERR ", 0) == 0) {
      run.errors.push_back(line.substr(4));
    } else {
      run.errors.push_back("unknown line from the child: " + line);
    }
  }
  if (start != buf.size()) ++run.torn_lines;  // impossible with atomic pipe writes; counted to be sure
  return run;
}

int iterations_from_env() { return crash::iterations(50, 20); }

uint64_t seed_from_env() { return crash::seed(); }

struct Stats {
  uint64_t acks = 0, events = 0, replays = 0, retried_pending = 0, torn_tails = 0, max_segments = 0, early_kills = 0;
  uint64_t unacked_visible = 0, index_runs_seen = 0;
};

// One directory's worth of the loop.
class Loop {
 public:
  Loop(uint64_t seed, std::string dir, Stats& stats) : seed_(seed), dir_(std::move(dir)), stats_(stats) {}

  void iteration(int iter, uint64_t delay_us) {
    ChildArgs args{dir_, seed_, iter, pending_};
    ChildRun run = run_child(args, delay_us);
    for (const auto& e : run.errors) ADD_FAILURE() << "child: " << e;
    ASSERT_TRUE(run.killed) << "the child ended before the kill (wait status " << run.wait_status << ")";
    ASSERT_TRUE(WIFSIGNALED(run.wait_status) && WTERMSIG(run.wait_status) == SIGKILL)
        << "the child did not die of SIGKILL (wait status " << run.wait_status << ")";
    EXPECT_EQ(run.torn_lines, 0u);
    if (!run.opened) ++stats_.early_kills;
    // Record what was acknowledged; a key acknowledged twice (a replayed retry) must match itself.
    for (auto& a : run.acks) {
      ++stats_.acks;
      stats_.replays += a.replayed;
      if (a.key.thread == kRetryThread && pending_ && a.key == pending_->key) ++stats_.retried_pending;
      auto [it, fresh] = acked_.try_emplace(a.key, a);
      if (!fresh) {
        ASSERT_EQ(it->second.events.size(), a.events.size()) << a.key.str();
        for (size_t i = 0; i < a.events.size(); ++i) {
          EXPECT_EQ(it->second.events[i].position, a.events[i].position) << "replay of " << a.key.str() << " moved";
          EXPECT_EQ(it->second.events[i].revision, a.events[i].revision) << a.key.str();
        }
      } else {
        stats_.events += a.events.size();
      }
    }
    // The retry thread's in-flight append: the last announced one that was not acknowledged.
    for (const auto& line : run.intents) {
      std::istringstream in(line);
      std::string tag;
      Pending p;
      in >> tag >> p.key.iter >> p.key.thread >> p.key.seq >> p.expected;
      ASSERT_TRUE(static_cast<bool>(in)) << line;
      pending_ = p;
    }
    if (pending_ && acked_.count(pending_->key)) pending_.reset();

    check_recovered(iter);
  }

 private:
  void check_recovered(int iter) {
    // verify on the crashed directory, before any open: the only damage a crash may leave is a torn tail.
    // (A child killed before it created the log folder of a fresh directory left nothing to verify.)
    if (std::filesystem::exists(dir_ + "/log") || !acked_.empty()) {
      auto v = verify_log(dir_);
      ASSERT_TRUE(v.ok()) << v.status().to_string();
      ASSERT_TRUE(v->ok) << "after the kill: " << v->file << " offset " << v->offset << ": " << v->problem;
      stats_.torn_tails += v->torn_tail_bytes > 0;
      stats_.max_segments = std::max(stats_.max_segments, v->segments);
    }
    EmbeddedOptions o;
    o.dir = dir_;
    o.durability = Durability::kFsync;
    o.segment_size = kSegmentSize;
    o.index_memtable_events = 1000;
    auto opened = open_store(o);
    ASSERT_TRUE(opened.ok()) << "reopen after the kill: " << opened.status().to_string();
    Store& s = **opened;
    const uint64_t head = s.head_position();
    stats_.index_runs_seen = std::max(stats_.index_runs_seen, s.metrics().index_runs);

    // Every event in the log: dense positions, dense revisions, content regenerated from its key.
    std::map<Key, std::vector<std::pair<uint64_t, size_t>>> groups;  // key -> (position, k)
    std::map<Key, std::vector<StreamAppend>> regenerated;
    std::unordered_map<std::string, uint64_t> next_rev;
    std::vector<std::tuple<std::string, uint64_t, std::string, uint64_t>> by_pos;  // stream, rev, id, hash
    by_pos.reserve(head);
    uint64_t expect_pos = 0;
    Status scan = s.scan_all(0, Filter{}, [&](const EventView& v) {
      if (v.position != expect_pos) {
        ADD_FAILURE() << "positions are not dense: got " << v.position << ", expected " << expect_pos;
        return false;
      }
      ++expect_pos;
      auto [it, fresh] = next_rev.try_emplace(std::string(v.stream), 0);
      EXPECT_EQ(v.revision, it->second) << "stream " << v.stream << " revisions are not dense at position " << v.position;
      it->second = v.revision + 1;
      Key key;
      size_t k = 0, n = 0;
      if (!parse_meta(v.metadata, &key, &k, &n)) {
        ADD_FAILURE() << "position " << v.position << " holds an event the test never wrote (metadata '" << v.metadata << "')";
        return false;
      }
      auto rit = regenerated.find(key);
      if (rit == regenerated.end()) rit = regenerated.emplace(key, make_append(seed_, key)).first;
      const EventData* want = nullptr;
      const std::string* want_stream = nullptr;
      size_t idx = 0, total = 0;
      for (const auto& a : rit->second)
        for (const auto& e : a.events) {
          if (idx++ == k) {
            want = &e;
            want_stream = &a.stream;
          }
          ++total;
        }
      EXPECT_EQ(total, n) << key.str();
      if (!want) {
        ADD_FAILURE() << "position " << v.position << ": event " << k << " of " << key.str() << " does not exist";
        return false;
      }
      EXPECT_TRUE(v.stream == *want_stream && v.id == *want->id && v.type == want->type &&
                  v.content_type == want->content_type && v.metadata == want->metadata && v.data == want->data)
          << "position " << v.position << " (" << key.str() << " event " << k << ") differs from what was appended";
      groups[key].emplace_back(v.position, k);
      by_pos.emplace_back(std::string(v.stream), v.revision, hex_id(v.id),
                          content_hash(v.type, v.content_type, v.metadata, v.data));
      return !::testing::Test::HasFailure();
    });
    ASSERT_TRUE(scan.ok()) << scan.to_string();
    ASSERT_FALSE(::testing::Test::HasFailure());
    ASSERT_EQ(expect_pos, head) << "scan_all and head_position() disagree";

    // Nothing partial: each append's events are all there, once, at consecutive positions, in order.
    for (const auto& [key, g] : groups) {
      size_t total = 0;
      for (const auto& a : regenerated[key]) total += a.events.size();
      ASSERT_EQ(g.size(), total) << "append " << key.str() << " is visible in part (" << g.size() << " of " << total
                                 << " events) or more than once";
      for (size_t i = 0; i < g.size(); ++i) {
        ASSERT_EQ(g[i].second, i) << key.str();
        ASSERT_EQ(g[i].first, g[0].first + i) << "append " << key.str() << " is not contiguous";
      }
    }

    // Every acknowledged event: present at its position, identical.
    for (const auto& [key, a] : acked_) {
      for (const auto& e : a.events) {
        ASSERT_LT(e.position, head) << "acknowledged " << key.str() << " position " << e.position << " is gone";
        const auto& [stream, rev, id, hash] = by_pos[e.position];
        ASSERT_TRUE(stream == e.stream && rev == e.revision && id == e.id_hex && hash == e.hash)
            << "acknowledged " << key.str() << " at position " << e.position << " was " << e.stream << "@" << e.revision
            << " id " << e.id_hex << ", the log has " << stream << "@" << rev << " id " << id;
      }
      auto git = groups.find(key);
      ASSERT_NE(git, groups.end());
      ASSERT_EQ(git->second.front().first, a.events.front().position);
    }
    for (const auto& [key, g] : groups)
      if (!acked_.count(key) && unacked_seen_.insert(key).second) ++stats_.unacked_visible;

    // The index agrees with the log after recovery: stream tips and id lookups.
    for (const auto& [stream, next] : next_rev) {
      auto info = s.stream_info(stream);
      ASSERT_TRUE(info.ok()) << stream << ": " << info.status().to_string();
      EXPECT_EQ(info->last_revision, next - 1) << stream;
      auto page = s.read_stream(stream, std::nullopt, Direction::kBackward, 3);
      ASSERT_TRUE(page.ok()) << page.status().to_string();
      ASSERT_FALSE(page->events.empty());
      EXPECT_EQ(page->events.front().revision, next - 1) << stream;
    }
    {
      std::mt19937_64 pick(seed_ ^ static_cast<uint64_t>(iter));
      for (int i = 0; i < 20 && head > 0; ++i) {
        const uint64_t p = pick() % head;
        auto ev = s.read_position(p);
        ASSERT_TRUE(ev.ok()) << ev.status().to_string();
        auto byid = s.read_event(ev->id);
        ASSERT_TRUE(byid.ok()) << byid.status().to_string();
        EXPECT_EQ(byid->position, p);
      }
    }

    // Appending continues at the head with the next revisions: the parent extends every single and
    // multi stream (not the retry stream, whose in-flight append may still be retried).
    uint64_t pos = head;
    for (int t = 0; t < kSingleThreads + kMultiThreads; ++t) {
      const Key key{iter, kParentThreadBase + t, 0};
      auto apps = make_append(seed_, key);
      for (auto& a : apps) {
        auto it = next_rev.find(a.stream);
        a.expected = it == next_rev.end() ? ExpectedRevision::no_stream() : ExpectedRevision::exact(it->second - 1);
      }
      auto r = apps.size() == 1 ? s.append(apps[0]) : s.append_multi(apps);
      ASSERT_TRUE(r.ok()) << "append after recovery: " << r.status().to_string();
      ASSERT_FALSE(r->replayed);
      Ack a;
      a.key = key;
      for (size_t i = 0; i < apps.size(); ++i) {
        const auto& sr = r->streams[i];
        ASSERT_EQ(sr.first_position, pos) << "the append after recovery did not land at the head";
        auto it = next_rev.find(apps[i].stream);
        ASSERT_EQ(sr.first_revision, it == next_rev.end() ? 0 : it->second) << apps[i].stream;
        for (size_t j = 0; j < apps[i].events.size(); ++j) {
          const auto& e = apps[i].events[j];
          a.events.push_back(AckedEvent{pos + j, apps[i].stream, sr.first_revision + j, hex_id(*e.id),
                                        content_hash(e.type, e.content_type, e.metadata, e.data)});
        }
        pos += apps[i].events.size();
        next_rev[apps[i].stream] = sr.last_revision + 1;
      }
      acked_.emplace(key, std::move(a));
    }
    ASSERT_EQ(s.head_position(), pos);
    ASSERT_TRUE(s.close().ok());
    opened = Status(ErrorCode::kClosed, "closed");

    // Frames: every append is exactly one commit.
    std::map<uint64_t, std::pair<uint64_t, uint32_t>> commit_of;  // first position -> (first, count)
    for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/log")) {
      uint64_t first = 0;
      if (!log::parse_segment_file_name(entry.path().filename().string(), &first)) continue;
      auto seg = log::Segment::open(entry.path().string(), 0);
      ASSERT_TRUE(seg.ok()) << seg.status().to_string();
      const uint8_t* p = (*seg)->data();
      const uint64_t size = (*seg)->file_size_at_open();
      uint64_t off = log::kSegmentHeaderSize;
      for (;;) {
        auto c = log::check_frame(p + off, size - off, true);
        if (c.state == log::FrameState::kEnd) break;
        ASSERT_EQ(c.state, log::FrameState::kOk) << entry.path() << " offset " << off << ": " << c.problem;
        commit_of[c.header.first_position] = {c.header.first_position, c.header.event_count};
        off += c.header.frame_size;
      }
    }
    for (const auto& [key, g] : groups) {
      auto it = commit_of.find(g.front().first);
      ASSERT_NE(it, commit_of.end()) << "append " << key.str() << " does not start a commit";
      ASSERT_EQ(it->second.second, g.size()) << "append " << key.str() << " is not exactly one commit";
    }

    auto v = verify_log(dir_);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    ASSERT_TRUE(v->ok) << v->file << " offset " << v->offset << ": " << v->problem;
    EXPECT_EQ(v->torn_tail_bytes, 0u);
    EXPECT_EQ(v->events, pos);
  }

  uint64_t seed_;
  std::string dir_;
  Stats& stats_;
  std::map<Key, Ack> acked_;
  std::optional<Pending> pending_;
  std::set<Key> unacked_seen_;
};

TEST(CrashLoop, KillDuringConcurrentAppendsLosesNothingAcknowledged) {
  const uint64_t seed = seed_from_env();
  const int iterations = iterations_from_env();
  std::cout << fmt::format("[ crash    ] seed {:#x} (rerun with CAIRN_CRASH_SEED={:#x}), {} iterations\n", seed, seed,
                           iterations);
  RecordProperty("seed", fmt::format("{:#x}", seed));
  SCOPED_TRACE(fmt::format("CAIRN_CRASH_SEED={:#x}", seed));
  std::mt19937_64 rng(seed);
  Stats stats;
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<testing::TempDir> tmp;
  std::unique_ptr<Loop> loop;
  for (int iter = 0; iter < iterations; ++iter) {
    if (iter % kIterationsPerDirectory == 0) {
      loop.reset();
      tmp = std::make_unique<testing::TempDir>();
      loop = std::make_unique<Loop>(seed, tmp->sub("store"), stats);
    }
    // Mostly a kill in the middle of the appends; sometimes a very early one, during open and recovery.
    const uint64_t delay_us = rng() % 6 == 0 ? rng() % 5000 : 5000 + rng() % 95000;
    SCOPED_TRACE(fmt::format("iteration {} (kill after {} us)", iter, delay_us));
    loop->iteration(iter, delay_us);
    if (::testing::Test::HasFailure()) break;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << fmt::format(
      "[ crash    ] {:.1f} s: {} acknowledged appends ({} events, {} replays, {} in-flight retries answered), {} "
      "unacknowledged appends found whole, {} torn tails cut, {} kills before open finished, up to {} segments, up "
      "to {} index runs\n",
      secs, stats.acks, stats.events, stats.replays, stats.retried_pending, stats.unacked_visible, stats.torn_tails,
      stats.early_kills, stats.max_segments, stats.index_runs_seen);
  EXPECT_GT(stats.acks, 0u) << "no append was ever acknowledged: the loop tested nothing";
  if (iterations >= 20) {
    EXPECT_GT(stats.max_segments, 2u) << "segments never rolled during the loop";
  }
}

}  // namespace
}  // namespace cairn
