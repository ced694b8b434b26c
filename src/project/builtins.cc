#include "project/builtins.h"

#include <map>

#include <fmt/format.h>
#include <simdjson.h>

namespace cairn::project {
namespace {

struct StreamStat {
  uint64_t revision = 0;
  uint64_t count = 0;
  uint64_t first_position = 0;
  uint64_t last_position = 0;
  int64_t first_ns = 0;
  int64_t last_ns = 0;
};

std::string stream_stat_json(const StreamStat& s) {
  return fmt::format(
      R"({{"count":{},"first_position":{},"first_time":"{}","last_position":{},"last_time":"{}","revision":{}}})",
      s.count, s.first_position, format_rfc3339_ns(s.first_ns), s.last_position, format_rfc3339_ns(s.last_ns),
      s.revision);
}

Result<StreamStat> stream_stat_from_json(std::string_view text) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  if (p.parse(text.data(), text.size(), true).get(e)) return Status::corruption("$streams: a state is not JSON");
  StreamStat s;
  std::string_view first, last;
  if (e["count"].get(s.count) || e["first_position"].get(s.first_position) || e["last_position"].get(s.last_position) ||
      e["revision"].get(s.revision) || e["first_time"].get(first) || e["last_time"].get(last))
    return Status::corruption("$streams: a state lacks a field");
  auto f = parse_rfc3339_ns(first);
  auto l = parse_rfc3339_ns(last);
  if (!f.ok() || !l.ok()) return Status::corruption("$streams: a state has a bad time");
  s.first_ns = *f;
  s.last_ns = *l;
  return s;
}

constexpr int64_t kHourNs = 3'600'000'000'000;
constexpr int64_t kDayNs = 24 * kHourNs;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Counts of one type or category.
struct Counts {
  uint64_t total = 0;
  std::map<int64_t, uint64_t> hours;  // by hour since the epoch
  std::map<int64_t, uint64_t> days;
};

class TypesEngine final : public ReducerEngine {
 public:
  Status apply(std::string_view, const EventView& e) override {
    const int64_t hour = floor_div(e.recorded_ns, kHourNs);
    const int64_t day = floor_div(e.recorded_ns, kDayNs);
    bump(type_key(e.type), hour, day);
    bump(category_key(stream_category(e.stream)), hour, day);
    return {};
  }

  Result<std::optional<std::string>> state_json(std::string_view key) override {
    auto it = parts_.find(key);
    if (it == parts_.end()) return std::optional<std::string>();
    const Counts& c = it->second;
    std::string out = "{\"days\":{";
    bool first = true;
    for (auto [d, n] : c.days) {
      out += fmt::format("{}\"{}\":{}", first ? "" : ",", format_rfc3339_ns(d * kDayNs).substr(0, 10), n);
      first = false;
    }
    out += "},\"hours\":{";
    first = true;
    for (auto [h, n] : c.hours) {
      out += fmt::format("{}\"{}\":{}", first ? "" : ",", format_rfc3339_ns(h * kHourNs).substr(0, 13), n);
      first = false;
    }
    out += fmt::format("}},\"total\":{}}}", c.total);
    return std::optional<std::string>(std::move(out));
  }

  std::vector<std::string> keys(std::string_view after, size_t limit) const override {
    return map_keys_after(parts_, after, limit);
  }
  size_t partitions() const override { return parts_.size(); }

  Status restore(std::string_view key, std::string_view json) override {
    simdjson::dom::parser p;
    simdjson::dom::element e;
    if (p.parse(json.data(), json.size(), true).get(e)) return Status::corruption("$types: a state is not JSON");
    Counts c;
    simdjson::dom::object hours, days;
    if (e["total"].get(c.total) || e["hours"].get(hours) || e["days"].get(days))
      return Status::corruption("$types: a state lacks a field");
    for (auto [k, v] : hours) {
      auto t = parse_rfc3339_ns(fmt::format("{}:00:00Z", k));
      uint64_t n = 0;
      if (!t.ok() || v.get(n)) return Status::corruption("$types: a bad hour");
      c.hours[floor_div(*t, kHourNs)] = n;
    }
    for (auto [k, v] : days) {
      auto t = parse_rfc3339_ns(fmt::format("{}T00:00:00Z", k));
      uint64_t n = 0;
      if (!t.ok() || v.get(n)) return Status::corruption("$types: a bad day");
      c.days[floor_div(*t, kDayNs)] = n;
    }
    parts_.insert_or_assign(std::string(key), std::move(c));
    return {};
  }

 private:
  std::string_view type_key(std::string_view type) {
    scratch_.assign("type:");
    scratch_.append(type);
    return scratch_;
  }
  std::string_view category_key(std::string_view cat) {
    scratch_.assign("category:");
    scratch_.append(cat);
    return scratch_;
  }
  void bump(std::string_view key, int64_t hour, int64_t day) {
    auto it = parts_.find(key);
    if (it == parts_.end()) it = parts_.emplace(std::string(key), Counts{}).first;
    ++it->second.total;
    ++it->second.hours[hour];
    ++it->second.days[day];
  }
  std::map<std::string, Counts, std::less<>> parts_;
  std::string scratch_;
};

}  // namespace

EngineFactory streams_engine_factory() {
  CppReducer<StreamStat> r;
  r.apply = [](StreamStat& s, const EventView& e) -> Status {
    if (s.count == 0) {
      s.first_position = e.position;
      s.first_ns = e.recorded_ns;
    }
    ++s.count;
    s.revision = e.revision;
    s.last_position = e.position;
    s.last_ns = e.recorded_ns;
    return {};
  };
  r.to_json = stream_stat_json;
  r.from_json = stream_stat_from_json;
  return make_cpp_engine(std::move(r));
}

EngineFactory types_engine_factory() {
  return []() -> Result<std::unique_ptr<ReducerEngine>> { return std::unique_ptr<ReducerEngine>(new TypesEngine()); };
}

}  // namespace cairn::project
