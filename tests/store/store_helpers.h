// Small builders shared by the store tests.
#pragma once

#include <string>
#include <vector>

#include "cairn/store.h"

namespace cairn::testing {

inline EventData json_event(std::string type, std::string data, std::string metadata = "") {
  EventData e;
  e.type = std::move(type);
  e.data = std::move(data);
  e.metadata = std::move(metadata);
  return e;
}

inline StreamAppend one(std::string stream, ExpectedRevision expected, std::vector<EventData> events) {
  return StreamAppend{std::move(stream), expected, std::move(events)};
}

inline EmbeddedOptions small_options(const std::string& dir) {
  EmbeddedOptions o;
  o.dir = dir;
  o.durability = Durability::kNone;  // these tests check logic, not the disk; crash tests use fsync
  o.segment_size = 8192;             // many segments, many rolls
  o.index_memtable_events = 64;      // many index runs and merges
  return o;
}

}  // namespace cairn::testing
