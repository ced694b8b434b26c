// What every backend does to an append before it reaches storage, in the caller's thread: validation
// (names, JSON, metadata, limits), the policies' checks and transforms (store/policy.h: the AI ledger's
// rules, sealing of declared personal parts), ids (UUIDv7 where absent), a random digest salt per event,
// and the payload digests.
// Both the embedded writer and the PostgreSQL backend take its output, so both refuse the same input with
// the same errors. Thread-safe (policies are; everything else is the caller's).
#pragma once

#include <memory>
#include <vector>

#include "cairn/store.h"
#include "store/policy.h"
#include "store/writer.h"

namespace cairn::store {

struct PreparedBatch {
  std::vector<PreparedAppend> appends;
  // The runs of the policies that apply to some event of it: reserve() before submit, finish() after.
  std::vector<std::unique_ptr<AppendPolicy::Run>> runs;

  Status reserve();
  void finish(const AppendResult* durable);
};

// multi: errors name "appends[i]."; reserved: '$' streams and types are allowed (Cairn's own appends).
Result<PreparedBatch> prepare_appends(std::vector<StreamAppend> requests, bool multi, bool reserved, const Limits& limits,
                                      const std::vector<std::shared_ptr<AppendPolicy>>& policies, PolicyHost& host);

// Submits a prepared batch between its policies' reserve() and finish().
template <typename Submit>
Result<AppendResult> submit_prepared(PreparedBatch& batch, Submit&& submit) {
  if (batch.runs.empty()) return submit(std::move(batch.appends));
  CAIRN_RETURN_IF_ERROR(batch.reserve());
  auto result = submit(std::move(batch.appends));
  batch.finish(result.ok() ? &*result : nullptr);
  return result;
}

}  // namespace cairn::store
