// cairnd killed (SIGKILL) with thousands of appends in flight over as many connections, answered
// asynchronously (Store::append_async): every append that got a 2xx is in the log after a restart, and an
// append whose answer was lost is either there or not, never half: a retry with the same id answers it
// (200 replayed when it was there, 201 when it was not), and then it is there.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "cairn/store.h"
#include "server/harness.h"
#include "testing/temp_dir.h"

namespace cairn::server_test {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

// Many keep-alive connections, each appending one event at a time to its own stream with ids it chose,
// on one io_context: `connections` appends are in flight at any moment.
class InFlightLoad {
 public:
  InFlightLoad(int port, std::string key, int connections) : port_(port), key_(std::move(key)) {
    for (int c = 0; c < connections; ++c) conns_.push_back(std::make_shared<Conn>(ioc_, c));
  }
  void start() {
    for (auto& c : conns_) connect(c);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  // Waits until every connection has ended (the server is gone), at most 30 s.
  void join() {
    for (int i = 0; i < 3000 && live_.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ioc_.stop();
    thread_.join();
  }
  uint64_t answered() const { return answered_.load(); }

  std::vector<std::string> acked, unanswered;  // ids; read after join()
  uint64_t refused = 0;                        // non-2xx answers (e.g. 503 overloaded): not appended

 private:
  struct Conn {
    Conn(net::io_context& ioc, int index) : socket(ioc), c(index) {}
    tcp::socket socket;
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    http::response<http::string_body> res;
    std::string id;
    int c;
    int i = 0;
  };

  void connect(const std::shared_ptr<Conn>& k) {
    ++live_;
    k->socket.async_connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_)),
                            [this, k](beast::error_code ec) {
                              if (ec) return end(k, false);
                              send(k);
                            });
  }
  void send(const std::shared_ptr<Conn>& k) {
    char id[40];
    std::snprintf(id, sizeof id, "0190c0de-%04x-7000-8000-%012x", k->c, k->i++);
    k->id = id;
    k->req = {http::verb::post, "/v1/streams/inflight-" + std::to_string(k->c), 11};
    k->req.set(http::field::host, "127.0.0.1");
    k->req.set(http::field::authorization, "Bearer " + key_);
    k->req.set(http::field::content_type, "application/json");
    k->req.body() = one_event("any", "t", "{\"n\":" + std::to_string(k->i) + "}", k->id);
    k->req.prepare_payload();
    http::async_write(k->socket, k->req, [this, k](beast::error_code ec, size_t) {
      if (ec) return end(k, true);
      k->res = {};
      http::async_read(k->socket, k->buffer, k->res, [this, k](beast::error_code ec2, size_t) {
        if (ec2) return end(k, true);
        ++answered_;
        {
          std::lock_guard g(mu_);
          if (k->res.result_int() == 200 || k->res.result_int() == 201) acked.push_back(k->id);
          else ++refused;
        }
        send(k);
      });
    });
  }
  // The connection is over; with `in_flight`, its last request got no answer.
  void end(const std::shared_ptr<Conn>& k, bool in_flight) {
    if (in_flight) {
      std::lock_guard g(mu_);
      unanswered.push_back(k->id);
    }
    beast::error_code ignored;
    k->socket.close(ignored);
    --live_;
  }

  net::io_context ioc_;
  int port_;
  std::string key_;
  std::vector<std::shared_ptr<Conn>> conns_;
  std::thread thread_;
  std::mutex mu_;
  std::atomic<int> live_{0};
  std::atomic<uint64_t> answered_{0};
};

void raise_fd_limit() {
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

TEST(ServerAsync, KillWithThousandsInFlightLosesNothingAcknowledged) {
  raise_fd_limit();
  constexpr int kConnections = 2000;
  cairn::testing::TempDir dir;
  std::mt19937 rng(7);
  std::vector<std::string> acked, unanswered;
  std::string key;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Cairnd d(dir.path(), {"--max-queued", "8192"});
    if (round == 0) key = d.key();
    InFlightLoad load(d.port(), key, kConnections);
    load.start();
    // Let every connection get going, then kill while they all have a request out.
    for (int i = 0; i < 2000 && load.answered() < 3 * kConnections; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 100));
    d.stop(SIGKILL);
    load.join();
    EXPECT_GT(load.acked.size(), 0u);
    // Nearly every connection had a request out when cairnd died.
    EXPECT_GT(load.unanswered.size(), static_cast<size_t>(kConnections / 2));
    acked.insert(acked.end(), load.acked.begin(), load.acked.end());
    unanswered.insert(unanswered.end(), load.unanswered.begin(), load.unanswered.end());
  }
  {
    cairn::EmbeddedOptions o;
    o.dir = dir.path();
    o.read_only = true;
    auto s = cairn::open_store(o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    size_t missing = 0;
    for (const auto& id : acked)
      if (!(*s)->read_event(*cairn::Uuid::parse(id)).ok()) ++missing;
    EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged appends";
  }
  // Each unanswered append, retried with its id and its stream, is answered: replayed if it was there.
  Cairnd d(dir.path());
  size_t replayed = 0, created = 0;
  for (const auto& id : unanswered) {
    // The same request again: its stream and data follow from the id (connection, sequence number).
    const int conn = std::stoi(id.substr(9, 4), nullptr, 16);
    const long long seq = std::stoll(id.substr(24), nullptr, 16);
    auto r = call(d.port(), http::verb::post, "/v1/streams/inflight-" + std::to_string(conn), key,
                  one_event("any", "t", "{\"n\":" + std::to_string(seq + 1) + "}", id));
    if (r.status == 200) ++replayed;
    else if (r.status == 201) ++created;
    else ADD_FAILURE() << "retry of " << id << ": " << r.status << " " << r.body;
    if (r.status != 200 && r.status != 201) break;
  }
  EXPECT_EQ(replayed + created, unanswered.size());
  EXPECT_EQ(call(d.port(), http::verb::get, "/v1/events/" + unanswered.front(), key).status, 200);
  std::printf("acknowledged %zu, unanswered at the kills %zu (after restart: %zu were there, %zu were not)\n",
              acked.size(), unanswered.size(), replayed, created);
}

}  // namespace
}  // namespace cairn::server_test
