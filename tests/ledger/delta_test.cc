// Deltas (src/ledger/delta.cc) against hand-checked cases: a JSON Patch applied to the proposed value gives
// the final value; word diffs rebuild both texts; distances and normalizations as documented.
#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "ledger/delta.h"

namespace cairn::ledger {
namespace {

using nlohmann::json;

// Both texts back from a word diff: equal + delete words give the proposal, equal + insert the final.
std::pair<std::string, std::string> sides(const json& ops) {
  std::string a, b;
  auto add = [](std::string& s, const std::string& t) { s += (s.empty() ? "" : " ") + t; };
  for (const auto& op : ops) {
    const std::string kind = op["op"], text = op["text"];
    if (kind != "insert") add(a, text);
    if (kind != "delete") add(b, text);
  }
  return {a, b};
}

TEST(Delta, TriageEditIsAPatchThatTurnsTheProposalIntoTheFinal) {
  const json proposed = {{"queue", "billing"}, {"priority", "P3"}, {"tags", {"refund"}}};
  const json final_value = {{"queue", "billing"}, {"priority", "P2"}, {"tags", {"refund", "vip"}}};
  const Delta d = compute_delta(proposed, final_value);
  EXPECT_EQ(d.format, Delta::Format::kJsonPatch);
  EXPECT_EQ(d.ops, json::parse(R"([{"op":"replace","path":"/priority","value":"P2"},{"op":"add","path":"/tags/-","value":"vip"}])"));
  EXPECT_EQ(proposed.patch(d.ops), final_value);
  EXPECT_EQ(d.change_count, 2u);
  EXPECT_EQ(d.edit_distance, 2u);
  EXPECT_EQ(d.changed_paths, (std::vector<std::string>{"/priority", "/tags"}));  // "/tags/-": the array
  // Three leaves (queue, priority, one tag): 2/3.
  EXPECT_EQ(d.normalized_ppm, 666'667u);
  EXPECT_TRUE(d.exact);
}

TEST(Delta, EqualValuesHaveAnEmptyPatch) {
  const json v = {{"a", 1}, {"b", {1, 2, 3}}};
  const Delta d = compute_delta(v, v);
  EXPECT_TRUE(d.ops.empty());
  EXPECT_EQ(d.change_count, 0u);
  EXPECT_EQ(d.normalized_ppm, 0u);
}

TEST(Delta, RemovedMembersAndNullsAndEscapedPointers) {
  const json proposed = {{"a/b", 1}, {"m~n", 2}, {"gone", true}, {"n", nullptr}};
  const json final_value = {{"a/b", 5}, {"m~n", 2}, {"n", 0}};
  const Delta d = compute_delta(proposed, final_value);
  EXPECT_EQ(proposed.patch(d.ops), final_value);
  EXPECT_EQ(d.changed_paths, (std::vector<std::string>{"/a~1b", "/gone", "/n"}));
  EXPECT_EQ(d.normalized_ppm, 750'000u);  // 3 operations over 4 leaves
}

TEST(Delta, ManyOperationsOnASmallValueCapAtOne) {
  const Delta d = compute_delta(json{{"x", 1}}, json{{"a", 1}, {"b", 2}, {"c", 3}});
  EXPECT_EQ(d.normalized_ppm, 1'000'000u);
}

TEST(Delta, ScalarsAndTypeChangesAreJsonPatches) {
  const Delta d = compute_delta(json(3), json("three"));
  EXPECT_EQ(d.format, Delta::Format::kJsonPatch);
  EXPECT_EQ(json(3).patch(d.ops), json("three"));
  EXPECT_EQ(d.changed_paths, std::vector<std::string>{""});
}

TEST(Delta, RandomJsonEditsAlwaysPatchBack) {
  std::mt19937_64 rng(42);
  auto random_value = [&](auto&& self, int depth) -> json {
    switch (rng() % (depth > 2 ? 3 : 5)) {
      case 0: return static_cast<int>(rng() % 10);
      case 1: return std::string(1, static_cast<char>('a' + rng() % 5));
      case 2: return rng() % 2 == 0;
      case 3: {
        json a = json::array();
        for (size_t i = rng() % 4; i > 0; --i) a.push_back(self(self, depth + 1));
        return a;
      }
      default: {
        json o = json::object();
        for (size_t i = rng() % 4; i > 0; --i) o[std::string(1, static_cast<char>('k' + rng() % 6))] = self(self, depth + 1);
        return o;
      }
    }
  };
  for (int i = 0; i < 2000; ++i) {
    const json a = random_value(random_value, 0), b = random_value(random_value, 0);
    if (a.is_string() && b.is_string()) continue;  // texts get a word diff, tested below
    const Delta d = compute_delta(a, b);
    ASSERT_EQ(a.patch(d.ops), b) << a << " -> " << b;
    ASSERT_EQ(d.change_count, d.ops.size());
    ASSERT_LE(d.normalized_ppm, 1'000'000u);
    if (a == b) {
      ASSERT_EQ(d.change_count, 0u);
    }
  }
}

TEST(Delta, WordDiffOfAnEditedDraft) {
  const Delta d = compute_delta(json("the quick brown fox"), json("the slow brown fox jumps"));
  EXPECT_EQ(d.format, Delta::Format::kWords);
  EXPECT_EQ(d.ops, json::parse(R"([{"op":"equal","text":"the"},{"op":"delete","text":"quick"},{"op":"insert","text":"slow"},
                                   {"op":"equal","text":"brown fox"},{"op":"insert","text":"jumps"}])"));
  EXPECT_EQ(d.change_count, 3u);   // one word deleted, two inserted
  EXPECT_EQ(d.edit_distance, 2u);  // one substitution, one insertion
  EXPECT_EQ(d.normalized_ppm, 400'000u);  // 2 / 5 words of the longer text
  EXPECT_TRUE(d.changed_paths.empty());
}

TEST(Delta, WhitespaceIsNotAWord) {
  EXPECT_EQ(split_words("  a\tb\n\nc  "), (std::vector<std::string_view>{"a", "b", "c"}));
  EXPECT_TRUE(split_words(" \n ").empty());
  const Delta d = compute_delta(json("Hello  Ana,\nthanks."), json("Hello Ana, thanks."));
  EXPECT_EQ(d.edit_distance, 0u);
  EXPECT_EQ(d.change_count, 0u);
}

TEST(Delta, EmptyTexts) {
  EXPECT_EQ(compute_delta(json(""), json("")).normalized_ppm, 0u);
  const Delta d = compute_delta(json(""), json("new words here"));
  EXPECT_EQ(d.edit_distance, 3u);
  EXPECT_EQ(d.normalized_ppm, 1'000'000u);
  EXPECT_EQ(d.ops, json::parse(R"([{"op":"insert","text":"new words here"}])"));
}

TEST(Delta, LevenshteinOnWords) {
  auto w = [](const char* s) { return split_words(s); };
  EXPECT_EQ(word_edit_distance(w("a b c"), w("a b c")), 0u);
  EXPECT_EQ(word_edit_distance(w("a b c"), w("a x c")), 1u);
  EXPECT_EQ(word_edit_distance(w("a b c"), w("c b a")), 2u);
  EXPECT_EQ(word_edit_distance(w("kitten sitting"), w("sitting kitten on")), 2u);  // insert, substitute
  EXPECT_EQ(word_edit_distance(w(""), w("a b")), 2u);
}

TEST(Delta, RandomTextEditsRebuildBothSides) {
  std::mt19937_64 rng(7);
  const char* vocab[] = {"we", "will", "refund", "the", "order", "today", "sorry", "for", "delay", "thanks"};
  auto text = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += (i ? " " : "") + std::string(vocab[rng() % 10]);
    return s;
  };
  for (int i = 0; i < 500; ++i) {
    const std::string a = text(rng() % 30), b = text(rng() % 30);
    const Delta d = compute_delta(json(a), json(b));
    auto [ra, rb] = sides(d.ops);
    ASSERT_EQ(ra, a);
    ASSERT_EQ(rb, b);
    // Levenshtein never exceeds the words deleted + inserted, and is at least the length difference.
    const auto na = split_words(a).size(), nb = split_words(b).size();
    ASSERT_LE(d.edit_distance, d.change_count);
    ASSERT_GE(d.edit_distance, na > nb ? na - nb : nb - na);
  }
}

TEST(Delta, VeryLongTextsAreMarkedInexactButStillRebuild) {
  std::string a, b;
  for (int i = 0; i < 3000; ++i) {
    a += "w" + std::to_string(i) + " ";
    b += "v" + std::to_string(i) + " ";
  }
  const Delta d = compute_delta(json(a), json(b));
  EXPECT_FALSE(d.exact);
  auto [ra, rb] = sides(d.ops);
  EXPECT_EQ(ra, a.substr(0, a.size() - 1));
  EXPECT_EQ(rb, b.substr(0, b.size() - 1));
  EXPECT_EQ(d.normalized_ppm, 1'000'000u);
}

TEST(Delta, JsonLayout) {
  const json j = delta_json(compute_delta(json("a b"), json("a c")));
  EXPECT_EQ(j["format"], "words");
  EXPECT_EQ(j["edit_distance"], 1);
  EXPECT_DOUBLE_EQ(j["normalized_edit_distance"].get<double>(), 0.5);
  EXPECT_EQ(j["exact"], true);
  EXPECT_TRUE(j["changed_paths"].empty());
}

}  // namespace
}  // namespace cairn::ledger
