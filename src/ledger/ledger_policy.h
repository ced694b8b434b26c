// The AI ledger as an append policy (store/policy.h): each ledger type's data rules and every event's
// references (ledger/vocabulary.h), a correction's amendment rules, and the reference rules against what
// exists (ledger/references.h), on both backends.
//
// It applies to events of a ledger type and to events whose metadata may carry a causation id; every other
// event passes untouched. The reference index is derived from the log: on a store only this process appends
// to, it is read once, on the first append that needs it, and kept up to date by the appends; on a shared log
// (PostgreSQL) it is caught up before each check, and checks are serialized until the append's outcome.
// Owned by the backend that runs it; thread-safe.
#pragma once

#include <cstdint>
#include <memory>

#include "base/mutex.h"
#include "ledger/references.h"
#include "store/policy.h"

namespace cairn::ledger {

class LedgerPolicy final : public store::AppendPolicy {
 public:
  bool applies(const EventData& event) const override;
  std::unique_ptr<Run> begin(store::PolicyHost& host, const Limits& limits) override;
  std::unique_ptr<Run> begin_import(const std::vector<ImportEvent>& events) override;


 private:
  class LedgerRun;
  class ImportRun;
  // Brings the index up to the log's end (the first time, or every time on a shared log). Requires
  // index_mu_ held.
  Status catch_up(store::PolicyHost& host) CAIRN_REQUIRES(index_mu_);

  ReferenceIndex references_;  // thread-safe on its own
  // Guards loaded_ and through_; on a shared log also held from a check to its append's outcome.
  base::Mutex index_mu_;
  bool loaded_ CAIRN_GUARDED_BY(index_mu_) = false;
  uint64_t through_ CAIRN_GUARDED_BY(index_mu_) = 0;  // positions below this were read into the index (shared log)
};

}  // namespace cairn::ledger
