// The PostgreSQL backend under concurrency: a commit held back on purpose is never skipped by a subscriber;
// an unrelated long transaction does not stall readers; several processes appending with expected
// revisions give a linearizable history, and every process's subscriber sees every event once, in the
// same order.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "cairn/store.h"
#include "pg/client.h"
#include "pg/pg_test_env.h"
#include "store/store_helpers.h"
#include "testing/sanitizers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;
using Clock = std::chrono::steady_clock;

using testing::open_pg;

// Collects everything a subscription delivers until `want` events arrived or the deadline passed.
std::vector<RecordedEvent> collect(Subscription& sub, size_t want, std::chrono::seconds limit) {
  std::vector<RecordedEvent> out;
  const auto deadline = Clock::now() + limit;
  while (out.size() < want && Clock::now() < deadline) {
    auto b = sub.next(500, std::chrono::milliseconds(100));
    EXPECT_TRUE(b.ok()) << b.status().to_string();
    if (!b.ok()) break;
    for (auto& e : *b) out.push_back(std::move(e));
  }
  return out;
}

// An append through the SQL function in a transaction this test holds open: the late committer.
constexpr const char* kLateAppend =
    "BEGIN; SELECT * FROM cairn.append(ARRAY[0], ARRAY['late-1'], ARRAY[-1]::int8[], ARRAY[1], ARRAY[gen_random_uuid()], "
    "ARRAY[false], ARRAY['late.committed'], ARRAY[1]::int2[], ARRAY[0]::int2[], ARRAY[''::bytea], "
    "ARRAY[convert_to('{\"late\":true}', 'UTF8')], ARRAY['\\x00000000000000000000000000000000'::bytea], "
    "ARRAY[sha256('\\x00000000000000000000000000000000'::bytea || convert_to('{\"late\":true}', 'UTF8'))]);";

TEST(PgConcurrency, ADeliberatelyDelayedCommitIsNeverSkipped) {
  auto db = testing::fresh_pg_db();
  testing::TempDir dir;
  auto store = open_pg(db);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(store->append(one("early-1", ExpectedRevision::any(), {json_event("e", "{}")})).ok());
  auto sub = store->subscribe_all(0, Filter{});
  ASSERT_TRUE(sub.ok());
  // The late transaction takes its position first and commits last.
  auto late = pg::Connection::connect(db.app);
  ASSERT_TRUE(late.ok());
  auto r = (*late)->exec(kLateAppend);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::atomic<int> acked{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i)
        if (store->append(one(fmt::format("w-{}", t), ExpectedRevision::any(), {json_event("w", "{}")})).ok()) ++acked;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // While it is open, nothing after it is visible, so a subscriber cannot move past it.
  auto before = (*sub)->next(1000, std::chrono::milliseconds(200));
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->size(), 20u);
  EXPECT_EQ(acked.load(), 0);
  ASSERT_TRUE((*late)->exec("COMMIT").ok());
  for (auto& w : writers) w.join();
  EXPECT_EQ(acked.load(), 100);
  auto rest = collect(**sub, 101, std::chrono::seconds(60));
  ASSERT_EQ(rest.size(), 101u);
  EXPECT_EQ(rest[0].position, 20u);
  EXPECT_EQ(rest[0].type, "late.committed");
  for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i].position, 20 + i);
  auto v = store->verify_chain();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
}

TEST(PgConcurrency, AnUnrelatedLongTransactionDoesNotStallReadersOrWriters) {
  auto db = testing::fresh_pg_db();
  testing::TempDir dir;
  auto store = open_pg(db);
  ASSERT_NE(store, nullptr);
  auto other = pg::Connection::connect(db.admin);
  ASSERT_TRUE(other.ok());
  // A transaction holding a transaction id for the whole test (another application's work).
  ASSERT_TRUE((*other)->exec("CREATE TABLE unrelated (i int); BEGIN; INSERT INTO unrelated VALUES (1);").ok());
  auto sub = store->subscribe_all(0, Filter{});
  ASSERT_TRUE(sub.ok());
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(store->append(one("s-1", ExpectedRevision::any(), {json_event("e", "{}")})).ok());
  auto got = collect(**sub, 30, std::chrono::seconds(30));
  EXPECT_EQ(got.size(), 30u);
  ASSERT_TRUE((*other)->exec("ROLLBACK").ok());
}

// One operation of the multi-process history.
struct Op {
  int process = 0;
  int64_t start_ns = 0, end_ns = 0;
  std::string stream;
  int64_t expected = 0;  // -1: no stream
  bool ok = false;
  int64_t revision = -1;  // on success: the revision written; on a wrong expected revision: the actual one
  uint64_t position = 0;
};

int64_t mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Child: appends with expected revisions to shared streams, logging every outcome; then appends its "done"
// marker and follows $all until it saw every process's marker, logging the ids in the order delivered.
[[noreturn]] void run_child(int index, int processes, int ops, const std::string& app, const std::string& out_path) {
  std::ofstream out(out_path);
  PostgresOptions o;
  o.connection = app;
  auto s = open_store(o);
  if (!s.ok()) {
    out << "error " << s.status().to_string() << "\n";
    _exit(3);
  }
  Store& store = **s;
  auto sub = store.subscribe_all(0, Filter{});
  if (!sub.ok()) _exit(4);
  uint64_t rng = 0x9e3779b97f4a7c15ull * (index + 1);
  for (int i = 0; i < ops; ++i) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    Op op;
    op.stream = fmt::format("reg-{}", rng % 3);
    auto info = store.stream_info(op.stream);
    op.expected = info.ok() ? static_cast<int64_t>(info->last_revision) : -1;
    op.start_ns = mono_ns();
    auto r = store.append(one(op.stream, op.expected < 0 ? ExpectedRevision::no_stream() : ExpectedRevision::exact(op.expected),
                              {json_event("reg.set", fmt::format(R"({{"p":{},"i":{}}})", index, i))}));
    op.end_ns = mono_ns();
    if (r.ok()) {
      op.ok = true;
      op.revision = static_cast<int64_t>(r->streams[0].first_revision);
      op.position = r->streams[0].first_position;
    } else if (r.status().code() == ErrorCode::kWrongExpectedRevision) {
      op.revision = r.status().actual_revision();
    } else {
      out << "error " << r.status().to_string() << "\n";
      _exit(5);
    }
    out << "op " << op.start_ns << " " << op.end_ns << " " << op.stream << " " << op.expected << " " << op.ok << " "
        << op.revision << " " << op.position << "\n";
  }
  if (!store.append(one(fmt::format("done-{}", index), ExpectedRevision::no_stream(), {json_event("done", "{}")})).ok()) _exit(6);
  std::set<std::string> done;
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (static_cast<int>(done.size()) < processes && Clock::now() < deadline) {
    auto b = (*sub)->next(1000, std::chrono::milliseconds(100));
    if (!b.ok()) _exit(7);
    for (auto& e : *b) {
      out << "seen " << e.position << " " << e.id.to_string() << "\n";
      if (e.type == "done") done.insert(e.stream);
    }
  }
  out.flush();
  (void)store.close();
  _exit(static_cast<int>(done.size()) == processes ? 0 : 8);
}

TEST(PgConcurrency, SeveralProcessesAreLinearizableAndSeeOneOrder) {
  auto db = testing::fresh_pg_db();
  testing::TempDir dir;
  constexpr int kProcesses = 3;
  const int ops = testing::kThreadSanitized ? 20 : 60;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) run_child(p, kProcesses, ops, db.app, dir.sub(fmt::format("log{}", p)));
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child exit status " << status;
  }
  std::vector<Op> history;
  std::vector<std::vector<std::pair<uint64_t, std::string>>> seen(kProcesses);
  for (int p = 0; p < kProcesses; ++p) {
    std::ifstream in(dir.sub(fmt::format("log{}", p)));
    std::string kind;
    while (in >> kind) {
      if (kind == "op") {
        Op op;
        op.process = p;
        in >> op.start_ns >> op.end_ns >> op.stream >> op.expected >> op.ok >> op.revision >> op.position;
        history.push_back(op);
      } else if (kind == "seen") {
        uint64_t pos;
        std::string id;
        in >> pos >> id;
        seen[p].emplace_back(pos, id);
      } else {
        std::string rest;
        std::getline(in, rest);
        ADD_FAILURE() << "child " << p << ": " << kind << rest;
      }
    }
  }
  ASSERT_EQ(history.size(), static_cast<size_t>(kProcesses * ops));
  // Per stream, the successes form one chain: each one's expected revision is the revision before it.
  std::map<std::string, std::map<int64_t, const Op*>> by_revision;
  size_t successes = 0;
  for (const auto& op : history)
    if (op.ok) {
      ++successes;
      EXPECT_EQ(op.revision, op.expected + 1) << op.stream;
      EXPECT_TRUE(by_revision[op.stream].emplace(op.revision, &op).second) << "two appends won revision " << op.revision;
    }
  for (auto& [stream, revs] : by_revision) {
    int64_t want = 0;
    for (auto& [rev, op] : revs) EXPECT_EQ(rev, want++) << stream;
  }
  // Real-time order: an append that finished before another started has the lower position.
  std::vector<const Op*> ok;
  for (const auto& op : history)
    if (op.ok) ok.push_back(&op);
  for (const Op* a : ok)
    for (const Op* b : ok)
      if (a->end_ns < b->start_ns) {
        EXPECT_LT(a->position, b->position);
      }
  // A refused append saw a revision that some append had written (or none), and no append that had already
  // finished before it started had written a later one.
  for (const auto& op : history) {
    if (op.ok) continue;
    auto& revs = by_revision[op.stream];
    if (op.revision >= 0) {
      ASSERT_TRUE(revs.count(op.revision)) << "actual revision " << op.revision << " was never written";
      EXPECT_LT(revs[op.revision]->start_ns, op.end_ns) << "refused because of an append that started after it ended";
    }
    for (auto& [rev, w] : revs)
      if (rev > op.revision && w->end_ns < op.start_ns)
        ADD_FAILURE() << op.stream << ": refused at revision " << op.revision << " though revision " << rev
                      << " was acknowledged before it started";
  }
  // Every process's subscriber saw the same events in the same order, each once, positions dense.
  const size_t total = successes + kProcesses;
  for (int p = 0; p < kProcesses; ++p) {
    ASSERT_GE(seen[p].size(), total) << "process " << p;
    for (size_t i = 0; i < total; ++i) {
      EXPECT_EQ(seen[p][i].first, i) << "process " << p;
      EXPECT_EQ(seen[p][i].second, seen[0][i].second) << "process " << p << " position " << i;
    }
  }
  auto check = open_pg(db);
  ASSERT_NE(check, nullptr);
  EXPECT_EQ(check->head_position(), total);
  auto v = check->verify_chain();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << v->problem;
}

}  // namespace
}  // namespace cairn
