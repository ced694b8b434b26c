// The difference between what an AI proposed and what took effect (docs/ai-ledger.md#deltas):
//   - JSON values (objects, arrays, numbers, booleans): a JSON Patch (RFC 6902) from the proposed value to
//     the final one, the paths it changes, and a normalized distance = min(1, operations / leaves of the
//     proposed value);
//   - text values (JSON strings): a word-level diff (runs of equal, deleted and inserted words; words are
//     runs of non-whitespace) and the word-level Levenshtein distance, normalized by the longer text's words.
// Pure functions of their inputs; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cairn::ledger {

struct Delta {
  enum class Format : uint8_t { kJsonPatch, kWords };
  Format format = Format::kJsonPatch;
  nlohmann::json ops = nlohmann::json::array();  // RFC 6902 operations, or [{"op":"equal|delete|insert","text"}]
  uint64_t change_count = 0;                     // patch operations, or words deleted + inserted
  std::vector<std::string> changed_paths;        // JSON Pointers the patch touches (sorted, unique); text: empty
  uint64_t edit_distance = 0;                    // patch operations, or word-level Levenshtein distance
  uint32_t normalized_ppm = 0;                   // normalized distance in parts per million (0 .. 1'000'000)
  bool exact = true;  // false only for texts too long for an exact word diff (then one delete + one insert)
};

// Text when both values are JSON strings, a JSON Patch otherwise.
Delta compute_delta(const nlohmann::json& proposed, const nlohmann::json& final_value);

// Word-level parts (exposed for tests).
std::vector<std::string_view> split_words(std::string_view text);
uint64_t word_edit_distance(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b);

// {"format":"json-patch"|"words", "ops", "change_count", "changed_paths", "edit_distance",
//  "normalized_edit_distance" (a number 0..1, six decimals), "exact"}
nlohmann::json delta_json(const Delta& d);

}  // namespace cairn::ledger
