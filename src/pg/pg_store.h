// The PostgreSQL backend of the Store API: the same semantics as the embedded store, on a database that
// `cairn pg init` prepared (schema in pg/migrations.cc, design in docs/scaling.md).
//
// Durability: append() returns ok after PostgreSQL committed the append's transaction, so the events are
// as durable as the server's settings make a commit (fsync, synchronous_commit, synchronous replicas);
// Options::durability does not apply. If the connection breaks while an append is in flight, its outcome
// is unknown and the call fails with kIoError saying so: a retry with the same event ids is answered
// idempotently whichever way it went.
// Order and visibility: one cairn.head row, locked by every append until it commits, makes positions
// dense and in commit order across every process on the database; a reader that sees position p sees all
// below it, so subscriptions need no gap detection and can never skip.
// Thread safety: like every Store. Appends of this process go through one writer thread (group commit:
// everything queued becomes one call of cairn.append in one transaction). Reads use a connection pool, on
// the read replica when one is configured (after waiting for it to hold this process's own appends).
// Lifetime: owns its connections and threads; close() or destruction stops them.
#pragma once

#include <memory>

#include "cairn/store.h"
#include "store/policy.h"

namespace cairn::pg {

// Connects (PostgresOptions::connection, and read_replica if set), refuses engines without what
// correctness needs, checks the schema version, and starts the writer and the head tracker. extensions: the
// domain modules every append runs (runtime/compose.h builds them).
Result<std::unique_ptr<Store>> open_pg_store(const PostgresOptions& options, store::Extensions extensions);

}  // namespace cairn::pg
