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

// The asynchronous form of submit_prepared: reserve() now, finish() when the outcome is known, then done.
// submit(appends, callback) must run callback exactly once.
template <typename SubmitAsync>
void submit_prepared_async(PreparedBatch batch, SubmitAsync&& submit, AppendCallback done) {
  if (batch.runs.empty()) return submit(std::move(batch.appends), std::move(done));
  if (Status st = batch.reserve(); !st.ok()) return done(st);
  auto appends = std::move(batch.appends);
  // std::function needs a copyable callable: the runs are shared with it.
  auto held = std::make_shared<PreparedBatch>(std::move(batch));
  submit(std::move(appends), [held, done = std::move(done)](Result<AppendResult> r) {
    held->finish(r.ok() ? &*r : nullptr);
    done(std::move(r));
  });
}

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
