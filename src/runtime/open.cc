// open_store and the maintenance calls (include/cairn/store.h, maintenance.h), on the composition root.
#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "ledger/ledger_policy.h"
#include "pg/pg_store.h"
#include "privacy/privacy_module.h"
#include "runtime/compose.h"

namespace cairn {
namespace runtime {

Result<store::Extensions> standard_extensions(const StoreOptions& options, const std::string& data_dir) {
  auto privacy = privacy::PrivacyModule::open(options, data_dir);
  if (!privacy.ok()) return privacy.status();
  store::Extensions ext;
  ext.policies.push_back(*privacy);
  ext.policies.push_back(std::make_shared<ledger::LedgerPolicy>());
  if ((*privacy)->has_keys()) ext.sealed = *privacy;
  return ext;
}

Result<std::unique_ptr<store::EmbeddedStore>> open_embedded(const EmbeddedOptions& options, base::FileSystem* fs,
                                                            const ProgressFn& replay_progress) {
  auto ext = standard_extensions(options, options.dir);
  if (!ext.ok()) return ext.status();
  return store::EmbeddedStore::open(options, fs, replay_progress, std::move(*ext));
}

}  // namespace runtime

Result<std::unique_ptr<Store>> open_store(const Options& options) {
  if (const auto* pg = std::get_if<PostgresOptions>(&options)) {
    auto ext = runtime::standard_extensions(*pg, {});
    if (!ext.ok()) return ext.status();
    return pg::open_pg_store(*pg, std::move(*ext));
  }
  auto s = runtime::open_embedded(std::get<EmbeddedOptions>(options), base::posix_fs());
  if (!s.ok()) return s.status();
  return std::unique_ptr<Store>(std::move(*s));
}

Result<ReindexReport> reindex(const std::string& dir, const ProgressFn& progress) {
  if (!base::path_exists(dir + "/log")) return Status::not_found(dir + " holds no Cairn log (no log/ folder)");
  {
    // Drop the derived index under the directory lock, then let an open rebuild it from the log.
    auto fd = base::lock_data_dir(dir);
    if (!fd.ok()) return fd.status();
    auto idx = index::Index::open(dir, base::posix_fs(), 1, false);
    Status st = idx.ok() ? (*idx)->reset() : idx.status();
    if (idx.ok()) (void)(*idx)->close();
    base::unlock_data_dir(*fd);
    if (!st.ok()) return st;
  }
  EmbeddedOptions o;
  o.dir = dir;
  // Rebuilding the index reads no event's meaning: no extensions.
  auto s = store::EmbeddedStore::open(o, base::posix_fs(), progress);
  if (!s.ok()) return s.status();
  ReindexReport r;
  r.events = (*s)->head_position();
  CAIRN_RETURN_IF_ERROR((*s)->close());
  r.runs = (*s)->metrics().index_runs;
  return r;
}

Result<uint64_t> published_head(const std::string& dir) { return log::read_head_hint(dir); }

}  // namespace cairn
