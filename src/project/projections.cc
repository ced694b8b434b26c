// The projection runtime (include/cairn/projection.h): definitions from $projections, one Runner per
// version, blue/green switches, background rebuilds, as-of, digests and verification.
//
// Files: DIR/<name>/v<version>/g<generation>/ holds a version's state files; DIR/<name>/v<version>/CURRENT
// names the generation in use. A rebuild builds generation g+1 beside it and switches CURRENT once it has
// caught up, so the served state is never a half-built one.
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cairn/projection.h"
#include "base/file.h"
#include "base/mutex.h"
#include "base/reserved_appends.h"
#include "project/builtins.h"
#include "project/definition.h"
#include "project/lua_engine.h"
#include "project/open.h"
#include "project/runner.h"
#include "project/state_file.h"

namespace cairn {
namespace {

using nlohmann::json;
using project::Runner;
using project::RunnerSpec;
using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Whole-state answers of partitioned projections stop here; past it, ask by key or list partitions.
constexpr size_t kMaxWholeStatePartitions = 10'000;
constexpr size_t kMaxCodeBytes = 256 * 1024;

// Fills out->found and out->json: one partition when a key is asked for or the projection has a single
// unnamed state; otherwise every partition as one object {key: state} (built-ins like $types partition
// internally even though they are not partitioned by a field).
Status state_answer(ReducerEngine& eng, PartitionBy by, const std::optional<std::string>& key, std::string_view name,
                    ProjectionState* out) {
  if (key || (by == PartitionBy::kNone && (eng.partitions() == 0 || eng.keys("", 1).front().empty()))) {
    auto s = eng.state_json(key.value_or(""));
    if (!s.ok()) return s.status();
    out->found = s->has_value();
    out->json = s->has_value() ? std::move(**s) : "null";
    return {};
  }
  if (eng.partitions() > kMaxWholeStatePartitions)
    return Status::limit_exceeded(fmt::format("projection '{}' has {} partitions; ask for one with key or list them "
                                              "with partitions (whole states stop at {})",
                                              name, eng.partitions(), kMaxWholeStatePartitions));
  auto dump = project::dump_state(eng);
  if (!dump.ok()) return dump.status();
  // The dump's lines are [key,state]: join them into one object.
  std::string obj = "{";
  const std::string& lines = dump->lines;
  size_t at = 0;
  while (at < lines.size()) {
    const size_t end = lines.find('\n', at);
    size_t i = at + 2;  // inside the key's string literal: find its closing quote
    while (lines[i] != '"') i += lines[i] == '\\' ? 2 : 1;
    if (obj.size() > 1) obj.push_back(',');
    obj.append(lines, at + 1, i - at);
    obj.push_back(':');
    obj.append(lines, i + 2, end - 1 - (i + 2));
    at = end + 1;
  }
  obj.push_back('}');
  out->found = true;
  out->json = std::move(obj);
  return {};
}

class ProjectionsImpl final : public Projections {
 public:
  ProjectionsImpl(Store& store, ProjectionsOptions options, std::vector<project::BuiltinProjection> more_builtins)
      : store_(store), opt_(std::move(options)), more_builtins_(std::move(more_builtins)) {}
  ~ProjectionsImpl() override { (void)close(); }

  // Not analysed: fills entries_ and the privacy_* positions without mu_, before the monitor thread exists
  // and before any caller can reach this object.
  Status open() CAIRN_NO_THREAD_SAFETY_ANALYSIS;

  Result<ProjectionStatus> define(ProjectionDefinition def) override;
  Result<ProjectionStatus> define_cpp(CppProjection def) override;
  std::vector<ProjectionStatus> list() override;
  Result<ProjectionStatus> status(std::string_view name, uint32_t version) override;
  std::vector<ProjectionStatus> versions(std::string_view name) override;
  Result<ProjectionState> state(std::string_view name, std::optional<std::string> key, uint32_t version,
                                std::optional<uint64_t> wait_for, std::chrono::milliseconds timeout) override;
  Result<PartitionPage> partitions(std::string_view name, std::optional<std::string> after, size_t limit,
                                   uint32_t version) override;
  Result<ProjectionState> state_as_of(std::string_view name, std::optional<std::string> key, AsOf as_of,
                                      uint32_t version) override;
  Result<ProjectionDigest> digest(std::string_view name, uint32_t version) override;
  Result<ProjectionVerifyReport> verify(std::string_view name, uint32_t version, size_t max_differences) override;
  Result<ProjectionStatus> rebuild(std::string_view name, uint32_t version) override;
  Result<ProjectionStatus> activate(std::string_view name, uint32_t version) override;
  Status drop(std::string_view name, uint32_t version) override;
  Status close() override;

 private:
  struct Version {
    ProjectionDefinition def;
    std::string language;  // lua, c++, builtin
    int64_t registered_ns = 0;
    EngineFactory factory;  // empty: a C++ projection the program has not registered since it started
    std::shared_ptr<Runner> runner;
    uint32_t generation = 1;
    bool pending = false;  // registered while another version serves: takes over once caught up
    bool fault_recorded = false;
    std::string start_error;  // why the version is not running, if it could not start
    std::optional<ProjectionFault> rebuild_fault;  // the last background rebuild stopped on this
    // A background rebuild: the next generation, built beside the current one.
    std::shared_ptr<Runner> rebuild;
    uint64_t rebuild_started_position = 0;
    Clock::time_point rebuild_started;
    bool privacy_rebuild = false;  // a subject was forgotten: rebuild once no other rebuild runs
    bool holds_event_data = true;  // false for built-ins whose state keeps no event data (no rebuild on forget)
  };
  struct Entry {
    std::map<uint32_t, Version> versions;
    uint32_t active = 0;
  };

  // All under mu_.
  Result<Version*> find(std::string_view name, uint32_t version, Entry** entry_out = nullptr) CAIRN_REQUIRES(mu_);
  std::string version_dir(const std::string& name, uint32_t version) const {
    return fmt::format("{}/{}/v{}", opt_.dir, name, version);
  }
  RunnerSpec spec_for(const Version& v, uint32_t generation) const;
  Status start_version(Version& v) CAIRN_REQUIRES(mu_);
  Status record(std::string_view type, json data);
  ProjectionStatus status_of(const std::string& name, const Entry& e, const Version& v) const CAIRN_REQUIRES(mu_);
  void monitor();
  void step();
  // After a forget ($privacy grew): rebuilds every projection whose state may hold the subject's plaintext,
  // and records in DIR/PRIVACY how many $privacy events are handled once they all finished.
  void privacy_step();
  Status start_rebuild(Version& v) CAIRN_REQUIRES(mu_);
  // A reducer's error may quote event data; with personal data in the store it stays out of the log
  // ($projections is never sealed): the status serves it, and a restart reproduces it.
  std::string fault_record_message(const std::string& message) const {
    return store_.data_keys() ? "withheld: this store holds personal data and a reducer's message may quote it; "
                                "the projection's status shows the message"
                              : message;
  }
  // Removes a state directory (a generation or a whole version) and destroys the data keys of its files
  // first, so that copies of them (backups) become unreadable too. A failure is reported, not fatal: the
  // directory is derived data.
  void remove_state_dir(const std::string& dir);

  // A verify or as-of replay running now, shown in its version's status.
  struct Replay {
    std::string name;
    uint32_t version = 0;
    std::string kind;
    std::atomic<uint64_t> position{0};
    uint64_t target = 0;
    Clock::time_point started = Clock::now();
  };
  class ReplayScope {
   public:
    ReplayScope(ProjectionsImpl& p, std::string_view name, uint32_t version, std::string kind, uint64_t from, uint64_t target)
        : p_(p), r_(std::make_shared<Replay>()) {
      r_->name = std::string(name);
      r_->version = version;
      r_->kind = std::move(kind);
      r_->position = from;
      r_->target = target;
      base::MutexLock g(p_.replays_mu_);
      p_.replays_.push_back(r_);
    }
    ~ReplayScope() {
      base::MutexLock g(p_.replays_mu_);
      p_.replays_.erase(std::find(p_.replays_.begin(), p_.replays_.end(), r_));
    }
    std::atomic<uint64_t>* progress() { return &r_->position; }

   private:
    ProjectionsImpl& p_;
    std::shared_ptr<Replay> r_;
  };

  Store& store_;
  ProjectionsOptions opt_;
  const std::vector<project::BuiltinProjection> more_builtins_;  // the other modules' built-ins (src/runtime/)
  mutable base::Mutex replays_mu_;  // replays_; taken after mu_, never before it
  std::vector<std::shared_ptr<Replay>> replays_ CAIRN_GUARDED_BY(replays_mu_);
  base::FileSystem* fs_ = base::posix_fs();
  mutable base::Mutex mu_;  // guards entries_, closed_ and the privacy_* positions; functions noted "under mu_" need it
  std::map<std::string, Entry, std::less<>> entries_ CAIRN_GUARDED_BY(mu_);
  std::thread monitor_;
  base::Mutex monitor_mu_;  // guards closing_, and lets close() wake the monitor at once
  std::condition_variable monitor_cv_;
  bool closing_ CAIRN_GUARDED_BY(monitor_mu_) = false;
  bool closed_ CAIRN_GUARDED_BY(mu_) = false;
  uint64_t privacy_handled_ CAIRN_GUARDED_BY(mu_) = 0;  // $privacy events whose forgets every projection state reflects
  uint64_t privacy_target_ CAIRN_GUARDED_BY(mu_) = 0;   // ... once the rebuilds requested for them finish
};

RunnerSpec ProjectionsImpl::spec_for(const Version& v, uint32_t generation) const {
  RunnerSpec s;
  s.name = v.def.name;
  s.version = v.def.version;
  s.source = v.def.source;
  s.partition = v.def.partition;
  s.include_reserved = v.language == "builtin";
  s.factory = v.factory;
  s.dir = fmt::format("{}/g{}", version_dir(v.def.name, v.def.version), generation);
  s.snapshot_every = v.def.snapshot_every;
  s.batch_events = opt_.batch_events;
  s.keys = store_.data_keys();
  s.checkpoint_interval = opt_.checkpoint_interval;
  s.checkpoint_events = opt_.checkpoint_events;
  return s;
}

Status ProjectionsImpl::start_version(Version& v) {
  if (!v.factory) return {};
  const std::string vdir = version_dir(v.def.name, v.def.version);
  CAIRN_RETURN_IF_ERROR(base::make_dirs(vdir));
  v.generation = 1;
  if (auto cur = base::read_whole_file(vdir + "/CURRENT"); cur.ok()) {
    try {
      v.generation = static_cast<uint32_t>(std::stoul(*cur));
    } catch (...) {
      v.generation = 1;  // a damaged CURRENT only costs a rebuild
    }
  }
  // Generations other than the current one are interrupted rebuilds or leftovers: derived, so removed.
  std::error_code ec;
  std::vector<std::string> leftovers;
  for (const auto& d : std::filesystem::directory_iterator(vdir, ec))
    if (d.is_directory() && d.path().filename() != fmt::format("g{}", v.generation)) leftovers.push_back(d.path().string());
  for (const auto& d : leftovers) remove_state_dir(d);
  auto runner = std::make_shared<Runner>(store_, fs_, spec_for(v, v.generation));
  CAIRN_RETURN_IF_ERROR(runner->start());
  v.runner = std::move(runner);
  return {};
}

void ProjectionsImpl::remove_state_dir(const std::string& dir) {
  if (Status st = project::remove_state_dir(store_.data_keys(), dir); !st.ok())
    fmt::print(stderr, "cairn projections: removing {}: {}\n", dir, st.message());
}

Status ProjectionsImpl::record(std::string_view type, json data) {
  data["at"] = format_rfc3339_ns(now_ns());
  StreamAppend a;
  a.stream = std::string(project::kProjectionsStream);
  EventData e;
  e.type = std::string(type);
  e.data = data.dump(-1, ' ', false, json::error_handler_t::replace);
  a.events.push_back(std::move(e));
  auto reserved = base::reserved_appends(store_);
  if (!reserved.ok()) return reserved.status();
  auto r = (*reserved)->append_reserved(std::move(a));
  return r.ok() ? Status() : r.status();
}

Status ProjectionsImpl::open() {
  CAIRN_RETURN_IF_ERROR(base::make_dirs(opt_.dir));
  if (auto text = base::read_whole_file(opt_.dir + "/PRIVACY"); text.ok()) {
    try {
      privacy_handled_ = privacy_target_ = std::stoull(*text);
    } catch (...) {
      privacy_handled_ = privacy_target_ = 0;  // damaged: every projection is rebuilt once more
    }
  }
  // The definitions, activations and drops, in the order they happened.
  std::optional<uint64_t> from = 0;
  while (from) {
    auto page = store_.read_stream(project::kProjectionsStream, from, Direction::kForward, 1000);
    if (!page.ok()) {
      if (page.status().code() == ErrorCode::kNotFound) break;
      return page.status();
    }
    for (const auto& ev : page->events) {
      json d = json::parse(ev.data, nullptr, false);
      if (d.is_discarded() || !d.is_object() || !d.contains("name") || !d["name"].is_string()) continue;
      const std::string name = d["name"].get<std::string>();
      const uint32_t version = d.value("version", 0u);
      if (ev.type == project::kRegisteredType) {
        json def_json = d;
        def_json.erase("at");
        def_json.erase("resume");
        const std::string language = def_json.value("language", "lua");
        auto def = project::definition_from_json(def_json, true);
        if (!def.ok()) return Status::corruption(fmt::format("$projections at revision {}: {}", ev.revision, def.status().message()));
        Entry& e = entries_[name];
        Version& v = e.versions[def->version];
        v.def = *def;
        v.language = language;
        v.registered_ns = ev.recorded_ns;
        v.pending = e.active != 0 && e.active != def->version;
      } else if (ev.type == project::kActivatedType) {
        auto it = entries_.find(name);
        if (it != entries_.end() && it->second.versions.count(version)) {
          it->second.active = version;
          it->second.versions[version].pending = false;
        }
      } else if (ev.type == project::kDroppedType) {
        auto it = entries_.find(name);
        if (it != entries_.end()) {
          it->second.versions.erase(version);
          if (it->second.active == version) it->second.active = 0;
          if (it->second.versions.empty()) entries_.erase(it);
        }
      } else if (ev.type == project::kRebuiltType) {
        auto it = entries_.find(name);
        if (it != entries_.end() && it->second.versions.count(version)) it->second.versions[version].fault_recorded = false;
      } else if (ev.type == project::kFaultedType) {
        auto it = entries_.find(name);
        if (it != entries_.end() && it->second.versions.count(version)) it->second.versions[version].fault_recorded = true;
      }
    }
    from = page->next;
  }
  for (auto& [name, e] : entries_) {
    if (e.active == 0 && !e.versions.empty()) e.active = e.versions.begin()->first;
    for (auto& [num, v] : e.versions) {
      if (v.language == "lua") {
        const auto def = v.def;
        v.factory = [def]() { return project::make_lua_engine(def.name, def.lua, def.limits); };
      }
      // One projection that cannot start (a damaged directory, say) must not keep the others down.
      if (Status st = start_version(v); !st.ok()) v.start_error = st.message();
    }
  }
  if (opt_.builtins) {
    std::vector<project::BuiltinProjection> builtins = {
        {project::kStreamsProjection, project::streams_engine_factory(), PartitionBy::kStream, {},
         "every stream: revision, count, first and last position and time", false},
        {project::kTypesProjection, project::types_engine_factory(), PartitionBy::kNone, {},
         "event counts by type and by stream category, per hour and per day", false},
    };
    builtins.insert(builtins.end(), more_builtins_.begin(), more_builtins_.end());
    for (const project::BuiltinProjection& b : builtins) {
      Entry& e = entries_[std::string(b.name)];
      Version& v = e.versions[1];
      v.def.name = std::string(b.name);
      v.def.version = 1;
      v.def.partition.by = b.by;
      v.def.source = b.source;
      v.def.snapshot_every = 1'000'000;
      v.def.description = b.description;
      v.language = "builtin";
      v.factory = b.factory;
      v.holds_event_data = b.holds_event_data;
      e.active = 1;
      CAIRN_RETURN_IF_ERROR(start_version(v));
    }
  }
  monitor_ = std::thread([this] { monitor(); });
  return {};
}

Result<ProjectionsImpl::Version*> ProjectionsImpl::find(std::string_view name, uint32_t version, Entry** entry_out) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return Status::not_found(fmt::format("no projection is named '{}'", name.substr(0, 100)));
  const uint32_t v = version ? version : it->second.active;
  auto vit = it->second.versions.find(v);
  if (vit == it->second.versions.end())
    return Status::not_found(fmt::format("projection '{}' has no version {}", name.substr(0, 100), v));
  if (entry_out) *entry_out = &it->second;
  return &vit->second;
}

Result<ProjectionStatus> ProjectionsImpl::define(ProjectionDefinition def) {
  CAIRN_RETURN_IF_ERROR(project::validate_definition(def));
  if (def.lua.empty()) return Status::invalid_argument("lua: the reducer's code is required");
  // The definition is one event in $projections: keep the code well inside one event's limit.
  if (def.lua.size() > kMaxCodeBytes)
    return Status::invalid_argument(fmt::format("lua: the code is {} bytes; the limit is {}", def.lua.size(), kMaxCodeBytes));
  // Compiling checks syntax, the sandbox rules and that there is a reducer.
  auto probe = project::make_lua_engine(def.name, def.lua, def.limits);
  if (!probe.ok()) return probe.status();
  probe->reset();

  base::MutexLock g(mu_);
  if (closed_) return Status(ErrorCode::kClosed, "projections are closed");
  // The entry is made only once the registration is recorded: a failed one leaves nothing behind.
  static const Entry kNone;
  auto eit = entries_.find(def.name);
  const Entry& cur = eit == entries_.end() ? kNone : eit->second;
  const bool first = cur.versions.empty();
  auto existing = cur.versions.find(def.version);
  json def_json = project::definition_to_json(def, "lua");
  if (existing != cur.versions.end()) {
    if (project::definition_to_json(existing->second.def, existing->second.language) == def_json) {
      // Registered before but not running (it failed to start): a retry tries again.
      if (!existing->second.runner && existing->second.factory) {
        Version& again = entries_.find(def.name)->second.versions.find(def.version)->second;
        Status st = start_version(again);
        again.start_error = st.ok() ? "" : st.message();
        CAIRN_RETURN_IF_ERROR(st);
      }
      return status_of(def.name, cur, existing->second);
    }
    return Status::conflict(fmt::format("projection '{}' version {} exists with a different definition; register "
                                        "version {} instead",
                                        def.name, def.version, cur.versions.rbegin()->first + 1));
  }
  if (!first && def.version < cur.versions.rbegin()->first)
    return Status::conflict(fmt::format("projection '{}' already has version {}; a new version must be higher",
                                        def.name, cur.versions.rbegin()->first));
  // Resume: start from the active version's state instead of position 0 (for a fixed reducer whose state
  // format did not change).
  std::optional<std::pair<uint64_t, project::StateDump>> resume_state;
  if (def.resume && !first && cur.active) {
    const auto& from = cur.versions.at(cur.active);
    if (from.runner) {
      Status st = from.runner->with_state([&](ReducerEngine& eng, uint64_t pos) -> Status {
        auto dump = project::dump_state(eng);
        if (!dump.ok()) return dump.status();
        resume_state.emplace(pos, std::move(*dump));
        return {};
      });
      if (!st.ok()) return st;
    }
  }
  json recorded = def_json;
  if (def.resume) recorded["resume"] = true;
  CAIRN_RETURN_IF_ERROR(record(project::kRegisteredType, recorded));
  Entry& e = entries_[def.name];
  Version& v = e.versions[def.version];
  v.def = def;
  v.def.resume = false;
  v.language = "lua";
  v.registered_ns = now_ns();
  v.pending = !first;
  const auto d = v.def;
  v.factory = [d]() { return project::make_lua_engine(d.name, d.lua, d.limits); };
  if (first) {
    e.active = def.version;
    CAIRN_RETURN_IF_ERROR(record(project::kActivatedType, json{{"name", def.name}, {"version", def.version}}));
  }
  const std::string vdir = version_dir(def.name, def.version);
  remove_state_dir(vdir);  // leftovers of a dropped version with this number
  if (resume_state) {
    CAIRN_RETURN_IF_ERROR(base::make_dirs(vdir + "/g1"));
    auto key = project::state_key(fs_, store_.data_keys(), vdir + "/g1", true);
    if (!key.ok()) return key.status();
    CAIRN_RETURN_IF_ERROR(project::write_state_file(fs_, vdir + "/g1", def.name, def.version, resume_state->first,
                                                    false, resume_state->second, *key ? &**key : nullptr));
  }
  if (Status st = start_version(v); !st.ok()) {
    v.start_error = st.message();  // recorded, not running: a retry of the same definition starts it
    return st;
  }
  return status_of(def.name, e, v);
}

Result<ProjectionStatus> ProjectionsImpl::define_cpp(CppProjection cpp) {
  ProjectionDefinition def;
  def.name = cpp.name;
  def.version = cpp.version;
  def.source = cpp.source;
  def.partition = cpp.partition;
  def.snapshot_every = cpp.snapshot_every;
  def.description = cpp.description;
  CAIRN_RETURN_IF_ERROR(project::validate_definition(def));
  if (!cpp.engine) return Status::invalid_argument("engine: a factory is required");
  base::MutexLock g(mu_);
  if (closed_) return Status(ErrorCode::kClosed, "projections are closed");
  auto eit = entries_.find(def.name);
  if (eit != entries_.end()) {
    auto existing = eit->second.versions.find(def.version);
    if (existing != eit->second.versions.end()) {
      if (project::definition_to_json(existing->second.def, existing->second.language) !=
          project::definition_to_json(def, "c++"))
        return Status::conflict(fmt::format("projection '{}' version {} exists with a different definition", def.name, def.version));
      if (existing->second.runner) return Status::conflict(fmt::format("projection '{}' version {} is already running", def.name, def.version));
      existing->second.factory = cpp.engine;
      CAIRN_RETURN_IF_ERROR(start_version(existing->second));
      return status_of(def.name, eit->second, existing->second);
    }
  }
  const bool first = eit == entries_.end() || eit->second.versions.empty();
  CAIRN_RETURN_IF_ERROR(record(project::kRegisteredType, project::definition_to_json(def, "c++")));
  Entry& e = entries_[def.name];
  Version& v = e.versions[def.version];
  v.def = def;
  v.language = "c++";
  v.registered_ns = now_ns();
  v.factory = cpp.engine;
  v.pending = !first;
  if (first) {
    e.active = def.version;
    CAIRN_RETURN_IF_ERROR(record(project::kActivatedType, json{{"name", def.name}, {"version", def.version}}));
  }
  CAIRN_RETURN_IF_ERROR(start_version(v));
  return status_of(def.name, e, v);
}

ProjectionStatus ProjectionsImpl::status_of(const std::string& name, const Entry& e, const Version& v) const {
  ProjectionStatus s;
  s.name = name;
  s.version = v.def.version;
  s.active = e.active == v.def.version;
  s.language = v.language;
  s.definition = v.def;
  s.registered_ns = v.registered_ns;
  s.head = store_.head_position();
  s.rebuild_fault = v.rebuild_fault;
  {
    base::MutexLock g(replays_mu_);
    for (const auto& r : replays_)
      if (r->name == name && r->version == v.def.version)
        s.replays.push_back({r->kind, r->position.load(std::memory_order_relaxed), r->target,
                             std::chrono::duration<double>(Clock::now() - r->started).count()});
  }
  if (!v.runner) {
    s.phase = ProjectionPhase::kStopped;
    s.detail = !v.start_error.empty() ? "could not start: " + v.start_error
               : !v.factory           ? "a C++ projection: waiting for the program to register its reducer (define_cpp)"
                                      : "not running";
    s.lag = s.head;
    return s;
  }
  const auto r = v.runner->status();
  s.phase = r.phase;
  s.position = r.position;
  s.head = std::max(s.head, r.head);
  s.lag = s.head - std::min(s.head, r.position);
  s.events_per_second = r.events_per_second;
  s.events_applied = r.events_applied;
  s.partitions = r.partitions;
  s.checkpoint_position = r.checkpoint_position;
  s.fault = r.fault;
  if (v.rebuild) {
    const auto rb = v.rebuild->status();
    RebuildProgress p;
    p.position = rb.position;
    p.target = s.head;
    const double secs = std::chrono::duration<double>(Clock::now() - v.rebuild_started).count();
    p.events_per_second = rb.events_per_second > 0 ? rb.events_per_second
                                                   : (secs > 0 ? static_cast<double>(rb.position) / secs : 0);
    p.eta_seconds = p.events_per_second > 0 ? static_cast<double>(s.head - std::min(s.head, rb.position)) / p.events_per_second : 0;
    s.rebuild = p;
    if (rb.fault) s.rebuild->eta_seconds = -1;
  }
  return s;
}

std::vector<ProjectionStatus> ProjectionsImpl::list() {
  base::MutexLock g(mu_);
  std::vector<ProjectionStatus> out;
  for (const auto& [name, e] : entries_)
    for (const auto& [num, v] : e.versions) out.push_back(status_of(name, e, v));
  return out;
}

Result<ProjectionStatus> ProjectionsImpl::status(std::string_view name, uint32_t version) {
  base::MutexLock g(mu_);
  Entry* e = nullptr;
  auto v = find(name, version, &e);
  if (!v.ok()) return v.status();
  return status_of(std::string(name), *e, **v);
}

std::vector<ProjectionStatus> ProjectionsImpl::versions(std::string_view name) {
  base::MutexLock g(mu_);
  std::vector<ProjectionStatus> out;
  auto it = entries_.find(name);
  if (it == entries_.end()) return out;
  for (const auto& [num, v] : it->second.versions) out.push_back(status_of(it->first, it->second, v));
  return out;
}

Result<ProjectionState> ProjectionsImpl::state(std::string_view name, std::optional<std::string> key, uint32_t version,
                                               std::optional<uint64_t> wait_for, std::chrono::milliseconds timeout) {
  std::shared_ptr<Runner> runner;
  uint32_t number = 0;
  PartitionBy by = PartitionBy::kNone;
  {
    base::MutexLock g(mu_);
    auto v = find(name, version);
    if (!v.ok()) return v.status();
    runner = (*v)->runner;
    number = (*v)->def.version;
    by = (*v)->def.partition.by;
    if (!runner) return Status(ErrorCode::kClosed, fmt::format("projection '{}' v{} is not running", name, number));
  }
  if (wait_for) {
    // A rebuild that finishes swaps the runner: wait on the new one for the rest of the time.
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      Status st = runner->wait_past(*wait_for, std::max(left, std::chrono::milliseconds(0)));
      if (st.ok()) break;
      if (st.code() != ErrorCode::kClosed || Clock::now() >= deadline) return st;
      base::MutexLock g(mu_);
      auto v = find(name, number);  // the version this request is answered from, even if another became active
      if (!v.ok()) return v.status();
      if (!(*v)->runner || (*v)->runner == runner) return st;
      runner = (*v)->runner;
    }
  }
  ProjectionState out;
  out.name = std::string(name);
  out.version = number;
  out.key = key;
  Status st = runner->with_state([&](ReducerEngine& eng, uint64_t pos) -> Status {
    out.position = pos;
    return state_answer(eng, by, key, name, &out);
  });
  if (!st.ok()) return st;
  return out;
}

Result<PartitionPage> ProjectionsImpl::partitions(std::string_view name, std::optional<std::string> after, size_t limit,
                                                  uint32_t version) {
  if (limit == 0) return Status::invalid_argument("limit: at least 1");
  std::shared_ptr<Runner> runner;
  PartitionPage page;
  {
    base::MutexLock g(mu_);
    auto v = find(name, version);
    if (!v.ok()) return v.status();
    runner = (*v)->runner;
    page.version = (*v)->def.version;
    if (!runner) return Status(ErrorCode::kClosed, fmt::format("projection '{}' is not running", name));
  }
  page.name = std::string(name);
  Status st = runner->with_state([&](ReducerEngine& eng, uint64_t pos) -> Status {
    page.position = pos;
    page.keys = eng.keys(after.value_or(""), limit + 1);
    return {};
  });
  if (!st.ok()) return st;
  if (page.keys.size() > limit) {
    page.keys.resize(limit);
    page.next = page.keys.back();
  }
  return page;
}

Result<ProjectionState> ProjectionsImpl::state_as_of(std::string_view name, std::optional<std::string> key, AsOf as_of,
                                                     uint32_t version) {
  RunnerSpec spec;
  PartitionBy by;
  {
    base::MutexLock g(mu_);
    auto v = find(name, version);
    if (!v.ok()) return v.status();
    if (!(*v)->factory) return Status(ErrorCode::kClosed, fmt::format("projection '{}' is not running", name));
    spec = spec_for(**v, (*v)->generation);
    by = (*v)->def.partition.by;
  }
  const uint64_t head = store_.head_position();
  uint64_t target = 0;  // the state reflects the events below target
  if (as_of.position) {
    if (*as_of.position >= head)
      return Status::invalid_argument(fmt::format("as_of: position {} does not exist yet (the head is {})", *as_of.position, head));
    target = *as_of.position + 1;
  } else if (as_of.time_ns) {
    // Times never decrease along the log: the first event after the time, by bisection.
    uint64_t lo = 0, hi = head;
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      auto e = store_.read_position(mid);
      if (!e.ok()) return e.status();
      if (e->recorded_ns <= *as_of.time_ns) lo = mid + 1;
      else hi = mid;
    }
    target = lo;
  } else {
    return Status::invalid_argument("as_of: give a position or a time");
  }
  // One partition of a partitioned projection: restore and replay that partition only (partitions never
  // see each other's events), which keeps as-of fast on large states.
  std::optional<std::string_view> only;
  if (key && by != PartitionBy::kNone) only = *key;
  auto engine = spec.factory();
  if (!engine.ok()) return engine.status();
  uint64_t from = 0;
  // Without a usable key (a rebuild replaced the generation meanwhile), replay from the start.
  auto dir_key = project::state_key(fs_, spec.keys, spec.dir, false);
  const std::vector<project::StateFileInfo> files =
      dir_key.ok() ? project::list_state_files(spec.dir) : std::vector<project::StateFileInfo>();
  const project::StateKey* sealed = dir_key.ok() && *dir_key ? &**dir_key : nullptr;
  for (const auto& f : files) {
    if (f.position > target) continue;
    auto fresh = spec.factory();
    if (!fresh.ok()) return fresh.status();
    auto pos = project::load_state_file(f.path, spec.name, spec.version, fresh->get(), only, sealed);
    if (!pos.ok()) continue;  // replaced or removed meanwhile, or damaged: try an older one
    engine = std::move(fresh);
    from = *pos;
    break;
  }
  ReplayScope scope(*this, name, spec.version, "as_of", from, target);
  CAIRN_RETURN_IF_ERROR(project::replay_range(store_, spec, **engine, from, target, only, scope.progress()));
  ProjectionState out;
  out.name = std::string(name);
  out.version = spec.version;
  out.position = target;
  out.key = key;
  CAIRN_RETURN_IF_ERROR(state_answer(**engine, by, key, name, &out));
  return out;
}

Result<ProjectionDigest> ProjectionsImpl::digest(std::string_view name, uint32_t version) {
  std::shared_ptr<Runner> runner;
  ProjectionDigest d;
  {
    base::MutexLock g(mu_);
    auto v = find(name, version);
    if (!v.ok()) return v.status();
    runner = (*v)->runner;
    d.version = (*v)->def.version;
    if (!runner) return Status(ErrorCode::kClosed, fmt::format("projection '{}' is not running", name));
  }
  d.name = std::string(name);
  Status st = runner->with_state([&](ReducerEngine& eng, uint64_t pos) -> Status {
    auto dump = project::dump_state(eng);
    if (!dump.ok()) return dump.status();
    d.position = pos;
    d.partitions = dump->partitions;
    d.sha256_hex = dump->sha256_hex;
    return {};
  });
  if (!st.ok()) return st;
  return d;
}

Result<ProjectionVerifyReport> ProjectionsImpl::verify(std::string_view name, uint32_t version, size_t max_differences) {
  std::shared_ptr<Runner> runner;
  RunnerSpec spec;
  {
    base::MutexLock g(mu_);
    auto v = find(name, version);
    if (!v.ok()) return v.status();
    runner = (*v)->runner;
    if (!runner) return Status(ErrorCode::kClosed, fmt::format("projection '{}' is not running", name));
    spec = spec_for(**v, (*v)->generation);
  }
  ProjectionVerifyReport rep;
  rep.name = std::string(name);
  rep.version = spec.version;
  project::StateDump live;
  Status st = runner->with_state([&](ReducerEngine& eng, uint64_t pos) -> Status {
    auto dump = project::dump_state(eng);
    if (!dump.ok()) return dump.status();
    live = std::move(*dump);
    rep.position = pos;
    return {};
  });
  if (!st.ok()) return st;
  auto fresh = spec.factory();
  if (!fresh.ok()) return fresh.status();
  {
    ReplayScope scope(*this, name, spec.version, "verify", 0, rep.position);
    CAIRN_RETURN_IF_ERROR(project::replay_range(store_, spec, **fresh, 0, rep.position, std::nullopt, scope.progress()));
  }
  auto rebuilt = project::dump_state(**fresh);
  if (!rebuilt.ok()) return rebuilt.status();
  rep.live_digest = live.sha256_hex;
  rep.rebuilt_digest = rebuilt->sha256_hex;
  rep.partitions = live.partitions;
  rep.equal = live.sha256_hex == rebuilt->sha256_hex;
  if (rep.equal) return rep;
  // Walk both dumps in key order; each line is [key, state].
  auto split = [](const std::string& lines) {
    std::map<std::string, std::string> m;
    size_t at = 0;
    while (at < lines.size()) {
      const size_t end = lines.find('\n', at);
      json pair = json::parse(lines.substr(at, end - at), nullptr, false);
      if (pair.is_array() && pair.size() == 2 && pair[0].is_string())
        m[pair[0].get<std::string>()] = pair[1].dump(-1, ' ', false, json::error_handler_t::replace);
      at = end + 1;
    }
    return m;
  };
  // Compare the canonical text itself, not re-dumped JSON, so that any byte difference counts.
  auto raw = [](const std::string& lines) {
    std::map<std::string, std::string> m;
    size_t at = 0;
    while (at < lines.size()) {
      const size_t end = lines.find('\n', at);
      json pair = json::parse(lines.substr(at, end - at), nullptr, false);
      if (pair.is_array() && pair.size() == 2 && pair[0].is_string()) m[pair[0].get<std::string>()] = lines.substr(at, end - at);
      at = end + 1;
    }
    return m;
  };
  const auto live_raw = raw(live.lines), rebuilt_raw = raw(rebuilt->lines);
  const auto live_m = split(live.lines), rebuilt_m = split(rebuilt->lines);
  auto li = live_raw.begin();
  auto ri = rebuilt_raw.begin();
  while ((li != live_raw.end() || ri != rebuilt_raw.end()) && rep.differences.size() < max_differences) {
    if (ri == rebuilt_raw.end() || (li != live_raw.end() && li->first < ri->first)) {
      rep.differences.push_back({li->first, live_m.at(li->first), std::nullopt});
      ++li;
    } else if (li == live_raw.end() || ri->first < li->first) {
      rep.differences.push_back({ri->first, std::nullopt, rebuilt_m.at(ri->first)});
      ++ri;
    } else {
      if (li->second != ri->second) rep.differences.push_back({li->first, live_m.at(li->first), rebuilt_m.at(ri->first)});
      ++li;
      ++ri;
    }
  }
  return rep;
}

Result<ProjectionStatus> ProjectionsImpl::rebuild(std::string_view name, uint32_t version) {
  base::MutexLock g(mu_);
  Entry* e = nullptr;
  auto v = find(name, version, &e);
  if (!v.ok()) return v.status();
  Version& ver = **v;
  if (!ver.factory) return Status(ErrorCode::kClosed, fmt::format("projection '{}' has no reducer in this process", name));
  if (ver.rebuild) return status_of(std::string(name), *e, ver);  // one at a time; asking again is not an error
  CAIRN_RETURN_IF_ERROR(start_rebuild(ver));
  return status_of(std::string(name), *e, ver);
}

Status ProjectionsImpl::start_rebuild(Version& ver) {
  const uint32_t gen = ver.generation + 1;
  RunnerSpec spec = spec_for(ver, gen);
  remove_state_dir(spec.dir);
  auto runner = std::make_shared<Runner>(store_, fs_, spec);
  CAIRN_RETURN_IF_ERROR(runner->start());
  ver.rebuild = std::move(runner);
  ver.rebuild_fault.reset();
  ver.rebuild_started = Clock::now();
  ver.rebuild_started_position = 0;
  return {};
}

void ProjectionsImpl::privacy_step() {
  auto info = store_.stream_info("$privacy");
  const uint64_t events = info.ok() ? info->last_revision + 1 : 0;
  // Only a forget calls for rebuilds; the purge's own records (privacy.purge.completed) change no read.
  bool forgot = false;
  uint64_t target = 0;
  {
    base::MutexLock g(mu_);
    target = privacy_target_;
  }
  if (events > target) {
    auto page = store_.read_stream("$privacy", target, Direction::kForward, events - target);
    forgot = !page.ok();  // when in doubt, rebuild
    if (page.ok())
      for (const auto& e : page->events) forgot = forgot || e.type == "privacy.subject.forgotten";
  }
  base::MutexLock g(mu_);
  if (events > privacy_target_ && !forgot) privacy_target_ = events;
  if (events > privacy_target_) {
    // Every version whose state may hold event data ($streams, $types and $ai.lineage keep none).
    for (auto& [name, e] : entries_)
      for (auto& [num, v] : e.versions)
        if (v.factory && v.holds_event_data) v.privacy_rebuild = true;
    privacy_target_ = events;
  }
  bool busy = false;
  for (auto& [name, e] : entries_)
    for (auto& [num, v] : e.versions) {
      // A rebuild that was already running may have read the parts before the forget: ours starts after it.
      if (v.privacy_rebuild && !v.rebuild) {
        if (start_rebuild(v).ok()) v.privacy_rebuild = false;
      }
      busy = busy || v.privacy_rebuild || v.rebuild;
    }
  if (!busy && privacy_handled_ < privacy_target_ &&
      base::write_file_atomically(fs_, opt_.dir, "PRIVACY", std::to_string(privacy_target_)).ok())
    privacy_handled_ = privacy_target_;
}

Result<ProjectionStatus> ProjectionsImpl::activate(std::string_view name, uint32_t version) {
  base::MutexLock g(mu_);
  Entry* e = nullptr;
  auto v = find(name, version, &e);
  if (!v.ok()) return v.status();
  if (name.starts_with("$")) return Status::invalid_argument("built-in projections have one version");
  if (version == 0) return Status::invalid_argument("version: required");
  if (e->active != version) {
    CAIRN_RETURN_IF_ERROR(record(project::kActivatedType, json{{"name", name}, {"version", version}}));
    e->active = version;
  }
  // As when a version takes over by itself: no version up to this one takes over later (a newer one still does).
  for (auto& [n, other] : e->versions)
    if (n <= version) other.pending = false;
  return status_of(std::string(name), *e, **v);
}

Status ProjectionsImpl::drop(std::string_view name, uint32_t version) {
  std::shared_ptr<Runner> runner, rebuild;
  {
    base::MutexLock g(mu_);
    Entry* e = nullptr;
    if (name.starts_with("$")) return Status::invalid_argument("built-in projections cannot be dropped");
    if (version == 0) return Status::invalid_argument("version: required");
    auto v = find(name, version, &e);
    if (!v.ok()) return v.status();
    if (e->active == version && e->versions.size() > 1)
      return Status::conflict(fmt::format("version {} of '{}' is the active one; activate another version first, or "
                                          "drop the others",
                                          version, name));
    CAIRN_RETURN_IF_ERROR(record(project::kDroppedType, json{{"name", name}, {"version", version}}));
    runner = std::move((*v)->runner);
    rebuild = std::move((*v)->rebuild);
    e->versions.erase(version);
    if (e->active == version) e->active = 0;
    if (e->versions.empty()) entries_.erase(entries_.find(name));
  }
  if (runner) runner->stop(false);
  if (rebuild) rebuild->stop(false);
  remove_state_dir(version_dir(std::string(name), version));
  std::error_code ec;
  if (auto dir = fmt::format("{}/{}", opt_.dir, name); std::filesystem::is_empty(dir, ec)) std::filesystem::remove(dir, ec);
  return {};
}

// Blue/green switches, rebuild swaps and fault records, checked a few times a second.
void ProjectionsImpl::step() {
  std::vector<std::shared_ptr<Runner>> retired;
  {
    base::MutexLock g(mu_);
    const uint64_t head = store_.head_position();
    for (auto& [name, e] : entries_) {
      for (auto& [num, v] : e.versions) {
        if (v.runner && v.runner->faulted() && !v.fault_recorded) {
          const auto st = v.runner->status();
          if (st.fault) {
            (void)record(project::kFaultedType, json{{"name", name},
                                                     {"version", num},
                                                     {"position", st.fault->position},
                                                     {"event_id", st.fault->event_id.to_string()},
                                                     {"message", fault_record_message(st.fault->message)}});
            v.fault_recorded = true;
          }
        }
        if (v.rebuild && v.rebuild->faulted()) {
          v.rebuild_fault = v.rebuild->status().fault;
          retired.push_back(std::move(v.rebuild));
          v.rebuild.reset();
        }
        if (v.rebuild && !v.rebuild->faulted()) {
          const uint64_t served = v.runner ? v.runner->position() : 0;
          const uint64_t built = v.rebuild->position();
          if (built >= head || (v.rebuild->status().phase == ProjectionPhase::kLive && built >= served)) {
            const std::string vdir = version_dir(name, num);
            const uint32_t gen = v.generation + 1;
            if (base::write_file_atomically(fs_, vdir, "CURRENT", std::to_string(gen)).ok()) {
              if (v.runner) retired.push_back(std::move(v.runner));
              v.runner = std::move(v.rebuild);
              v.generation = gen;
              v.fault_recorded = false;
              (void)record(project::kRebuiltType, json{{"name", name}, {"version", num}, {"position", built}});
            }
          }
        }
      }
      // The newest pending version takes over once it is live and not behind the one serving.
      for (auto it = e.versions.rbegin(); it != e.versions.rend(); ++it) {
        Version& v = it->second;
        if (!v.pending || !v.runner || v.runner->faulted()) continue;
        const auto st = v.runner->status();
        uint64_t served = 0;
        if (auto a = e.versions.find(e.active); a != e.versions.end() && a->second.runner) served = a->second.runner->position();
        if ((st.phase == ProjectionPhase::kLive || st.position >= head) && st.position >= served) {
          if (record(project::kActivatedType, json{{"name", name}, {"version", it->first}, {"position", st.position}}).ok()) {
            e.active = it->first;
            for (auto& [n2, v2] : e.versions)
              if (n2 <= it->first) v2.pending = false;
          }
        }
        break;
      }
    }
  }
  for (auto& r : retired) {
    const std::string dir = r->spec().dir;
    r->stop(false);
    remove_state_dir(dir);
  }
}

void ProjectionsImpl::monitor() {
  base::UniqueLock lock(monitor_mu_);
  while (!closing_) {
    // A 50 ms tick, or close(): a wait_for with a predicate, spelled out so that closing_ is read under the lock.
    const auto tick = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    while (!closing_ && monitor_cv_.wait_until(lock.native(), tick) != std::cv_status::timeout) {
    }
    if (closing_) break;
    lock.unlock();
    step();
    privacy_step();
    lock.lock();
  }
}

Status ProjectionsImpl::close() {
  {
    base::MutexLock g(monitor_mu_);
    if (closing_) return {};
    closing_ = true;
    monitor_cv_.notify_all();
  }
  if (monitor_.joinable()) monitor_.join();
  std::vector<std::shared_ptr<Runner>> runners;
  {
    base::MutexLock g(mu_);
    closed_ = true;
    for (auto& [name, e] : entries_)
      for (auto& [num, v] : e.versions) {
        if (v.runner) runners.push_back(v.runner);
        if (v.rebuild) runners.push_back(std::move(v.rebuild));
      }
  }
  for (auto& r : runners) r->stop(true);
  return {};
}

}  // namespace

Result<std::unique_ptr<Projections>> project::open_projections(Store& store, ProjectionsOptions options,
                                                               std::vector<BuiltinProjection> more_builtins) {
  if (options.dir.empty()) return Status::invalid_argument("dir: the projections directory is required");
  if (options.batch_events == 0) return Status::invalid_argument("batch_events: at least 1");
  auto p = std::make_unique<ProjectionsImpl>(store, std::move(options), std::move(more_builtins));
  CAIRN_RETURN_IF_ERROR(p->open());
  return std::unique_ptr<Projections>(std::move(p));
}

}  // namespace cairn
