#include "ledger/delta.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

namespace cairn::ledger {
namespace {

using json = nlohmann::json;

// Above these sizes (after the common prefix and suffix are cut off) the quadratic algorithms would cost
// too much time or memory for one event: the diff becomes one delete + one insert, marked inexact.
constexpr uint64_t kMaxDiffCells = 4'000'000;
constexpr uint64_t kMaxDistanceCells = 64'000'000;

uint64_t leaves(const json& v) {
  if (v.is_object() || v.is_array()) {
    uint64_t n = 0;
    for (const auto& c : v) n += leaves(c);
    return std::max<uint64_t>(n, 1);  // an empty container still counts as one value
  }
  return 1;
}

uint32_t ppm(uint64_t num, uint64_t den) {
  if (den == 0) return 0;
  if (num >= den) return 1'000'000;
  return static_cast<uint32_t>((num * 1'000'000 + den / 2) / den);
}

// The JSON Pointer a patch operation changes, cut to the member or element it names: "/tags/-" -> "/tags".
std::string changed_path(const json& op) {
  std::string p = op.value("path", "");
  if (p.ends_with("/-")) p.resize(p.size() - 2);
  return p;
}

Delta json_delta(const json& proposed, const json& final_value) {
  Delta d;
  d.format = Delta::Format::kJsonPatch;
  d.ops = json::diff(proposed, final_value);
  std::set<std::string> paths;
  for (const auto& op : d.ops) {
    paths.insert(changed_path(op));
    if (op.contains("from")) paths.insert(op["from"].get<std::string>());
  }
  d.changed_paths.assign(paths.begin(), paths.end());
  d.change_count = d.ops.size();
  d.edit_distance = d.ops.size();
  d.normalized_ppm = ppm(d.edit_distance, leaves(proposed));
  return d;
}

void push_run(json& ops, const char* kind, const std::vector<std::string_view>& words, size_t from, size_t to) {
  if (from >= to) return;
  std::string text;
  for (size_t i = from; i < to; ++i) {
    if (i > from) text += ' ';
    text.append(words[i]);
  }
  if (!ops.empty() && ops.back()["op"] == kind) {
    ops.back()["text"] = ops.back()["text"].get<std::string>() + " " + text;
    return;
  }
  ops.push_back({{"op", kind}, {"text", std::move(text)}});
}

Delta text_delta(std::string_view proposed, std::string_view final_value) {
  Delta d;
  d.format = Delta::Format::kWords;
  const auto a = split_words(proposed);
  const auto b = split_words(final_value);
  size_t pre = 0;
  while (pre < a.size() && pre < b.size() && a[pre] == b[pre]) ++pre;
  size_t suf = 0;
  while (suf < a.size() - pre && suf < b.size() - pre && a[a.size() - 1 - suf] == b[b.size() - 1 - suf]) ++suf;
  const size_t n = a.size() - pre - suf, m = b.size() - pre - suf;
  push_run(d.ops, "equal", a, 0, pre);
  if (static_cast<uint64_t>(n + 1) * (m + 1) <= kMaxDiffCells) {
    // Longest common subsequence of the middle parts; the table holds suffix LCS lengths.
    std::vector<uint32_t> t((n + 1) * (m + 1), 0);
    auto at = [&](size_t i, size_t j) -> uint32_t& { return t[i * (m + 1) + j]; };
    for (size_t i = n; i-- > 0;)
      for (size_t j = m; j-- > 0;)
        at(i, j) = a[pre + i] == b[pre + j] ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
    size_t i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a[pre + i] == b[pre + j]) {
        push_run(d.ops, "equal", a, pre + i, pre + i + 1);
        ++i, ++j;
      } else if (j == m || (i < n && at(i + 1, j) >= at(i, j + 1))) {
        push_run(d.ops, "delete", a, pre + i, pre + i + 1);
        ++d.change_count;
        ++i;
      } else {
        push_run(d.ops, "insert", b, pre + j, pre + j + 1);
        ++d.change_count;
        ++j;
      }
    }
  } else {
    push_run(d.ops, "delete", a, pre, pre + n);
    push_run(d.ops, "insert", b, pre, pre + m);
    d.change_count = n + m;
    d.exact = false;
  }
  push_run(d.ops, "equal", a, a.size() - suf, a.size());
  if (static_cast<uint64_t>(n + 1) * (m + 1) <= kMaxDistanceCells) {
    std::vector<std::string_view> ma(a.begin() + pre, a.begin() + pre + n), mb(b.begin() + pre, b.begin() + pre + m);
    d.edit_distance = word_edit_distance(ma, mb);
  } else {
    d.edit_distance = std::max(n, m);  // an upper bound
    d.exact = false;
  }
  d.normalized_ppm = ppm(d.edit_distance, std::max(a.size(), b.size()));
  return d;
}

}  // namespace

std::vector<std::string_view> split_words(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  while (i < text.size()) {
    while (i < text.size() && space(text[i])) ++i;
    size_t j = i;
    while (j < text.size() && !space(text[j])) ++j;
    if (j > i) out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

uint64_t word_edit_distance(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b) {
  // Words compared as small integers: equal words get the same id.
  std::unordered_map<std::string_view, uint32_t> ids;
  auto to_ids = [&](const std::vector<std::string_view>& w) {
    std::vector<uint32_t> out(w.size());
    for (size_t i = 0; i < w.size(); ++i) out[i] = ids.emplace(w[i], static_cast<uint32_t>(ids.size())).first->second;
    return out;
  };
  const auto x = to_ids(a), y = to_ids(b);
  std::vector<uint64_t> prev(y.size() + 1), cur(y.size() + 1);
  for (size_t j = 0; j <= y.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= x.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= y.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[y.size()];
}

Delta compute_delta(const json& proposed, const json& final_value) {
  if (proposed.is_string() && final_value.is_string())
    return text_delta(proposed.get_ref<const std::string&>(), final_value.get_ref<const std::string&>());
  return json_delta(proposed, final_value);
}

json delta_json(const Delta& d) {
  json j = {{"format", d.format == Delta::Format::kJsonPatch ? "json-patch" : "words"},
            {"ops", d.ops},
            {"change_count", d.change_count},
            {"changed_paths", d.changed_paths},
            {"edit_distance", d.edit_distance},
            {"normalized_edit_distance", d.normalized_ppm / 1e6},
            {"exact", d.exact}};
  return j;
}

}  // namespace cairn::ledger
