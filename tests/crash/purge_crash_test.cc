// The purge compaction killed at random moments (docs/privacy.md "Purge compaction"): a child process opens
// a store whose subject "ana" was forgotten and runs Store::purge (verify, rewrite of many small sealed
// segments, each synced and renamed, verify, record); the parent SIGKILLs it after a random delay within
// the time a whole purge takes, then checks that the store opens, that verify passes with the chain as it
// was (plus the purge's own record when the child finished), that no *.tmp is left, that every event of
// the other subject and every non-personal value reads exactly as written and ana's parts read redacted,
// and that a purge run to its end leaves none of ana's values or ciphertext in the data directory.
//
// Iterations: CAIRN_CRASH_ITERATIONS (default 12; 6 under AddressSanitizer). Seed: CAIRN_CRASH_SEED.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cairn/maintenance.h"
#include "crash_env.h"
#include "cairn/store.h"
#include "privacy/privacy_test_util.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using nlohmann::json;
using privacy_test::kMaster;

struct Written {
  std::string subject;  // "" for an event without personal parts
  std::string email, street, order;
  uint64_t position = 0;
};

EmbeddedOptions options(const std::string& data, const std::string& keys, Durability d) {
  EmbeddedOptions o;
  o.dir = data;
  o.durability = d;
  o.segment_size = 16 * 1024;
  o.key_store_dir = keys;
  o.master_key = kMaster;
  return o;
}

// The child: open, purge, exit 0 when done.
[[noreturn]] void child(const std::string& data, const std::string& keys) {
  auto s = open_store(options(data, keys, Durability::kFsync));
  if (!s.ok()) _exit(4);
  auto p = (*s)->purge(R"({"kind":"service","id":"crash-test"})", {});
  if (!p.ok()) _exit(5);
  if (!(*s)->close().ok()) _exit(6);
  _exit(0);
}

TEST(PurgeCrash, KilledAnywhereTheStoreOpensVerifiesAndLosesNothingOfOthers) {
  const int iterations = crash::iterations(12, 6);
  const uint64_t seed = crash::seed();
  SCOPED_TRACE(fmt::format("CAIRN_CRASH_SEED={}", seed));
  std::mt19937_64 rng(seed);

  testing::TempDir dir;
  const std::string pristine = dir.sub("pristine"), keys = dir.sub("keys"), work = dir.sub("work");
  std::vector<Written> written;
  std::map<uint64_t, std::string> ciphertext;  // the email part's ciphertext, by position
  {
    auto opened = open_store(options(pristine, keys, Durability::kNone));
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    Store& s = **opened;
    auto token = [&] { return fmt::format("{:016x}", rng()); };
    for (int b = 0; b < 300; ++b) {
      std::vector<EventData> events;
      std::vector<Written> ws;
      for (int i = 0; i < 8; ++i) {
        EventData e;
        e.type = "customer.contacted";
        Written w;
        w.order = "ord-" + token();
        if (i % 4 != 3) {
          w.subject = i % 2 == 0 ? "ana" : "bo";
          w.email = "pz-" + token() + "@example.org";
          w.street = "Rue " + token();
          e.data = json{{"email", w.email}, {"address", {{"street", w.street}}}, {"order", w.order}}.dump();
          e.metadata = json{{"privacy", {{"subject", w.subject}, {"personal", {"/email", "/address/street"}}}}}.dump();
        } else {
          e.data = json{{"order", w.order}}.dump();
        }
        events.push_back(std::move(e));
        ws.push_back(std::move(w));
      }
      auto r = s.append({fmt::format("customer-{}", b % 11), ExpectedRevision::any(), events});
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      for (size_t i = 0; i < ws.size(); ++i) ws[i].position = r->streams[0].first_position + i;
      written.insert(written.end(), ws.begin(), ws.end());
    }
    ASSERT_TRUE(s.scan_stored(0, Filter{}, [&](const StoredEventView& v) {
                   if (v.sealed_parts) ciphertext[v.position] = json::parse(v.data)["email"]["$cairn.sealed"]["c"];
                   return true;
                 }).ok());
    ASSERT_TRUE(s.forget("ana", "crash test", "").ok());
    ASSERT_TRUE(s.close().ok());
  }
  auto base = verify_log(pristine);
  ASSERT_TRUE(base.ok() && base->ok);

  auto fresh_copy = [&] {
    std::filesystem::remove_all(work);
    std::filesystem::copy(pristine, work, std::filesystem::copy_options::recursive);
  };
  // How long a whole purge takes here, child start to exit.
  fresh_copy();
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) child(work, keys);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << "a purge without a kill failed: " << wstatus;
  const auto whole = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);

  int finished = 0, midway = 0;
  for (int it = 0; it < iterations; ++it) {
    SCOPED_TRACE(fmt::format("iteration {}", it));
    fresh_copy();
    const auto delay = std::chrono::microseconds(rng() % static_cast<uint64_t>(whole.count() * 13 / 10 + 1));
    pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) child(work, keys);
    std::this_thread::sleep_for(delay);
    ::kill(pid, SIGKILL);
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    if (WIFEXITED(wstatus)) {
      ASSERT_EQ(WEXITSTATUS(wstatus), 0) << "the child failed by itself";
      ++finished;
    }

    // Verify offline: the same chain (the purge's record extends it when the child got that far).
    auto v = verify_log(work);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    ASSERT_TRUE(v->ok) << v->file << " offset " << v->offset << ": " << v->problem;
    ASSERT_GE(v->events, base->events);
    ASSERT_LE(v->events, base->events + 1);
    if (v->events == base->events) {
      EXPECT_EQ(v->chain_head_hex, base->chain_head_hex);
    }

    {
      // Where the kill landed: how many of ana's ciphertexts the killed purge had already dropped.
      const std::string killed = privacy_test::all_bytes_under(work + "/log");
      size_t left = 0, total = 0;
      for (const auto& w : written)
        if (w.subject == "ana") {
          ++total;
          left += killed.find(ciphertext.at(w.position)) != std::string::npos ? 1 : 0;
        }
      midway += left > 0 && left < total ? 1 : 0;
    }
    auto s = open_store(options(work, keys, Durability::kFsync));
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    for (const auto& f : std::filesystem::directory_iterator(work + "/log"))
      EXPECT_FALSE(f.path().string().ends_with(".tmp")) << f.path();
    for (const auto& w : written) {
      auto e = (*s)->read_position(w.position);
      ASSERT_TRUE(e.ok()) << w.position << ": " << e.status().to_string();
      const json d = json::parse(e->data);
      ASSERT_EQ(d["order"], w.order) << w.position;
      if (w.subject == "bo") {
        ASSERT_EQ(d["email"], w.email) << w.position;
        ASSERT_EQ(d["address"]["street"], w.street) << w.position;
      } else if (w.subject == "ana") {
        ASSERT_TRUE(d["email"].contains("$cairn.redacted")) << w.position;
      }
    }
    // Run to the end, then nothing of ana is left.
    auto p = (*s)->purge("", {});
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    EXPECT_EQ(p->chain_head_before, p->chain_head_after);
    ASSERT_TRUE((*s)->close().ok());
    const std::string bytes = privacy_test::all_bytes_under(work);
    for (const auto& w : written) {
      if (w.subject != "ana") continue;
      ASSERT_EQ(bytes.find(w.email), std::string::npos);
      ASSERT_EQ(bytes.find(ciphertext.at(w.position)), std::string::npos) << w.position;
    }
    auto again = verify_log(work);
    ASSERT_TRUE(again.ok() && again->ok);
  }
  std::cout << fmt::format("purge crash loop: {} iterations, a whole purge took {} ms; {} kills landed midway through the "
                           "rewrite, {} children finished first\n", iterations, whole.count() / 1000, midway, finished);
}

}  // namespace
}  // namespace cairn
