// The /v1/projections endpoints of cairnd (docs/http-api.md, docs/projections.md): definitions, status,
// state (with wait_for and as-of), partitions, digests, verify, rebuild, versions, and their /metrics lines.
//
// Projections aggregate over many streams, so a key scoped to stream prefixes may not read them. Reading
// needs the reader role; defining, rebuilding, verifying, activating and dropping need admin (the code
// runs inside the server). Thread safety: dispatch() from any thread. Lifetime: borrows the Projections.
#pragma once

#include <string>

#include "cairn/projection.h"
#include "server/http_util.h"
#include "server/keys.h"

namespace cairn::server {

class ProjectionsApi {
 public:
  explicit ProjectionsApi(Projections& projections) : p_(projections) {}
  // For targets /v1/projections[/...]; the key is authenticated, its role not yet checked.
  Response dispatch(const Request& req, const Target& t, const ApiKey& key);
  // Prometheus lines: position, lag, rate, faults, rebuild progress per projection version.
  std::string metrics_text();

 private:
  Projections& p_;
};

}  // namespace cairn::server
