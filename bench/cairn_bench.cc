// cairn-bench: throughput and latency of the embedded store, one JSON object per result line on stdout.
//
//   cairn-bench WORKLOAD [--writers N] [--batch N] [--events N] [--payload BYTES] [--durability fsync|none]
//                        [--dir DIR] [--streams N] [--seconds S] [--rate N] [--repeat N]
//
// Workloads: append, read-all, read-stream, open (reports open-clean and open-reindex), subscribe, and
// fsync-probe (the latency of one pwrite+fdatasync on the benchmark's file system, the floor of a durable
// append). Every run works in a fresh temp directory under --dir and removes it afterwards. Progress and
// notes go to stderr; stdout carries only result lines. Bad flags: a message and exit code 2.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cairn/store.h"

namespace {

using Clock = std::chrono::steady_clock;
using cairn::Durability;

constexpr const char* kUsage =
    "usage: cairn-bench WORKLOAD [options]\n"
    "workloads:\n"
    "  append       --writers N threads append batches of --batch events to their own --streams streams\n"
    "               until --events in total (or --seconds, if given, ran out); latency per append call\n"
    "  read-all     build --events events (durability none, batch 100), reopen, time scan_all (--repeat runs)\n"
    "  read-stream  one stream of --events events, read forward in pages of 1000 (--repeat passes)\n"
    "  open         build --events events (durability none, batch 1000), close; time a clean open and an open\n"
    "               of a copy without index/ (full reindex)\n"
    "  subscribe    a subscriber blocked in next(), --writers appenders at --rate events/s for --seconds;\n"
    "               latency from just before append() to the subscriber's receipt\n"
    "  fsync-probe  pwrite of --payload bytes at the end of a file + fdatasync, --events times\n"
    "  purge        build --events events (durability none), each with its /output text sealed as a personal\n"
    "               part of one of 1000 subjects; forget 10 of them; time Store::purge (verify, rewrite + verify of each copy)\n"
    "options (defaults): --writers 1, --batch 1, --events (per workload), --payload 256,\n"
    "  --durability fsync, --dir /tmp, --streams 1000 (per writer), --seconds (append: no cap; subscribe: 5),\n"
    "  --rate 2000, --repeat 5,\n"
    "  --backend URL (append, subscribe: the PostgreSQL backend, a database `cairn pg init` prepared; append then\n"
    "  also runs a subscriber from position 0 and reports any event it skipped or saw twice)\n";

// ---------------------------------------------------------------------------------------------- failures

std::string g_temp_dir;  // removed on every exit path

void remove_temp_dir() {
  if (g_temp_dir.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(g_temp_dir, ec);
  g_temp_dir.clear();
}

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "cairn-bench: %s (see cairn-bench --help)\n", msg.c_str());
  std::exit(2);
}

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "cairn-bench: %s\n", msg.c_str());
  remove_temp_dir();
  std::exit(1);
}

void check(const cairn::Status& st, const char* what) {
  if (!st.ok()) fail(fmt::format("{}: {}", what, st.to_string()));
}

// ---------------------------------------------------------------------------------------------- flags

struct Args {
  std::string workload;
  uint64_t writers = 1;
  uint64_t batch = 1;
  std::optional<uint64_t> events;
  uint64_t payload = 256;
  Durability durability = Durability::kFsync;
  std::string dir = "/tmp";
  uint64_t streams = 1000;
  std::optional<double> seconds;
  double rate = 2000;
  uint64_t repeat = 5;
  bool personal = false;  // append: declare the payload's text personal (sealed with a subject key)
  std::string backend;    // a PostgreSQL connection string: the PostgreSQL backend instead of the embedded store
};

std::string g_backend;  // Args::backend, for the helpers that open stores

uint64_t parse_count(const std::string& flag, const std::string& v, uint64_t min, uint64_t max) {
  uint64_t x = 0;
  // Accept digit groups written with '_' or ',' (e.g. 10_000_000).
  std::string digits;
  for (char c : v)
    if (c != '_' && c != ',') digits.push_back(c);
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), x);
  if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size())
    usage_error(fmt::format("{}: '{}' is not a whole number", flag, v));
  if (x < min || x > max) usage_error(fmt::format("{}: {} is out of range ({}..{})", flag, x, min, max));
  return x;
}

double parse_positive(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || errno != 0 || end != v.c_str() + v.size() || !(x > 0) || !std::isfinite(x))
    usage_error(fmt::format("{}: '{}' is not a positive number", flag, v));
  return x;
}

Args parse_args(int argc, char** argv) {
  if (argc < 2) usage_error("a workload is required");
  Args a;
  a.workload = argv[1];
  if (a.workload == "-h" || a.workload == "--help") {
    std::fputs(kUsage, stdout);
    std::exit(0);
  }
  static const char* kWorkloads[] = {"append", "read-all", "read-stream", "open", "subscribe", "fsync-probe", "purge"};
  if (std::find_if(std::begin(kWorkloads), std::end(kWorkloads), [&](const char* w) { return a.workload == w; }) ==
      std::end(kWorkloads))
    usage_error(fmt::format("unknown workload '{}'", a.workload));
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else {
      if (flag == "-h" || flag == "--help") {
        std::fputs(kUsage, stdout);
        std::exit(0);
      }
      if (flag.rfind("--", 0) != 0) usage_error(fmt::format("unexpected argument '{}'", flag));
      if (i + 1 >= argc) usage_error(fmt::format("{} needs a value", flag));
      value = argv[++i];
    }
    if (flag == "--writers") a.writers = parse_count(flag, value, 1, 4096);
    else if (flag == "--batch") a.batch = parse_count(flag, value, 1, 100'000);
    else if (flag == "--personal") a.personal = value == "1" || value == "true";
    else if (flag == "--events") a.events = parse_count(flag, value, 1, 1'000'000'000'000ull);
    else if (flag == "--payload") a.payload = parse_count(flag, value, 1, 1u << 20);
    else if (flag == "--streams") a.streams = parse_count(flag, value, 1, 100'000'000);
    else if (flag == "--repeat") a.repeat = parse_count(flag, value, 1, 1000);
    else if (flag == "--seconds") a.seconds = parse_positive(flag, value);
    else if (flag == "--rate") a.rate = parse_positive(flag, value);
    else if (flag == "--backend") a.backend = g_backend = value;
    else if (flag == "--dir") {
      if (value.empty()) usage_error("--dir: a directory is required");
      a.dir = value;
    } else if (flag == "--durability") {
      if (value == "fsync") a.durability = Durability::kFsync;
      else if (value == "none") a.durability = Durability::kNone;
      else usage_error(fmt::format("--durability: '{}' is not fsync or none", value));
    } else {
      usage_error(fmt::format("unknown flag '{}'", flag));
    }
  }
  struct stat st {};
  if (::stat(a.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    usage_error(fmt::format("--dir: '{}' is not an existing directory", a.dir));
  return a;
}

// ---------------------------------------------------------------------------------------------- machine

std::string read_first(const char* path, const char* key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      auto v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "";
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", static_cast<int>(c));
        else out += c;
    }
  }
  return out;
}

std::string machine_json() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string mem = read_first("/proc/meminfo", "MemTotal");  // "24576000 kB"
  const double mem_gb = mem.empty() ? 0 : std::strtod(mem.c_str(), nullptr) / (1024.0 * 1024.0);
  std::string cpu = read_first("/proc/cpuinfo", "model name");
  if (cpu.empty()) cpu = "unknown";
  return fmt::format(R"({{"hostname":"{}","nproc":{},"cpu_model":"{}","mem_gib":{:.1f}}})", json_escape(host),
                     ::sysconf(_SC_NPROCESSORS_ONLN), json_escape(cpu), mem_gb);
}

std::string utc_now_iso() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// ---------------------------------------------------------------------------------------------- results

double pct(std::vector<double>& v, double q) {  // nearest rank; v is sorted by the caller
  if (v.empty()) return NAN;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

std::string num(double x, int digits = 1) {
  if (!std::isfinite(x)) return "null";
  return fmt::format("{:.{}f}", x, digits);
}

// One result line. The common fields come first, in a fixed order; extras follow.
struct Result {
  std::string workload;
  uint64_t writers = 1;
  uint64_t batch = 1;
  uint64_t payload_bytes = 0;
  Durability durability = Durability::kFsync;
  uint64_t events = 0;
  double seconds = 0;
  double events_per_s = NAN;
  double mb_per_s = NAN;
  double p50_us = NAN;
  double p99_us = NAN;
  std::vector<std::pair<std::string, std::string>> extra;  // key -> JSON value text

  void add(std::string key, std::string json_value) { extra.emplace_back(std::move(key), std::move(json_value)); }
  void add_str(std::string key, std::string_view s) { add(std::move(key), "\"" + json_escape(s) + "\""); }

  void print() const {
    static const std::string machine = machine_json();
    std::string s = fmt::format(
        R"({{"workload":"{}","writers":{},"batch":{},"payload_bytes":{},"durability":"{}","events":{},)"
        R"("seconds":{},"events_per_s":{},"MB_per_s":{},"p50_us":{},"p99_us":{})",
        workload, writers, batch, payload_bytes, cairn::durability_name(durability), events, num(seconds, 4),
        num(events_per_s, 0), num(mb_per_s, 1), num(p50_us, 1), num(p99_us, 1));
    for (const auto& [k, v] : extra) s += fmt::format(R"(,"{}":{})", k, v);
    s += fmt::format(R"(,"machine":{},"date":"{}"}})", machine, utc_now_iso());
    std::puts(s.c_str());
    std::fflush(stdout);
  }
};

void add_latency(Result& r, std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  r.p50_us = pct(us, 0.50);
  r.p99_us = pct(us, 0.99);
  r.add("p999_us", num(pct(us, 0.999), 1));
  r.add("max_us", num(us.empty() ? NAN : us.back(), 1));
  r.add("samples", std::to_string(us.size()));
}

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// ---------------------------------------------------------------------------------------------- CPU use

double process_cpu_s() {  // user + system time of the whole process
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// CPU seconds (user + system) of every thread of this process, by thread id (clock-tick resolution).
std::map<int, double> thread_cpu_s() {
  std::map<int, double> out;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto rp = stat.rfind(')');  // fields after "(comm)": state is field 3, utime 14, stime 15
    if (rp == std::string::npos) continue;
    std::istringstream f(stat.substr(rp + 2));
    std::string x;
    double ut = 0, st = 0;
    for (int field = 3; field <= 15 && f >> x; ++field) {
      if (field == 14) ut = std::strtod(x.c_str(), nullptr);
      if (field == 15) st = std::strtod(x.c_str(), nullptr);
    }
    out[std::atoi(e->d_name)] = (ut + st) / tick;
  }
  ::closedir(d);
  return out;
}

// Where the CPU went during a measured interval: the whole process, and the busiest threads that lived through
// it (the store's own: its single writer and its index flusher; the benchmark's client threads come and go).
struct CpuProbe {
  double proc0 = 0;
  std::map<int, double> threads0;
  void start() {
    threads0 = thread_cpu_s();
    proc0 = process_cpu_s();
  }
  // Call before the measured threads are joined/destroyed if their share matters; store threads persist.
  void report(Result& r, double wall, uint64_t events) const {
    const double cpu = process_cpu_s() - proc0;
    std::vector<double> deltas;
    for (const auto& [tid, t] : thread_cpu_s())
      if (auto it = threads0.find(tid); it != threads0.end()) deltas.push_back(t - it->second);
    std::sort(deltas.rbegin(), deltas.rend());
    r.add("cpu_s", num(cpu, 2));
    r.add("cores_busy", num(cpu / wall, 2));
    if (events > 0) r.add("cpu_us_per_event", num(cpu * 1e6 / static_cast<double>(events), 2));
    std::string top = "[";
    for (size_t i = 0; i < deltas.size() && i < 2; ++i) top += (i ? "," : "") + num(deltas[i] / wall, 2);
    r.add("store_threads_busy", top + "]");
  }
};

// ---------------------------------------------------------------------------------------------- helpers

std::string make_temp_dir(const std::string& base) {
  std::string tmpl = base + "/cairn-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) fail(fmt::format("cannot create a temp directory in {}: {}", base, std::strerror(errno)));
  g_temp_dir = tmpl;
  return tmpl;
}

std::string filler(size_t n) {
  static const std::string kLorem =
      "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
      "dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip ex "
      "ea commodo consequat ";
  std::string s;
  while (s.size() < n) s += kLorem.substr(0, std::min(kLorem.size(), n - s.size()));
  return s;
}

// An AI-proposal event body padded with filler to `size` bytes (or the bare skeleton, if size is smaller).
// `prefix` goes first inside the object (used by subscribe for its timestamp), e.g. "\"t\":123,".
std::string make_payload(size_t size, std::string_view prefix = {}) {
  std::string head = "{" + std::string(prefix) + R"("model":"m-1","prompt_version":"v3","output":")";
  const std::string tail = R"(","latency_ms":812})";
  const size_t fixed = head.size() + tail.size();
  return head + filler(size > fixed ? size - fixed : 0) + tail;
}

constexpr const char* kEventType = "bench.proposal.made";  // not the ledger type: no vocabulary rules

std::unique_ptr<cairn::Store> open_or_die(const std::string& dir, Durability d) {
  cairn::Options o;
  if (g_backend.empty()) {
    cairn::EmbeddedOptions e;
    e.dir = dir;
    e.durability = d;
    o = std::move(e);
  } else {
    cairn::PostgresOptions p;
    p.connection = g_backend;
    o = std::move(p);
  }
  auto s = cairn::open_store(o);
  if (!s.ok()) fail(fmt::format("open_store({}): {}", dir, s.status().to_string()));
  return std::move(*s);
}

std::vector<cairn::EventData> make_events(size_t n, const std::string& payload, const std::string& metadata = {}) {
  cairn::EventData e;
  e.type = kEventType;
  e.data = payload;
  e.metadata = metadata;
  return std::vector<cairn::EventData>(n, e);
}

// A store whose appends may declare personal parts: its key store sits beside the data directory.
std::unique_ptr<cairn::Store> open_with_keys_or_die(const std::string& dir, Durability d) {
  cairn::EmbeddedOptions o;
  o.dir = dir;
  o.durability = d;
  o.key_store_dir = dir + "-keys";
  o.master_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // a benchmark's throwaway store
  auto s = cairn::open_store(o);
  if (!s.ok()) fail(fmt::format("open_store({}) with a key store: {}", dir, s.status().to_string()));
  return std::move(*s);
}

// Appends `total` events in batches of `batch` from `threads` threads, each to its own `streams` streams
// (or all to `single_stream`, when given, from one thread). Returns the wall time.
double load(cairn::Store& store, uint64_t total, uint64_t batch, uint64_t streams, unsigned threads,
            const std::string& payload, const std::string& single_stream = {}) {
  if (!single_stream.empty()) threads = 1;
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      const uint64_t quota = total / threads + (t < total % threads ? 1 : 0);
      const auto tmpl = make_events(batch, payload);
      uint64_t done = 0, k = 0;
      while (done < quota) {
        const uint64_t n = std::min(batch, quota - done);
        cairn::StreamAppend req;
        req.stream = single_stream.empty() ? fmt::format("load-{}-{}", t, k) : single_stream;
        req.expected = cairn::ExpectedRevision::any();
        req.events.assign(tmpl.begin(), tmpl.begin() + static_cast<ptrdiff_t>(n));
        auto r = store.append(std::move(req));
        if (!r.ok()) fail(fmt::format("load append: {}", r.status().to_string()));
        done += n;
        k = (k + 1) % streams;
      }
    });
  }
  for (auto& t : ts) t.join();
  return secs(Clock::now() - t0);
}

Result base_result(const Args& a, std::string workload) {
  Result r;
  r.workload = std::move(workload);
  r.writers = a.writers;
  r.batch = a.batch;
  r.payload_bytes = make_payload(a.payload).size();
  r.durability = a.durability;
  r.add_str("backend", a.backend.empty() ? "embedded" : "postgres");
  return r;
}

// Reports the build of a store (always durability none): the CPU cost of appending without syncs.
void report_load(const Args& a, const char* what, uint64_t events, uint64_t batch, unsigned threads, double t,
                 uint64_t log_bytes) {
  Result r = base_result(a, "load");
  r.writers = threads;
  r.batch = batch;
  r.durability = Durability::kNone;
  r.events = events;
  r.seconds = t;
  r.events_per_s = static_cast<double>(events) / t;
  r.mb_per_s = static_cast<double>(log_bytes) / t / 1e6;
  r.add_str("for", what);
  r.add_str("note", "store build for the read/open workloads; MB_per_s counts log bytes");
  r.print();
}

struct Stat {
  double best, median;
};
Stat best_median(std::vector<double> times) {
  std::sort(times.begin(), times.end());
  return {times.front(), times[(times.size() - 1) / 2]};
}

// ---------------------------------------------------------------------------------------------- workloads

void run_append(const Args& a) {
  const uint64_t total = a.events.value_or(200'000);
  const std::string dir = make_temp_dir(a.dir);
  auto store = a.personal ? open_with_keys_or_die(dir, a.durability) : open_or_die(dir, a.durability);
  const std::string payload = make_payload(a.payload);

  std::vector<std::vector<double>> lat(a.writers);
  std::vector<uint64_t> done(a.writers, 0);
  std::atomic<uint64_t> ready{0};
  std::atomic<bool> go{false};
  Clock::time_point start;
  const auto cap = a.seconds ? std::optional<Clock::duration>(std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(*a.seconds)))
                             : std::nullopt;
  std::vector<std::thread> ts;
  for (uint64_t t = 0; t < a.writers; ++t) {
    ts.emplace_back([&, t] {
      const uint64_t quota = total / a.writers + (t < total % a.writers ? 1 : 0);
      std::vector<std::string> names;
      for (uint64_t k = 0; k < a.streams; ++k) names.push_back(fmt::format("conv-w{}-{}", t, k));
      // With --personal: the generated text (/output) is one personal part, of one subject per writer.
      const auto tmpl = make_events(
          a.batch, payload,
          a.personal ? fmt::format(R"({{"privacy":{{"subject":"user-{}","personal":["/output"]}}}})", t) : std::string());
      auto& my = lat[t];
      my.reserve(quota / a.batch + 1);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      uint64_t k = 0;
      while (done[t] < quota) {
        const uint64_t n = std::min(a.batch, quota - done[t]);
        cairn::StreamAppend req;
        req.stream = names[k];
        req.expected = cairn::ExpectedRevision::any();
        req.events.assign(tmpl.begin(), tmpl.begin() + static_cast<ptrdiff_t>(n));
        const auto t0 = Clock::now();
        auto r = store->append(std::move(req));
        const auto t1 = Clock::now();
        if (!r.ok()) fail(fmt::format("append: {}", r.status().to_string()));
        my.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        done[t] += n;
        k = (k + 1) % a.streams;
        if (cap && t1 - start > *cap) break;
      }
    });
  }
  // On the PostgreSQL backend a subscriber follows $all from 0 during the run: the goal is throughput with no
  // skipped event, so it checks that every position arrives once, in order.
  std::atomic<bool> writers_done{false};
  uint64_t sub_events = 0, sub_skipped = 0, sub_repeated = 0;
  std::thread subscriber;
  if (!a.backend.empty()) {
    subscriber = std::thread([&] {
      auto sub = store->subscribe_all(0, cairn::Filter{});
      if (!sub.ok()) fail(fmt::format("subscribe_all: {}", sub.status().to_string()));
      uint64_t want = 0;
      for (;;) {
        const bool last_round = writers_done.load();
        auto b = (*sub)->next(10'000, std::chrono::milliseconds(50));
        if (!b.ok()) fail(fmt::format("subscription: {}", b.status().to_string()));
        for (const auto& e : *b) {
          if (e.position > want) sub_skipped += e.position - want;
          if (e.position < want) ++sub_repeated;
          want = std::max(want, e.position + 1);
          ++sub_events;
        }
        if (last_round && b->empty() && want >= store->head_position()) break;
      }
    });
  }
  while (ready.load() < a.writers) std::this_thread::yield();
  CpuProbe cpu;
  cpu.start();
  start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : ts) t.join();
  const double elapsed = secs(Clock::now() - start);
  writers_done = true;
  if (subscriber.joinable()) subscriber.join();
  uint64_t total_done = 0;
  for (uint64_t d : done) total_done += d;
  Result r = base_result(a, "append");
  cpu.report(r, elapsed, total_done);
  const uint64_t log_bytes = store->stats().log_bytes;
  check(store->close(), "close");
  store.reset();

  r.events = total_done;
  r.seconds = elapsed;
  r.events_per_s = static_cast<double>(r.events) / elapsed;
  r.mb_per_s = static_cast<double>(r.events * payload.size()) / elapsed / 1e6;
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  r.add("appends_per_s", num(static_cast<double>(all.size()) / elapsed, 0));
  r.add("log_MB_per_s", num(static_cast<double>(log_bytes) / elapsed / 1e6, 1));
  r.add("streams_per_writer", std::to_string(a.streams));
  r.add("capped_by_seconds", r.events < total ? "true" : "false");
  add_latency(r, all);
  r.add("personal", a.personal ? "true" : "false");
  if (!a.backend.empty()) {
    r.add("subscriber_events", std::to_string(sub_events));
    r.add("subscriber_skipped", std::to_string(sub_skipped));
    r.add("subscriber_repeated", std::to_string(sub_repeated));
    r.add_str("durability_note", "the PostgreSQL backend: an append returns after PostgreSQL's commit "
                                 "(fsync=on, synchronous_commit=on); the subscriber runs in the same process");
  }
  if (a.personal)
    r.add_str("personal_parts", "each event declares /output (the generated text) personal, one subject per writer: "
                                "sealed with XChaCha20-Poly1305 under that subject's key; the key store beside the data");
  r.add_str("latency", "per append() call");
  r.add_str("note", "MB_per_s counts payload (data) bytes; cpu_s is the whole process (client threads included); "
                    "store_threads_busy: the two busiest store threads (writer, index flusher) as a share of one core");
  r.print();
  if (a.personal) {
    std::error_code ec;
    std::filesystem::remove_all(dir + "-keys", ec);
  }
  remove_temp_dir();
}

void run_read_all(const Args& a) {
  const uint64_t total = a.events.value_or(1'000'000);
  const std::string dir = make_temp_dir(a.dir);
  const std::string payload = make_payload(a.payload);
  {
    auto store = open_or_die(dir, Durability::kNone);
    const double t = load(*store, total, 100, a.streams, 2, payload);
    report_load(a, "read-all", total, 100, 2, t, store->stats().log_bytes);
    check(store->close(), "close");
  }
  auto store = open_or_die(dir, Durability::kNone);
  const uint64_t log_bytes = store->stats().log_bytes;
  std::vector<double> times;
  uint64_t payload_bytes = 0;
  for (uint64_t i = 0; i < a.repeat; ++i) {
    uint64_t count = 0, bytes = 0;
    const auto t0 = Clock::now();
    check(store->scan_all(0, cairn::Filter{}, [&](const cairn::EventView& v) {
            ++count;
            bytes += v.data.size() + v.metadata.size();
            return true;
          }),
          "scan_all");
    times.push_back(secs(Clock::now() - t0));
    if (count != total) fail(fmt::format("scan_all visited {} events, expected {}", count, total));
    payload_bytes = bytes;
  }
  check(store->close(), "close");
  store.reset();
  const Stat s = best_median(times);
  for (auto [which, t] : {std::pair{"best", s.best}, std::pair{"median", s.median}}) {
    Result r = base_result(a, "read-all");
    r.durability = Durability::kNone;
    r.batch = 100;
    r.writers = 1;
    r.events = total;
    r.seconds = t;
    r.events_per_s = static_cast<double>(total) / t;
    r.mb_per_s = static_cast<double>(log_bytes) / t / 1e6;
    r.add_str("stat", which);
    r.add("runs", std::to_string(times.size()));
    r.add("first_run_s", num(times.front(), 4));
    r.add("payload_MB_per_s", num(static_cast<double>(payload_bytes) / t / 1e6, 1));
    r.add_str("note", "scan_all from page cache after close+reopen; MB_per_s counts log bytes (frames, headers, "
                      "checksums); stat says which of the runs this is");
    r.print();
  }
  remove_temp_dir();
}

void run_read_stream(const Args& a) {
  const uint64_t total = a.events.value_or(100'000);
  const std::string dir = make_temp_dir(a.dir);
  const std::string payload = make_payload(a.payload);
  const std::string stream = "conv-long";
  {
    auto store = open_or_die(dir, Durability::kNone);
    const double t = load(*store, total, 100, 1, 1, payload, stream);
    report_load(a, "read-stream", total, 100, 1, t, store->stats().log_bytes);
    check(store->close(), "close");
  }
  auto store = open_or_die(dir, Durability::kNone);
  constexpr size_t kPage = 1000;
  std::vector<double> times, page_us;
  for (uint64_t i = 0; i < a.repeat; ++i) {
    uint64_t count = 0;
    std::optional<uint64_t> rev = 0;
    const auto t0 = Clock::now();
    while (rev) {
      const auto p0 = Clock::now();
      auto page = store->read_stream(stream, rev, cairn::Direction::kForward, kPage);
      page_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - p0).count());
      if (!page.ok()) fail(fmt::format("read_stream: {}", page.status().to_string()));
      if (!page->events.empty() && page->events.front().revision != *rev)
        fail(fmt::format("read_stream: page starts at revision {}, asked for {}", page->events.front().revision, *rev));
      count += page->events.size();
      rev = page->next;
    }
    times.push_back(secs(Clock::now() - t0));
    if (count != total) fail(fmt::format("read_stream read {} events, expected {}", count, total));
  }
  check(store->close(), "close");
  store.reset();
  const Stat s = best_median(times);
  for (auto [which, t] : {std::pair{"best", s.best}, std::pair{"median", s.median}}) {
    Result r = base_result(a, "read-stream");
    r.durability = Durability::kNone;
    r.batch = kPage;
    r.writers = 1;
    r.events = total;
    r.seconds = t;
    r.events_per_s = static_cast<double>(total) / t;
    r.mb_per_s = static_cast<double>(total * payload.size()) / t / 1e6;
    std::vector<double> lat = page_us;
    add_latency(r, lat);
    r.add_str("stat", which);
    r.add("runs", std::to_string(times.size()));
    r.add_str("latency", "per read_stream page of 1000 events, over all runs");
    r.add_str("note", "batch is the page size; MB_per_s counts payload bytes copied out");
    r.print();
  }
  remove_temp_dir();
}

void run_open(const Args& a) {
  const uint64_t total = a.events.value_or(10'000'000);
  const std::string dir = make_temp_dir(a.dir);
  const std::string store_dir = dir + "/store";
  const std::string copy_dir = dir + "/copy";
  const std::string payload = make_payload(a.payload);
  uint64_t log_bytes = 0, runs = 0;
  {
    auto store = open_or_die(store_dir, Durability::kNone);
    const double t = load(*store, total, 1000, a.streams, 2, payload);
    log_bytes = store->stats().log_bytes;
    report_load(a, "open", total, 1000, 2, t, log_bytes);
    const auto c0 = Clock::now();
    check(store->close(), "close");
    std::fprintf(stderr, "cairn-bench: built %llu events in %.1f s, close %.2f s\n",
                 static_cast<unsigned long long>(total), t, secs(Clock::now() - c0));
    runs = store->metrics().index_runs;
  }
  // The crash-like copy: the log as it is, the derived index gone, so the open replays all of it.
  const auto cp0 = Clock::now();
  std::filesystem::copy(store_dir, copy_dir, std::filesystem::copy_options::recursive);
  std::filesystem::remove_all(copy_dir + "/index");
  std::filesystem::remove(copy_dir + "/LOCK");
  std::fprintf(stderr, "cairn-bench: copied the store in %.1f s\n", secs(Clock::now() - cp0));

  auto timed_open = [&](const std::string& d, uint64_t* head, double* close_s) {
    const auto t0 = Clock::now();
    auto store = open_or_die(d, Durability::kFsync);
    const double t = secs(Clock::now() - t0);
    *head = store->head_position();
    const auto c0 = Clock::now();
    check(store->close(), "close");
    *close_s = secs(Clock::now() - c0);
    return t;
  };
  std::vector<double> clean;
  double clean_close = 0;
  for (uint64_t i = 0; i < std::max<uint64_t>(a.repeat, 3); ++i) {
    uint64_t head = 0;
    clean.push_back(timed_open(store_dir, &head, &clean_close));
    if (head != total) fail(fmt::format("open-clean: head {} != {}", head, total));
  }
  uint64_t head = 0;
  double reindex_close = 0;
  const double reindex = timed_open(copy_dir, &head, &reindex_close);
  if (head != total) fail(fmt::format("open-reindex: head {} != {}", head, total));

  const Stat s = best_median(clean);
  Result r = base_result(a, "open-clean");
  r.durability = Durability::kFsync;
  r.batch = 1000;
  r.events = total;
  r.seconds = s.median;
  r.add_str("stat", "median");
  r.add("best_s", num(s.best, 4));
  r.add("runs", std::to_string(clean.size()));
  r.add("index_runs", std::to_string(runs));
  r.add("log_bytes", std::to_string(log_bytes));
  r.add_str("note", "open_store of a cleanly closed store (page cache warm); seconds is the median");
  r.print();

  Result q = base_result(a, "open-reindex");
  q.durability = Durability::kFsync;
  q.batch = 1000;
  q.events = total;
  q.seconds = reindex;
  q.events_per_s = static_cast<double>(total) / reindex;
  q.mb_per_s = static_cast<double>(log_bytes) / reindex / 1e6;
  q.add("close_after_s", num(reindex_close, 4));
  q.add("log_bytes", std::to_string(log_bytes));
  q.add_str("note", "open_store of a copy with index/ deleted: a full reindex from the log (page cache warm); "
                    "close_after_s is the close that follows, which waits for the index runs to be written");
  q.print();
  remove_temp_dir();
}

void run_subscribe(const Args& a) {
  const double seconds = a.seconds.value_or(5.0);
  const uint64_t total = a.events.value_or(static_cast<uint64_t>(a.rate * seconds));
  const std::string dir = make_temp_dir(a.dir);
  auto store = open_or_die(dir, a.durability);
  auto sub = store->subscribe_all(0, cairn::Filter{});
  if (!sub.ok()) fail(fmt::format("subscribe_all: {}", sub.status().to_string()));

  auto now_ns = [] { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); };
  std::vector<double> e2e;
  e2e.reserve(total);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> received{0};
  std::thread subscriber([&] {
    while (received.load() < total && !stop.load()) {
      auto r = (*sub)->next(1000, std::chrono::milliseconds(100));
      const int64_t at = now_ns();
      if (!r.ok()) fail(fmt::format("next: {}", r.status().to_string()));
      for (const auto& ev : *r) {
        // The data starts with {"t":<steady-clock ns>,
        if (ev.data.rfind("{\"t\":", 0) != 0) fail("subscribe: an event without its timestamp");
        const int64_t sent = std::strtoll(ev.data.c_str() + 5, nullptr, 10);
        e2e.push_back(static_cast<double>(at - sent) / 1000.0);
        received.fetch_add(1);
      }
    }
  });

  std::vector<std::vector<double>> append_us(a.writers);
  std::vector<std::thread> ts;
  const auto start = Clock::now() + std::chrono::milliseconds(20);
  for (uint64_t w = 0; w < a.writers; ++w) {
    ts.emplace_back([&, w] {
      const uint64_t quota = total / a.writers + (w < total % a.writers ? 1 : 0);
      const double period = static_cast<double>(a.writers) / a.rate;  // seconds between this writer's appends
      const std::string stream = fmt::format("live-{}", w);
      for (uint64_t i = 0; i < quota; ++i) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(period * (static_cast<double>(i) +
                                                                             static_cast<double>(w) / a.writers)));
        std::this_thread::sleep_until(due);
        cairn::StreamAppend req;
        req.stream = stream;
        const int64_t t0 = now_ns();
        req.events = make_events(1, make_payload(a.payload, fmt::format("\"t\":{},", t0)));
        auto r = store->append(std::move(req));
        if (!r.ok()) fail(fmt::format("append: {}", r.status().to_string()));
        append_us[w].push_back(static_cast<double>(now_ns() - t0) / 1000.0);
      }
    });
  }
  for (auto& t : ts) t.join();
  const double elapsed = secs(Clock::now() - start);
  // Let the subscriber drain (it sees everything durable); give up after 10 s.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (received.load() >= total) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop = true;
  (*sub)->cancel();
  subscriber.join();
  sub->reset();
  check(store->close(), "close");
  store.reset();
  if (received.load() != total) fail(fmt::format("subscribe: received {} of {} events", received.load(), total));

  Result r = base_result(a, "subscribe");
  r.batch = 1;
  r.events = received.load();
  r.seconds = elapsed;
  r.events_per_s = static_cast<double>(total) / elapsed;
  r.mb_per_s = static_cast<double>(total * r.payload_bytes) / elapsed / 1e6;
  add_latency(r, e2e);
  std::vector<double> app;
  for (auto& v : append_us) app.insert(app.end(), v.begin(), v.end());
  std::sort(app.begin(), app.end());
  r.add("target_rate", num(a.rate, 0));
  r.add("append_p50_us", num(pct(app, 0.5), 1));
  r.add("append_p99_us", num(pct(app, 0.99), 1));
  r.add_str("latency", "end to end: steady clock just before append() to the subscriber's next() return");
  r.add_str("note", "writers = appender threads, each paced; events_per_s is the achieved append rate");
  r.print();
  remove_temp_dir();
}

void run_fsync_probe(const Args& a) {
  const uint64_t n = a.events.value_or(2000);
  const std::string dir = make_temp_dir(a.dir);
  const std::string path = dir + "/probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
  std::string buf(a.payload, 'x');
  std::vector<double> us;
  off_t off = 0;
  const auto start = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    if (::pwrite(fd, buf.data(), buf.size(), off) != static_cast<ssize_t>(buf.size()))
      fail(fmt::format("pwrite: {}", std::strerror(errno)));
    if (::fdatasync(fd) != 0) fail(fmt::format("fdatasync: {}", std::strerror(errno)));
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    off += static_cast<off_t>(buf.size());
  }
  const double elapsed = secs(Clock::now() - start);
  ::close(fd);
  Result r = base_result(a, "fsync-probe");
  r.payload_bytes = a.payload;
  r.writers = 1;
  r.batch = 1;
  r.durability = Durability::kFsync;
  r.events = n;
  r.seconds = elapsed;
  r.events_per_s = static_cast<double>(n) / elapsed;
  r.mb_per_s = static_cast<double>(n * a.payload) / elapsed / 1e6;
  add_latency(r, us);
  r.add_str("fs_dir", a.dir);
  r.add_str("note", "pwrite at the end of a growing file + fdatasync, one at a time: the floor of one durable append");
  r.print();
  remove_temp_dir();
}

}  // namespace

void run_purge(const Args& a) {
  const uint64_t total = a.events.value_or(1'000'000);
  const std::string dir = make_temp_dir(a.dir);
  const std::string payload = make_payload(a.payload);
  constexpr uint64_t kSubjects = 1000, kForgotten = 10;
  {
    auto store = open_with_keys_or_die(dir, Durability::kNone);
    const auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < 2; ++t)
      ts.emplace_back([&, t] {
        uint64_t k = t;
        for (uint64_t done = t * 100; done < total; done += 200) {
          cairn::StreamAppend req;
          req.stream = fmt::format("customer-{}", k % 997);
          req.expected = cairn::ExpectedRevision::any();
          for (uint64_t i = 0; i < 100 && done + i < total; ++i) {
            cairn::EventData e;
            e.type = kEventType;
            e.data = payload;  // its /output (the generated text) is the personal part
            e.metadata = fmt::format(R"({{"privacy":{{"subject":"user-{}","personal":["/output"]}}}})", (done + i) % kSubjects);
            req.events.push_back(std::move(e));
          }
          auto r = store->append(std::move(req));
          if (!r.ok()) fail(fmt::format("purge load: {}", r.status().to_string()));
          ++k;
        }
      });
    for (auto& t : ts) t.join();
    report_load(a, "purge", total, 100, 2, secs(Clock::now() - t0), store->stats().log_bytes);
    for (uint64_t s = 0; s < kForgotten; ++s) check(store->forget(fmt::format("user-{}", s), "benchmark", "").status(), "forget");
    check(store->close(), "close");
  }
  auto store = open_with_keys_or_die(dir, a.durability);
  // The phases, timed from the progress callback: the verify of every sealed segment (the first third of the
  // progress), then per segment the rewrite and the verify of the rewritten copy.
  std::optional<Clock::time_point> verified;
  const auto start = Clock::now();
  auto p = store->purge("", [&](uint64_t done, uint64_t total_bytes) {
    if (!verified && done >= total_bytes / 3) verified = Clock::now();
  });
  const double elapsed = secs(Clock::now() - start);
  if (!p.ok()) fail(fmt::format("purge: {}", p.status().to_string()));
  if (!verified) verified = Clock::now();
  check(store->close(), "close");
  store.reset();
  Result r = base_result(a, "purge");
  r.events = total;
  r.seconds = elapsed;
  r.events_per_s = static_cast<double>(total) / elapsed;
  r.mb_per_s = static_cast<double>(p->bytes_scanned) / elapsed / 1e6;
  const double verify_s = secs(*verified - start), rewrite_s = elapsed - verify_s;
  r.add("log_bytes", std::to_string(p->bytes_scanned));
  r.add("segments_scanned", std::to_string(p->segments_scanned));
  r.add("segments_rewritten", std::to_string(p->segments_rewritten));
  r.add("parts_purged", std::to_string(p->parts));
  r.add("bytes_replaced", std::to_string(p->bytes_replaced));
  r.add("verify_MB_per_s", num(static_cast<double>(p->bytes_scanned) / verify_s / 1e6, 1));
  r.add("rewrite_and_check_MB_per_s", num(static_cast<double>(p->bytes_scanned) / rewrite_s / 1e6, 1));
  r.add("chain_unchanged", p->chain_head_before == p->chain_head_after ? "true" : "false");
  r.add_str("note", fmt::format("every event has one sealed part of one of {} subjects; {} subjects forgotten, so every "
                                "segment holds forgotten parts (all rewritten); MB_per_s = log bytes / whole purge "
                                "(verify, then per segment rewrite + verify of the copy); verify_MB_per_s: the first "
                                "verify; rewrite_and_check_MB_per_s: the rest",
                                kSubjects, kForgotten));
  r.print();
  std::error_code ec;
  std::filesystem::remove_all(dir + "-keys", ec);
  remove_temp_dir();
}

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  if (a.workload == "append") run_append(a);
  else if (a.workload == "read-all") run_read_all(a);
  else if (a.workload == "read-stream") run_read_stream(a);
  else if (a.workload == "open") run_open(a);
  else if (a.workload == "subscribe") run_subscribe(a);
  else if (a.workload == "fsync-probe") run_fsync_probe(a);
  else if (a.workload == "purge") run_purge(a);
  remove_temp_dir();
  return 0;
}
