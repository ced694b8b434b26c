// cairnd: the Cairn server. Serves the embedded store in --data over HTTP/JSON (docs/http-api.md).
// Settings come from flags, CAIRN_* environment variables or a config file (--config, INI or TOML);
// `cairnd --help` lists them all. SIGTERM/SIGINT: stop accepting, answer the requests in progress
// (an acknowledged append is durable), close the store, exit 0.
#include <CLI/CLI.hpp>

#include <charconv>
#include <csignal>
#include <sys/resource.h>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <cstdlib>
#include <thread>
#include <utility>

#include <boost/asio/signal_set.hpp>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "privacy/keystore.h"
#include "server/api.h"
#include "server/http_server.h"
#include "server/keys.h"

int main(int argc, char** argv) {
  using namespace cairn;
  CLI::App app{"cairnd — the Cairn event store server (HTTP/JSON)"};
  std::string data = "./data";
  std::string listen = "127.0.0.1:2114";
  std::string durability = "fsync";
  uint64_t segment_size = 128ull << 20;
  size_t workers = 64;
  size_t replay_workers = 2;
  size_t max_queued = 4096;
  size_t io_threads = std::max(2u, std::thread::hardware_concurrency());
  server::HttpLimits limits;
  std::string tls_cert, tls_key;
  app.set_config("--config", "", "read settings from this INI or TOML file (keys are the long flag names)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt setting is an error, not silence
  app.add_option("--data", data, "data directory")->envname("CAIRN_DATA")->capture_default_str();
  std::string backend, read_replica;
  app.add_option("--backend", backend, "keep the events in PostgreSQL (postgres://USER@HOST/DB, a role made by cairn pg init) "
                 "instead of --data; --data keeps keys and projections")->envname("CAIRN_BACKEND");
  app.add_option("--read-replica", read_replica, "serve reads and subscriptions from this streaming replica of --backend")
      ->envname("CAIRN_READ_REPLICA");
  size_t pg_pool = 8;
  app.add_option("--pg-pool", pg_pool, "PostgreSQL connections for reads (with --backend; appends use two more)")
      ->envname("CAIRN_PG_POOL")
      ->check(CLI::Range(size_t{1}, size_t{1000}))
      ->capture_default_str();
  uint32_t pg_outage_timeout = 60;
  app.add_option("--pg-outage-timeout", pg_outage_timeout,
                 "seconds a live subscription waits for PostgreSQL to answer again (a restart, a failover) before it "
                 "ends with an error (with --backend)")
      ->envname("CAIRN_PG_OUTAGE_TIMEOUT")
      ->check(CLI::Range(uint32_t{0}, uint32_t{86400}))
      ->capture_default_str();
  app.add_option("--http", listen, "address and port to listen on (ADDR:PORT)")->envname("CAIRN_HTTP")->capture_default_str();
  std::string metrics_listen;
  app.add_option("--metrics-http", metrics_listen,
                 "also serve GET /metrics, without a key, on this ADDR:PORT (plain HTTP; nothing else is served there)")
      ->envname("CAIRN_METRICS_HTTP");
  app.add_option("--durability", durability, "fsync (default) or none (tests and benchmarks only)")
      ->envname("CAIRN_DURABILITY")->check(CLI::IsMember({"fsync", "none"}))->capture_default_str();
  app.add_option("--segment-size", segment_size, "bytes per log segment")->envname("CAIRN_SEGMENT_SIZE")->capture_default_str();
  app.add_option("--workers", workers, "threads for store calls (appends wait for their group commit there)")
      ->envname("CAIRN_WORKERS")->check(CLI::Range(size_t{1}, size_t{4096}))->capture_default_str();
  app.add_option("--replay-workers", replay_workers,
                 "threads for projection verify and as-of replays (kept off the request workers)")
      ->envname("CAIRN_REPLAY_WORKERS")->check(CLI::Range(size_t{1}, size_t{64}))->capture_default_str();
  app.add_option("--max-queued", max_queued, "requests waiting for a worker before new ones get 503 overloaded")
      ->envname("CAIRN_MAX_QUEUED")->check(CLI::Range(size_t{1}, size_t{1} << 20))->capture_default_str();
  app.add_option("--io-threads", io_threads, "threads for network I/O")->envname("CAIRN_IO_THREADS")->capture_default_str();
  std::string key_store, master_key_file;
  app.add_option("--key-store", key_store, "directory of the personal-data key store, outside --data (docs/privacy.md)")
      ->envname("CAIRN_KEY_STORE");
  app.add_option("--master-key-file", master_key_file, "file holding the key store's master key (base64); or CAIRN_MASTER_KEY")
      ->envname("CAIRN_MASTER_KEY_FILE");
  app.add_option("--tls-cert", tls_cert, "serve HTTPS with this PEM certificate chain (with --tls-key)")->envname("CAIRN_TLS_CERT");
  app.add_option("--tls-key", tls_key, "the PEM private key of --tls-cert")->envname("CAIRN_TLS_KEY");
  app.add_option("--max-body", limits.max_body_bytes, "largest request body in bytes")->envname("CAIRN_MAX_BODY")->capture_default_str();
  app.add_option("--max-connections", limits.max_connections, "open connections before new ones get 503")
      ->envname("CAIRN_MAX_CONNECTIONS")->capture_default_str();
  app.add_option("--idle-timeout", limits.idle_timeout_s, "seconds a keep-alive connection may idle")
      ->envname("CAIRN_IDLE_TIMEOUT")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  // One descriptor per connection: take the hard limit, not the usual soft 1024.
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  // ADDR:PORT, split at the last ':' ([::1]:2114 for IPv6); false after printing what is wrong.
  auto parse_listen = [](const char* flag, const std::string& value, std::string& host, int& port) {
    const auto colon = value.rfind(':');
    if (colon == std::string::npos) {
      std::fprintf(stderr, "error: %s: '%s' is not ADDR:PORT\n", flag, value.c_str());
      return false;
    }
    host = value.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);  // [::1]
    const std::string port_text = value.substr(colon + 1);
    port = -1;
    auto [pend, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (perr != std::errc() || pend != port_text.data() + port_text.size() || port < 0 || port > 65535) {
      std::fprintf(stderr, "error: %s: '%s' is not a port number (0-65535)\n", flag, port_text.c_str());
      return false;
    }
    return true;
  };
  std::string host, metrics_host;
  int port = -1, metrics_port = -1;
  if (!parse_listen("--http", listen, host, port)) return 2;
  if (!metrics_listen.empty() && !parse_listen("--metrics-http", metrics_listen, metrics_host, metrics_port)) return 2;

  Options o;
  o.dir = data;
  o.segment_size = segment_size;
  o.durability = durability == "none" ? Durability::kNone : Durability::kFsync;
  o.postgres = backend;
  o.postgres_read_replica = read_replica;
  o.postgres_pool = pg_pool;
  o.postgres_outage_timeout = std::chrono::seconds(pg_outage_timeout);
  if (!read_replica.empty() && backend.empty()) {
    std::fprintf(stderr, "error: --read-replica needs --backend (the primary it replicates)\n");
    return 2;
  }
  if (!key_store.empty()) {
    auto master = privacy::load_master_key_text(master_key_file);
    if (!master.ok()) {
      std::fprintf(stderr, "error: %s\n", master.status().to_string().c_str());
      return 2;
    }
    o.key_store_dir = key_store;
    o.master_key = *master;
  }
  auto store = open_store(o);
  if (!store.ok()) {
    std::fprintf(stderr, "error: %s\n", store.status().to_string().c_str());
    return 1;
  }
  if (!backend.empty()) {
    // The embedded store creates --data itself; on PostgreSQL it only keeps API keys and projection state.
    std::error_code ec;
    std::filesystem::create_directories(data, ec);
    if (ec) {
      std::fprintf(stderr, "error: --data %s: %s\n", data.c_str(), ec.message().c_str());
      return 1;
    }
  }
  auto keys = server::KeyStore::open(data);
  if (!keys.ok()) {
    std::fprintf(stderr, "error: %s\n", keys.status().to_string().c_str());
    return 1;
  }
  if (!(*keys)->empty() && std::getenv("CAIRN_BOOTSTRAP_ADMIN_KEY")) {
    std::printf("note: CAIRN_BOOTSTRAP_ADMIN_KEY is ignored: keys exist already in %s/keys.jsonl\n", data.c_str());
  }
  if ((*keys)->empty()) {
    if (const char* boot = std::getenv("CAIRN_BOOTSTRAP_ADMIN_KEY"); boot && *boot) {
      auto k = (*keys)->add_with_secret(server::Role::kAdmin, boot, "bootstrap admin");
      if (!k.ok()) {
        std::fprintf(stderr, "error: CAIRN_BOOTSTRAP_ADMIN_KEY: %s\n", k.status().message().c_str());
        return 2;
      }
      std::printf("admin key: from CAIRN_BOOTSTRAP_ADMIN_KEY (id %s)\n", k->id.c_str());
    } else {
      auto k = (*keys)->create(server::Role::kAdmin, {}, "first admin");
      if (!k.ok()) {
        std::fprintf(stderr, "error: %s\n", k.status().to_string().c_str());
        return 1;
      }
      std::printf("admin key (shown once, keep it): %s\n", k->second.c_str());
    }
  }

  ProjectionsOptions po;
  po.dir = data + "/projections";
  auto projections = open_projections(**store, po);
  if (!projections.ok()) {
    std::fprintf(stderr, "error: projections: %s\n", projections.status().to_string().c_str());
    return 1;
  }

  boost::asio::io_context ioc;
  server::Api api(**store, **keys, server::ApiOptions{1000, workers, 15000, max_queued, data + "/projections", replay_workers}, projections->get());
  server::HttpServer http(ioc, limits, [&api](server::Request req, server::Respond respond,
                                              server::RespondStream respond_stream) {
    api.handle(std::move(req), std::move(respond), std::move(respond_stream));
  });
  api.set_connection_gauge([&http] { return http.open_connections(); });
  if (tls_cert.empty() != tls_key.empty()) {
    std::fprintf(stderr, "error: --tls-cert and --tls-key go together\n");
    return 2;
  }
  if (!tls_cert.empty()) {
    if (Status st = http.enable_tls(tls_cert, tls_key); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.message().c_str());
      return 2;
    }
  }
  if (Status st = http.start(host, static_cast<uint16_t>(port)); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
    return 1;
  }
  // Prometheus scrapes without a key here; the main listener's /metrics keeps needing one.
  std::optional<server::HttpServer> metrics_http;
  if (!metrics_listen.empty()) {
    metrics_http.emplace(ioc, limits, [&api](server::Request req, server::Respond respond, server::RespondStream) {
      api.handle_metrics_only(std::move(req), std::move(respond));
    });
    if (Status st = metrics_http->start(metrics_host, static_cast<uint16_t>(metrics_port)); !st.ok()) {
      std::fprintf(stderr, "error: --metrics-http: %s\n", st.to_string().c_str());
      return 1;
    }
  }
  std::printf("cairnd listening on %s://%s:%u (data %s, durability %s%s)\n", http.tls() ? "https" : "http", host.c_str(),
              http.port(), data.c_str(),
              durability.c_str(), durability == "none" ? ": appends are NOT synced, tests and benchmarks only" : "");
  if (metrics_http)
    std::printf("cairnd metrics on http://%s:%u/metrics (no key)\n", metrics_host.c_str(), metrics_http->port());
  std::fflush(stdout);

  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  std::thread stopper;
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    std::printf("cairnd: signal %d, shutting down\n", sig);
    std::fflush(stdout);
    http.stop();
    if (metrics_http) metrics_http->stop();
    // Off the I/O threads: answering the requests in progress needs them to keep running.
    stopper = std::thread([&] {
      api.begin_shutdown();  // answers requests in progress and ends subscriptions
      for (int i = 0; i < 200 && (http.open_connections() > 0 || api.open_subscriptions() > 0); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ioc.stop();
    });
  });
  std::vector<std::thread> threads;
  for (size_t i = 1; i < io_threads; ++i) threads.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  if (stopper.joinable()) stopper.join();
  if (Status pst = (*projections)->close(); !pst.ok())
    std::fprintf(stderr, "error: closing projections: %s\n", pst.to_string().c_str());
  Status st = (*store)->close();
  if (!st.ok()) {
    std::fprintf(stderr, "error: closing the store: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("cairnd: stopped cleanly\n");
  return 0;
}
