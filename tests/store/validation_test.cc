// Bad input: every case gets an error that names what was wrong, and changes nothing.
#include <gtest/gtest.h>

#include "cairn/store.h"
#include "store/store_helpers.h"
#include "testing/temp_dir.h"

namespace cairn {
namespace {

using testing::json_event;
using testing::one;

struct BadCase {
  const char* name;
  StreamAppend append;
  ErrorCode code;
  const char* mentions;  // the error must name the field
};

TEST(Validation, BadInputIsRefusedWithANamedFieldAndChangesNothing) {
  testing::TempDir dir;
  auto o = testing::small_options(dir.path());
  o.limits.max_event_bytes = 1000;
  o.limits.max_append_bytes = 3000;
  auto s = *open_store(o);
  ASSERT_TRUE(s->append(one("good-1", ExpectedRevision::any(), {json_event("t", "{}")})).ok());
  const std::string head_before = s->stats().chain_head_hex;

  std::vector<BadCase> cases = {
      {"empty stream", one("", ExpectedRevision::any(), {json_event("t", "{}")}), ErrorCode::kInvalidArgument, "stream"},
      {"reserved stream", one("$projections", ExpectedRevision::any(), {json_event("t", "{}")}), ErrorCode::kInvalidArgument, "reserved"},
      {"control char", one("a\x01" "b", ExpectedRevision::any(), {json_event("t", "{}")}), ErrorCode::kInvalidArgument, "control character"},
      {"long stream", one(std::string(257, 'a'), ExpectedRevision::any(), {json_event("t", "{}")}), ErrorCode::kInvalidArgument, "257 bytes"},
      {"bad utf8", one("a\xff", ExpectedRevision::any(), {json_event("t", "{}")}), ErrorCode::kInvalidArgument, "UTF-8"},
      {"no events", one("s-1", ExpectedRevision::any(), {}), ErrorCode::kInvalidArgument, "at least one event"},
      {"empty type", one("s-1", ExpectedRevision::any(), {json_event("", "{}")}), ErrorCode::kInvalidArgument, "events[0].type"},
      {"reserved type", one("s-1", ExpectedRevision::any(), {json_event("$x", "{}")}), ErrorCode::kInvalidArgument, "events[0].type"},
      {"bad json", one("s-1", ExpectedRevision::any(), {json_event("t", "{}"), json_event("t", "{\"a\":")}), ErrorCode::kInvalidArgument, "events[1].data"},
      {"empty json", one("s-1", ExpectedRevision::any(), {json_event("t", "")}), ErrorCode::kInvalidArgument, "events[0].data"},
      {"metadata not object", one("s-1", ExpectedRevision::any(), {json_event("t", "{}", "[1]")}), ErrorCode::kInvalidArgument, "events[0].metadata"},
      {"actor kind", one("s-1", ExpectedRevision::any(), {json_event("t", "{}", R"({"actor":{"kind":"robot","id":"r"}})")}), ErrorCode::kInvalidArgument, "actor.kind"},
      {"actor shape", one("s-1", ExpectedRevision::any(), {json_event("t", "{}", R"({"actor":"me"})")}), ErrorCode::kInvalidArgument, "actor"},
      {"correlation type", one("s-1", ExpectedRevision::any(), {json_event("t", "{}", R"({"correlation_id":5})")}), ErrorCode::kInvalidArgument, "correlation_id"},
      {"event too big", one("s-1", ExpectedRevision::any(), {json_event("t", "\"" + std::string(1200, 'x') + "\"")}), ErrorCode::kLimitExceeded, "limit is 1000"},
      {"append too big", one("s-1", ExpectedRevision::any(), std::vector<EventData>(5, json_event("t", "\"" + std::string(900, 'x') + "\""))), ErrorCode::kLimitExceeded, "limit is 3000"},
  };
  EventData nil = json_event("t", "{}");
  nil.id = Uuid{};
  cases.push_back({"nil id", one("s-1", ExpectedRevision::any(), {nil}), ErrorCode::kInvalidArgument, "nil UUID"});
  EventData dup = json_event("t", "{}");
  dup.id = Uuid::generate_v7();
  cases.push_back({"same id twice", one("s-1", ExpectedRevision::any(), {dup, dup}), ErrorCode::kInvalidArgument, "appears twice"});

  for (auto& c : cases) {
    auto r = s->append(c.append);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), c.code) << c.name << ": " << r.status().to_string();
    EXPECT_NE(r.status().message().find(c.mentions), std::string::npos) << c.name << ": " << r.status().message();
    EXPECT_EQ(s->head_position(), 1u) << c.name;
  }
  // In a multi-stream append the error names which append.
  std::vector<StreamAppend> multi{one("ok-1", ExpectedRevision::any(), {json_event("t", "{}")}),
                                  one("ok-2", ExpectedRevision::any(), {json_event("t", "nope")})};
  auto r = s->append_multi(multi);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("appends[1].events[0].data"), std::string::npos) << r.status().message();
  EXPECT_EQ(s->append_multi({}).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s->head_position(), 1u);
  EXPECT_EQ(s->stats().chain_head_hex, head_before);
  // Binary content is not parsed.
  EventData bin;
  bin.type = "blob";
  bin.content_type = ContentType::kBinary;
  bin.data = "{not json";
  EXPECT_TRUE(s->append(one("s-1", ExpectedRevision::any(), {bin})).ok());
}

TEST(Validation, OptionsAreChecked) {
  testing::TempDir dir;
  EmbeddedOptions o;
  EXPECT_EQ(open_store(o).status().code(), ErrorCode::kInvalidArgument);
  o.dir = dir.path();
  o.segment_size = 100;
  auto r = open_store(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("segment_size"), std::string::npos);
  EmbeddedOptions ro;
  ro.dir = dir.sub("missing");
  ro.read_only = true;
  EXPECT_EQ(open_store(ro).status().code(), ErrorCode::kNotFound);
}

TEST(Validation, UuidAndTimeParsing) {
  EXPECT_TRUE(Uuid::parse("0190c0de-0000-7000-8000-00000000000A").ok());
  EXPECT_FALSE(Uuid::parse("0190c0de00007000800000000000000a").ok());
  EXPECT_FALSE(Uuid::parse("0190c0de-0000-7000-8000-00000000000g").ok());
  const Uuid a = Uuid::generate_v7(), b = Uuid::generate_v7();
  EXPECT_LT(a, b);  // v7 ids generated in one process sort by time and counter
  EXPECT_EQ(Uuid::parse(a.to_string())->bytes, a.bytes);
  auto t = parse_rfc3339_ns("2026-11-26T07:06:27.123456789Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(format_rfc3339_ns(*t), "2026-11-26T07:06:27.123456789Z");
  EXPECT_EQ(*parse_rfc3339_ns("2026-11-26T08:06:27.5+01:00"), *parse_rfc3339_ns("2026-11-26T07:06:27.500Z"));
  EXPECT_FALSE(parse_rfc3339_ns("2026-11-26 nope").ok());
  EXPECT_EQ(stream_category("order-12-a"), "order");
  EXPECT_EQ(stream_category("order"), "order");
}

}  // namespace
}  // namespace cairn
