// The AI ledger's built-in projections (docs/ai-ledger.md), C++ engines run by the projection runtime like
// any other projection: rebuildable, verifiable, queryable as of a past position.
//   $ai.decisions  partitions "proposal:<proposal id>": the proposal, its decision and corrections, what
//                  holds now and the delta (ledger/decisions.h); and "slice:[day,model,prompt_version,skill]":
//                  counts behind the rates (ledger/rates.h). Slices are derived from the proposal
//                  partitions, so a restore recomputes them.
//   $ai.lineage    partitions "correlation:<id>": the positions of the events carrying that correlation_id;
//                  "corrected:<event id>": the positions of the corrections naming that event;
//                  "proposal:<proposal id>": the position of the event that made it.
// Thread safety: engines are driven by one thread at a time (see ReducerEngine).
#pragma once

#include <string_view>

#include "cairn/projection.h"

namespace cairn::ledger {

inline constexpr std::string_view kDecisionsProjection = "$ai.decisions";
inline constexpr std::string_view kLineageProjection = "$ai.lineage";

EngineFactory decisions_engine_factory();
EngineFactory lineage_engine_factory();
Filter decisions_source();  // the three types $ai.decisions reads

}  // namespace cairn::ledger
