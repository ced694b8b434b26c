// The privacy endpoints of cairnd (docs/http-api.md#privacy, docs/privacy.md), all for an admin key without
// stream scopes:
//   POST /v1/privacy/subjects/{subject}/forget   {"reason", "actor"?}: destroy the subject's keys, record it
//   GET  /v1/privacy/subjects/{subject}/report   what the forget touched, the purges, a verification now
//   POST /v1/privacy/purge                       {"actor"?}: the purge compaction, run to its end
// {subject} is the subject as the events named it, or its keyed hash (hs:…) for the report.
// The role and scope checks are the route table's (server/routes.h); the handlers assume they passed.
// Thread safety: every method from any thread. Lifetime: borrows the Store, which must outlive it.
#pragma once

#include <string>

#include "cairn/store.h"
#include "server/http_util.h"
#include "server/keys.h"
#include "server/routes.h"

namespace cairn::server {

class PrivacyApi {
 public:
  PrivacyApi(Store& store, std::string projections_dir) : store_(store), projections_dir_(std::move(projections_dir)) {}

  // Route handlers (routes.cc).
  Response forget(const Call& c);
  Response report(const Call& c);
  Response purge(const Call& c);

 private:
  Store& store_;
  std::string projections_dir_;
};

}  // namespace cairn::server
