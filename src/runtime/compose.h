// The composition root: the one place that knows every module. It builds the extensions a store runs (the
// privacy module and the AI ledger's policy, store/policy.h) and opens a backend with them. open_store()
// (include/cairn/store.h) is built on it, so cairnd, the CLI and embedding programs all get the same store;
// tests that inject a file system open the embedded store through open_embedded().
// Stateless; what it returns is owned by the caller.
#pragma once

#include <memory>

#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "base/file.h"
#include "store/embedded_store.h"
#include "store/policy.h"

namespace cairn::runtime {

// The modules a store of these options runs, in the order they check an append: privacy (declarations of
// personal parts, sealing), then the AI ledger (vocabulary and references).
// data_dir: the local directory the key store must stay outside of (the embedded store's, or none).
Result<store::Extensions> standard_extensions(const StoreOptions& options, const std::string& data_dir);

// The embedded store on `fs`, with the standard extensions.
Result<std::unique_ptr<store::EmbeddedStore>> open_embedded(const EmbeddedOptions& options, base::FileSystem* fs,
                                                            const ProgressFn& replay_progress = {});

}  // namespace cairn::runtime
