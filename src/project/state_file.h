// Projection state files: checkpoints (resume points) and snapshots (kept for as-of queries).
//
// A file is NDJSON: a header line {"cairn_projection_state": 1, "name", "version", "position", "partitions",
// "sha256"} and then one line [key, state] per partition in key order, states in canonical JSON. sha256 is
// the digest of those partition lines, which is also the state's canonical digest, so a file proves which
// state it holds and a damaged file is detected (and ignored: state is derived, a rebuild recovers it).
// Files are written to a temporary name, synced and renamed: a crash leaves the old file or the new one.
// Names: checkpoint-<position>.ndjson and snapshot-<position>.ndjson (position zero-padded to 20 digits).
// Stateless and thread-safe; one writer per directory.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/projection.h"
#include "log/file.h"

namespace cairn::project {

// The canonical dump of a whole state.
struct StateDump {
  std::string lines;  // the partition lines
  std::string sha256_hex;
  uint64_t partitions = 0;
};

// Dumps every partition of an engine in key order.
Result<StateDump> dump_state(ReducerEngine& engine);

struct StateFileInfo {
  std::string path;
  uint64_t position = 0;
  bool snapshot = false;
};

Status write_state_file(log::FileSystem* fs, const std::string& dir, const std::string& name, uint32_t version,
                        uint64_t position, bool snapshot, const StateDump& dump);
// State files in dir, highest position first.
std::vector<StateFileInfo> list_state_files(const std::string& dir);
// Reads a file into a fresh engine; checks the header, the digest and that name and version match.
// With only_key, restores that one partition (if the file has it) and skips the others unparsed.
Result<uint64_t> load_state_file(const std::string& path, const std::string& name, uint32_t version,
                                 ReducerEngine* engine, std::optional<std::string_view> only_key = std::nullopt);

}  // namespace cairn::project
