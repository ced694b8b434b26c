// The public open_projections (include/cairn/projection.h): the projection runtime with every module's
// built-ins. The project module knows only its own; the AI ledger's come from here, so project/ does not
// depend on ledger/.
#include "cairn/projection.h"
#include "ledger/ai_projections.h"
#include "project/open.h"

namespace cairn {

Result<std::unique_ptr<Projections>> open_projections(Store& store, ProjectionsOptions options) {
  std::vector<project::BuiltinProjection> ledger_builtins = {
      {ledger::kDecisionsProjection, ledger::decisions_engine_factory(), PartitionBy::kNone, ledger::decisions_source(),
       "the AI ledger: each proposal with its decision, corrections and delta, and the counts behind the rates"},
      {ledger::kLineageProjection, ledger::lineage_engine_factory(), PartitionBy::kNone, {},
       "the AI ledger's lineage: events by correlation id, corrections by corrected event, proposals by id",
       /*holds_event_data=*/false},
  };
  return project::open_projections(store, std::move(options), std::move(ledger_builtins));
}

}  // namespace cairn
