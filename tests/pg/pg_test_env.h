// PostgreSQL for the tests: one throwaway cluster per test process (started on first use, stopped at exit),
// and a fresh database per test, initialized with `pg_init` as the cluster's superuser. Nothing is mocked.
// A cluster that cannot start fails the test (make test installs PostgreSQL 15); it is never skipped.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "cairn/postgres.h"
#include "cairn/store.h"
#include "testing/pg_cluster.h"

namespace cairn::testing {

inline PgCluster* test_cluster(std::string* error) {
  static std::mutex mu;
  static std::unique_ptr<PgCluster> cluster;
  static std::string failed;
  std::lock_guard g(mu);
  if (!cluster && failed.empty()) {
    PgClusterOptions o;
    o.extra_conf = "max_locks_per_transaction=256\n";
    cluster = PgCluster::start(o, &failed);
    if (!cluster && failed.empty()) failed = "the PostgreSQL test cluster did not start";
  }
  if (!cluster) *error = failed;
  return cluster.get();
}

struct PgDb {
  PgCluster* cluster = nullptr;
  std::string name;
  std::string admin;  // superuser conninfo of this database
  std::string app;    // cairn_app conninfo of this database
  std::string replica_app;
};

// A new database with Cairn's schema; `cluster` defaults to the process's test cluster.
inline PgDb fresh_pg_db(PgCluster* cluster = nullptr) {
  PgDb db;
  std::string error;
  db.cluster = cluster ? cluster : test_cluster(&error);
  if (!db.cluster) {
    ADD_FAILURE() << "PostgreSQL: " << error;
    return db;
  }
  static std::atomic<int> counter{0};
  db.name = "cairn_t" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  if (!db.cluster->psql("CREATE DATABASE " + db.name + ";", nullptr, &error)) {
    ADD_FAILURE() << "CREATE DATABASE: " << error;
    return db;
  }
  db.admin = db.cluster->conninfo(db.cluster->superuser(), db.name);
  db.app = db.cluster->conninfo("cairn_app", db.name);
  if (db.cluster->replica_port()) db.replica_app = db.cluster->replica_conninfo("cairn_app", db.name);
  auto r = pg_init(db.admin, PgInitOptions{});
  if (!r.ok()) ADD_FAILURE() << "pg_init: " << r.status().to_string();
  return db;
}

// A store on that database; null (and a failure) if it cannot open.
inline std::unique_ptr<Store> open_pg(const PgDb& db) {
  PostgresOptions o;
  o.connection = db.app;
  auto s = open_store(o);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  return s.ok() ? std::move(*s) : nullptr;
}

}  // namespace cairn::testing
