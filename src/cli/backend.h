// Where the CLI's projection and AI-ledger commands send their requests: a running cairnd (--url), or the
// store and projection runtime opened in this process (--data), answered by the same endpoint code
// (server/projections_api.h, server/ledger_api.h) so that both modes print the same JSON.
// Single-threaded use; the local backend owns the store and runtime it opened and closes them.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "cairn/projection.h"
#include "cairn/store.h"
#include "cli/commands.h"
#include "cli/remote.h"

namespace cairn::cli {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Result<Reply> call(std::string_view method, const std::string& target, const std::string& body) = 0;
  // Offline: returns once the projection's position reached the head (progress on a terminal).
  virtual void settle(const std::string&, uint32_t) {}
  // Offline only: the store and runtime opened in this process; null when remote.
  virtual Store* store() { return nullptr; }
  virtual Projections* projections() { return nullptr; }
};

Result<std::unique_ptr<Backend>> open_backend(const StoreFlags& flags, const RemoteFlags& remote);

// A progress bar on stderr: "what [####....] 42.0%  pos/target  rate ev/s  ETA s".
void draw_progress(const char* what, uint64_t pos, uint64_t target, double rate, double eta);

}  // namespace cairn::cli
