#include "server/http_server.h"

#include <condition_variable>
#include <thread>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

#include "base/mutex.h"

namespace cairn::server {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

Response plain_error(unsigned version, http::status status, std::string_view code, std::string_view message) {
  Response res{status, version};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::server, "cairnd");
  res.body() = fmt::format(R"({{"error":{{"code":"{}","message":"{}"}}}})", code, message);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

}  // namespace

// One connection. Stream is beast::tcp_stream (HTTP) or beast::ssl_stream<beast::tcp_stream> (HTTPS).
template <class Stream>
class SessionT : public HttpServer::SessionBase, public std::enable_shared_from_this<SessionT<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  template <class... Args>
  SessionT(HttpServer& server, Args&&... args) : server_(server), stream_(std::forward<Args>(args)...) {}

  void run() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        self->lowest().expires_after(std::chrono::seconds(self->server_.limits_.request_timeout_s));
        self->stream_.async_handshake(net::ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) return self->lowest().close();  // not TLS, or a failed handshake: nothing to answer
          self->read();
        });
      } else {
        self->read();
      }
    });
  }

  // Closes the connection if it is between requests; a request in progress is answered first. A stream
  // in progress ends (its producer's next write returns false).
  void close_if_idle() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      self->closing_ = true;
      if (self->streaming_) return self->end_stream();
      if (!self->busy_) self->shutdown();
    });
  }

  ~SessionT() override { server_.untrack(this); }

 private:
  void read() {
    if (closing_) return shutdown();
    parser_.emplace();
    parser_->body_limit(server_.limits_.max_body_bytes);
    parser_->header_limit(server_.limits_.max_header_bytes);
    // Idle until the first byte; the whole request must then arrive within the request timeout. Beast
    // has one timer per stream, so the idle timeout covers both and a stuck request is cut at that bound.
    lowest().expires_after(std::chrono::seconds(server_.limits_.idle_timeout_s));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::connection_reset || ec == beast::error::timeout ||
        ec == net::error::operation_aborted)
      return shutdown();
    // The request was not read to its end: after the answer, drain what the client still sends so that it
    // can finish writing and read the answer (a lingering close), instead of seeing a reset.
    if (ec) drain_on_close_ = true;
    if (ec == http::error::body_limit) {
      return write(plain_error(11, http::status::payload_too_large, "payload_too_large",
                               fmt::format("the request body is over the limit of {} bytes",
                                           server_.limits_.max_body_bytes)));
    }
    if (ec == http::error::header_limit)
      return write(plain_error(11, http::status::request_header_fields_too_large, "headers_too_large",
                               "the request headers are too large"));
    if (ec) return write(plain_error(11, http::status::bad_request, "bad_request", "malformed HTTP request"));
    busy_ = true;
    lowest().expires_never();  // the handler may wait for a group commit; the write sets its own deadline
    Request req = parser_->release();
    const bool keep_alive = req.keep_alive();
    server_.handler_(
        std::move(req),
        [self = this->shared_from_this(), keep_alive](Response res) {
          net::post(self->stream_.get_executor(), [self, keep_alive, res = std::move(res)]() mutable {
            res.keep_alive(keep_alive && res.keep_alive() && !self->closing_);
            self->write(std::move(res));
          });
        },
        [self = this->shared_from_this()](StreamingResponse sr) { self->start_stream(std::move(sr)); });
  }

  // ---- streaming responses
  class Sink final : public StreamSink {
   public:
    explicit Sink(std::shared_ptr<SessionT> s) : s_(std::move(s)) {}
    bool write(std::string chunk) override {
      if (closed()) return false;
      base::UniqueLock g(mu_);
      done_ = false;
      auto buf = std::make_shared<std::string>(std::move(chunk));
      net::post(s_->stream_.get_executor(), [this, buf] {
        if (s_->stream_ended_) return finish(false);
        s_->lowest().expires_after(std::chrono::seconds(s_->server_.limits_.request_timeout_s));
        net::async_write(s_->stream_, net::buffer(*buf), [this, buf](beast::error_code ec, size_t) {
          s_->lowest().expires_never();
          finish(!ec);
        });
      });
      while (!done_) cv_.wait(g.native());
      return ok_;
    }
    bool closed() const override { return s_->stream_ended_.load(); }

   private:
    void finish(bool ok) {
      base::MutexLock g(mu_);
      ok_ = ok;
      if (!ok) s_->stream_ended_ = true;
      done_ = true;
      cv_.notify_all();
    }
    std::shared_ptr<SessionT> s_;
    base::Mutex mu_;  // guards done_ and ok_ (the write's outcome, set by finish() on the session's strand)
    std::condition_variable cv_;
    bool done_ CAIRN_GUARDED_BY(mu_) = false;
    bool ok_ CAIRN_GUARDED_BY(mu_) = true;
  };

  void start_stream(StreamingResponse sr) {
    net::post(stream_.get_executor(), [self = this->shared_from_this(), sr = std::move(sr)]() mutable {
      self->streaming_ = true;
      std::string head = fmt::format("HTTP/1.1 {} {}\r\nServer: cairnd\r\nConnection: close\r\n", sr.status,
                                     std::string(http::obsolete_reason(static_cast<http::status>(sr.status))));
      for (const auto& [k, v] : sr.headers) head += k + ": " + v + "\r\n";
      head += "\r\n";
      auto producer = std::move(sr.producer);
      if (self->closing_) self->stream_ended_ = true;
      // The producer blocks (waiting for events and for each write), so it gets a thread of its own; it
      // holds the session alive until it returns.
      std::thread([self, head = std::move(head), producer = std::move(producer)]() mutable {
        Sink sink(self);
        if (sink.write(std::move(head))) producer(sink);
        net::post(self->stream_.get_executor(), [self] { self->end_stream(); });
      }).detach();
    });
  }

  void end_stream() {
    stream_ended_ = true;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().socket().close(ec);
  }

  void write(Response res) {
    response_ = std::make_shared<Response>(std::move(res));
    response_->set(http::field::server, "cairnd");
    lowest().expires_after(std::chrono::seconds(server_.limits_.request_timeout_s));
    http::async_write(stream_, *response_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->busy_ = false;
      if (ec || !self->response_->keep_alive()) return self->shutdown();
      self->response_.reset();
      self->read();
    });
  }

  void shutdown() {
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (drain_on_close_ && !ec) {
      drain_on_close_ = false;
      lowest().expires_after(std::chrono::seconds(5));
      return drain();
    }
    lowest().close();
  }

  void drain() {
    stream_.async_read_some(net::buffer(discard_), [self = this->shared_from_this()](beast::error_code ec, size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > kMaxDrainBytes) return self->lowest().close();
      self->drain();
    });
  }

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  HttpServer& server_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Response> response_;
  bool busy_ = false;
  bool closing_ = false;
  bool streaming_ = false;
  std::atomic<bool> stream_ended_{false};
  bool drain_on_close_ = false;
  static constexpr uint64_t kMaxDrainBytes = 64u << 20;
  uint64_t drained_ = 0;
  std::array<char, 16384> discard_{};
};

HttpServer::HttpServer(net::io_context& ioc, HttpLimits limits, Handler handler)
    : ioc_(ioc), limits_(limits), handler_(std::move(handler)), acceptor_(net::make_strand(ioc)) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start(const std::string& host, uint16_t port) {
  beast::error_code ec;
  tcp::resolver resolver(ioc_);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty())
    return Status::invalid_argument(fmt::format("--http: cannot resolve '{}': {}", host, ec.message()));
  const tcp::endpoint ep = results.begin()->endpoint();
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return Status::io_error(fmt::format("cannot listen on {}:{}: {}", host, port, ec.message()));
  port_ = acceptor_.local_endpoint().port();
  accept();
  return {};
}

void HttpServer::accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (stopping_) return;
    if (!ec) {
      if (open_.load() >= limits_.max_connections) {
        // Over the connection limit: say so and close, rather than queue without bound.
        auto res = std::make_shared<Response>(
            plain_error(11, http::status::service_unavailable, "overloaded", "too many open connections"));
        auto sock = std::make_shared<tcp::socket>(std::move(socket));
        http::async_write(*sock, *res, [sock, res](beast::error_code, size_t) {
          beast::error_code ignored;
          sock->close(ignored);
        });
      } else {
        if (tls_) {
          auto s = std::make_shared<SessionT<beast::ssl_stream<beast::tcp_stream>>>(*this, std::move(socket), *tls_);
          track(s);
          s->run();
        } else {
          auto s = std::make_shared<SessionT<beast::tcp_stream>>(*this, std::move(socket));
          track(s);
          s->run();
        }
      }
    }
    accept();
  });
}

void HttpServer::track(const std::shared_ptr<SessionBase>& s) {
  ++open_;
  base::MutexLock g(sessions_mu_);
  if (sessions_.size() >= 1024 && sessions_.size() >= 2 * open_.load()) {
    for (auto it = sessions_.begin(); it != sessions_.end();) it = it->expired() ? sessions_.erase(it) : std::next(it);
  }
  sessions_.insert(s);
}

void HttpServer::untrack(SessionBase*) { --open_; }

Status HttpServer::enable_tls(const std::string& cert_file, const std::string& key_file) {
  auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
  ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                   net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1);
  beast::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return Status::invalid_argument(fmt::format("--tls-cert: cannot use {}: {}", cert_file, ec.message()));
  ctx->use_private_key_file(key_file, net::ssl::context::pem, ec);
  if (ec) return Status::invalid_argument(fmt::format("--tls-key: cannot use {}: {}", key_file, ec.message()));
  tls_ = std::move(ctx);
  return {};
}

void HttpServer::stop() {
  if (stopping_.exchange(true)) return;
  net::post(acceptor_.get_executor(), [this] {
    beast::error_code ec;
    acceptor_.close(ec);
  });
  base::MutexLock g(sessions_mu_);
  for (auto& w : sessions_)
    if (auto s = w.lock()) s->close_if_idle();
  sessions_.clear();
}

}  // namespace cairn::server
