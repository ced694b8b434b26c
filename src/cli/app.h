// How the `cairn` command line is put together: each command group registers its CLI11 subcommands on the
// app with the Context, and says what runs when one of them was given. main() builds the app, calls the
// add_*_commands functions in the order the help lists the groups, parses and runs the chosen command.
// Single-threaded. The Context owns the parsed values (CLI11 binds options by reference) and must outlive
// the app's parse and the run.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "cli/remote.h"

namespace cairn::cli {

class Context {
 public:
  StoreFlags flags;
  RemoteFlags remote;
  // The maintenance commands' positional data directory and --json, shared as one set of flags.
  std::string dir;
  bool json = false;

  bool online() const { return !remote.url.empty(); }
  // The data directory a maintenance command works on: its positional dir, else --data.
  std::string target() const { return dir.empty() ? flags.data : dir; }

  void add_remote_flags(CLI::App* c);
  void add_store_flags(CLI::App* c, bool writes);
  void add_dir(CLI::App* c);  // the positional dir and --data
  // A subcommand of parent with the store flags and then the remote flags (most commands work either way).
  CLI::App* add_store_command(CLI::App& parent, const std::string& name, const std::string& help, bool writes);

  // A value the parsed options are bound to, owned by the Context.
  template <class T>
  T& hold() {
    auto p = std::make_shared<T>();
    T& ref = *p;
    held_.push_back(std::move(p));
    return ref;
  }
  // What runs when `c` was given on the command line; returns the exit code.
  void on(const CLI::App* c, std::function<int()> run) { commands_.emplace_back(c, std::move(run)); }
  // Runs the command given; 2 when none was registered for it.
  int run() const;

 private:
  std::vector<std::shared_ptr<void>> held_;
  std::vector<std::pair<const CLI::App*, std::function<int()>>> commands_;
};

// append, read, tail, verify (commands.h; remote forms in remote.h).
void add_store_commands(CLI::App& app, Context& ctx);
// pg init, pg migrate (pg_cmds.h).
void add_pg_commands(CLI::App& app, Context& ctx);
// reindex, stats, streams, export, import (commands.h).
void add_maintenance_commands(CLI::App& app, Context& ctx);
// keys create|list|revoke, on a running cairnd (remote.h).
void add_key_commands(CLI::App& app, Context& ctx);
// projection ... (projection_cmds.h).
void add_projection_commands(CLI::App& app, Context& ctx);
// why, correlation, ai rates|export|demo (ai_cmds.h).
void add_ai_commands(CLI::App& app, Context& ctx);
// privacy forget|purge|report (privacy_cmds.h).
void add_privacy_commands(CLI::App& app, Context& ctx);

}  // namespace cairn::cli
