// The derived index on its own: memtable and runs answer alike, merges keep every entry, the manifest
// checkpoint survives a reopen, and damage to index files costs a rebuild, never a wrong answer.
#include <gtest/gtest.h>

#include <fstream>

#include "index/index.h"
#include "base/file.h"
#include "testing/temp_dir.h"

namespace cairn::index {
namespace {

// Batch b holds events [b*10, b*10+10): stream key (pos % 3), revision pos / 3, type key (pos % 2).
IndexBatch batch(uint64_t b) {
  IndexBatch x;
  for (uint64_t p = b * 10; p < b * 10 + 10; ++p) {
    x.streams.push_back({p % 3, p / 3, p});
    x.types.push_back({100 + p % 2, p});
    x.ids.push_back({1000 + p, p});
  }
  x.sparse.push_back({b * 10, 64 + b * 100});
  x.end_position = b * 10 + 10;
  return x;
}

void check_all(const Index& idx, uint64_t batches) {
  const uint64_t n = batches * 10;
  for (uint64_t key = 0; key < 3; ++key) {
    std::vector<StreamEntry> out;
    idx.stream_range(key, 0, UINT64_MAX, &out);
    ASSERT_EQ(out.size(), (n - key + 2) / 3) << "key " << key;
    for (size_t i = 0; i < out.size(); ++i) {
      EXPECT_EQ(out[i].revision, key / 3 + i + (key ? 0 : 0));
      EXPECT_EQ(out[i].position % 3, key);
    }
    EXPECT_EQ(*idx.max_revision(key), out.back().revision);
  }
  std::vector<uint64_t> pos;
  idx.type_positions(101, 0, n, true, 1000, &pos);
  EXPECT_EQ(pos.size(), n / 2);
  for (size_t i = 1; i < pos.size(); ++i) EXPECT_LT(pos[i - 1], pos[i]);
  pos.clear();
  idx.type_positions(100, 0, n, false, 3, &pos);
  ASSERT_EQ(pos.size(), 3u);
  EXPECT_EQ(pos[0], n - 2);
  EXPECT_EQ(pos[2], n - 6);
  for (uint64_t p : {uint64_t{0}, n / 2, n - 1}) {
    std::vector<uint64_t> ids;
    idx.id_positions(1000 + p, &ids);
    ASSERT_EQ(ids.size(), 1u);
    EXPECT_EQ(ids[0], p);
    auto sp = idx.sparse_floor(0, p);
    ASSERT_TRUE(sp.has_value());
    EXPECT_EQ(sp->key, p / 10 * 10);
    EXPECT_EQ(sp->value, 64 + p / 10 * 100);
  }
  EXPECT_FALSE(idx.max_revision(77).has_value());
}

TEST(Index, MemtableRunsAndMergesAnswerAlike) {
  testing::TempDir dir;
  auto idx = *Index::open(dir.path(), base::posix_fs(), 25, false);
  for (uint64_t b = 0; b < 40; ++b) idx->add(batch(b));
  check_all(*idx, 40);
  ASSERT_TRUE(idx->close().ok());
  EXPECT_EQ(idx->indexed_through(), 400u);
  const auto runs = idx->stats().runs;
  EXPECT_GE(runs, 1u);
  EXPECT_LE(runs, 8u);  // merges keep the run count logarithmic
  idx.reset();
  auto again = *Index::open(dir.path(), base::posix_fs(), 25, false);
  EXPECT_FALSE(again->rebuilt());
  EXPECT_EQ(again->indexed_through(), 400u);
  check_all(*again, 40);
  for (uint64_t b = 40; b < 45; ++b) again->add(batch(b));
  check_all(*again, 45);
}

TEST(Index, DamagedManifestMeansRebuildNotWrongAnswers) {
  testing::TempDir dir;
  {
    auto idx = *Index::open(dir.path(), base::posix_fs(), 1000, false);
    for (uint64_t b = 0; b < 5; ++b) idx->add(batch(b));
    ASSERT_TRUE(idx->close().ok());
  }
  {
    std::fstream f(dir.path() + "/index/MANIFEST", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('9');
  }
  auto idx = *Index::open(dir.path(), base::posix_fs(), 1000, false);
  EXPECT_TRUE(idx->rebuilt());
  EXPECT_EQ(idx->indexed_through(), 0u);
  std::vector<StreamEntry> out;
  idx->stream_range(0, 0, UINT64_MAX, &out);
  EXPECT_TRUE(out.empty());
}

TEST(Index, UnreferencedFilesAreDroppedOnOpen) {
  testing::TempDir dir;
  {
    auto idx = *Index::open(dir.path(), base::posix_fs(), 1000, false);
    idx->add(batch(0));
    ASSERT_TRUE(idx->close().ok());
  }
  { std::ofstream(dir.path() + "/index/run-00000000000000000010-00000000000000000020.idx") << "leftover"; }
  { std::ofstream(dir.path() + "/index/MANIFEST.tmp") << "partial"; }
  auto idx = *Index::open(dir.path(), base::posix_fs(), 1000, false);
  EXPECT_FALSE(idx->rebuilt());
  EXPECT_FALSE(base::path_exists(dir.path() + "/index/run-00000000000000000010-00000000000000000020.idx"));
  EXPECT_FALSE(base::path_exists(dir.path() + "/index/MANIFEST.tmp"));
  EXPECT_EQ(idx->indexed_through(), 10u);
}

}  // namespace
}  // namespace cairn::index
