#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "pg/pg_store.h"
#include "store/embedded_store.h"

namespace cairn {

Result<std::unique_ptr<Store>> open_store(const Options& options) {
  if (!options.postgres.empty()) return pg::open_pg_store(options);
  auto s = store::EmbeddedStore::open(options, log::posix_fs());
  if (!s.ok()) return s.status();
  return std::unique_ptr<Store>(std::move(*s));
}

Result<ReindexReport> reindex(const std::string& dir, const ProgressFn& progress) {
  if (!log::path_exists(dir + "/log")) return Status::not_found(dir + " holds no Cairn log (no log/ folder)");
  {
    // Drop the derived index under the directory lock, then let an open rebuild it from the log.
    auto fd = store::lock_data_dir(dir);
    if (!fd.ok()) return fd.status();
    auto idx = index::Index::open(dir, log::posix_fs(), 1, false);
    Status st = idx.ok() ? (*idx)->reset() : idx.status();
    if (idx.ok()) (void)(*idx)->close();
    store::unlock_data_dir(*fd);
    if (!st.ok()) return st;
  }
  Options o;
  o.dir = dir;
  auto s = store::EmbeddedStore::open(o, log::posix_fs(), progress);
  if (!s.ok()) return s.status();
  ReindexReport r;
  r.events = (*s)->head_position();
  CAIRN_RETURN_IF_ERROR((*s)->close());
  r.runs = (*s)->stats().index_runs;
  return r;
}

Result<uint64_t> published_head(const std::string& dir) { return log::read_head_hint(dir); }

}  // namespace cairn
