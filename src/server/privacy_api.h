// The privacy endpoints of cairnd (docs/http-api.md#privacy, docs/privacy.md), all for an admin key without
// stream scopes:
//   POST /v1/privacy/subjects/{subject}/forget   {"reason", "actor"?}: destroy the subject's keys, record it
//   GET  /v1/privacy/subjects/{subject}/report   what the forget touched, the purges, a verification now
//   POST /v1/privacy/purge                       {"actor"?}: the purge compaction, run to its end
// {subject} is the subject as the events named it, or its keyed hash (hs:…) for the report.
// Thread safety: every method from any thread. Lifetime: borrows the Store.
#pragma once

#include <string>

#include "cairn/store.h"
#include "server/http_util.h"
#include "server/keys.h"

namespace cairn::server {

class PrivacyApi {
 public:
  PrivacyApi(Store& store, std::string projections_dir) : store_(store), projections_dir_(std::move(projections_dir)) {}

  static bool handles(const Target& t);  // /v1/privacy/...
  // The key is authenticated; its role is checked here.
  Response dispatch(const Request& req, const Target& t, const ApiKey& key);

 private:
  Store& store_;
  std::string projections_dir_;
};

}  // namespace cairn::server
