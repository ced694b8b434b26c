// Projection definitions as JSON: the body of POST /v1/projections, the data of $projection.registered
// events in $projections, and the CLI's definition files. Also the rules a definition must follow.
//
// {"name", "version", "language": "lua"|"c++", "source": {"types", "type_prefix", "stream_prefix",
//  "category"}, "partition": {"by": "none"|"stream"|"category"|"metadata"|"data", "field"}, "lua",
//  "limits": {"instructions_per_event", "memory_bytes"}, "snapshot_every", "description"}
// Stateless and thread-safe.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cairn/projection.h"

namespace cairn::project {

// The reserved stream that holds projection definitions and their life events.
inline constexpr std::string_view kProjectionsStream = "$projections";
inline constexpr std::string_view kRegisteredType = "$projection.registered";
inline constexpr std::string_view kActivatedType = "$projection.activated";
inline constexpr std::string_view kDroppedType = "$projection.dropped";
inline constexpr std::string_view kRebuiltType = "$projection.rebuilt";
inline constexpr std::string_view kFaultedType = "$projection.faulted";

// Name rules: 1-100 bytes of a-z 0-9 _ . -, starting with a letter or digit.
Status validate_projection_name(std::string_view name, std::string_view what);
// Everything but the Lua code itself (which only compiling can check).
Status validate_definition(const ProjectionDefinition& def);

nlohmann::json definition_to_json(const ProjectionDefinition& def, std::string_view language);
// Parses a definition; `version_required` false lets it default to 1. Unknown fields are errors.
Result<ProjectionDefinition> definition_from_json(const nlohmann::json& j, bool version_required);
nlohmann::json filter_to_json(const Filter& f);

}  // namespace cairn::project
