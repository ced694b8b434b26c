// Projection state files: checkpoints (resume points) and snapshots (kept for as-of queries).
//
// A file is NDJSON: a header line {"cairn_projection_state": 1, "name", "version", "position", "partitions",
// "sha256"} and then one line [key, state] per partition in key order, states in canonical JSON. sha256 is
// the digest of those partition lines, which is also the state's canonical digest, so a file proves which
// state it holds and a damaged file is detected (and ignored: state is derived, a rebuild recovers it).
// Files are written to a temporary name, synced and renamed: a crash leaves the old file or the new one.
// Names: checkpoint-<position>.ndjson and snapshot-<position>.ndjson (position zero-padded to 20 digits).
//
// Sealed files (when the store has a key store, so that personal data a reducer copies into its state is never
// on disk in clear): a header line {"cairn_projection_state": 2, "name", "version", "position", "key", "nonce"}
// followed by the whole unsealed file (format 1, as above) encrypted with XChaCha20-Poly1305 under the data key
// `key` with that header line as associated data. The directory's KEY file names the key of every file in it;
// destroying that key (a rebuild after a forget, a drop) makes every copy of those files unreadable, and an
// unreadable state file is skipped like a damaged one: the state is rebuilt from the log.
// Stateless and thread-safe; one writer per directory.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cairn/data_keys.h"
#include "cairn/projection.h"
#include "base/file.h"

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

// The data key a state directory's files are sealed under.
struct StateKey {
  std::string id;
  DataKey key{};
};
// The key of state directory dir: nullopt without keys (files in clear). Otherwise the key its KEY file
// names; with create, when KEY is missing or its key was destroyed, a new key (written to KEY durably), and
// every state file already in dir is removed first (written in clear or under a key that is gone). Without
// create, kNotFound when dir has no usable key.
Result<std::optional<StateKey>> state_key(base::FileSystem* fs, DataKeys* keys, const std::string& dir, bool create);
// Destroys the keys that dir and the directories below it name in their KEY files, then removes dir.
// The keys go first: even a directory that cannot be removed is unreadable afterwards.
Status remove_state_dir(DataKeys* keys, const std::string& dir);

// key: seal the file under it (nullptr: in clear).
Status write_state_file(base::FileSystem* fs, const std::string& dir, const std::string& name, uint32_t version,
                        uint64_t position, bool snapshot, const StateDump& dump, const StateKey* key);
// State files in dir, highest position first.
std::vector<StateFileInfo> list_state_files(const std::string& dir);
// Reads a file into a fresh engine; checks the header, the digest and that name and version match.
// With only_key, restores that one partition (if the file has it) and skips the others unparsed.
// key: the directory's key; a sealed file needs it (and must name it), a file in clear is refused with one
// (it predates the key store, and may hold personal data: it is never served).
Result<uint64_t> load_state_file(const std::string& path, const std::string& name, uint32_t version,
                                 ReducerEngine* engine, std::optional<std::string_view> only_key,
                                 const StateKey* key);

}  // namespace cairn::project
