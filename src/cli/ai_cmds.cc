#include "cli/ai_cmds.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cairn/ledger.h"
#include "cli/backend.h"
#include "ledger/ai_projections.h"
#include "ledger/demo.h"
#include "log/sha256.h"
#include "server/ledger_api.h"

namespace cairn::cli {
namespace {

using nlohmann::json;

std::string query_string(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    q += q.empty() ? "?" : "&";
    q += k + "=" + encode_segment(v);
  }
  return q;
}

// One GET through the backend; prints an error answer and returns its exit code, or fills out.
int get_json(Backend& b, const std::string& target, json* out) {
  auto rep = b.call("GET", target, "");
  if (!rep.ok()) return fail_status(rep.status());
  if (rep->status != 200) return fail_reply(*rep);
  *out = json::parse(rep->body, nullptr, false);
  if (out->is_discarded()) return fail_status(Status::corruption("the answer is not JSON"));
  return 0;
}

std::string clip(std::string s, size_t n = 72) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  if (s.size() > n) s = s.substr(0, n - 3) + "...";
  return s;
}

std::string value_text(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string actor_text(const json& e) {
  if (!e.contains("metadata") || !e["metadata"].is_object() || !e["metadata"].contains("actor")) return "";
  const json& a = e["metadata"]["actor"];
  return fmt::format("{} {}", a.value("kind", "?"), a.value("id", ""));
}

// What one event says, in a line.
std::string summary(const json& e) {
  const std::string type = e.value("type", "");
  const json d = e.contains("data") && e["data"].is_object() ? e["data"] : json::object();
  if (type == "ai.question.asked") return "\"" + clip(d.value("question", ""), 60) + "\"";
  if (type == "ai.path.chosen") return "chose " + d.value("choice", "");
  if (type == "ai.skill.executed") return "ran " + d.value("skill", "");
  if (type == "ai.proposal.made") {
    std::string prompt = d.value("app.prompt.template_id", "");
    if (d.contains("app.prompt.template_version")) prompt += "@" + d.value("app.prompt.template_version", "");
    return fmt::format("{} by {}{}: {}", d.value("proposal_id", ""),
                       d.value("gen_ai.response.model", d.value("gen_ai.request.model", "")),
                       prompt.empty() ? "" : " with " + prompt,
                       clip(d.contains("proposed_value") ? value_text(d["proposed_value"]) : "", 60));
  }
  if (type == "human.decision.recorded") {
    std::string s = d.value("outcome", "");
    if (d.contains("final_value")) s += ": " + clip(value_text(d["final_value"]), 60);
    if (d.contains("reason_code")) s += " (" + d.value("reason_code", "") + ")";
    return s;
  }
  if (type == "feedback.given")
    return fmt::format("{} = {} on {} ({})", d.value("name", ""), d.contains("value") ? value_text(d["value"]) : "",
                       clip(d.value("target", ""), 40), d.value("source_kind", ""));
  if (type == "correction.recorded")
    return fmt::format("{} {}: {}", d.value("kind", ""), d.value("corrects_event_id", ""),
                       clip(d.value("reason_text", d.value("reason_code", "")), 50));
  return clip(e.contains("data") ? e["data"].dump() : "", 60);
}

std::string line_of(const json& e) {
  const std::string actor = actor_text(e);
  return fmt::format("{} #{} {}{}  {}", e.value("type", ""), e.value("position", 0), e.value("stream", ""),
                     actor.empty() ? "" : "  [" + actor + "]", summary(e));
}

void print_corrections(const json& corrections, const std::string& id, const std::string& indent) {
  for (const auto& c : corrections)
    if (c.value("corrects", "") == id) {
      std::printf("%s  corrected by %s\n", indent.c_str(), line_of(c).c_str());
      print_corrections(corrections, c.value("id", ""), indent + "  ");
    }
}

void print_proposals(const json& proposals) {
  if (proposals.empty()) return;
  std::printf("\nproposals:\n");
  for (const auto& p : proposals) {
    const json& e = p["effective"];
    std::string state = e["proposal_retracted"].get<bool>() ? "proposal retracted"
                        : e["decided"].get<bool>()         ? e["outcome"].get<std::string>()
                        : e["decision_retracted"].get<bool>() ? "undecided (decision retracted)"
                                                              : "undecided";
    std::string extra;
    if (!e["applied_corrections"].empty()) extra += fmt::format(", {} correction(s) applied", e["applied_corrections"].size());
    if (e.contains("delta") && e["delta"].is_object())
      extra += fmt::format(", {} change(s), normalized edit distance {:.2f}", e["delta"]["change_count"].get<uint64_t>(),
                           e["delta"]["normalized_edit_distance"].get<double>());
    std::printf("  %s  %s (%s, %s)%s\n", p.value("proposal_id", "").c_str(), state.c_str(), e.value("model", "").c_str(),
                e.value("prompt_version", "").c_str(), extra.c_str());
    if (e.contains("final_value") && !e["final_value"].is_null())
      std::printf("      final: %s\n", clip(value_text(e["final_value"]), 100).c_str());
  }
}

void print_why(const json& w) {
  const json& chain = w["chain"];
  std::printf("why %s\n\n", w.value("event_id", "").c_str());
  for (size_t i = 0; i < chain.size(); ++i) {
    const std::string indent(i == 0 ? 0 : 3 * (i - 1), ' ');
    const bool target = i + 1 == chain.size();
    std::printf("%s%s%s%s\n", indent.c_str(), i == 0 ? "" : "└─ ", line_of(chain[i]).c_str(), target ? "   <= this event" : "");
    print_corrections(w["corrections"], chain[i].value("id", ""), indent + (i == 0 ? "" : "   "));
  }
  if (w.contains("chain_stop") && w["chain_stop"].is_object()) {
    const json& s = w["chain_stop"];
    std::printf("\n(the chain stops: %s %s %s)\n", s.value("reason", "").c_str(), s.value("relation", "").c_str(),
                s.value("reference", s.value("detail", "")).c_str());
  }
  if (w["correlation"].is_object()) {
    const json& c = w["correlation"];
    std::printf("\ncorrelation %s: %llu event(s)%s\n", c.value("id", "").c_str(),
                static_cast<unsigned long long>(c.value("count", 0)), c.value("truncated", false) ? " (first ones listed)" : "");
    for (const auto& e : c["events"]) std::printf("  %s\n", line_of(e).c_str());
  }
  print_proposals(w["proposals"]);
}

std::string fmt_share(const json& v) { return v.is_null() ? "-" : fmt::format("{:.1f}%", v.get<double>() * 100); }

void print_rates(const json& r) {
  std::vector<std::string> by;
  for (const auto& b : r["by"]) by.push_back(b.get<std::string>());
  std::string head;
  for (const auto& b : by) head += fmt::format("{:<24}", b);
  head += fmt::format("{:>9} {:>8} {:>9} {:>8} {:>9} {:>8} {:>9} {:>10}", "proposals", "decided", "accepted", "edited", "rejected",
                      "expired", "edit dist", "decide ms");
  std::printf("%s\n", head.c_str());
  auto row = [&](const json& g, const std::string& label_cols) {
    std::printf("%s%9llu %8llu %9s %8s %9s %8s %9s %10s\n", label_cols.c_str(),
                static_cast<unsigned long long>(g["proposals"].get<uint64_t>()),
                static_cast<unsigned long long>(g["decided"].get<uint64_t>()), fmt_share(g["acceptance_rate"]).c_str(),
                fmt_share(g["edit_rate"]).c_str(), fmt_share(g["rejection_rate"]).c_str(), fmt_share(g["expiry_rate"]).c_str(),
                g["mean_normalized_edit_distance"].is_null() ? "-" : fmt::format("{:.3f}", g["mean_normalized_edit_distance"].get<double>()).c_str(),
                g["mean_time_to_decision_ms"].is_null() ? "-" : fmt::format("{:.0f}", g["mean_time_to_decision_ms"].get<double>()).c_str());
  };
  for (const auto& g : r["groups"]) {
    if (by.empty()) break;  // one group, the same as the total below
    std::string cols;
    for (const auto& b : by) cols += fmt::format("{:<24}", clip(g["group"].value(b, ""), 23));
    row(g, cols);
  }
  std::string total;
  for (size_t i = 0; i < by.size(); ++i) total += fmt::format("{:<24}", i == 0 ? "total" : "");
  if (!r["groups"].empty() && !by.empty()) row(r["total"], total);
  if (by.empty()) row(r["total"], "");
  std::printf("(the first %llu events of the log; rates are shares of the decided proposals)\n",
              static_cast<unsigned long long>(r.value("position", 0)));
}

// Writes a file whole: temp + fsync + rename, so a reader never sees half of it.
Status write_file(const std::string& path, const std::function<Status(int fd)>& fill) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return Status(ErrorCode::kIoError, fmt::format("{}: cannot create: {}", tmp, std::strerror(errno)));
  Status st = fill(fd);
  if (st.ok() && ::fsync(fd) != 0) st = Status(ErrorCode::kIoError, fmt::format("{}: fsync: {}", tmp, std::strerror(errno)));
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    st = Status(ErrorCode::kIoError, fmt::format("{}: rename: {}", path, std::strerror(errno)));
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

Status write_all(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(ErrorCode::kIoError, fmt::format("{}: write: {}", path, std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

std::vector<std::pair<std::string, std::string>> export_params(const AiArgs& a) {
  return {{"format", a.format}, {"as_of", a.as_of}, {"model", a.model}, {"skill", a.skill},
          {"prompt_version", a.prompt_version}, {"since", a.since}, {"until", a.until}};
}

}  // namespace

int cmd_why(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a) {
  auto b = open_backend(flags, remote);
  if (!b.ok()) return fail_status(b.status());
  (*b)->settle(std::string(ledger::kLineageProjection), 0);
  (*b)->settle(std::string(ledger::kDecisionsProjection), 0);  // why's proposals come from it
  json w;
  if (int rc = get_json(**b, "/v1/why/" + encode_segment(a.event_id), &w)) return rc;
  if (a.json) std::printf("%s\n", w.dump().c_str());
  else print_why(w);
  return 0;
}

int cmd_correlation(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a) {
  auto b = open_backend(flags, remote);
  if (!b.ok()) return fail_status(b.status());
  (*b)->settle(std::string(ledger::kLineageProjection), 0);
  json c;
  if (int rc = get_json(**b, "/v1/correlations/" + encode_segment(a.correlation_id) + query_string({{"as_of", a.as_of}}), &c))
    return rc;
  if (a.json) {
    std::printf("%s\n", c.dump().c_str());
    return 0;
  }
  std::printf("correlation %s as of %s: %llu event(s)%s\n", c.value("correlation_id", "").c_str(), c["as_of"].dump().c_str(),
              static_cast<unsigned long long>(c.value("count", 0)), c.value("truncated", false) ? " (first ones listed)" : "");
  for (const auto& e : c["events"]) {
    std::printf("  %s\n", line_of(e).c_str());
    for (const auto& id : e["corrected_by"])
      for (const auto& corr : c["corrections"])
        if (corr["id"] == id) std::printf("      corrected by %s\n", line_of(corr).c_str());
  }
  print_proposals(c["proposals"]);
  return 0;
}

int cmd_ai_rates(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a) {
  auto b = open_backend(flags, remote);
  if (!b.ok()) return fail_status(b.status());
  (*b)->settle(std::string(ledger::kDecisionsProjection), 0);
  std::string by;
  for (const auto& x : a.by) by += (by.empty() ? "" : ",") + x;
  json r;
  if (int rc = get_json(**b, "/v1/ai/rates" + query_string({{"by", by}, {"since", a.since}, {"until", a.until}, {"model", a.model},
                                                             {"skill", a.skill}, {"prompt_version", a.prompt_version}}),
                        &r))
    return rc;
  if (a.json) std::printf("%s\n", r.dump().c_str());
  else print_rates(r);
  return 0;
}

int cmd_ai_export(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a) {
  if (a.out.empty()) return fail_status(Status::invalid_argument("--out: required, the file to write"));
  const std::string manifest_path = a.manifest.empty() ? a.out + ".manifest.json" : a.manifest;
  std::string manifest_json;
  if (remote.url.empty()) {
    // Offline: the export code runs here, streaming straight into the file.
    auto b = open_backend(flags, remote);
    if (!b.ok()) return fail_status(b.status());
    Store& store = *(*b)->store();
    server::Target t;
    for (auto& kv : export_params(a))
      if (!kv.second.empty()) t.query.push_back(kv);
    auto q = server::export_query(t, store.head_position());
    if (!q.ok()) return fail_status(q.status());
    std::optional<Result<ExportManifest>> m;
    Status st = write_file(a.out, [&](int fd) -> Status {
      Status io;
      m = ledger_export(store, *q, [&](std::string_view chunk) {
        io = write_all(fd, chunk, a.out);
        return io.ok();
      });
      if (!io.ok()) return io;
      return m->ok() ? Status() : m->status();
    });
    if (!st.ok()) return fail_status(st);
    manifest_json = (*m)->to_json();
  } else {
    // Remote: the manifest first (it fixes the position), then the rows at that position; the file must
    // hash to what the manifest says.
    RemoteFlags r = remote;
    auto params = export_params(a);
    auto man = http_call(r, "GET", "/v1/ai/export/manifest" + query_string(params));
    if (!man.ok()) return fail_status(man.status());
    if (man->status != 200) return fail_reply(*man);
    json mj = json::parse(man->body, nullptr, false);
    if (mj.is_discarded()) return fail_status(Status::corruption("the manifest is not JSON"));
    for (auto& kv : params)
      if (kv.first == "as_of") kv.second = std::to_string(mj["as_of_position"].get<uint64_t>());
    Result<Reply> rows = Reply{200, ""};
    if (mj["bytes"].get<uint64_t>() > 0) {  // (an empty log has no position to ask at)
      rows = http_call(r, "GET", "/v1/ai/export" + query_string(params));
      if (!rows.ok()) return fail_status(rows.status());
      if (rows->status != 200) return fail_reply(*rows);
    }
    log::Sha256 sha;
    sha.update(rows->body);
    const std::string got = log::hex(sha.final());
    if (got != mj["sha256"].get<std::string>())
      return fail_status(Status::corruption(fmt::format("the export received hashes to {}, the manifest says {} (cut short?)",
                                                        got, mj["sha256"].get<std::string>())));
    Status st = write_file(a.out, [&](int fd) { return write_all(fd, rows->body, a.out); });
    if (!st.ok()) return fail_status(st);
    manifest_json = man->body;
  }
  Status st = write_file(manifest_path, [&](int fd) { return write_all(fd, manifest_json + "\n", manifest_path); });
  if (!st.ok()) return fail_status(st);
  if (a.json) {
    std::printf("%s\n", manifest_json.c_str());
  } else {
    json m = json::parse(manifest_json);
    std::printf("wrote %llu %s row(s) to %s as of position %llu (sha256 %s); manifest %s\n",
                static_cast<unsigned long long>(m["rows"].get<uint64_t>()), m["format"].get<std::string>().c_str(), a.out.c_str(),
                static_cast<unsigned long long>(m["as_of_position"].get<uint64_t>()), m["sha256"].get<std::string>().c_str(),
                manifest_path.c_str());
  }
  return 0;
}

int cmd_ai_demo(const StoreFlags& flags, const RemoteFlags& remote, const AiArgs& a) {
  ledger::DemoOptions o;
  o.seed = a.seed;
  o.conversations = a.conversations;
  if (!a.clock.empty()) {
    auto t = parse_rfc3339_ns(a.clock);
    if (!t.ok()) return fail_status(Status::invalid_argument(fmt::format("--clock: '{}' is not an RFC 3339 time", a.clock)));
    o.clock_ns = *t;
  }
  ledger::DemoSummary s;
  if (remote.url.empty()) {
    auto b = open_backend(flags, remote);
    if (!b.ok()) return fail_status(b.status());
    auto r = ledger::write_demo(*(*b)->store(), o);
    if (!r.ok()) return fail_status(r.status());
    s = *r;
  } else {
    // Over HTTP: the same appends as transactions.
    ledger::DemoGenerator g(o);
    auto send = [&](const std::vector<StreamAppend>& batch) -> int {
      json appends = json::array();
      for (const auto& ap : batch) {
        json events = json::array();
        for (const auto& e : ap.events)
          events.push_back({{"id", e.id->to_string()}, {"type", e.type}, {"data", json::parse(e.data)}, {"metadata", json::parse(e.metadata)}});
        appends.push_back({{"stream", ap.stream}, {"expected_revision", "any"}, {"events", std::move(events)}});
      }
      auto rep = http_call(remote, "POST", "/v1/transactions", json{{"appends", appends}}.dump());
      if (!rep.ok()) return fail_status(rep.status());
      if (rep->status != 200 && rep->status != 201) return fail_reply(*rep);
      return 0;
    };
    for (;;) {
      auto batch = g.next_conversations(32);
      if (batch.empty()) break;
      if (int rc = send(batch)) return rc;
    }
    auto corr = g.corrections();
    for (size_t i = 0; i < corr.size(); i += 64) {
      std::vector<StreamAppend> part(corr.begin() + i, corr.begin() + std::min(corr.size(), i + 64));
      if (int rc = send(part)) return rc;
    }
    s = g.summary();
  }
  json j = {{"seed", a.seed}, {"conversations", s.conversations}, {"events", s.events}, {"proposals", s.proposals},
            {"decisions", s.decisions}, {"accepted", s.accepted}, {"edited", s.edited}, {"rejected", s.rejected},
            {"expired", s.expired}, {"feedback", s.feedback}, {"amendments", s.amendments}, {"retractions", s.retractions}};
  if (a.json) std::printf("%s\n", j.dump().c_str());
  else
    std::printf("wrote %llu conversations: %llu events, %llu proposals (%llu accepted, %llu edited, %llu rejected, %llu expired), "
                "%llu feedback, %llu amendments, %llu retractions (seed %llu)\n",
                (unsigned long long)s.conversations, (unsigned long long)s.events, (unsigned long long)s.proposals,
                (unsigned long long)s.accepted, (unsigned long long)s.edited, (unsigned long long)s.rejected,
                (unsigned long long)s.expired, (unsigned long long)s.feedback, (unsigned long long)s.amendments,
                (unsigned long long)s.retractions, (unsigned long long)a.seed);
  return 0;
}

}  // namespace cairn::cli
