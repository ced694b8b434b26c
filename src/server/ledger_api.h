// The AI ledger's endpoints of cairnd (docs/http-api.md#ai-ledger, docs/ai-ledger.md):
//   GET /v1/why/{event_id}                          the causal chain, the correlation, the corrections
//   GET /v1/correlations/{id}?as_of=POSITION|TIME   a flow as it was known at a position or time
//   GET /v1/ai/rates?by=&since=&until=&model=&skill=&prompt_version=
//   GET /v1/ai/export?format=&as_of=&model=&skill=&prompt_version=&since=&until=   streamed JSONL
//   GET /v1/ai/export/manifest?(the same)           the manifest of that export (runs it, sends no rows)
// They read across streams, so they need the reader role and a key without stream scopes: the route
// table's checks (server/routes.h), which the handlers assume passed.
// Thread safety: every method from any thread. Lifetime: borrows the Store and Projections, which must
// outlive it.
#pragma once

#include <optional>

#include "cairn/ledger.h"
#include "server/http_util.h"
#include "server/keys.h"
#include "server/routes.h"

namespace cairn::server {

class LedgerApi {
 public:
  LedgerApi(Store& store, Projections& projections) : store_(store), p_(projections) {}

  // Route handlers (routes.cc).
  Response why(const Call& c);
  Response correlation(const Call& c);
  Response rates(const Call& c);
  // Starts the streamed export and returns nullopt, or answers an error (404 without a stream to send to).
  Answer export_rows(const Call& c);
  Response export_manifest(const Call& c);

 private:
  Store& store_;
  Projections& p_;
};

// The export query of a target's parameters; as_of is fixed to the head now when absent.
Result<ExportQuery> export_query(const Target& t, uint64_t head);

}  // namespace cairn::server
