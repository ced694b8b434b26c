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
#include <memory>
#include <utility>

#include <boost/asio/signal_set.hpp>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "privacy/keystore.h"
#include "server/api.h"
#include "server/http_server.h"
#include "server/keys.h"

namespace {

using namespace cairn;

// Every setting of cairnd, as flags, CAIRN_* variables or a config file give them.
struct Settings {
  std::string data = "./data";
  std::string listen = "127.0.0.1:2114";
  std::string metrics_listen;
  std::string durability = "fsync";
  uint64_t segment_size = 128ull << 20;
  size_t workers = 64;
  size_t replay_workers = 2;
  size_t max_queued = 4096;
  size_t io_threads = std::max(2u, std::thread::hardware_concurrency());
  server::HttpLimits limits;
  std::string tls_cert, tls_key;
  std::string backend, read_replica;
  size_t pg_pool = 8;
  uint32_t pg_outage_timeout = 60;
  std::string key_store, master_key_file;
};

void add_options(CLI::App& app, Settings& s) {
  app.set_config("--config", "", "read settings from this INI or TOML file (keys are the long flag names)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt setting is an error, not silence
  app.add_option("--data", s.data, "data directory")->envname("CAIRN_DATA")->capture_default_str();
  app.add_option("--backend", s.backend, "keep the events in PostgreSQL (postgres://USER@HOST/DB, a role made by cairn pg init) "
                 "instead of --data; --data keeps keys and projections")->envname("CAIRN_BACKEND");
  app.add_option("--read-replica", s.read_replica, "serve reads and subscriptions from this streaming replica of --backend")
      ->envname("CAIRN_READ_REPLICA");
  app.add_option("--pg-pool", s.pg_pool, "PostgreSQL connections for reads (with --backend; appends use two more)")
      ->envname("CAIRN_PG_POOL")
      ->check(CLI::Range(size_t{1}, size_t{1000}))
      ->capture_default_str();
  app.add_option("--pg-outage-timeout", s.pg_outage_timeout,
                 "seconds a live subscription waits for PostgreSQL to answer again (a restart, a failover) before it "
                 "ends with an error (with --backend)")
      ->envname("CAIRN_PG_OUTAGE_TIMEOUT")
      ->check(CLI::Range(uint32_t{0}, uint32_t{86400}))
      ->capture_default_str();
  app.add_option("--http", s.listen, "address and port to listen on (ADDR:PORT)")->envname("CAIRN_HTTP")->capture_default_str();
  app.add_option("--metrics-http", s.metrics_listen,
                 "also serve GET /metrics, without a key, on this ADDR:PORT (plain HTTP; nothing else is served there)")
      ->envname("CAIRN_METRICS_HTTP");
  app.add_option("--durability", s.durability, "fsync (default) or none (tests and benchmarks only)")
      ->envname("CAIRN_DURABILITY")->check(CLI::IsMember({"fsync", "none"}))->capture_default_str();
  app.add_option("--segment-size", s.segment_size, "bytes per log segment")->envname("CAIRN_SEGMENT_SIZE")->capture_default_str();
  app.add_option("--workers", s.workers, "threads for store calls (appends wait for their group commit there)")
      ->envname("CAIRN_WORKERS")->check(CLI::Range(size_t{1}, size_t{4096}))->capture_default_str();
  app.add_option("--replay-workers", s.replay_workers,
                 "threads for projection verify and as-of replays (kept off the request workers)")
      ->envname("CAIRN_REPLAY_WORKERS")->check(CLI::Range(size_t{1}, size_t{64}))->capture_default_str();
  app.add_option("--max-queued", s.max_queued, "requests waiting for a worker before new ones get 503 overloaded")
      ->envname("CAIRN_MAX_QUEUED")->check(CLI::Range(size_t{1}, size_t{1} << 20))->capture_default_str();
  app.add_option("--io-threads", s.io_threads, "threads for network I/O")->envname("CAIRN_IO_THREADS")->capture_default_str();
  app.add_option("--key-store", s.key_store, "directory of the personal-data key store, outside --data (docs/privacy.md)")
      ->envname("CAIRN_KEY_STORE");
  app.add_option("--master-key-file", s.master_key_file, "file holding the key store's master key (base64); or CAIRN_MASTER_KEY")
      ->envname("CAIRN_MASTER_KEY_FILE");
  app.add_option("--tls-cert", s.tls_cert, "serve HTTPS with this PEM certificate chain (with --tls-key)")->envname("CAIRN_TLS_CERT");
  app.add_option("--tls-key", s.tls_key, "the PEM private key of --tls-cert")->envname("CAIRN_TLS_KEY");
  app.add_option("--max-body", s.limits.max_body_bytes, "largest request body in bytes")->envname("CAIRN_MAX_BODY")->capture_default_str();
  app.add_option("--max-connections", s.limits.max_connections, "open connections before new ones get 503")
      ->envname("CAIRN_MAX_CONNECTIONS")->capture_default_str();
  app.add_option("--idle-timeout", s.limits.idle_timeout_s, "seconds a keep-alive connection may idle")
      ->envname("CAIRN_IDLE_TIMEOUT")->capture_default_str();
}

// One descriptor per connection: take the hard limit, not the usual soft 1024.
void raise_descriptor_limit() {
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

struct Endpoint {
  std::string host;
  int port = -1;
};

// ADDR:PORT, split at the last ':' ([::1]:2114 for IPv6); nullopt after printing what is wrong.
std::optional<Endpoint> parse_listen(const char* flag, const std::string& value) {
  const auto colon = value.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "error: %s: '%s' is not ADDR:PORT\n", flag, value.c_str());
    return std::nullopt;
  }
  Endpoint e;
  e.host = value.substr(0, colon);
  if (e.host.size() >= 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);  // [::1]
  const std::string port_text = value.substr(colon + 1);
  auto [pend, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), e.port);
  if (perr != std::errc() || pend != port_text.data() + port_text.size() || e.port < 0 || e.port > 65535) {
    std::fprintf(stderr, "error: %s: '%s' is not a port number (0-65535)\n", flag, port_text.c_str());
    return std::nullopt;
  }
  return e;
}

// What cairnd serves, opened in this order and closed in the reverse.
struct Opened {
  std::unique_ptr<Store> store;
  std::unique_ptr<server::KeyStore> keys;
  std::unique_ptr<Projections> projections;
};

// An exit code for a failure already printed; nullopt to go on.
using Exit = std::optional<int>;

Exit open_store_of(const Settings& s, Opened& out) {
  if (!s.read_replica.empty() && s.backend.empty()) {
    std::fprintf(stderr, "error: --read-replica needs --backend (the primary it replicates)\n");
    return 2;
  }
  Options o;
  if (s.backend.empty()) {
    EmbeddedOptions e;
    e.dir = s.data;
    e.segment_size = s.segment_size;
    e.durability = s.durability == "none" ? Durability::kNone : Durability::kFsync;
    o = std::move(e);
  } else {
    PostgresOptions p;
    p.connection = s.backend;
    p.read_replica = s.read_replica;
    p.pool = s.pg_pool;
    p.outage_timeout = std::chrono::seconds(s.pg_outage_timeout);
    o = std::move(p);
  }
  if (!s.key_store.empty()) {
    auto master = privacy::load_master_key_text(s.master_key_file);
    Status placed = master.ok() ? privacy::check_key_store_outside(s.key_store, s.data) : master.status();
    if (!placed.ok()) {
      std::fprintf(stderr, "error: %s\n", placed.to_string().c_str());
      return 2;
    }
    common_options(o).key_store_dir = s.key_store;
    common_options(o).master_key = *master;
  }
  auto store = open_store(o);
  if (!store.ok()) {
    std::fprintf(stderr, "error: %s\n", store.status().to_string().c_str());
    return 1;
  }
  out.store = std::move(*store);
  if (!s.backend.empty()) {
    // The embedded store creates --data itself; on PostgreSQL it only keeps API keys and projection state.
    std::error_code ec;
    std::filesystem::create_directories(s.data, ec);
    if (ec) {
      std::fprintf(stderr, "error: --data %s: %s\n", s.data.c_str(), ec.message().c_str());
      return 1;
    }
  }
  return std::nullopt;
}

// The API keys in --data; the first start creates an admin key (or takes CAIRN_BOOTSTRAP_ADMIN_KEY).
Exit open_keys(const Settings& s, Opened& out) {
  auto keys = server::KeyStore::open(s.data);
  if (!keys.ok()) {
    std::fprintf(stderr, "error: %s\n", keys.status().to_string().c_str());
    return 1;
  }
  out.keys = std::move(*keys);
  server::KeyStore& k = *out.keys;
  if (!k.empty() && std::getenv("CAIRN_BOOTSTRAP_ADMIN_KEY")) {
    std::printf("note: CAIRN_BOOTSTRAP_ADMIN_KEY is ignored: keys exist already in %s/keys.jsonl\n", s.data.c_str());
  }
  if (!k.empty()) return std::nullopt;
  if (const char* boot = std::getenv("CAIRN_BOOTSTRAP_ADMIN_KEY"); boot && *boot) {
    auto added = k.add_with_secret(server::Role::kAdmin, boot, "bootstrap admin");
    if (!added.ok()) {
      std::fprintf(stderr, "error: CAIRN_BOOTSTRAP_ADMIN_KEY: %s\n", added.status().message().c_str());
      return 2;
    }
    std::printf("admin key: from CAIRN_BOOTSTRAP_ADMIN_KEY (id %s)\n", added->id.c_str());
  } else {
    auto created = k.create(server::Role::kAdmin, {}, "first admin");
    if (!created.ok()) {
      std::fprintf(stderr, "error: %s\n", created.status().to_string().c_str());
      return 1;
    }
    std::printf("admin key (shown once, keep it): %s\n", created->second.c_str());
  }
  return std::nullopt;
}

Exit open_all(const Settings& s, Opened& out) {
  if (Exit e = open_store_of(s, out)) return e;
  if (Exit e = open_keys(s, out)) return e;
  ProjectionsOptions po;
  po.dir = s.data + "/projections";
  auto projections = open_projections(*out.store, po);
  if (!projections.ok()) {
    std::fprintf(stderr, "error: projections: %s\n", projections.status().to_string().c_str());
    return 1;
  }
  out.projections = std::move(*projections);
  return std::nullopt;
}

// Serves until SIGINT or SIGTERM, then answers what is in flight; the exit code.
int serve(const Settings& s, const Endpoint& main_at, const std::optional<Endpoint>& metrics_at, Opened& opened) {
  boost::asio::io_context ioc;
  server::Api api(*opened.store, *opened.keys,
                  server::ApiOptions{1000, s.workers, 15000, s.max_queued, s.data + "/projections", s.replay_workers},
                  opened.projections.get());
  server::HttpServer http(ioc, s.limits, [&api](server::Request req, server::Respond respond,
                                                server::RespondStream respond_stream) {
    api.handle(std::move(req), std::move(respond), std::move(respond_stream));
  });
  api.set_connection_gauge([&http] { return http.open_connections(); });
  if (s.tls_cert.empty() != s.tls_key.empty()) {
    std::fprintf(stderr, "error: --tls-cert and --tls-key go together\n");
    return 2;
  }
  if (!s.tls_cert.empty()) {
    if (Status st = http.enable_tls(s.tls_cert, s.tls_key); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.message().c_str());
      return 2;
    }
  }
  if (Status st = http.start(main_at.host, static_cast<uint16_t>(main_at.port)); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
    return 1;
  }
  // Prometheus scrapes without a key here; the main listener's /metrics keeps needing one.
  std::optional<server::HttpServer> metrics_http;
  if (metrics_at) {
    metrics_http.emplace(ioc, s.limits, [&api](server::Request req, server::Respond respond, server::RespondStream) {
      api.handle_metrics_only(std::move(req), std::move(respond));
    });
    if (Status st = metrics_http->start(metrics_at->host, static_cast<uint16_t>(metrics_at->port)); !st.ok()) {
      std::fprintf(stderr, "error: --metrics-http: %s\n", st.to_string().c_str());
      return 1;
    }
  }
  std::printf("cairnd listening on %s://%s:%u (data %s, durability %s%s)\n", http.tls() ? "https" : "http", main_at.host.c_str(),
              http.port(), s.data.c_str(),
              s.durability.c_str(), s.durability == "none" ? ": appends are NOT synced, tests and benchmarks only" : "");
  if (metrics_http)
    std::printf("cairnd metrics on http://%s:%u/metrics (no key)\n", metrics_at->host.c_str(), metrics_http->port());
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
  for (size_t i = 1; i < s.io_threads; ++i) threads.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  if (stopper.joinable()) stopper.join();
  return 0;
}

// Closes what open_all opened, projections first (they read the store); the exit code.
int close_all(Opened& opened) {
  if (Status pst = opened.projections->close(); !pst.ok())
    std::fprintf(stderr, "error: closing projections: %s\n", pst.to_string().c_str());
  Status st = opened.store->close();
  if (!st.ok()) {
    std::fprintf(stderr, "error: closing the store: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("cairnd: stopped cleanly\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cairnd — the Cairn event store server (HTTP/JSON)"};
  Settings settings;
  add_options(app, settings);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  raise_descriptor_limit();
  const std::optional<Endpoint> main_at = parse_listen("--http", settings.listen);
  if (!main_at) return 2;
  std::optional<Endpoint> metrics_at;
  if (!settings.metrics_listen.empty() && !(metrics_at = parse_listen("--metrics-http", settings.metrics_listen))) return 2;
  Opened opened;
  if (Exit e = open_all(settings, opened)) return *e;
  if (int code = serve(settings, *main_at, metrics_at, opened); code != 0) return code;
  return close_all(opened);
}
