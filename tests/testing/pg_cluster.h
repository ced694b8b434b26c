// A throwaway PostgreSQL 15 cluster (optionally with a streaming hot-standby replica) for tests that compare
// against or run on PostgreSQL. Everything lives in a fresh directory under $TMPDIR (or /tmp); the servers
// listen on 127.0.0.1 only, with trust authentication, on free ports.
// Ownership: a PgCluster owns its servers and directory; destroying it stops both servers and removes the
// directory. Only the process that started the cluster stops it (a forked child that exits leaves it alone).
// Thread safety: the const methods may be called from several threads at once; start(), kill9_and_restart()
// and destruction must not overlap with any other call on the same cluster. shared() is thread-safe.
// Binaries come from /usr/lib/postgresql/15/bin unless CAIRN_PG_BINDIR names another directory. When run as
// root, initdb/postgres/pg_basebackup run as the `postgres` user (they refuse root) and that is the superuser.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <sys/types.h>

namespace cairn::testing {

struct PgClusterOptions {
  bool fsync = false;      // fsync=off by default: tests that do not kill the machine need no durability
  bool replica = false;    // also start a streaming hot standby
  std::string extra_conf;  // appended to the primary's postgresql.conf (copied to the replica too)
  // Every role but the superuser must log in with its password (scram-sha-256) over TCP; the superuser
  // (psql(), the admin conninfo) still needs none. For tests of the roles `cairn pg init` creates.
  bool password_auth = false;
};

class PgCluster {
 public:
  // Starts a cluster; nullptr with *error (including the tail of the server log) when it cannot.
  static std::unique_ptr<PgCluster> start(const PgClusterOptions& o, std::string* error);
  // A process-wide cluster with a replica, started on first use and stopped at process exit. A failure to
  // start is remembered: every call then returns nullptr with the same *error.
  static PgCluster* shared(std::string* error);

  ~PgCluster();  // stops the replica and the primary (fast, else immediate, else SIGKILL), removes the dir
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  int port() const { return port_; }
  int replica_port() const { return replica_port_; }  // 0 without a replica
  const std::string& superuser() const { return superuser_; }
  const std::string& dir() const { return dir_; }

  // libpq key=value connection strings to 127.0.0.1 on the primary / replica.
  std::string conninfo(const std::string& user, const std::string& dbname = "postgres") const;
  std::string replica_conninfo(const std::string& user, const std::string& dbname = "postgres") const;

  // Runs SQL through psql as the superuser (-X -q -A -t, ON_ERROR_STOP=1, script fed on stdin) and puts
  // its stdout in *out (may be null). False with *error on any failure.
  bool psql(const std::string& sql, std::string* out, std::string* error,
            const std::string& dbname = "postgres") const;
  bool replica_psql(const std::string& sql, std::string* out, std::string* error,
                    const std::string& dbname = "postgres") const;

  // Simulates a crash: SIGKILLs the primary's postmaster, waits for its children to exit, then starts it
  // again on the same data directory and port, so crash recovery runs. The replica reconnects by itself.
  bool kill9_and_restart(std::string* error);

  // An outage: stop_primary() is `pg_ctl stop -m immediate` (every backend ends at once, with no shutdown
  // checkpoint, as in a crash); start_primary() starts it again on the same data directory and port and
  // returns once it accepts connections. The replica, if any, reconnects by itself.
  bool stop_primary(std::string* error);
  bool start_primary(std::string* error);

  // Waits until the replica has replayed at least the primary's current WAL position (taken once, at the
  // call), up to timeout.
  bool wait_replica_caught_up(std::chrono::milliseconds timeout, std::string* error) const;

 private:
  PgCluster() = default;
  std::string data_dir() const { return dir_ + "/data"; }
  std::string replica_dir() const { return dir_ + "/replica"; }
  std::string primary_log() const { return dir_ + "/primary.log"; }
  std::string replica_log() const { return dir_ + "/replica.log"; }
  bool init_primary(const PgClusterOptions& o, std::string* error);
  bool init_replica(std::string* error);
  bool start_server(const std::string& data, const std::string& log, const std::string& conf_base,
                    const std::string& conf_extra, bool pick_port, int* port, std::string* error);
  void stop_server(const std::string& data) const;
  bool psql_at(int port, const std::string& log, const std::string& sql, std::string* out,
               std::string* error, const std::string& dbname) const;

  void start_reaper();

  std::string dir_;
  int reaper_fd_ = -1;  // write end of the reaper's pipe (see start_reaper)
  pid_t reaper_pid_ = 0;
  std::string bindir_;
  std::string superuser_;
  bool as_pg_ = false;  // run server-side tools as the postgres user (we are root)
  uid_t pg_uid_ = 0;
  gid_t pg_gid_ = 0;
  pid_t owner_pid_ = 0;
  int port_ = 0;
  int replica_port_ = 0;
  std::string primary_conf_base_;  // postgresql.conf as initdb wrote it, before our settings
};

}  // namespace cairn::testing
