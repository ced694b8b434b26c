// Opening the projection runtime with built-in projections that other modules provide (the AI ledger's
// $ai.* ones): the project module knows only its own ($streams, $types); the composition root
// (src/runtime/) passes the rest, and defines the public cairn::open_projections on top of this.
// Ownership: the returned runtime borrows the store, which must outlive it. Thread-safe as Projections is.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "cairn/projection.h"
#include "cairn/store.h"

namespace cairn::project {

struct BuiltinProjection {
  std::string_view name;  // "$..."; must outlive the runtime (a literal)
  EngineFactory factory;
  PartitionBy by = PartitionBy::kNone;
  Filter source;
  const char* description = "";
  // Whether its state may hold event data: then a forget rebuilds it, so that no forgotten part survives
  // in a projection's state.
  bool holds_event_data = true;
};

// As cairn::open_projections, with `more_builtins` started beside $streams and $types when
// options.builtins is set.
Result<std::unique_ptr<Projections>> open_projections(Store& store, ProjectionsOptions options,
                                                      std::vector<BuiltinProjection> more_builtins);

}  // namespace cairn::project
