// kill -9 on the PostgreSQL backend: of the server during appends, and of the process holding the store
// (what cairnd is). Oracle: every append that was acknowledged is in the log exactly once afterwards, the
// positions are dense, and the seal chain verifies. Appends whose outcome was unknown are retried with the
// same event ids, which the store answers idempotently either way.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "cairn/store.h"
#include "crash/crash_env.h"
#include "pg/pg_test_env.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;

// Every acknowledged id is there once, positions are 0..head-1, and the chain verifies.
void check_log(const testing::PgDb& db, const std::set<std::string>& acked) {
  auto s = testing::open_pg(db);
  ASSERT_NE(s, nullptr);
  std::set<std::string> present;
  uint64_t expect = 0;
  ASSERT_TRUE(s->scan_all(0, Filter{}, [&](const EventView& v) {
                   EXPECT_EQ(v.position, expect++);
                   EXPECT_TRUE(present.insert(v.id.to_string()).second) << "twice: " << v.id.to_string();
                   return true;
                 }).ok());
  for (const auto& id : acked) EXPECT_TRUE(present.count(id)) << "acknowledged append lost: " << id;
  auto v = s->verify_chain();
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_TRUE(v->ok) << v->problem;
  (void)s->close();
}

TEST(PgCrash, KillingPostgresLosesNoAcknowledgedAppend) {
  std::string error;
  auto cluster = testing::PgCluster::start(testing::PgClusterOptions{}, &error);
  ASSERT_NE(cluster, nullptr) << error;
  auto db = testing::fresh_pg_db(cluster.get());
  testing::TempDir dir;
  PostgresOptions o;
  o.connection = db.app;
  auto s = open_store(o);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  Store& store = **s;
  std::mutex mu;
  std::set<std::string> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, replays{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        auto e = json_event("crash.tested", fmt::format(R"({{"t":{},"i":{}}})", t, i));
        e.id = Uuid::generate_v7();
        // Retry the same append (same id) until it is answered: after a lost connection its outcome is unknown.
        for (;;) {
          auto r = store.append(one(fmt::format("c-{}", t), ExpectedRevision::any(), {e}));
          if (r.ok()) {
            if (r->replayed) ++replays;
            std::lock_guard g(mu);
            acked.insert(e.id->to_string());
            break;
          }
          ++failures;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    });
  const int kills = crash::iterations(3, 2);
  for (int k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    ASSERT_TRUE(cluster->kill9_and_restart(&error)) << error;
    // Reads go on at once: pooled connections to the killed server are replaced, not handed out.
    for (int i = 0; i < 4; ++i) {
      auto info = store.stream_info("c-0");
      EXPECT_TRUE(info.ok() || info.status().code() == ErrorCode::kNotFound) << info.status().to_string();
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  for (auto& w : writers) w.join();
  (void)store.close();
  EXPECT_GT(failures.load(), 0) << "no append was in flight when the server was killed";
  EXPECT_GT(acked.size(), 20u);
  check_log(db, acked);
}

TEST(PgCrash, KillingTheStoreProcessLosesNoAcknowledgedAppend) {
  auto db = testing::fresh_pg_db();
  testing::TempDir dir;
  std::mt19937_64 rng(crash::seed());
  std::set<std::string> acked;
  const int iterations = crash::iterations(4, 2);
  for (int it = 0; it < iterations; ++it) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      PostgresOptions o;
      o.connection = db.app;
      auto s = open_store(o);
      if (!s.ok()) _exit(3);
      std::vector<std::thread> ts;
      for (int t = 0; t < 4; ++t)
        ts.emplace_back([&, t] {
          for (int i = 0;; ++i) {
            auto e = json_event("crash.tested", fmt::format(R"({{"t":{},"i":{}}})", t, i));
            e.id = Uuid::generate_v7();
            auto r = (*s)->append(one(fmt::format("k-{}", t), ExpectedRevision::any(), {e}));
            if (!r.ok()) continue;
            // One write per acknowledgement: the parent reads whole lines (PIPE_BUF makes them atomic).
            const std::string line = e.id->to_string() + "\n";
            if (write(fds[1], line.data(), line.size()) < 0) _exit(4);
          }
        });
      for (auto& t : ts) t.join();
      _exit(0);
    }
    close(fds[1]);
    std::thread reader([&, fd = fds[0]] {
      std::string buf;
      char chunk[4096];
      for (;;) {
        const ssize_t n = read(fd, chunk, sizeof chunk);
        if (n <= 0) break;
        buf.append(chunk, static_cast<size_t>(n));
      }
      size_t at = 0;
      while (true) {
        const size_t nl = buf.find('\n', at);
        if (nl == std::string::npos) break;
        acked.insert(buf.substr(at, nl - at));
        at = nl + 1;
      }
      close(fd);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 500));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    reader.join();
    EXPECT_TRUE(WIFSIGNALED(status)) << "the child ended before it was killed (status " << status << ")";
  }
  EXPECT_GT(acked.size(), 20u);
  check_log(db, acked);
}

}  // namespace
}  // namespace cairn
