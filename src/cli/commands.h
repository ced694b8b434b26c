// The `cairn` commands, offline on a data directory. Each returns the process exit code:
// 0 done, 1 the operation failed (the message says why), 2 bad usage or bad input.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cairn/store.h"

namespace cairn::cli {

struct StoreFlags {
  std::string data = "./data";
  std::string durability = "fsync";
  uint64_t segment_size = 128ull << 20;
  std::string key_store;        // personal data's key store (docs/privacy.md); empty: none
  std::string master_key_file;  // else CAIRN_MASTER_KEY
  std::string backend;          // a PostgreSQL connection URL (docs/scaling.md); empty: the embedded store in data
};
// The backend of the flags (PostgreSQL with --backend, else the embedded store in --data), with the key
// store and its master key when --key-store is given. Checks nothing about durability (store_options does).
Result<Options> backend_options(const StoreFlags& f, Durability durability, bool read_only);
// The store options of the flags (durability none prints a warning unless read_only).
Result<Options> store_options(const StoreFlags& f, bool read_only);

struct AppendArgs {
  std::string stream;
  std::string type;
  std::optional<std::string> data;  // "-" reads stdin
  std::string data_file;
  std::string events_file;          // NDJSON of events for one atomic append ("-" = stdin)
  std::string expected = "any";
  std::string id;
  std::string metadata;
  std::string content_type = "application/json";
  bool json = false;
};

struct ReadArgs {
  std::string stream;  // empty: $all
  std::optional<uint64_t> from;
  bool backward = false;
  std::optional<uint64_t> limit;
  std::vector<std::string> types;
  std::string type_prefix;
  std::string stream_prefix;
  std::string category;
  bool json = false;
  // tail
  bool follow = false;
  uint64_t last_n = 10;
  double poll_seconds = 0.2;
  std::optional<double> follow_for_seconds;  // stop following after this long (scripts, tests)
};

// The whole of a file, or of standard input for "-".
Result<std::string> read_input(const std::string& path);

int cmd_append(const StoreFlags& f, const AppendArgs& a);
int cmd_read(const StoreFlags& f, const ReadArgs& a);
int cmd_tail(const StoreFlags& f, const ReadArgs& a);
int cmd_verify(const std::string& dir, bool json);
int cmd_reindex(const std::string& dir);
int cmd_stats(const std::string& dir, bool json);
// backend: a PostgreSQL connection string to read instead of dir (empty: the data directory).
int cmd_streams(const std::string& dir, const std::string& prefix, std::optional<uint64_t> limit, bool json,
                const std::string& backend = {});
int cmd_export(const std::string& dir, const std::string& out, uint64_t from, const std::string& backend = {});
int cmd_import(const StoreFlags& f, const std::string& in);

}  // namespace cairn::cli
