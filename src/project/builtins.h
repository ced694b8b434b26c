// The built-in projections, C++ engines over every event including Cairn's own '$' streams:
//   $streams  one partition per stream: revision, count, first/last position, first/last time.
//   $types    partitions "type:<event type>" and "category:<stream category>", each with its total and its
//             counts per hour ("2026-11-26T09") and per day ("2026-11-26"), UTC.
// Thread safety: engines are driven by one thread at a time (see ReducerEngine).
#pragma once

#include "cairn/projection.h"

namespace cairn::project {

inline constexpr std::string_view kStreamsProjection = "$streams";
inline constexpr std::string_view kTypesProjection = "$types";

EngineFactory streams_engine_factory();
EngineFactory types_engine_factory();

}  // namespace cairn::project
