// The HTTP/JSON API of cairnd (docs/http-api.md): the store's endpoints, authentication and the mapping of
// Store results and errors to HTTP answers. Which path and method reach which handler, with which role and
// scope, is the route table's (server/routes.h); the handlers below assume its checks passed.
//
// Store calls run on a worker pool, never on the I/O threads. Appends do not hold a worker while their
// group commit runs: they go to Store::append_async, whose callback answers, so a few workers carry any
// number of appends in flight (and many in flight together is what makes group commit pay). Every error answer is
// {"error": {"code", "message", "details"?}} with the matching status; a malformed request changes nothing.
// Thread safety: handle() and the handlers from any thread; begin_shutdown() once. Lifetime: borrows the
// Store, KeyStore and Projections, which must outlive it; owns the other parts of the API and its pools.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <variant>

#include <boost/asio/thread_pool.hpp>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "base/mutex.h"
#include "server/http_server.h"
#include "server/keys.h"
#include "server/ledger_api.h"
#include "server/privacy_api.h"
#include "server/projections_api.h"
#include "server/routes.h"

namespace cairn::server {

struct ApiOptions {
  size_t max_page = 1000;  // largest page a read returns
  size_t workers = 64;     // threads for store calls
  uint32_t heartbeat_ms = 15000;  // subscriptions send a heartbeat after this long without events
  size_t max_queued = 4096;       // requests waiting for or running on a worker; past it: 503 overloaded
  std::string projections_dir;    // the projection runtime's directory (privacy reports read it); "" if none
  // Threads for projection replays (verify, as-of): each may take seconds of CPU, so they run apart and
  // never hold the workers that answer everything else. More of them wait in line (still within max_queued).
  size_t replay_workers = 2;
};

class Api {
 public:
  // projections may be null (no /v1/projections endpoints).
  Api(Store& store, KeyStore& keys, ApiOptions options, Projections* projections = nullptr);
  ~Api();
  void handle(Request req, Respond respond, RespondStream respond_stream);
  // New requests get 503 from now on; returns after the requests in progress were answered (appends in
  // flight included, waiting at most 30 s for the store's answers).
  void begin_shutdown();

  // The handler of the --metrics-http listener: GET /metrics without a key, nothing else (404; 405 with
  // Allow for another method on /metrics). For a network only the scraper reaches.
  void handle_metrics_only(Request req, Respond respond);
  uint64_t open_subscriptions() const;
  // Where /metrics reads the number of open connections (the transport knows it).
  void set_connection_gauge(std::function<uint64_t()> f) { open_connections_ = std::move(f); }

  // Route handlers (routes.cc): reached only through dispatch_route(), after its method, key, scope and role
  // checks.
  Response health(const Call& c);
  Response metrics(const Call& c);  // needs a key of its own: the main listener's /metrics
  Response list_streams(const Call& c);
  Response read_stream(const Call& c);
  // Appends answer through c.respond_later when there is one (asynchronously), else before returning.
  Answer append(const Call& c);
  Answer transaction(const Call& c);
  Response read_all(const Call& c);
  Response read_event(const Call& c);
  Response read_position(const Call& c);
  Response stats(const Call& c);
  Response verify(const Call& c);
  Response list_keys(const Call& c);
  Response create_key(const Call& c);
  Response revoke_key(const Call& c);
  // Validates a subscribe request; on success starts the stream and returns nullopt.
  Answer subscribe(const Call& c);

 private:
  Response event_answer(const Call& c, Result<RecordedEvent> ev);
  void cancel_subscriptions(const std::string& key_id);  // empty: all
  Store& store_;
  KeyStore& keys_;
  std::unique_ptr<ProjectionsApi> projections_;
  std::unique_ptr<LedgerApi> ledger_;  // with projections only: the ledger's queries read them
  std::unique_ptr<PrivacyApi> privacy_;
  Parts parts_;  // the route table's view of the above
  ApiOptions options_;
  boost::asio::thread_pool pool_;
  boost::asio::thread_pool replay_pool_;
  std::atomic<bool> shutting_down_{false};
  // Held while handle() checks shutting_down_ and posts to the pools, and while begin_shutdown() sets it: a
  // request is either refused or posted, never posted to a joined pool.
  base::Mutex handle_mu_;
  std::atomic<size_t> queued_{0};
  struct OpenSubscription {
    Subscription* sub;
    bool all;  // a $all subscription (its cursor is a position, so its lag can be measured)
  };
  mutable base::Mutex subs_mu_;  // guards subs_
  // key id -> open subscriptions, for revocation
  std::multimap<std::string, OpenSubscription> subs_ CAIRN_GUARDED_BY(subs_mu_);

  // Monitoring: answers by HTTP status and by error code.
  std::string metrics_text();
  Response metrics_answer(const Request& req);  // the text, to whoever may have it
  void count(const Response& res);
  base::Mutex counts_mu_;  // guards by_status_ and by_error_
  std::map<unsigned, uint64_t> by_status_ CAIRN_GUARDED_BY(counts_mu_);
  std::map<std::string, uint64_t> by_error_ CAIRN_GUARDED_BY(counts_mu_);
  std::function<uint64_t()> open_connections_;
};

}  // namespace cairn::server
