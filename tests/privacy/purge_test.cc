// The purge compaction through the Store (docs/privacy.md "Purge compaction"): after a forget and a purge, a
// byte search of the whole data directory, of an export made afterwards and of a backup made before finds
// none of the forgotten subject's values (generated, distinctive) nor their ciphertext; verify passes with
// the same chain head, before and after, online and offline; other subjects' parts and all non-personal data
// read as written; a second purge changes nothing; the purge is recorded in $privacy; appends made while it
// runs are kept; an export of the purged store imports to the same chain head; a rewrite that came out wrong
// is caught by its own verification before it replaces anything.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cairn/maintenance.h"
#include "cairn/store.h"
#include "codec/event_json.h"
#include "base/file.h"
#include "privacy_test_util.h"
#include "runtime/compose.h"
#include "store/embedded_store.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using nlohmann::json;
using privacy_test::all_bytes_under;

struct Written {
  std::string subject;
  std::string email;   // personal
  std::string street;  // personal
  std::string order;   // not personal
  uint64_t position = 0;
};

class Purge : public ::testing::Test {
 protected:
  EmbeddedOptions options() {
    EmbeddedOptions o;
    o.dir = dir_.sub("data");
    o.durability = Durability::kFsync;
    o.segment_size = 16 * 1024;  // many segments, so the purge rewrites some and leaves others
    o.key_store_dir = dir_.sub("keys");
    o.master_key = privacy_test::kMaster;
    return o;
  }
  // Events of two subjects (distinctive generated values) and events without personal data, in batches.
  void write_history(Store& s, int batches) {
    std::mt19937_64 rng(20261126);
    auto token = [&] { return fmt::format("{:016x}", rng()); };
    for (int b = 0; b < batches; ++b) {
      std::vector<EventData> events;
      std::vector<Written> ws;
      for (int i = 0; i < 8; ++i) {
        EventData e;
        e.type = "customer.contacted";
        if (i % 4 == 3) {
          e.data = json{{"order", "plain-" + token()}}.dump();
          ws.push_back({"", "", "", json::parse(e.data)["order"]});
        } else {
          Written w{i % 2 == 0 ? "ana" : "bo", "pz-" + token() + "@example.org", "Rue " + token(), "ord-" + token(), 0};
          e.data = json{{"email", w.email}, {"address", {{"street", w.street}, {"city", "Lyon"}}}, {"order", w.order}}.dump();
          e.metadata = json{{"privacy", {{"subject", w.subject}, {"personal", {"/email", "/address/street"}}}}}.dump();
          ws.push_back(w);
        }
        events.push_back(std::move(e));
      }
      auto r = s.append({fmt::format("customer-{}", b % 7), ExpectedRevision::any(), events});
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      for (size_t i = 0; i < ws.size(); ++i) ws[i].position = r->streams[0].first_position + i;
      written_.insert(written_.end(), ws.begin(), ws.end());
    }
  }
  std::string export_stored(Store& s) {
    std::string out;
    EXPECT_TRUE(s.scan_stored(0, Filter{}, [&](const StoredEventView& v) {
                   out += codec::export_json(v) + "\n";
                   return true;
                 }).ok());
    return out;
  }
  testing::TempDir dir_;
  std::vector<Written> written_;
};

TEST_F(Purge, ForgetAndPurgeLeaveNoTraceOfTheSubjectAndKeepTheChain) {
  auto opened = open_store(options());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  Store& s = **opened;
  write_history(s, 120);
  ASSERT_FALSE(HasFailure());
  // Before: the ciphertext of ana's parts, a backup copy of the data directory and an export of the stored form.
  std::map<uint64_t, std::string> email_ciphertext;  // by position
  ASSERT_TRUE(s.scan_stored(0, Filter{}, [&](const StoredEventView& v) {
                 if (v.sealed_parts) email_ciphertext[v.position] = json::parse(v.data)["email"]["$cairn.sealed"]["c"];
                 return true;
               }).ok());
  ASSERT_FALSE(email_ciphertext.empty());
  const std::string export_before = export_stored(s);
  auto before = s.verify_chain();
  ASSERT_TRUE(before.ok() && before->ok) << (before.ok() ? before->problem : before.status().to_string());
  std::filesystem::copy(dir_.sub("data"), dir_.sub("backup"), std::filesystem::copy_options::recursive);

  auto forgotten = s.forget("ana", "erasure request #77", R"({"kind":"human","id":"dpo-1"})");
  ASSERT_TRUE(forgotten.ok()) << forgotten.status().to_string();
  uint64_t ana_events = 0;
  for (const auto& w : written_) ana_events += w.subject == "ana" ? 1 : 0;
  EXPECT_EQ(forgotten->affected_events, ana_events);

  // Appends go on while the purge runs.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> concurrent{0};
  std::thread appender([&] {
    while (!stop.load()) {
      EventData e;
      e.type = "note.added";
      e.data = R"({"n":1})";
      if (s.append({"notes", ExpectedRevision::any(), {e}}).ok()) ++concurrent;
    }
  });
  uint64_t last_done = 0, calls = 0;
  bool monotonic = true;
  auto purged = s.purge(R"({"kind":"human","id":"dpo-1"})", [&](uint64_t done, uint64_t total) {
    monotonic = monotonic && done >= last_done && done <= total;
    last_done = done;
    ++calls;
  });
  stop = true;
  appender.join();
  ASSERT_TRUE(purged.ok()) << purged.status().to_string();
  EXPECT_TRUE(monotonic);
  EXPECT_GT(calls, 0u);
  const StoreMetrics st = s.metrics();
  EXPECT_FALSE(st.purge_running);
  EXPECT_EQ(st.purges, 1u);
  EXPECT_EQ(st.purged_parts, purged->parts);
  EXPECT_EQ(st.purge_done_bytes, st.purge_total_bytes);
  EXPECT_EQ(st.purge_total_bytes, 3 * purged->bytes_scanned);
  EXPECT_EQ(purged->parts, 2 * ana_events);
  EXPECT_EQ(purged->events, ana_events);
  EXPECT_GT(purged->segments_rewritten, 0u);
  EXPECT_LE(purged->segments_rewritten, purged->segments_scanned);
  EXPECT_EQ(purged->chain_head_before, purged->chain_head_after);
  EXPECT_EQ(purged->subjects.size(), 1u);
  EXPECT_EQ(purged->subjects[0], forgotten->subject_id);
  ASSERT_TRUE(purged->position.has_value());
  EXPECT_GT(purged->bytes_replaced, 0u);

  // The record, in $privacy.
  auto rec = s.read_position(*purged->position);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->stream, "$privacy");
  EXPECT_EQ(rec->type, "privacy.purge.completed");
  const json rd = json::parse(rec->data);
  EXPECT_EQ(rd["parts"], purged->parts);
  EXPECT_EQ(rd["chain_head_before"], rd["chain_head_after"]);
  EXPECT_EQ(rd["subjects"][0], forgotten->subject_id);
  EXPECT_EQ(rec->data.find("ana"), std::string::npos);

  // Reads: ana's parts are redacted, everything else is as written.
  for (const auto& w : written_) {
    auto e = s.read_position(w.position);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    const json d = json::parse(e->data);
    if (w.subject.empty()) {
      EXPECT_EQ(d["order"], w.order);
    } else if (w.subject == "ana") {
      EXPECT_EQ(d["email"], json::parse(R"({"$cairn.redacted":{"reason":"subject forgotten"}})"));
      EXPECT_TRUE(d["address"]["street"].contains("$cairn.redacted"));
      EXPECT_EQ(d["order"], w.order);
      EXPECT_EQ(d["address"]["city"], "Lyon");
    } else {
      EXPECT_EQ(d["email"], w.email);
      EXPECT_EQ(d["address"]["street"], w.street);
      EXPECT_EQ(d["order"], w.order);
    }
  }
  auto after = s.verify_chain();
  ASSERT_TRUE(after.ok() && after->ok) << (after.ok() ? after->problem : after.status().to_string());

  // A second purge has nothing left to do and records nothing.
  auto again = s.purge("", {});
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(again->parts, 0u);
  EXPECT_FALSE(again->position.has_value());
  EXPECT_EQ(again->segments_rewritten, 0u);
  const std::string export_after = export_stored(s);
  ASSERT_TRUE(s.close().ok());

  // Byte searches: the data directory now, an export made afterwards, the backup and export made before.
  const std::string data_bytes = all_bytes_under(dir_.sub("data"));
  const std::string backup_bytes = all_bytes_under(dir_.sub("backup"));
  for (const auto& w : written_) {
    if (w.subject.empty()) continue;
    for (const std::string* v : {&w.email, &w.street}) {
      EXPECT_EQ(data_bytes.find(*v), std::string::npos) << *v;
      EXPECT_EQ(backup_bytes.find(*v), std::string::npos) << *v;
      EXPECT_EQ(export_before.find(*v), std::string::npos) << *v;
      EXPECT_EQ(export_after.find(*v), std::string::npos) << *v;
    }
  }
  for (const auto& w : written_) {
    if (w.subject.empty()) continue;
    const std::string& c = email_ciphertext.at(w.position);
    EXPECT_NE(backup_bytes.find(c), std::string::npos);  // the backup keeps ciphertext, now without a key
    if (w.subject == "ana") {
      EXPECT_EQ(data_bytes.find(c), std::string::npos) << w.position;
      EXPECT_EQ(export_after.find(c), std::string::npos) << w.position;
    } else {
      EXPECT_NE(export_after.find(c), std::string::npos) << w.position;
    }
  }
  // Offline verify (cairn verify) passes; the backup opened with today's key store reads redacted for ana.
  auto offline = verify_log(dir_.sub("data"));
  ASSERT_TRUE(offline.ok() && offline->ok) << (offline.ok() ? offline->problem : offline.status().to_string());
  EmbeddedOptions b = options();
  b.dir = dir_.sub("backup");
  auto backup = open_store(b);
  ASSERT_TRUE(backup.ok()) << backup.status().to_string();
  for (const auto& w : written_) {
    if (w.subject != "ana") continue;
    auto e = (*backup)->read_position(w.position);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->data.find(w.email), std::string::npos);
    EXPECT_NE(e->data.find("$cairn.redacted"), std::string::npos);
    break;
  }
  // Reopened, the purged store serves the same.
  auto reopened = open_store(options());
  ASSERT_TRUE(reopened.ok()) << reopened.status().to_string();
  EXPECT_EQ((*reopened)->head_position(), written_.size() + concurrent.load() + 2 /* forgotten + purge records */);
}

TEST_F(Purge, AnExportOfAPurgedStoreImportsToTheSameChain) {
  auto opened = open_store(options());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  Store& s = **opened;
  write_history(s, 30);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(s.forget("ana", "request", "").ok());
  auto p = s.purge("", {});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_GT(p->parts, 0u);
  // The stored form, commit by commit (what cairn export writes and cairn import reads).
  std::vector<std::vector<ImportEvent>> commits;
  uint64_t commit = UINT64_MAX;
  ASSERT_TRUE(s.scan_stored(0, Filter{}, [&](const StoredEventView& v) {
                 if (v.commit_position != commit) commits.emplace_back();
                 commit = v.commit_position;
                 ImportEvent ie = privacy_test::import_event_of(v);
                 commits.back().push_back(std::move(ie));
                 return true;
               }).ok());
  const std::string head = s.stats().chain_head_hex;
  ASSERT_TRUE(s.close().ok());
  EmbeddedOptions copy = options();
  copy.dir = dir_.sub("copy");
  auto c = open_store(copy);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  for (auto& events : commits) ASSERT_TRUE((*c)->import_commit(std::move(events)).ok());
  EXPECT_EQ((*c)->stats().chain_head_hex, head);
  auto v = (*c)->verify_chain();
  ASSERT_TRUE(v.ok() && v->ok) << (v.ok() ? v->problem : v.status().to_string());
  for (const auto& w : written_) {
    if (w.subject != "ana") continue;
    auto e = (*c)->read_position(w.position);
    ASSERT_TRUE(e.ok());
    EXPECT_TRUE(json::parse(e->data)["email"].contains("$cairn.redacted"));
    break;
  }
}

// A file system whose *.purge.tmp files get one altered byte in the middle: a purge that wrote a wrong copy.
class DamagingFs final : public base::FileSystem {
 public:
  Result<std::unique_ptr<base::WritableFile>> create_file(const std::string& path) override {
    auto f = base::posix_fs()->create_file(path);
    if (!f.ok() || !path.ends_with(".purge.tmp")) return f;
    return std::unique_ptr<base::WritableFile>(new Damaging(std::move(*f)));
  }
  Result<std::unique_ptr<base::WritableFile>> open_for_append(const std::string& path) override {
    return base::posix_fs()->open_for_append(path);
  }
  Status rename(const std::string& from, const std::string& to) override { return base::posix_fs()->rename(from, to); }
  Status remove(const std::string& path) override { return base::posix_fs()->remove(path); }
  Status sync_dir(const std::string& dir) override { return base::posix_fs()->sync_dir(dir); }

 private:
  class Damaging final : public base::WritableFile {
   public:
    explicit Damaging(std::unique_ptr<base::WritableFile> inner) : inner_(std::move(inner)) {}
    Status append(const void* data, size_t n) override {
      std::string bytes(static_cast<const char*>(data), n);
      const uint64_t at = inner_->size();
      if (at <= 3000 && at + n > 3000) bytes[3000 - at] ^= 0x01;
      return inner_->append(bytes.data(), bytes.size());
    }
    Status sync() override { return inner_->sync(); }
    Status truncate(uint64_t size) override { return inner_->truncate(size); }
    uint64_t size() const override { return inner_->size(); }
    const std::string& path() const override { return inner_->path(); }

   private:
    std::unique_ptr<base::WritableFile> inner_;
  };
};

TEST_F(Purge, AWrongRewriteIsCaughtBeforeItReplacesTheSegment) {
  DamagingFs fs;
  auto opened = runtime::open_embedded(options(), &fs);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  Store& s = **opened;
  write_history(s, 40);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(s.forget("ana", "request", "").ok());
  const std::string first = dir_.sub("data") + "/log/00000000000000000000.seg";
  const std::string before = *base::read_whole_file(first);
  auto p = s.purge("", {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), ErrorCode::kCorruption);
  EXPECT_NE(p.status().message().find("does not verify"), std::string::npos) << p.status().to_string();
  EXPECT_EQ(*base::read_whole_file(first), before);  // the segment is kept as it was
  EXPECT_FALSE(std::filesystem::exists(first + ".purge.tmp"));
  auto v = s.verify_chain();
  ASSERT_TRUE(v.ok() && v->ok) << (v.ok() ? v->problem : v.status().to_string());
  for (const auto& w : written_) {
    auto e = s.read_position(w.position);
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    EXPECT_EQ(json::parse(e->data)["order"], w.order);
  }
}

TEST_F(Purge, WithoutForgottenSubjectsNothingIsRewrittenOrRecorded) {
  auto opened = open_store(options());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  write_history(**opened, 10);
  ASSERT_FALSE(HasFailure());
  const std::string bytes = all_bytes_under(dir_.sub("data") + "/log");
  auto p = (*opened)->purge("", {});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->parts, 0u);
  EXPECT_EQ(p->segments_rewritten, 0u);
  EXPECT_FALSE(p->position.has_value());
  EXPECT_GT(p->segments_scanned, 0u);
  EXPECT_FALSE(p->chain_head_before.empty());
}

TEST_F(Purge, ADamagedSegmentIsNotRewritten) {
  auto opened = open_store(options());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  write_history(**opened, 40);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE((*opened)->forget("ana", "test", "").ok());
  ASSERT_TRUE((*opened)->close().ok());
  // One altered byte in the payload of the first segment's first commit.
  const std::string first = dir_.sub("data") + "/log/00000000000000000000.seg";
  {
    auto bytes = base::read_whole_file(first);
    ASSERT_TRUE(bytes.ok());
    std::string b = *bytes;
    b[64 + 64 + 200] ^= 0x20;
    FILE* f = std::fopen(first.c_str(), "wb");
    std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
  }
  auto s = open_store(options());
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  auto p = (*s)->purge("", {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), ErrorCode::kCorruption);
  EXPECT_NE(p.status().message().find("00000000000000000000.seg"), std::string::npos) << p.status().to_string();
}

}  // namespace
}  // namespace cairn
