// cairn-http-bench: load for cairnd from a second process, over loopback HTTP/1.1 keep-alive connections.
//
//   cairn-http-bench append --port P --key K [--connections 64] [--batch 1] [--seconds 10] [--payload 256]
//   cairn-http-bench sse    --port P --key K [--subscribers 100] [--rate 1000] [--seconds 5]
//
// append: each connection appends batches of --batch events (expected revision any, its own streams) in a
// loop, all connections on one event-loop thread (like redis-benchmark); latency is measured around each
// request. sse: --subscribers SSE connections on /v1/subscribe and
// one appender at --rate events/s; latency is from just before the append request to each subscriber's
// receipt (the event carries its send time). One JSON object per result line, like cairn-bench.
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string workload;
  int port = 2114;
  std::string key;
  int connections = 64;
  int batch = 1;
  double seconds = 10;
  int payload = 256;
  int subscribers = 100;
  int rate = 1000;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "cairn-http-bench: %s\nusage: cairn-http-bench append|sse --port P --key K [options] (see the source header)\n",
               why.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  if (argc < 2) usage("a workload is required");
  Args a;
  a.workload = argv[1];
  if (a.workload != "append" && a.workload != "sse") usage("unknown workload '" + a.workload + "'");
  for (int i = 2; i < argc; i += 2) {
    const std::string f = argv[i];
    if (i + 1 >= argc) usage(f + " needs a value");
    const std::string v = argv[i + 1];
    char* end = nullptr;
    const double n = std::strtod(v.c_str(), &end);
    const bool num = end && *end == '\0' && n >= 0;
    if (f == "--key") a.key = v;
    else if (!num) usage(f + ": '" + v + "' is not a non-negative number");
    else if (f == "--port") a.port = static_cast<int>(n);
    else if (f == "--connections") a.connections = std::max(1, static_cast<int>(n));
    else if (f == "--batch") a.batch = std::max(1, static_cast<int>(n));
    else if (f == "--seconds") a.seconds = n;
    else if (f == "--payload") a.payload = static_cast<int>(n);
    else if (f == "--subscribers") a.subscribers = std::max(1, static_cast<int>(n));
    else if (f == "--rate") a.rate = std::max(1, static_cast<int>(n));
    else usage("unknown flag " + f);
  }
  if (a.key.empty()) usage("--key is required");
  return a;
}

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(i), v.end());
  return v[i];
}

std::string machine_json() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return fmt::format(R"({{"hostname":"{}","nproc":{}}})", host, std::thread::hardware_concurrency());
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string event_body(int batch, int payload, int64_t sent_ns) {
  std::string filler(static_cast<size_t>(std::max(0, payload - 80)), 'x');
  std::string events;
  for (int i = 0; i < batch; ++i) {
    if (i) events += ',';
    events += fmt::format(R"({{"type":"bench.proposal.made","data":{{"model":"m-1","prompt_version":"v3","sent_ns":{},"output":"{}"}}}})",
                          sent_ns, filler);
  }
  return R"({"expected_revision":"any","events":[)" + events + "]}";
}

int64_t mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// The load of one connection: a request, its answer, the next request (keep-alive, no pipelining).
struct AppendConn {
  explicit AppendConn(boost::asio::io_context& ioc) : socket(ioc) {}
  tcp::socket socket;
  beast::flat_buffer buffer;
  http::request<http::string_body> req;
  http::response<http::string_body> res;
  Clock::time_point sent;
  int index = 0;
  uint64_t i = 0;
};

// All connections on one thread of one event loop, as redis-benchmark drives Redis: the load generator
// costs the machine one core at most, whatever the number of connections (the server runs beside it).
void run_append(const Args& a) {
  boost::asio::io_context ioc;
  std::atomic<bool> stop{false};
  uint64_t ok = 0, failed = 0, refused = 0;
  std::vector<double> lat_us;
  lat_us.reserve(1 << 20);
  std::vector<std::shared_ptr<AppendConn>> conns;
  const std::string body = event_body(a.batch, a.payload, 0);
  const tcp::endpoint server(boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(a.port));
  std::function<void(const std::shared_ptr<AppendConn>&)> send = [&](const std::shared_ptr<AppendConn>& k) {
    if (stop.load(std::memory_order_relaxed)) return;
    k->req = {http::verb::post, fmt::format("/v1/streams/bench-{}-{}", k->index, k->i++ % 100), 11};
    k->req.set(http::field::host, "127.0.0.1");
    k->req.set(http::field::authorization, "Bearer " + a.key);
    k->req.set(http::field::content_type, "application/json");
    k->req.body() = body;
    k->req.prepare_payload();
    k->sent = Clock::now();
    http::async_write(k->socket, k->req, [&, k](beast::error_code ec, size_t) {
      if (ec) return (void)++failed;
      k->res = {};
      http::async_read(k->socket, k->buffer, k->res, [&, k](beast::error_code ec2, size_t) {
        if (ec2) return (void)++failed;
        lat_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - k->sent).count());
        const unsigned status = k->res.result_int();
        if (status == 201) ++ok;
        else if (status == 503) ++refused;  // overloaded: told to come back, not a failure of the server
        else ++failed;
        send(k);
      });
    });
  };
  for (int c = 0; c < a.connections; ++c) {
    auto k = std::make_shared<AppendConn>(ioc);
    k->index = c;
    conns.push_back(k);
    k->socket.async_connect(server, [&, k](beast::error_code ec) {
      if (ec) return (void)++failed;
      k->socket.set_option(tcp::no_delay(true));
      send(k);
    });
  }
  const auto start = Clock::now();
  boost::asio::steady_timer timer(ioc, std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.seconds)));
  timer.async_wait([&](beast::error_code) { stop = true; });
  ioc.run();  // ends when every connection has had its last answer after the stop
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double events = static_cast<double>(ok) * a.batch;
  std::printf(
      "{\"system\":\"cairn-http\",\"workload\":\"http-append\",\"connections\":%d,\"batch\":%d,\"payload_bytes\":%d,"
      "\"durability\":\"server\",\"requests\":%llu,\"failed\":%llu,\"refused\":%llu,\"events\":%.0f,\"seconds\":%.3f,"
      "\"events_per_s\":%.0f,\"requests_per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
      "\"client\":\"one event-loop thread\",\"machine\":%s,\"date\":\"%s\"}\n",
      a.connections, a.batch, a.payload, (unsigned long long)ok, (unsigned long long)failed, (unsigned long long)refused,
      events, secs, events / secs, static_cast<double>(ok) / secs, pct(lat_us, 0.5), pct(lat_us, 0.99), pct(lat_us, 0.999),
      machine_json().c_str(), now_utc().c_str());
}

// The head position now (GET /health), so that subscribers start live rather than re-reading history.
uint64_t head_position(int port) {
  boost::asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)));
  http::request<http::string_body> req{http::verb::get, "/health", 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(stream, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(stream, buf, res);
  const auto p = res.body().find("\"head_position\":");
  return p == std::string::npos ? 0 : std::strtoull(res.body().c_str() + p + 16, nullptr, 10);
}

void run_sse(const Args& a) {
  const uint64_t from = head_position(a.port);
  std::atomic<bool> stop{false};
  std::atomic<int> connected{0};
  std::mutex mu;
  std::vector<double> lat_us;
  std::atomic<uint64_t> received{0};
  std::vector<std::thread> subs;
  for (int s = 0; s < a.subscribers; ++s)
    subs.emplace_back([&] {
      std::vector<double> mine;
      try {
        boost::asio::io_context ioc;
        tcp::socket sock(ioc);
        sock.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(a.port)));
        const std::string req = "GET /v1/subscribe?from=" + std::to_string(from) +
                                "&stream_prefix=sse- HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + a.key +
                                "\r\nAccept: application/x-ndjson\r\n\r\n";
        boost::asio::write(sock, boost::asio::buffer(req));
        ::timeval tv{0, 100000};
        ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        connected.fetch_add(1);
        std::string buf;
        char tmp[65536];
        while (!stop.load()) {
          const ssize_t n = ::recv(sock.native_handle(), tmp, sizeof tmp, 0);
          if (n == 0) break;
          if (n < 0) continue;
          const int64_t now = mono_ns();
          buf.append(tmp, static_cast<size_t>(n));
          size_t nl;
          while ((nl = buf.find('\n')) != std::string::npos) {
            const auto p = buf.find("\"sent_ns\":");
            if (p != std::string::npos && p < nl) {
              const int64_t sent = std::strtoll(buf.c_str() + p + 10, nullptr, 10);
              mine.push_back(static_cast<double>(now - sent) / 1000.0);
              received.fetch_add(1);
            }
            buf.erase(0, nl + 1);
          }
        }
      } catch (const std::exception&) {
      }
      std::lock_guard g(mu);
      lat_us.insert(lat_us.end(), mine.begin(), mine.end());
    });
  while (connected.load() < a.subscribers) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  uint64_t appended = 0;
  {
    boost::asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(a.port)));
    beast::flat_buffer buf;
    const auto start = Clock::now();
    const auto gap = std::chrono::duration<double>(1.0 / a.rate);
    for (uint64_t i = 0; Clock::now() - start < std::chrono::duration<double>(a.seconds); ++i) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(gap * static_cast<double>(i));
      std::this_thread::sleep_until(due);
      http::request<http::string_body> req{http::verb::post, fmt::format("/v1/streams/sse-{}", i % 10), 11};
      req.set(http::field::host, "127.0.0.1");
      req.set(http::field::authorization, "Bearer " + a.key);
      req.set(http::field::content_type, "application/json");
      req.body() = event_body(1, a.payload, mono_ns());
      req.prepare_payload();
      http::write(stream, req);
      http::response<http::string_body> res;
      http::read(stream, buf, res);
      if (res.result_int() == 201) ++appended;
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  for (auto& t : subs) t.join();
  const uint64_t expected = appended * static_cast<uint64_t>(a.subscribers);
  std::printf(
      "{\"system\":\"cairn-http\",\"workload\":\"sse-fanout\",\"subscribers\":%d,\"rate\":%d,\"durability\":\"server\","
      "\"appended\":%llu,\"delivered\":%llu,\"expected_deliveries\":%llu,\"deliveries_per_s\":%.0f,\"p50_us\":%.1f,"
      "\"p99_us\":%.1f,\"p999_us\":%.1f,\"machine\":%s,\"date\":\"%s\"}\n",
      a.subscribers, a.rate, (unsigned long long)appended, (unsigned long long)received.load(),
      (unsigned long long)expected, static_cast<double>(received.load()) / a.seconds, pct(lat_us, 0.5),
      pct(lat_us, 0.99), pct(lat_us, 0.999), machine_json().c_str(), now_utc().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.workload == "append") run_append(a);
  else run_sse(a);
  return 0;
}
