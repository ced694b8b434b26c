#include "cli/backend.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "server/ledger_api.h"
#include "server/projections_api.h"
#include "server/routes.h"

namespace cairn::cli {
namespace {

namespace http = boost::beast::http;

class RemoteBackend final : public Backend {
 public:
  explicit RemoteBackend(const RemoteFlags& r) : r_(r) {}
  Result<Reply> call(std::string_view method, const std::string& target, const std::string& body) override {
    return http_call(r_, method, target, body);
  }

 private:
  const RemoteFlags& r_;
};

}  // namespace

void draw_progress(const char* what, uint64_t pos, uint64_t target, double rate, double eta) {
  const double frac = target ? static_cast<double>(pos) / static_cast<double>(target) : 1.0;
  const int width = 30, filled = static_cast<int>(frac * width);
  std::string bar(static_cast<size_t>(std::clamp(filled, 0, width)), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r%s [%s] %5.1f%%  %llu/%llu  %.0f ev/s  ETA %.0fs   ", what, bar.c_str(), frac * 100,
               static_cast<unsigned long long>(pos), static_cast<unsigned long long>(target), rate, eta > 0 ? eta : 0);
}

namespace {

class LocalBackend final : public Backend {
 public:
  static Result<std::unique_ptr<LocalBackend>> open(const StoreFlags& f) {
    auto o = backend_options(f, f.durability == "none" ? Durability::kNone : Durability::kFsync, false);
    if (!o.ok()) return o.status();
    auto store = open_store(*o);
    if (!store.ok()) {
      if (store.status().code() == ErrorCode::kBusy)
        return Status(ErrorCode::kBusy, store.status().message() + " (a cairnd serves it? use --url)");
      return store.status();
    }
    ProjectionsOptions po;
    po.dir = f.data + "/projections";
    auto p = open_projections(**store, po);
    if (!p.ok()) return p.status();
    auto b = std::unique_ptr<LocalBackend>(new LocalBackend());
    b->store_ = std::move(*store);
    b->projections_ = std::move(*p);
    b->api_ = std::make_unique<server::ProjectionsApi>(*b->projections_);
    b->ledger_ = std::make_unique<server::LedgerApi>(*b->store_, *b->projections_);
    return b;
  }
  ~LocalBackend() override {
    ledger_.reset();
    api_.reset();
    if (projections_) (void)projections_->close();
    if (store_) (void)store_->close();
  }

  Result<Reply> call(std::string_view method, const std::string& target, const std::string& body) override {
    server::Request req{http::string_to_verb(boost::beast::string_view(method.data(), method.size())), target, 11};
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    server::ApiKey admin;
    admin.role = server::Role::kAdmin;
    // The server's route table, with only the projections and the ledger served (nothing streamed).
    const server::Parts parts{.projections = api_.get(), .ledger = ledger_.get()};
    const server::Answer res = server::dispatch_route(parts, req, &admin, nullptr);
    return Reply{res->result_int(), res->body()};
  }

  Store* store() override { return store_.get(); }
  Projections* projections() override { return projections_.get(); }

  void settle(const std::string& name, uint32_t version) override {
    const bool tty = isatty(STDERR_FILENO);
    const auto start = std::chrono::steady_clock::now();
    bool drew = false;
    for (;;) {
      auto s = projections_->status(name, version);
      if (!s.ok() || s->phase == ProjectionPhase::kFaulted || s->phase == ProjectionPhase::kStopped ||
          s->position >= store_->head_position())
        break;
      if (tty && std::chrono::steady_clock::now() - start > std::chrono::milliseconds(300)) {
        draw_progress("catching up", s->position, s->head, s->events_per_second,
                      s->events_per_second > 0 ? static_cast<double>(s->lag) / s->events_per_second : 0);
        drew = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (drew) std::fprintf(stderr, "\n");
  }

 private:
  LocalBackend() = default;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Projections> projections_;
  std::unique_ptr<server::ProjectionsApi> api_;
  std::unique_ptr<server::LedgerApi> ledger_;
};

}  // namespace

Result<std::unique_ptr<Backend>> open_backend(const StoreFlags& flags, const RemoteFlags& remote) {
  if (!remote.url.empty()) return std::unique_ptr<Backend>(new RemoteBackend(remote));
  auto local = LocalBackend::open(flags);
  if (!local.ok()) return local.status();
  return std::unique_ptr<Backend>(std::move(*local));
}

}  // namespace cairn::cli
