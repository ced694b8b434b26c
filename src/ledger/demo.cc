#include "ledger/demo.h"

#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cairn::ledger {
namespace {

using json = nlohmann::json;

struct Topic {
  const char* queue;
  const char* question;  // {order} and {name} are filled in
  const char* tag;
};
constexpr Topic kTopics[] = {
    {"billing", "Hi, I was charged twice for order {order}. Can you refund the second charge?", "refund"},
    {"billing", "My invoice for order {order} shows the wrong VAT number. Please fix it.", "invoice"},
    {"shipping", "Order {order} was supposed to arrive on Monday and it still has not shipped.", "delay"},
    {"shipping", "The parcel for order {order} arrived damaged. What can I do?", "damaged"},
    {"technical", "The app crashes every time I open the order history for {order}.", "crash"},
    {"technical", "I cannot log in since the last update; the reset link for my account never arrives.", "login"},
    {"account", "Please change the e-mail address on my account, {name} here.", "profile"},
    {"account", "I want to close my account and get a copy of my data.", "closure"},
};
constexpr const char* kQueues[] = {"billing", "shipping", "technical", "account"};
constexpr const char* kNames[] = {"Ana", "Bilal", "Chen", "Dara", "Eero", "Fatima", "Goran", "Hana", "Ines", "Jonas"};
constexpr const char* kGreetings[] = {"Hello {name},", "Hi {name},", "Dear {name},"};
constexpr const char* kOpeners[] = {
    "thank you for reaching out about order {order}.",
    "thanks for your message about order {order}.",
    "I am sorry to hear about the trouble with order {order}.",
};
constexpr const char* kBodies[] = {
    "I have checked the order and forwarded it to our {queue} team, who will get back to you within two working days.",
    "Our {queue} team is looking into it now and will update you by e-mail as soon as they know more.",
    "I have opened a case with the {queue} team; you do not need to do anything else for now.",
};
constexpr const char* kClosers[] = {"Best regards, the support team.", "Kind regards, Support.", "Thanks for your patience."};
constexpr const char* kHumanAdditions[] = {
    "I have also added a note so that you are not charged again.",
    "As a thank-you for your patience we have added a 10% voucher to your account.",
    "If it is urgent, reply to this e-mail and it will come straight to me.",
};
constexpr const char* kTriageRejectReasons[] = {"wrong_queue", "not_needed"};
constexpr const char* kReplyRejectReasons[] = {"wrong_tone", "wrong_fact"};

struct Model {
  const char* provider;
  const char* request;
  const char* response;
  double accept;  // the share accepted as is, with the newer prompt
};
constexpr Model kModels[] = {
    {"acme", "acme-large", "acme-large-2026-10-01", 0.62},
    {"acme", "acme-fast", "acme-fast-2026-09-15", 0.45},
};

std::string fill(std::string s, const std::string& name, const std::string& order, const std::string& queue = "") {
  auto sub = [&](const std::string& key, const std::string& v) {
    for (size_t p; (p = s.find(key)) != std::string::npos;) s.replace(p, key.size(), v);
  };
  sub("{name}", name);
  sub("{order}", order);
  sub("{queue}", queue);
  return s;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

EventData event(const Uuid& id, const char* type, const json& data, const json& meta) {
  EventData e;
  e.id = id;
  e.type = type;
  e.data = dump(data);
  e.metadata = dump(meta);
  return e;
}

json meta(const std::string& corr, const std::optional<Uuid>& cause, const char* kind, const std::string& actor) {
  json m = {{"correlation_id", corr}, {"actor", {{"kind", kind}, {"id", actor}}}};
  if (cause) m["causation_id"] = cause->to_string();
  return m;
}

}  // namespace

DemoGenerator::DemoGenerator(DemoOptions options) : opt_(options), rng_(options.seed * 0x9E3779B97F4A7C15ULL + 17) {
  if (opt_.clock_ns == 0)
    opt_.clock_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Uuid DemoGenerator::next_id() {
  // Ids from the seed and a counter (not from the RNG, so that adding a field never shifts every id):
  // a version-8 UUID (RFC 9562, custom) holding a fixed prefix, the seed and the counter.
  Uuid u;
  const uint64_t n = ++ids_;
  // Bytes 0-2 "ca12de", then 36 bits of the seed around the version nibble, the variant, 62 bits of counter.
  u.bytes = {0xca, 0x12, 0xde, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  u.bytes[3] = static_cast<uint8_t>(opt_.seed >> 28);
  u.bytes[4] = static_cast<uint8_t>(opt_.seed >> 20);
  u.bytes[5] = static_cast<uint8_t>(opt_.seed >> 12);
  u.bytes[6] = static_cast<uint8_t>(0x80 | ((opt_.seed >> 8) & 0x0f));
  u.bytes[7] = static_cast<uint8_t>(opt_.seed);
  u.bytes[8] = static_cast<uint8_t>(0x80 | ((n >> 56) & 0x3f));
  for (int i = 0; i < 7; ++i) u.bytes[9 + i] = static_cast<uint8_t>(n >> (8 * (6 - i)));
  return u;
}

// Long on purpose: one conversation written as the story it tells (question, skill, proposal, decision,
// feedback, correction), in order; split up, the story and its randomness would be scattered.
StreamAppend DemoGenerator::conversation(uint64_t n) {
  StreamAppend a;
  a.stream = fmt::format("conv-{}-{}", opt_.seed, n);
  a.expected = ExpectedRevision::any();
  const std::string corr = a.stream;
  const std::string name = kNames[roll(std::size(kNames))];
  const std::string order = std::to_string(10000 + roll(90000));
  const Topic& topic = kTopics[roll(std::size(kTopics))];
  const std::string question = fill(topic.question, name, order);
  const std::string customer = fmt::format("customer-{}", roll(5000));
  const std::string reviewer = fmt::format("agent-{}", roll(12));

  const Uuid q_id = next_id();
  a.events.push_back(event(q_id, "ai.question.asked",
                           {{"question", question}, {"question_id", fmt::format("q-{}-{}", opt_.seed, n)}, {"channel", roll(3) ? "email" : "chat"}},
                           meta(corr, std::nullopt, "human", customer)));
  const Uuid path_id = next_id();
  a.events.push_back(event(path_id, "ai.path.chosen",
                           {{"choice", "triage_then_reply"}, {"options", {"triage_then_reply", "faq_answer", "handover"}},
                            {"reason_text", "a request about an order or an account"}},
                           meta(corr, q_id, "ai_agent", "router")));

  // Two proposals: a triage (JSON) and a reply draft (text), each from one of two models and prompt versions.
  std::optional<Uuid> cause = path_id;
  std::string decided_queue = topic.queue;
  for (int step = 0; step < 2; ++step) {
    const bool triage = step == 0;
    const Model& model = kModels[roll(2)];
    const bool newer_prompt = roll(2) == 0;
    const std::string template_id = triage ? "triage" : "reply";
    const std::string template_version = triage ? (newer_prompt ? "4" : "3") : (newer_prompt ? "8" : "7");
    const std::string skill = triage ? "ticket_triage" : "reply_draft";
    const Uuid skill_id = next_id();
    a.events.push_back(event(skill_id, "ai.skill.executed",
                             {{"skill", skill}, {"skill_version", "2026.11"}, {"status", "ok"}, {"duration_ms", 200 + roll(1500)}},
                             meta(corr, cause, "ai_agent", triage ? "triage-agent" : "reply-agent")));
    const std::string proposal_id = fmt::format("demo-{}-{}-{}", opt_.seed, n, triage ? "triage" : "reply");
    json proposed, final_value;
    json alternatives;
    if (triage) {
      // Mostly right; the fast model and the older prompt misroute more often.
      const double misroute = (model.accept < 0.5 ? 0.22 : 0.12) + (newer_prompt ? 0.0 : 0.08);
      const std::string queue = unit() < misroute ? kQueues[roll(4)] : topic.queue;
      const std::string priority = fmt::format("P{}", 2 + roll(3));
      proposed = {{"queue", queue}, {"priority", priority}, {"tags", {topic.tag}}};
      if (roll(4) == 0) alternatives = json::array({{{"queue", kQueues[roll(4)]}, {"priority", priority}, {"tags", {topic.tag}}}});
    } else {
      // One draw per statement: the order of evaluation inside one expression is unspecified.
      const char* greeting = kGreetings[roll(3)];
      const char* opener = kOpeners[roll(3)];
      const char* body = kBodies[roll(3)];
      const char* closer = kClosers[roll(3)];
      proposed = fill(greeting, name, order) + " " + fill(opener, name, order) + " " + fill(body, name, order, decided_queue) +
                 " " + closer;
    }
    json input = {{"messages",
                   {{{"role", "system"}, {"content", triage ? "You route customer support tickets to a queue with a priority."
                                                            : "You write short, friendly replies to customers."}},
                    {{"role", "user"}, {"content", question}}}}};
    const Uuid proposal_ev = next_id();
    json data = {{"proposal_id", proposal_id},
                 {"proposal_kind", triage ? "classification" : "draft"},
                 {"skill", skill},
                 {"gen_ai.provider.name", model.provider},
                 {"gen_ai.request.model", model.request},
                 {"gen_ai.response.model", model.response},
                 {"app.prompt.template_id", template_id},
                 {"app.prompt.template_version", template_version},
                 {"input", input},
                 {"proposed_value", proposed},
                 {"gen_ai.usage.input_tokens", 180 + roll(400)},
                 {"gen_ai.usage.output_tokens", triage ? 20 + roll(30) : 60 + roll(120)},
                 {"app.latency_ms", 300 + roll(2500)},
                 {"app.cost", {{"currency", "USD"}, {"amount", static_cast<double>(20 + roll(400)) / 100000.0}}}};
    if (!alternatives.is_null()) data["alternatives"] = alternatives;
    a.events.push_back(event(proposal_ev, "ai.proposal.made", data, meta(corr, skill_id, "ai_agent", triage ? "triage-agent" : "reply-agent")));
    ++summary_.proposals;

    // The human's decision.
    const double accept = model.accept - (newer_prompt ? 0.0 : 0.12);
    const double r = unit();
    std::string outcome = r < accept ? "accepted" : r < accept + 0.25 ? "edited" : r < 0.95 ? "rejected" : "expired";
    if (triage && outcome == "accepted" && proposed["queue"] != topic.queue) outcome = "edited";  // reviewers fix misroutes
    json d = {{"proposal_id", proposal_id}, {"outcome", outcome}};
    const int64_t review_ms = 4000 + static_cast<int64_t>(roll(triage ? 60000 : 240000));
    if (outcome != "expired") d["presented_at"] = format_rfc3339_ns(opt_.clock_ns - review_ms * 1'000'000);
    if (outcome == "accepted") {
      final_value = proposed;
    } else if (outcome == "edited") {
      if (triage) {
        final_value = proposed;
        const uint64_t what = roll(3);
        if (what == 0 || proposed["queue"] != topic.queue) final_value["queue"] = topic.queue;
        if (what == 1) final_value["priority"] = proposed["priority"] == "P2" ? "P1" : "P2";
        if (what == 2 || roll(3) == 0) final_value["tags"].push_back(roll(2) ? "vip" : "repeat_contact");
        if (final_value == proposed) final_value["priority"] = "P1";
        d["reason_code"] = final_value["queue"] != proposed["queue"] ? "wrong_queue" : "wrong_priority";
      } else {
        std::string text = proposed.get<std::string>();
        const uint64_t what = roll(3);
        if (what == 0) text += std::string(" ") + kHumanAdditions[roll(3)];
        if (what == 1) {
          const size_t p = text.find(" the support team.");
          text = p == std::string::npos ? text + " Warm regards, " + reviewer + "." : text.substr(0, p) + " " + reviewer + ".";
        }
        if (what == 2) {
          const size_t p = text.find(", ");
          text = "Hello " + name + text.substr(p == std::string::npos ? 0 : p);
          text += std::string(" ") + kHumanAdditions[roll(3)];
        }
        final_value = text;
        d["reason_code"] = "wrong_tone";
      }
      d["reason_text"] = "adjusted before sending";
    } else if (outcome == "rejected") {
      d["reason_code"] = triage ? kTriageRejectReasons[roll(2)] : kReplyRejectReasons[roll(2)];
    }
    if (!final_value.is_null()) d["final_value"] = final_value;
    if (triage && !final_value.is_null()) decided_queue = final_value["queue"].get<std::string>();
    const Uuid decision_ev = next_id();
    a.events.push_back(event(decision_ev, "human.decision.recorded", d,
                             outcome == "expired" ? meta(corr, proposal_ev, "system", "review-timeout")
                                                  : meta(corr, proposal_ev, "human", reviewer)));
    ++summary_.decisions;
    if (outcome == "accepted") ++summary_.accepted;
    else if (outcome == "edited") ++summary_.edited;
    else if (outcome == "rejected") ++summary_.rejected;
    else ++summary_.expired;
    if (outcome != "expired" && unit() < opt_.correction_share * 2)  // about half of the candidates are corrected
      decided_.push_back({decision_ev, a.stream, proposal_id, outcome, final_value.is_null() ? "" : dump(final_value), corr});

    // Feedback: end users rate replies; an LLM judge scores some decisions.
    if (!triage && roll(10) < 3) {
      a.events.push_back(event(next_id(), "feedback.given",
                               {{"target", proposal_id}, {"target_kind", "proposal"}, {"name", "user_thumb"},
                                {"value", outcome == "accepted" || outcome == "edited" ? roll(5) != 0 : roll(3) == 0},
                                {"source_kind", "end_user"}},
                               meta(corr, std::nullopt, "human", customer)));
      ++summary_.feedback;
    }
    if (roll(10) < 2) {
      a.events.push_back(event(next_id(), "feedback.given",
                               {{"target", decision_ev.to_string()}, {"target_kind", "event"}, {"name", "helpfulness"},
                                {"value", 1 + roll(5)}, {"source_kind", "llm_judge"}, {"comment", "rubric v2"}},
                               meta(corr, decision_ev, "ai_agent", "judge-v2")));
      ++summary_.feedback;
    }
    cause = decision_ev;
  }
  return a;
}

std::vector<StreamAppend> DemoGenerator::next_conversations(uint64_t n) {
  std::vector<StreamAppend> out;
  while (made_ < opt_.conversations && out.size() < n) {
    out.push_back(conversation(made_++));
    ++summary_.conversations;
    summary_.events += out.back().events.size();
  }
  return out;
}

std::vector<StreamAppend> DemoGenerator::corrections() {
  std::vector<StreamAppend> out;
  if (made_ < opt_.conversations) return out;
  for (size_t i = 0; i < decided_.size(); ++i) {
    if (roll(2)) continue;
    const Decided& d = decided_[i];
    StreamAppend a{d.stream, ExpectedRevision::any(), {}};
    json data = {{"corrects_event_id", d.decision_id.to_string()}};
    if (roll(3) == 0) {
      data["kind"] = "retract";
      data["reason_code"] = "recorded_by_mistake";
      data["reason_text"] = "the decision was recorded on the wrong ticket";
      ++summary_.retractions;
    } else {
      // A change of mind: an edit turns out to be fine as proposed, or a rejection is overturned.
      json replacement = {{"proposal_id", d.proposal_id}};
      if (d.outcome == "rejected") {
        replacement["outcome"] = "rejected";
        replacement["reason_code"] = "wrong_fact";
        replacement["reason_text"] = "rejected for a different reason after review";
      } else {
        replacement["outcome"] = "edited";
        json f = json::parse(d.final_value);
        if (f.is_string()) f = f.get<std::string>() + " We will follow up tomorrow.";
        else f["priority"] = "P1";
        replacement["final_value"] = f;
        replacement["reason_text"] = "the customer called back: more urgent than it looked";
      }
      data["kind"] = "amend";
      data["replacement"] = replacement;
      data["reason_code"] = "late_information";
      ++summary_.amendments;
    }
    a.events.push_back(event(next_id(), "correction.recorded", data, meta(d.correlation, d.decision_id, "human", "team-lead-1")));
    ++summary_.events;
    out.push_back(std::move(a));
  }
  decided_.clear();
  return out;
}

Result<DemoSummary> write_demo(Store& store, const DemoOptions& options) {
  DemoGenerator g(options);
  bool first = true;
  DemoSummary s;
  auto write = [&](std::vector<StreamAppend> batch) -> Status {
    if (batch.empty()) return {};
    auto r = store.append_multi(std::move(batch));
    if (!r.ok()) return r.status();
    if (first) s.first_position = r->streams.front().first_position;
    first = false;
    s.last_position = r->streams.back().last_position;
    return {};
  };
  for (;;) {
    auto batch = g.next_conversations(std::max<uint32_t>(options.conversations_per_append, 1));
    if (batch.empty()) break;
    CAIRN_RETURN_IF_ERROR(write(std::move(batch)));
  }
  auto corr = g.corrections();
  for (size_t i = 0; i < corr.size(); i += 64) {
    std::vector<StreamAppend> part(std::make_move_iterator(corr.begin() + i),
                                   std::make_move_iterator(corr.begin() + std::min(corr.size(), i + 64)));
    CAIRN_RETURN_IF_ERROR(write(std::move(part)));
  }
  const uint64_t fp = s.first_position, lp = s.last_position;
  s = g.summary();
  s.first_position = fp;
  s.last_position = lp;
  return s;
}

}  // namespace cairn::ledger
