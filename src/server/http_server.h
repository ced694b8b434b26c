// The HTTP/1.1 transport of cairnd, on Boost.Beast: accept, keep-alive sessions, limits, timeouts,
// graceful stop. It knows nothing about events: each complete request goes to the Handler, which answers
// through the callback it is given, possibly later and from another thread (the API runs store calls on a
// worker pool, because an append waits for its group commit).
//
// Limits: header and body sizes, connection count, an idle timeout between requests and a deadline for
// reading one request. A malformed or oversized request gets 400/413 and the connection is closed.
// Thread safety: start()/stop() from the owner; the io_context may be run by several threads.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>  // before Boost 1.74's asio, whose awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "cairn/status.h"
#include "base/mutex.h"

namespace cairn::server {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
using Respond = std::function<void(Response)>;

// A response whose body is produced over time (Server-Sent Events, NDJSON streams). The head is sent
// first; the body is delimited by closing the connection. The producer runs on a thread of its own and
// hands chunks to the sink: write() returns once the chunk was sent (so a slow client slows only its own
// producer, and nothing queues up in memory) and false once the client is gone or the server stops.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual bool write(std::string chunk) = 0;
  virtual bool closed() const = 0;
};
struct StreamingResponse {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::function<void(StreamSink&)> producer;
};
using RespondStream = std::function<void(StreamingResponse)>;
using Handler = std::function<void(Request, Respond, RespondStream)>;

struct HttpLimits {
  uint64_t max_body_bytes = 20u << 20;  // a bit above the store's 16 MiB append limit: JSON costs framing
  uint32_t max_header_bytes = 16 * 1024;
  uint32_t max_connections = 4096;
  uint32_t idle_timeout_s = 120;     // to wait for, and read, the next request on a connection
  uint32_t request_timeout_s = 30;   // to write one answer (or one chunk of a stream)
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& ioc, HttpLimits limits, Handler handler);
  ~HttpServer();
  // Binds and starts accepting. host may be a name or address; port 0 picks a free one (see port()).
  Status start(const std::string& host, uint16_t port);
  uint16_t port() const { return port_; }
  // Stops accepting and closes idle connections; requests in progress finish and are answered.
  void stop();
  uint64_t open_connections() const { return open_.load(); }

  // A connection, as the server tracks it (plain and TLS sessions share this face).
  class SessionBase {
   public:
    virtual ~SessionBase() = default;
    virtual void close_if_idle() = 0;
  };
  // Serves HTTPS from now on (call before start()): a PEM certificate chain and its private key.
  Status enable_tls(const std::string& cert_file, const std::string& key_file);
  bool tls() const { return tls_ != nullptr; }

 private:
  void accept();
  void track(const std::shared_ptr<SessionBase>& s);
  void untrack(SessionBase* s);
  template <class Stream>
  friend class SessionT;

  boost::asio::io_context& ioc_;
  HttpLimits limits_;
  Handler handler_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> open_{0};
  base::Mutex sessions_mu_;  // guards sessions_ (added by the acceptor, removed by sessions, walked by stop())
  std::set<std::weak_ptr<SessionBase>, std::owner_less<std::weak_ptr<SessionBase>>> sessions_
      CAIRN_GUARDED_BY(sessions_mu_);
  std::shared_ptr<boost::asio::ssl::context> tls_;
};

}  // namespace cairn::server
