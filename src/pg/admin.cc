#include "pg/admin.h"

#include <libpq-fe.h>
#include <openssl/rand.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "pg/migrations.h"
#include "pg/verify.h"

namespace cairn::pg {
namespace {

// Migrations of one database never run concurrently (any fixed key; the value is arbitrary).
constexpr int64_t kMigrationLock = 7238132941730543;

Result<int> current_version(Connection& c) {
  // Two statements: a query naming a table that does not exist fails at parse time, whatever its CASE says.
  auto t = c.exec("SELECT to_regclass('cairn.schema_migrations') IS NOT NULL");
  if (!t.ok()) return t.status();
  if (t->bytes(0, 0) != "t") return 0;
  auto r = c.exec("SELECT coalesce(max(version), 0) FROM cairn.schema_migrations");
  if (!r.ok()) return r.status();
  return std::stoi(std::string(r->bytes(0, 0)));
}

}  // namespace

Status check_engine(Connection& c, const std::string& conninfo) {
  auto v = c.exec("SELECT current_setting('server_version_num'), version()");
  if (!v.ok()) return v.status();
  const int num = std::stoi(std::string(v->bytes(0, 0)));
  const std::string version(v->bytes(0, 1));
  const auto refuse = [&](std::string why) {
    return Status::invalid_argument(fmt::format(
        "this server cannot hold a Cairn store: {} (server: {}). Cairn refuses rather than risk losing or misordering "
        "events; docs/scaling.md lists what it needs", why, version));
  };
  for (std::string_view engine : {"CockroachDB", "YugabyteDB"})
    if (version.find(engine) != std::string::npos)
      return refuse(fmt::format("{} does not give commit-ordered visibility of a locked row on one primary", engine));
  if (num < 130000) return refuse("PostgreSQL 13 or later is needed (xid8 and pg_current_snapshot)");
  auto enc = c.exec("SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()");
  if (!enc.ok()) return enc.status();
  if (enc->rows() == 1 && enc->bytes(0, 0) != "UTF8")
    return refuse(fmt::format("the database's encoding is {}; stream names and event types are UTF-8: create it with "
                              "ENCODING 'UTF8'", enc->bytes(0, 0)));
  auto sync = c.exec("SHOW synchronous_commit");
  if (!sync.ok()) return sync.status();
  if (sync->bytes(0, 0) == "off")
    return refuse("synchronous_commit is off for this session: a server crash could lose appends already acknowledged");
  // Unqualified on purpose: whatever the session's search path makes of these names is what Cairn gets.
  auto x = c.exec("SELECT pg_snapshot_xmin(pg_current_snapshot())::text, pg_current_xact_id_if_assigned() IS NULL");
  if (!x.ok()) return refuse(fmt::format("the snapshot functions fail ({})", x.status().message()));
  if (x->rows() != 1 || x->null(0, 0)) return refuse("pg_current_snapshot() gives no snapshot");
  // Advisory locks must exclude: one session holds a random key, a second must not get it.
  int64_t key = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&key), sizeof key) != 1) return Status::io_error("RAND_bytes failed");
  auto a = c.exec(fmt::format("SELECT pg_try_advisory_lock({})", key));
  if (!a.ok()) return refuse(fmt::format("advisory locks fail ({})", a.status().message()));
  if (a->bytes(0, 0) != "t") return refuse("a free advisory lock could not be taken");
  auto other = Connection::connect(conninfo);
  Status verdict;
  if (!other.ok()) {
    verdict = other.status();
  } else {
    auto b = (*other)->exec(fmt::format("SELECT pg_try_advisory_lock({})", key));
    if (!b.ok())
      verdict = refuse(fmt::format("advisory locks fail ({})", b.status().message()));
    else if (b->bytes(0, 0) != "f")
      verdict = refuse("advisory locks do not exclude: a second session took a lock the first one holds");
  }
  auto u = c.exec(fmt::format("SELECT pg_advisory_unlock({})", key));
  if (!u.ok() && verdict.ok()) verdict = u.status();
  return verdict;
}

Status check_schema(Connection& c) {
  auto v = current_version(c);
  if (!v.ok()) return v.status();
  if (*v == 0)
    return Status::invalid_argument("this database has no Cairn schema: run `cairn pg init --admin ADMIN_URL` first");
  if (*v < latest_schema_version())
    return Status::invalid_argument(fmt::format(
        "the Cairn schema of this database is at version {}, this build needs {}: run `cairn pg migrate --admin ADMIN_URL`",
        *v, latest_schema_version()));
  if (*v > latest_schema_version())
    return Status::invalid_argument(fmt::format(
        "the Cairn schema of this database is at version {}, newer than this build knows ({}): upgrade Cairn", *v,
        latest_schema_version()));
  return {};
}

}  // namespace cairn::pg

namespace cairn {

Result<PgMigrateReport> pg_migrate(const std::string& admin_conninfo) {
  auto conn = pg::Connection::connect(admin_conninfo);
  if (!conn.ok()) return conn.status();
  pg::Connection& c = **conn;
  CAIRN_RETURN_IF_ERROR(pg::check_engine(c, admin_conninfo));
  auto lock = c.exec(fmt::format("SELECT pg_advisory_lock({})", pg::kMigrationLock));
  if (!lock.ok()) return lock.status();
  PgMigrateReport report;
  auto v = pg::current_version(c);
  if (!v.ok()) return v.status();
  report.from_version = report.to_version = *v;
  if (*v > pg::latest_schema_version())
    return Status::invalid_argument(fmt::format(
        "the Cairn schema of this database is at version {}, newer than this build knows ({}): upgrade Cairn", *v,
        pg::latest_schema_version()));
  auto roles = c.exec("SELECT count(*) FROM pg_roles WHERE rolname IN ('cairn_owner', 'cairn_purger', 'cairn_writer', "
                      "'cairn_privacy', 'cairn_reader')");
  if (!roles.ok()) return roles.status();
  if (roles->bytes(0, 0) != "5")
    return Status::invalid_argument("the Cairn roles do not exist on this server: run `cairn pg init` (it creates them)");
  for (const auto& m : pg::migrations()) {
    if (m.version <= report.to_version) continue;
    const std::string name = fmt::format("{:04} {}", m.version, m.name);
    Status st;
    if (auto b = c.exec("BEGIN"); !b.ok()) return b.status();
    if (auto r = c.exec(std::string(m.sql)); !r.ok()) st = r.status();
    if (st.ok()) {
      auto r = c.exec(fmt::format("INSERT INTO cairn.schema_migrations (version, name) VALUES ({}, {})", m.version,
                                  pg::quote_literal(m.name)));
      if (!r.ok()) st = r.status();
    }
    if (st.ok()) {
      if (auto r = c.exec("COMMIT"); !r.ok()) st = r.status();
    }
    if (!st.ok()) {
      (void)c.exec("ROLLBACK");
      return Status(st.code(), fmt::format("migration {} failed and changed nothing: {}", name, st.message()));
    }
    report.applied.push_back(name);
    report.to_version = m.version;
  }
  (void)c.exec(fmt::format("SELECT pg_advisory_unlock({})", pg::kMigrationLock));
  return report;
}

namespace {

// The role changes of pg_init, made one by one so that each can be reported. Each step checks first, so a
// second run changes nothing; two inits at once can still both try a CREATE, and the loser fails and rolls back.
class RoleSetup {
 public:
  explicit RoleSetup(pg::Connection& c) : c_(c) {}
  std::vector<std::string> done;

  Result<bool> exists(const std::string& role) {
    auto r = c_.exec("SELECT 1 FROM pg_roles WHERE rolname = " + pg::quote_literal(role));
    if (!r.ok()) return r.status();
    return r->rows() > 0;
  }
  Result<bool> member(const std::string& group, const std::string& role) {
    auto r = c_.exec(fmt::format(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
        "WHERE g.rolname = {} AND u.rolname = {}", pg::quote_literal(group), pg::quote_literal(role)));
    if (!r.ok()) return r.status();
    return r->rows() > 0;
  }
  Status run(const std::string& sql) {
    auto r = c_.exec(sql);
    return r.ok() ? Status() : r.status();
  }
  Status group(const std::string& role) {
    auto e = exists(role);
    if (!e.ok()) return e.status();
    if (*e) return {};
    CAIRN_RETURN_IF_ERROR(run("CREATE ROLE " + pg::quote_ident(role) + " NOLOGIN"));
    done.push_back(fmt::format("created role {} (NOLOGIN)", role));
    return {};
  }
  // Grants each of `groups` that `role` is not yet a member of; `created` folds them into its creation line.
  Status grant(const std::vector<std::string>& groups, const std::string& role, bool created) {
    std::vector<std::string> granted;
    for (const auto& g : groups) {
      auto m = member(g, role);
      if (!m.ok()) return m.status();
      if (*m) continue;
      CAIRN_RETURN_IF_ERROR(run(fmt::format("GRANT {} TO {}", pg::quote_ident(g), pg::quote_ident(role))));
      granted.push_back(g);
    }
    if (granted.empty()) return {};
    if (created) done.back() += fmt::format(", member of {}", fmt::join(granted, ", "));
    else done.push_back(fmt::format("granted {} to {}", fmt::join(granted, ", "), role));
    return {};
  }
  Status login(const std::string& role, const std::string& password, const std::vector<std::string>& groups) {
    if (role.empty()) return {};
    auto e = exists(role);
    if (!e.ok()) return e.status();
    if (!*e) {
      std::string sql = "CREATE ROLE " + pg::quote_ident(role) + " LOGIN";
      if (!password.empty()) {
        // Hashed here, as the server's password_encryption says, so the password is in no statement or log.
        char* hashed = PQencryptPasswordConn(c_.raw(), password.c_str(), role.c_str(), nullptr);
        if (!hashed) return pg::error_status(nullptr, c_.raw(), "hashing the password of " + role);
        sql += " PASSWORD " + pg::quote_literal(hashed);
        PQfreemem(hashed);
      }
      CAIRN_RETURN_IF_ERROR(run(sql));
      done.push_back(fmt::format("created role {} (LOGIN, {})", role, password.empty() ? "without a password" : "with a password"));
    }
    return grant(groups, role, !*e);
  }

 private:
  pg::Connection& c_;
};

}  // namespace

Result<PgMigrateReport> pg_init(const std::string& admin_conninfo, const PgInitOptions& options) {
  std::vector<std::string> roles;
  {
    auto conn = pg::Connection::connect(admin_conninfo);
    if (!conn.ok()) return conn.status();
    pg::Connection& c = **conn;
    CAIRN_RETURN_IF_ERROR(pg::check_engine(c, admin_conninfo));
    RoleSetup setup(c);
    const auto steps = [&]() -> Status {
      for (const char* role : {"cairn_owner", "cairn_purger", "cairn_writer", "cairn_privacy", "cairn_reader"})
        CAIRN_RETURN_IF_ERROR(setup.group(role));
      // A non-superuser administrator acts as the owner and the purger while migrating (SET ROLE, ALTER OWNER).
      auto who = c.exec("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user");
      if (!who.ok()) return who.status();
      if (who->rows() == 1 && who->bytes(0, 1) != "t")
        CAIRN_RETURN_IF_ERROR(setup.grant({"cairn_owner", "cairn_purger"}, std::string(who->bytes(0, 0)), false));
      CAIRN_RETURN_IF_ERROR(setup.login(options.app_role, options.app_password, {"cairn_writer", "cairn_privacy"}));
      return setup.login(options.reader_role, options.reader_password, {"cairn_reader"});
    };
    Status st = setup.run("BEGIN");
    if (st.ok()) st = steps();
    if (st.ok()) st = setup.run("COMMIT");
    if (!st.ok()) {
      (void)c.exec("ROLLBACK");
      return Status(st.code(), "creating the roles (nothing was changed): " + st.message());
    }
    roles = std::move(setup.done);
  }
  auto report = pg_migrate(admin_conninfo);
  if (report.ok()) report->roles = std::move(roles);
  return report;
}

Result<VerifyReport> pg_verify(const std::string& conninfo, const ProgressFn& progress) {
  return pg::verify_seals(conninfo, progress);
}

}  // namespace cairn
