// The embedded API in one page: open a store, append with an expected revision, read back, subscribe.
// Build: part of the CMake tree (target cairn_example). Run: ./cairn_example /tmp/cairn-example
#include <cstdio>

#include "cairn/store.h"

int main(int argc, char** argv) {
  cairn::EmbeddedOptions options;
  options.dir = argc > 1 ? argv[1] : "/tmp/cairn-example";
  auto store = cairn::open_store(options);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().to_string().c_str());
    return 1;
  }
  auto& s = **store;

  // Append two events to a new stream; no_stream makes a second run of this example fail the check.
  cairn::StreamAppend a{"conversation-42", cairn::ExpectedRevision::no_stream(), {}};
  a.events.push_back({std::nullopt, "ai.question.asked", cairn::ContentType::kJson,
                      R"({"actor":{"kind":"human","id":"u-7"}})", R"({"question":"What is our refund policy?"})"});
  a.events.push_back({std::nullopt, "ai.proposal.made", cairn::ContentType::kJson, "",
                      R"({"proposal_id":"p-42","proposal_kind":"draft","skill":"policy_answer",)"
                      R"("gen_ai.request.model":"m-1","input":{"question":"What is our refund policy?"},)"
                      R"("proposed_value":"30 days, no questions asked"})"});
  auto r = s.append(std::move(a));
  if (!r.ok()) {
    std::printf("append: %s\n", r.status().to_string().c_str());
  } else {
    std::printf("appended at positions %llu..%llu, stream revision now %llu\n",
                (unsigned long long)r->streams[0].first_position, (unsigned long long)r->streams[0].last_position,
                (unsigned long long)r->streams[0].last_revision);
  }

  // Read the stream forward.
  auto page = s.read_stream("conversation-42", std::nullopt, cairn::Direction::kForward, 100);
  if (page.ok())
    for (const auto& e : page->events)
      std::printf("  %llu %s@%llu %s %s\n", (unsigned long long)e.position, e.stream.c_str(),
                  (unsigned long long)e.revision, e.type.c_str(), e.data.c_str());

  // A subscription catches up from position 0, then would follow live appends.
  auto sub = s.subscribe_all(0, cairn::Filter{{}, "ai.", "", ""});
  if (sub.ok()) {
    auto batch = (*sub)->next(10, std::chrono::milliseconds(100));
    if (batch.ok()) std::printf("subscription delivered %zu events\n", batch->size());
  }
  return s.close().ok() ? 0 : 1;
}
