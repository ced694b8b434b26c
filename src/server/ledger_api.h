// The AI ledger's endpoints of cairnd (docs/http-api.md#ai-ledger, docs/ai-ledger.md):
//   GET /v1/why/{event_id}                          the causal chain, the correlation, the corrections
//   GET /v1/correlations/{id}?as_of=POSITION|TIME   a flow as it was known at a position or time
//   GET /v1/ai/rates?by=&since=&until=&model=&skill=&prompt_version=
//   GET /v1/ai/export?format=&as_of=&model=&skill=&prompt_version=&since=&until=   streamed JSONL
//   GET /v1/ai/export/manifest?(the same)           the manifest of that export (runs it, sends no rows)
// They read across streams, so they need the reader role and a key without stream scopes.
// Thread safety: every method from any thread. Lifetime: borrows the Store and Projections.
#pragma once

#include <optional>

#include "cairn/ledger.h"
#include "server/http_util.h"
#include "server/keys.h"

namespace cairn::server {

class LedgerApi {
 public:
  LedgerApi(Store& store, Projections& projections) : store_(store), p_(projections) {}

  static bool handles(const Target& t);        // /v1/why, /v1/correlations, /v1/ai
  static bool is_export_stream(const Target& t);  // /v1/ai/export (streamed)

  // The key is authenticated; its role is checked here.
  Response dispatch(const Request& req, const Target& t, const ApiKey& key);
  // Starts the streamed export and returns nullopt, or answers an error.
  std::optional<Response> export_stream(const Request& req, const Target& t, const ApiKey& key,
                                        const RespondStream& respond_stream);

 private:
  std::optional<Response> refuse(const Request& req, const ApiKey& key);
  Store& store_;
  Projections& p_;
};

// The export query of a target's parameters; as_of is fixed to the head now when absent.
Result<ExportQuery> export_query(const Target& t, uint64_t head);

}  // namespace cairn::server
