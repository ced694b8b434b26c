// The /v1/projections endpoints of cairnd (docs/http-api.md, docs/projections.md): definitions, status,
// state (with wait_for and as-of), partitions, digests, verify, rebuild, versions, and their /metrics lines.
//
// Projections aggregate over many streams, so a key scoped to stream prefixes may not read them. Reading
// needs the reader role; defining, rebuilding, verifying, activating and dropping need admin (the code
// runs inside the server). Those checks, and which path reaches which handler, are the route table's
// (server/routes.h); the handlers assume they passed. Thread safety: every method from any thread.
// Lifetime: borrows the Projections, which must outlive it.
#pragma once

#include <string>

#include "cairn/projection.h"
#include "server/http_util.h"
#include "server/keys.h"
#include "server/routes.h"

namespace cairn::server {

class ProjectionsApi {
 public:
  explicit ProjectionsApi(Projections& projections) : p_(projections) {}
  // The route guard of /v1/projections/...: the version query parameter and a version in the URL are
  // numbers (checked before the role, as they always were).
  static std::optional<Response> check_version(const Call& c);

  // Route handlers (routes.cc).
  Response list(const Call& c);            // GET  /v1/projections
  Response define(const Call& c);          // POST /v1/projections
  Response status(const Call& c);          // GET  /v1/projections/{name}
  Response state(const Call& c);           // GET  .../state (wait_for, as_of)
  Response partitions(const Call& c);      // GET  .../partitions
  Response digest(const Call& c);          // GET  .../digest
  Response verify(const Call& c);          // POST .../verify
  Response rebuild(const Call& c);         // POST .../rebuild
  Response rebuild_status(const Call& c);  // GET  .../rebuild
  Response versions(const Call& c);        // GET  .../versions
  Response define_version(const Call& c);  // POST .../versions
  Response version(const Call& c);         // GET  .../versions/{version}
  Response drop(const Call& c);            // DELETE .../versions/{version}
  Response activate(const Call& c);        // POST .../versions/{version}/activate
  // Prometheus lines: position, lag, rate, faults, rebuild progress per projection version.
  std::string metrics_text();

 private:
  Projections& p_;
};

}  // namespace cairn::server
