// The key store and sealing (src/privacy/keystore.cc): sealed parts open only with their key and place;
// keys survive a reopen, a destroyed key is gone for good (also from the file's bytes), a second destroy is a
// no-op, a wrong master key or a damaged file is refused, and a torn last line is dropped.
#include <gtest/gtest.h>

#include <fstream>

#include "base/file.h"
#include "privacy/keystore.h"
#include "testing/temp_dir.h"

namespace cairn::privacy {
namespace {

Key master(uint8_t fill) {
  Key k;
  k.fill(fill);
  return k;
}

std::string file_bytes(const std::string& path) {
  auto t = base::read_whole_file(path);
  return t.ok() ? *t : std::string();
}

std::string as_text(const Key& k) { return std::string(reinterpret_cast<const char*>(k.data()), k.size()); }

TEST(Seal, OpensOnlyWithItsKeyAndPlace) {
  const Key k = master(7), other = master(8);
  const Sealed s = seal(sealing_key(k), "ana@example.com", "event-1/email");
  EXPECT_EQ(s.ciphertext.size(), std::string("ana@example.com").size() + 16);
  EXPECT_EQ(s.ciphertext.find("ana@example.com"), std::string::npos);
  auto p = unseal(k, s, "event-1/email");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "ana@example.com");
  EXPECT_EQ(unseal(other, s, "event-1/email").status().code(), ErrorCode::kCorruption);
  EXPECT_EQ(unseal(k, s, "event-2/email").status().code(), ErrorCode::kCorruption);  // moved to another place
  Sealed flipped = s;
  flipped.ciphertext[0] ^= 1;
  EXPECT_EQ(unseal(k, flipped, "event-1/email").status().code(), ErrorCode::kCorruption);
  // Deterministic for one place (a retried append seals to the same bytes), unrelated across places and
  // keys: equal values in two events cannot be spotted in the log.
  EXPECT_EQ(seal(sealing_key(k), "x", "a").ciphertext, seal(sealing_key(k), "x", "a").ciphertext);
  EXPECT_NE(seal(sealing_key(k), "x", "a").ciphertext, seal(sealing_key(k), "x", "b").ciphertext);
  EXPECT_NE(seal(sealing_key(k), "x", "a").nonce, seal(sealing_key(k), "x", "b").nonce);
  EXPECT_NE(seal(sealing_key(k), "x", "a").ciphertext, seal(sealing_key(other), "x", "a").ciphertext);
}

TEST(MasterKey, Parsing) {
  auto k = parse_master_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
  ASSERT_TRUE(k.ok()) << k.status().to_string();
  EXPECT_EQ((*k)[31], 31);
  EXPECT_EQ(parse_master_key("short").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(parse_master_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd").status().code(), ErrorCode::kInvalidArgument);
}

TEST(KeyStore, KeysPersistAndDestroyedOnesAreGoneFromTheFile) {
  testing::TempDir dir;
  const std::string path = dir.sub("keys") + "/keys.v1";
  std::string ana_key_bytes, ana_id, bo_id;
  Key bo_key;
  {
    auto ks = KeyStore::open(dir.sub("keys"), master(1));
    ASSERT_TRUE(ks.ok()) << ks.status().to_string();
    const std::string ana = (*ks)->subject_id("ana@example.com");
    EXPECT_EQ(ana.size(), 35u);
    EXPECT_EQ(ana, (*ks)->subject_id("ana@example.com"));
    EXPECT_NE(ana, (*ks)->subject_id("bo@example.com"));
    auto a = (*ks)->key_for_write(ana);
    ASSERT_TRUE(a.ok());
    ana_id = a->first;
    EXPECT_EQ(ana_id, ana + "/1");
    auto again = (*ks)->key_for_write(ana);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->second.key, a->second.key);  // one key per subject until it is forgotten
    ana_key_bytes = as_text(a->second.key);
    auto b = (*ks)->key_for_write((*ks)->subject_id("bo@example.com"));
    ASSERT_TRUE(b.ok());
    bo_id = b->first;
    bo_key = b->second.key;
    // Neither subject nor key is in the file in clear.
    const std::string bytes = file_bytes(path);
    EXPECT_EQ(bytes.find("ana@example.com"), std::string::npos);
    EXPECT_EQ(bytes.find(ana_key_bytes), std::string::npos);
  }
  auto ks = KeyStore::open(dir.sub("keys"), master(1));
  ASSERT_TRUE(ks.ok()) << ks.status().to_string();
  auto a = (*ks)->key(ana_id);
  ASSERT_TRUE(a.ok() && *a);
  EXPECT_EQ(as_text(**a), ana_key_bytes);
  const std::string ana = (*ks)->subject_id("ana@example.com");
  const std::string wrapped_line = file_bytes(path).substr(file_bytes(path).find("key " + ana));
  const std::string wrapped = wrapped_line.substr(0, wrapped_line.find('\n'));
  auto n = (*ks)->destroy(ana);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_TRUE((*ks)->forgotten(ana));
  auto gone = (*ks)->key(ana_id);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(*gone);
  EXPECT_EQ(file_bytes(path).find(wrapped), std::string::npos);  // the wrapped key is not in the new file
  auto second = (*ks)->destroy(ana);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, 0u);  // forgetting twice is a no-op
  EXPECT_EQ((*ks)->key("hs:00000000000000000000000000000000/1").status().code(), ErrorCode::kNotFound);
  // The other subject is untouched, also after a reopen; the forgotten one stays forgotten.
  ks->reset();
  auto again = KeyStore::open(dir.sub("keys"), master(1));
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  auto b = (*again)->key(bo_id);
  ASSERT_TRUE(b.ok() && *b);
  EXPECT_EQ(**b, bo_key);
  EXPECT_TRUE((*again)->forgotten(ana));
  auto old = (*again)->key(ana_id);
  ASSERT_TRUE(old.ok());
  EXPECT_FALSE(*old);
  // A subject that comes back gets a new generation; the old one stays destroyed.
  auto fresh = (*again)->key_for_write(ana);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->first, ana + "/2");
  EXPECT_NE(as_text(fresh->second.key), ana_key_bytes);
  EXPECT_FALSE((*again)->forgotten(ana));
  EXPECT_EQ((*again)->live_keys(), 2u);
  // And after one more reopen: generation 1 destroyed, generation 2 alive.
  again->reset();
  auto third = KeyStore::open(dir.sub("keys"), master(1));
  ASSERT_TRUE(third.ok()) << third.status().to_string();
  auto g1 = (*third)->key(ana + "/1");
  auto g2 = (*third)->key(ana + "/2");
  ASSERT_TRUE(g1.ok() && g2.ok());
  EXPECT_FALSE(*g1);
  ASSERT_TRUE(*g2);
  EXPECT_EQ(**g2, fresh->second.key);
}

TEST(KeyStore, AWrongMasterKeyOrADamagedFileIsRefused) {
  testing::TempDir dir;
  {
    auto ks = KeyStore::open(dir.sub("keys"), master(1));
    ASSERT_TRUE(ks.ok());
    ASSERT_TRUE((*ks)->key_for_write((*ks)->subject_id("s")).ok());
  }
  auto wrong = KeyStore::open(dir.sub("keys"), master(2));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("master key"), std::string::npos) << wrong.status().to_string();
  const std::string path = dir.sub("keys") + "/keys.v1";
  std::string bytes = file_bytes(path);
  bytes[bytes.find("key ") + 6] ^= 1;
  ASSERT_TRUE(base::write_file_atomically(base::posix_fs(), dir.sub("keys"), "keys.v1", bytes).ok());
  auto damaged = KeyStore::open(dir.sub("keys"), master(1));
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().code(), ErrorCode::kCorruption);
  EXPECT_NE(damaged.status().message().find("line 2"), std::string::npos) << damaged.status().to_string();
}

TEST(KeyStore, ATornLastLineIsDropped) {
  testing::TempDir dir;
  std::string id;
  {
    auto ks = KeyStore::open(dir.sub("keys"), master(3));
    ASSERT_TRUE(ks.ok());
    auto k = (*ks)->key_for_write((*ks)->subject_id("kept"));
    ASSERT_TRUE(k.ok());
    id = k->first;
  }
  {
    std::ofstream f(dir.sub("keys") + "/keys.v1", std::ios::app);
    f << "key hs:0123 1 AAAA";  // an append a crash cut short (no newline): never handed out
  }
  auto ks = KeyStore::open(dir.sub("keys"), master(3));
  ASSERT_TRUE(ks.ok()) << ks.status().to_string();
  auto k = (*ks)->key(id);
  ASSERT_TRUE(k.ok() && *k);
  ASSERT_TRUE((*ks)->key_for_write((*ks)->subject_id("next")).ok());  // appends continue on a clean line
  ks->reset();
  EXPECT_TRUE(KeyStore::open(dir.sub("keys"), master(3)).ok());
}

}  // namespace
}  // namespace cairn::privacy

namespace cairn::privacy {
namespace {

// Data keys (projection state at rest): created durably, found again after a reopen, destroyed for good
// (gone from the file's bytes too) without touching subject keys; ids are checked.
TEST(KeyStore, DataKeysPersistAndDestroyedOnesAreGone) {
  testing::TempDir dir;
  std::string id;
  DataKey key{};
  std::string subject_key_id;
  {
    auto ks = KeyStore::open(dir.path(), master(3));
    ASSERT_TRUE(ks.ok()) << ks.status().to_string();
    auto made = (*ks)->create_data_key();
    ASSERT_TRUE(made.ok()) << made.status().to_string();
    id = made->first;
    key = made->second;
    EXPECT_TRUE(is_data_key_id(id)) << id;
    auto other = (*ks)->create_data_key();
    ASSERT_TRUE(other.ok());
    EXPECT_NE(other->first, id);
    EXPECT_NE(other->second, key);
    auto sk = (*ks)->key_for_write((*ks)->subject_id("ana"));
    ASSERT_TRUE(sk.ok());
    subject_key_id = sk->first;
    EXPECT_EQ((*ks)->live_keys(), 1u);  // data keys are not subject keys
  }
  auto ks = KeyStore::open(dir.path(), master(3));
  ASSERT_TRUE(ks.ok()) << ks.status().to_string();
  auto again = (*ks)->data_key(id);
  ASSERT_TRUE(again.ok() && again->has_value()) << again.status().to_string();
  EXPECT_EQ(**again, key);
  const std::string before = file_bytes(dir.path() + "/keys.v1");
  const std::string line_start = "key " + id + " ";
  ASSERT_NE(before.find(line_start), std::string::npos);
  ASSERT_TRUE((*ks)->destroy_data_key(id).ok());
  ASSERT_TRUE((*ks)->destroy_data_key(id).ok());  // again: a no-op
  auto gone = (*ks)->data_key(id);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  EXPECT_EQ(file_bytes(dir.path() + "/keys.v1").find(line_start), std::string::npos);
  auto subject = (*ks)->key(subject_key_id);
  ASSERT_TRUE(subject.ok() && subject->has_value());  // the subject's key is untouched
  auto reopened = KeyStore::open(dir.path(), master(3));
  ASSERT_TRUE(reopened.ok());
  auto still_gone = (*reopened)->data_key(id);
  ASSERT_TRUE(still_gone.ok());
  EXPECT_FALSE(still_gone->has_value());
  EXPECT_EQ((*reopened)->data_key("dk:00000000000000000000000000000000").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ((*reopened)->data_key("hs:00000000000000000000000000000000").status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ((*reopened)->destroy_data_key("nonsense").code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace cairn::privacy
