#include "project/definition.h"

#include <fmt/format.h>

namespace cairn {

std::string_view partition_by_name(PartitionBy by) {
  switch (by) {
    case PartitionBy::kNone: return "none";
    case PartitionBy::kStream: return "stream";
    case PartitionBy::kCategory: return "category";
    case PartitionBy::kMetadata: return "metadata";
    case PartitionBy::kData: return "data";
  }
  return "none";
}

Result<PartitionBy> parse_partition_by(std::string_view name) {
  for (PartitionBy by : {PartitionBy::kNone, PartitionBy::kStream, PartitionBy::kCategory, PartitionBy::kMetadata,
                         PartitionBy::kData})
    if (partition_by_name(by) == name) return by;
  return Status::invalid_argument(
      fmt::format("partition.by: '{}' is not one of none, stream, category, metadata, data", name.substr(0, 40)));
}

std::string_view projection_phase_name(ProjectionPhase p) {
  switch (p) {
    case ProjectionPhase::kCatchingUp: return "catching_up";
    case ProjectionPhase::kLive: return "live";
    case ProjectionPhase::kFaulted: return "faulted";
    case ProjectionPhase::kStopped: return "stopped";
  }
  return "stopped";
}

}  // namespace cairn

namespace cairn::project {

using nlohmann::json;

Status validate_projection_name(std::string_view name, std::string_view what) {
  if (name.empty() || name.size() > 100)
    return Status::invalid_argument(fmt::format("{}: a projection name has 1 to 100 bytes", what));
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!(alnum || (i > 0 && (c == '_' || c == '.' || c == '-'))))
      return Status::invalid_argument(fmt::format(
          "{}: '{}' has '{}' at byte {}; names use a-z, 0-9, '_', '.', '-' and start with a letter or digit "
          "('$' names are the built-in projections)",
          what, name.substr(0, 100), c, i));
  }
  return {};
}

Status validate_definition(const ProjectionDefinition& def) {
  CAIRN_RETURN_IF_ERROR(validate_projection_name(def.name, "name"));
  if (def.version == 0) return Status::invalid_argument("version: versions start at 1");
  if (static_cast<uint8_t>(def.partition.by) > static_cast<uint8_t>(PartitionBy::kData))
    return Status::invalid_argument(fmt::format("partition.by: {} is not a kind of partitioning (none, stream, "
                                                "category, metadata, data)",
                                                static_cast<int>(def.partition.by)));
  if ((def.partition.by == PartitionBy::kMetadata || def.partition.by == PartitionBy::kData)) {
    if (def.partition.field.empty())
      return Status::invalid_argument(fmt::format("partition.field: required when partition.by is {}",
                                                  partition_by_name(def.partition.by)));
    if (def.partition.field.front() == '.' || def.partition.field.back() == '.' ||
        def.partition.field.find("..") != std::string::npos)
      return Status::invalid_argument(
          fmt::format("partition.field: '{}' is not a dotted path like 'user_id' or 'actor.id'", def.partition.field));
  } else if (!def.partition.field.empty()) {
    return Status::invalid_argument(fmt::format("partition.field: only for partition.by metadata or data, not {}",
                                                partition_by_name(def.partition.by)));
  }
  if (def.limits.instructions_per_event < 1000)
    return Status::invalid_argument("limits.instructions_per_event: at least 1000");
  if (def.limits.memory_bytes < (1u << 20)) return Status::invalid_argument("limits.memory_bytes: at least 1048576");
  if (def.description.size() > 4096) return Status::invalid_argument("description: at most 4096 bytes");
  return {};
}

json filter_to_json(const Filter& f) {
  return json{{"types", f.types}, {"type_prefix", f.type_prefix}, {"stream_prefix", f.stream_prefix}, {"category", f.category}};
}

json definition_to_json(const ProjectionDefinition& def, std::string_view language) {
  json j{{"name", def.name},
         {"version", def.version},
         {"language", language},
         {"source", filter_to_json(def.source)},
         {"partition", {{"by", partition_by_name(def.partition.by)}, {"field", def.partition.field}}},
         {"limits", {{"instructions_per_event", def.limits.instructions_per_event}, {"memory_bytes", def.limits.memory_bytes}}},
         {"snapshot_every", def.snapshot_every},
         {"description", def.description}};
  if (language == "lua") j["lua"] = def.lua;
  return j;
}

namespace {

Status unknown_fields(const json& j, std::string_view what, std::initializer_list<std::string_view> known) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool ok = false;
    for (auto k : known) ok = ok || it.key() == k;
    if (!ok) return Status::invalid_argument(fmt::format("{}{}: unknown field", what, it.key().substr(0, 60)));
  }
  return {};
}

Result<std::string> get_string(const json& j, const char* key, std::string_view what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Status::invalid_argument(fmt::format("{}{}: must be a string", what, key));
  return it->get<std::string>();
}

Result<uint64_t> get_uint(const json& j, const char* key, std::string_view what, uint64_t dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number_unsigned()) return Status::invalid_argument(fmt::format("{}{}: must be a non-negative integer", what, key));
  return it->get<uint64_t>();
}

}  // namespace

Result<ProjectionDefinition> definition_from_json(const json& j, bool version_required) {
  if (!j.is_object()) return Status::invalid_argument("the definition must be a JSON object");
  CAIRN_RETURN_IF_ERROR(unknown_fields(j, "", {"name", "version", "language", "source", "partition", "lua", "limits",
                                                "snapshot_every", "description", "resume"}));
  ProjectionDefinition d;
  if (auto it = j.find("resume"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return Status::invalid_argument("resume: must be true or false");
    d.resume = it->get<bool>();
  }
  auto name = get_string(j, "name", "");
  if (!name.ok()) return name.status();
  d.name = *name;
  if (version_required && !j.contains("version")) return Status::invalid_argument("version: required");
  auto version = get_uint(j, "version", "", 1);
  if (!version.ok()) return version.status();
  if (*version == 0 || *version > UINT32_MAX) return Status::invalid_argument("version: must be 1 or more");
  d.version = static_cast<uint32_t>(*version);
  auto language = get_string(j, "language", "");
  if (!language.ok()) return language.status();
  if (!language->empty() && *language != "lua" && *language != "c++")
    return Status::invalid_argument(fmt::format("language: '{}' is not lua (c++ projections are registered by the "
                                                "embedding program)", language->substr(0, 20)));
  auto lua = get_string(j, "lua", "");
  if (!lua.ok()) return lua.status();
  d.lua = *lua;
  auto desc = get_string(j, "description", "");
  if (!desc.ok()) return desc.status();
  d.description = *desc;
  auto snap = get_uint(j, "snapshot_every", "", d.snapshot_every);
  if (!snap.ok()) return snap.status();
  d.snapshot_every = *snap;
  if (auto it = j.find("source"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Status::invalid_argument("source: must be an object");
    CAIRN_RETURN_IF_ERROR(unknown_fields(*it, "source.", {"types", "type_prefix", "stream_prefix", "category"}));
    if (auto t = it->find("types"); t != it->end() && !t->is_null()) {
      if (!t->is_array()) return Status::invalid_argument("source.types: must be an array of strings");
      for (size_t i = 0; i < t->size(); ++i) {
        if (!(*t)[i].is_string()) return Status::invalid_argument(fmt::format("source.types[{}]: must be a string", i));
        d.source.types.push_back((*t)[i].get<std::string>());
      }
    }
    for (auto [key, field] : {std::pair{"type_prefix", &d.source.type_prefix}, std::pair{"stream_prefix", &d.source.stream_prefix},
                              std::pair{"category", &d.source.category}}) {
      auto v = get_string(*it, key, "source.");
      if (!v.ok()) return v.status();
      *field = *v;
    }
  }
  if (auto it = j.find("partition"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      auto by = parse_partition_by(it->get<std::string>());
      if (!by.ok()) return by.status();
      d.partition.by = *by;
    } else if (it->is_object()) {
      CAIRN_RETURN_IF_ERROR(unknown_fields(*it, "partition.", {"by", "field"}));
      auto by = get_string(*it, "by", "partition.");
      if (!by.ok()) return by.status();
      if (!by->empty()) {
        auto b = parse_partition_by(*by);
        if (!b.ok()) return b.status();
        d.partition.by = *b;
      }
      auto field = get_string(*it, "field", "partition.");
      if (!field.ok()) return field.status();
      d.partition.field = *field;
    } else {
      return Status::invalid_argument("partition: must be an object {\"by\", \"field\"} or a string");
    }
  }
  if (auto it = j.find("limits"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Status::invalid_argument("limits: must be an object");
    CAIRN_RETURN_IF_ERROR(unknown_fields(*it, "limits.", {"instructions_per_event", "memory_bytes"}));
    auto ins = get_uint(*it, "instructions_per_event", "limits.", d.limits.instructions_per_event);
    if (!ins.ok()) return ins.status();
    d.limits.instructions_per_event = *ins;
    auto mem = get_uint(*it, "memory_bytes", "limits.", d.limits.memory_bytes);
    if (!mem.ok()) return mem.status();
    d.limits.memory_bytes = *mem;
  }
  return d;
}

}  // namespace cairn::project
