// `cairn projection ...`: the CLI mirror of /v1/projections, against a running cairnd (--url) or offline on
// a data directory (--data), where the command opens the store, runs the projection runtime in-process
// and answers through the same endpoint code, so both modes print the same JSON.
// Offline queries first wait until the projection has caught up with the log (a progress bar on a
// terminal). Exit codes: 0 done (verify: the states are equal), 1 failed (verify: they differ), 2 bad usage.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/remote.h"

namespace cairn::cli {

struct ProjectionArgs {
  std::string action;  // list, create, deploy, show, state, partitions, digest, verify, rebuild, versions, activate, drop
  std::string name;
  std::optional<uint32_t> version;
  std::string lua_file;         // "-" = stdin
  std::string definition_file;  // a whole definition as JSON instead of the flags below
  std::string partition_by;
  std::string partition_field;
  std::vector<std::string> types;
  std::string type_prefix;
  std::string stream_prefix;
  std::string category;
  std::optional<uint64_t> snapshot_every;
  std::optional<uint64_t> max_instructions;
  std::optional<uint64_t> max_memory;
  std::string description;
  bool resume = false;
  // queries
  std::string key;
  std::optional<uint64_t> as_of;
  std::string as_of_time;
  std::optional<uint64_t> wait_for;
  std::optional<uint64_t> timeout_ms;
  std::string after;
  std::optional<uint64_t> limit;
  bool wait = false;  // rebuild: until it has finished
  std::optional<uint64_t> max_differences;  // verify
  bool json = false;
};

int cmd_projection(const StoreFlags& flags, const RemoteFlags& remote, const ProjectionArgs& a);

}  // namespace cairn::cli
