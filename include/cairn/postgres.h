// Administration of the PostgreSQL backend (docs/scaling.md): creating the roles and the schema, migrating
// it, and verifying the tamper-evident seal chain. The store itself opens through open_store() with
// PostgresOptions.
//
// Thread safety: free functions; each opens its own connections and closes them before returning.
// Durability: every migration runs in its own transaction; a failed one changes nothing.
#pragma once

#include <string>
#include <vector>

#include "cairn/maintenance.h"
#include "cairn/status.h"

namespace cairn {

struct PgInitOptions {
  // The login role cairnd connects as: created if missing (LOGIN, with the password if one is given) and
  // made a member of cairn_writer and cairn_privacy. Empty: only the group roles are created.
  std::string app_role = "cairn_app";
  std::string app_password;
  // A login role for read-only servers and replicas' clients (member of cairn_reader); empty: none.
  std::string reader_role;
  std::string reader_password;
};

struct PgMigrateReport {
  int from_version = 0;
  int to_version = 0;
  std::vector<std::string> applied;  // "0001 initial", in order
  // pg_init only: what it did to roles, one line each, in order ("created role cairn_app (LOGIN, with a
  // password), member of cairn_writer, cairn_privacy", "granted cairn_reader to ro"); empty: nothing changed.
  std::vector<std::string> roles;
};

// Creates the roles (cairn_owner, cairn_purger and the groups cairn_writer, cairn_privacy, cairn_reader;
// all NOLOGIN) and the login roles asked for, then migrates. admin_conninfo: a superuser, or a role with
// CREATEROLE that owns the database. Running it again changes nothing that exists: an existing role keeps its
// password, and only a missing membership is granted. The roles change in one transaction (all or nothing);
// a password is sent to the server already hashed (the server's password_encryption), never in clear.
Result<PgMigrateReport> pg_init(const std::string& admin_conninfo, const PgInitOptions& options);
// Applies the migrations this build has and the database lacks, each in its own transaction, under an
// advisory lock (two migrating processes wait for each other). kInvalidArgument if the database was never
// initialized or is newer than this build.
Result<PgMigrateReport> pg_migrate(const std::string& admin_conninfo);
// Checks the seal chain of a PostgreSQL-backed store: each seal continues the one before, recomputing it
// from the events gives its chain head, every event's payload digest matches its data, and the events after
// the last seal are numbered on from it without a hole. Like verify_log, a broken chain is a report with
// ok == false; an error Result means it could not be read. Read-only: works on a replica too.
Result<VerifyReport> pg_verify(const std::string& conninfo, const ProgressFn& progress = {});

}  // namespace cairn
