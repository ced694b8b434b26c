#include "project/state_file.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <simdjson.h>

#include "codec/event_json.h"
#include "log/sha256.h"

namespace cairn::project {

Result<StateDump> dump_state(ReducerEngine& engine) {
  StateDump d;
  log::Sha256 sha;
  std::string after;
  for (;;) {
    auto keys = engine.keys(after, 1024);
    if (keys.empty()) break;
    for (const auto& k : keys) {
      auto s = engine.state_json(k);
      if (!s.ok()) return s.status();
      if (!*s) continue;
      const size_t start = d.lines.size();
      d.lines.push_back('[');
      codec::append_json_string(d.lines, k);
      d.lines.push_back(',');
      d.lines.append(**s);
      d.lines.append("]\n");
      sha.update(std::string_view(d.lines).substr(start));
      ++d.partitions;
    }
    after = keys.back();
    if (keys.size() < 1024) break;
  }
  d.sha256_hex = log::hex(sha.final());
  return d;
}

Status write_state_file(log::FileSystem* fs, const std::string& dir, const std::string& name, uint32_t version,
                        uint64_t position, bool snapshot, const StateDump& dump) {
  std::string header = "{\"cairn_projection_state\":1,\"name\":";
  codec::append_json_string(header, name);
  header += fmt::format(",\"version\":{},\"position\":{},\"partitions\":{},\"sha256\":\"{}\"}}\n", version, position,
                        dump.partitions, dump.sha256_hex);
  header.append(dump.lines);
  const std::string file = fmt::format("{}-{:020}.ndjson", snapshot ? "snapshot" : "checkpoint", position);
  return log::write_file_atomically(fs, dir, file, header);
}

std::vector<StateFileInfo> list_state_files(const std::string& dir) {
  std::vector<StateFileInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string n = entry.path().filename().string();
    bool snapshot = n.starts_with("snapshot-");
    if (!(snapshot || n.starts_with("checkpoint-")) || !n.ends_with(".ndjson")) continue;
    const std::string digits = n.substr(snapshot ? 9 : 11, 20);
    if (digits.size() != 20 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    out.push_back({entry.path().string(), std::stoull(digits), snapshot});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.position > b.position; });
  return out;
}

Result<uint64_t> load_state_file(const std::string& path, const std::string& name, uint32_t version,
                                 ReducerEngine* engine, std::optional<std::string_view> only_key) {
  std::string wanted;  // the line prefix of only_key's partition: [ "key" ,
  if (only_key) {
    wanted = "[";
    codec::append_json_string(wanted, *only_key);
    wanted += ",";
  }
  auto text = log::read_whole_file(path);
  if (!text.ok()) return text.status();
  const std::string_view all(*text);
  const size_t nl = all.find('\n');
  if (nl == std::string_view::npos) return Status::corruption(fmt::format("{}: no header line", path));
  simdjson::dom::parser parser;
  simdjson::dom::element header;
  if (parser.parse(all.data(), nl).get(header))
    return Status::corruption(fmt::format("{}: the header is not JSON", path));
  int64_t format = 0;
  std::string_view hname, digest;
  uint64_t hversion = 0, position = 0, partitions = 0;
  if (header["cairn_projection_state"].get(format) || format != 1 || header["name"].get(hname) ||
      header["version"].get(hversion) || header["position"].get(position) || header["partitions"].get(partitions) ||
      header["sha256"].get(digest))
    return Status::corruption(fmt::format("{}: the header lacks a field or has an unknown format", path));
  if (hname != name || hversion != version)
    return Status::corruption(fmt::format("{}: holds {} v{}, expected {} v{}", path, hname, hversion, name, version));
  const std::string_view body = all.substr(nl + 1);
  log::Sha256 sha;
  sha.update(body);
  if (log::hex(sha.final()) != digest)
    return Status::corruption(fmt::format("{}: the partition lines do not match the digest in the header", path));
  uint64_t count = 0;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find('\n', at);
    if (end == std::string_view::npos) return Status::corruption(fmt::format("{}: the last line is cut", path));
    if (only_key && !body.substr(at, end - at).starts_with(wanted)) {
      ++count;
      at = end + 1;
      continue;
    }
    simdjson::dom::element line;
    simdjson::dom::array pair;
    if (parser.parse(body.data() + at, end - at).get(line) || line.get(pair) || pair.size() != 2)
      return Status::corruption(fmt::format("{}: partition line {} is not [key, state]", path, count + 1));
    std::string_view key;
    if (pair.at(0).get(key)) return Status::corruption(fmt::format("{}: partition line {} has no key", path, count + 1));
    const std::string state = simdjson::minify(pair.at(1).value_unsafe());
    CAIRN_RETURN_IF_ERROR(engine->restore(key, state));
    ++count;
    at = end + 1;
  }
  if (count != partitions)
    return Status::corruption(fmt::format("{}: {} partitions, the header says {}", path, count, partitions));
  return position;
}

}  // namespace cairn::project
