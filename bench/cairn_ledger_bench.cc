// cairn-ledger-bench: the AI ledger over a large history (bench/run.sh runs it; results in RESULTS.md).
//
// Builds a store with the demo generator (ledger/demo.h) holding N decisions (two per conversation, with
// feedback and late corrections; durability none: the build is not what is measured), plus one 20-event
// causal chain. Then measures, printing one JSON line per result:
//   ledger-export     ledger_export in each format over the whole history: rows/s, decisions/s, MB/s
//   ledger-catch-up   the built-in projections $ai.decisions and $ai.lineage from position 0 to the head
//   ledger-rates      ledger_rates by model, prompt_version, skill and day: p50/p99 of 30 queries
//   ledger-why        GET /v1/why/{id} of the chain's last event through cairnd's HTTP stack in this process,
//                     one keep-alive connection: p50/p99 of 300 requests
// With --pg-dump FILE it also writes the proposals, decisions and corrections (and the chain) as a
// PostgreSQL COPY text file, for the SQL baseline in run.sh.
// Usage: cairn-ledger-bench --dir DIR [--decisions N] [--machine JSON] [--pg-dump FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>  // before Boost 1.74's asio, whose awaitable.hpp uses std::exchange without it
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "bench_util.h"
#include "cairn/ledger.h"
#include "cairn/projection.h"
#include "cairn/store.h"
#include "ledger/ai_projections.h"
#include "ledger/demo.h"
#include "server/api.h"
#include "server/http_server.h"
#include "server/keys.h"

namespace {

using cairn::bench::Clock;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

using cairn::bench::fail;
using cairn::bench::secs;

struct Args {
  std::string dir;
  uint64_t decisions = 1'000'000;
  std::string machine = "null";
  std::string pg_dump;
};

std::pair<double, double> p50_p99(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  return {at(0.50), at(0.99)};
}

// COPY text format: backslash, tab, newline and carriage return escaped.
void copy_field(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
}

// question -> 9 x (skill -> proposal) -> decision: 20 events, each caused by the one before.
cairn::Uuid write_chain(cairn::Store& store) {
  auto append = [&](const std::string& type, const std::string& data, const std::optional<cairn::Uuid>& cause) {
    cairn::EventData e;
    e.id = cairn::Uuid::generate_v7();
    e.type = type;
    e.data = data;
    e.metadata = cause ? fmt::format(R"({{"correlation_id":"case-bench","causation_id":"{}"}})", cause->to_string())
                       : R"({"correlation_id":"case-bench"})";
    auto r = store.append(cairn::StreamAppend{"case-bench", cairn::ExpectedRevision::any(), {e}});
    if (!r.ok()) fail("chain: " + r.status().to_string());
    return *e.id;
  };
  cairn::Uuid last = append("ai.question.asked", R"({"question":"why?"})", std::nullopt);
  for (int i = 0; i < 9; ++i) {
    last = append("ai.skill.executed", fmt::format(R"({{"skill":"s{}"}})", i), last);
    last = append("ai.proposal.made",
                  fmt::format(R"({{"proposal_id":"bench-chain-{}","proposal_kind":"plan","skill":"s","gen_ai.request.model":"m",)"
                              R"("input":"x","proposed_value":{{"step":{}}}}})",
                              i, i),
                  last);
  }
  return append("human.decision.recorded", R"({"proposal_id":"bench-chain-8","outcome":"edited","final_value":{"step":80}})", last);
}

void wait_for(cairn::Projections& p, std::string_view name, uint64_t head) {
  auto s = p.state(name, std::string("-"), 0, head - 1, std::chrono::minutes(30));
  if (!s.ok()) fail(fmt::format("{}: {}", name, s.status().to_string()));
}

}  // namespace

int main(int argc, char** argv) {
  cairn::bench::program_name() = "cairn-ledger-bench";
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto v = [&]() -> std::string {
      if (i + 1 >= argc) fail("missing value for " + k);
      return argv[++i];
    };
    if (k == "--dir") a.dir = v();
    else if (k == "--decisions") a.decisions = std::stoull(v());
    else if (k == "--machine") a.machine = v();
    else if (k == "--pg-dump") a.pg_dump = v();
    else fail("unknown argument " + k);
  }
  if (a.dir.empty()) fail("--dir is required");
  std::filesystem::remove_all(a.dir);
  const std::string date = cairn::bench::utc_now();

  cairn::EmbeddedOptions o;
  o.dir = a.dir + "/store";
  o.durability = cairn::Durability::kNone;
  auto opened = cairn::open_store(o);
  if (!opened.ok()) fail("open: " + opened.status().to_string());
  cairn::Store& store = **opened;

  // The history: two decisions per conversation.
  auto t0 = Clock::now();
  cairn::ledger::DemoOptions demo;
  demo.seed = 2026;
  demo.conversations = a.decisions / 2;
  demo.clock_ns = 1'795'000'000'000'000'000;
  demo.conversations_per_append = 64;
  auto summary = cairn::ledger::write_demo(store, demo);
  if (!summary.ok()) fail("demo: " + summary.status().to_string());
  const cairn::Uuid chain_last = write_chain(store);
  const uint64_t head = store.head_position();
  std::fprintf(stderr, "cairn-ledger-bench: built %llu events (%llu decisions) in %.1f s\n", (unsigned long long)head,
               (unsigned long long)summary->decisions, secs(Clock::now() - t0));

  if (!a.pg_dump.empty()) {
    FILE* f = std::fopen(a.pg_dump.c_str(), "w");
    if (!f) fail("cannot write " + a.pg_dump);
    cairn::Filter filter;
    filter.types = {"ai.proposal.made", "human.decision.recorded", "correction.recorded", "ai.question.asked", "ai.skill.executed"};
    std::string line;
    auto st = store.scan_all(0, filter, [&](const cairn::EventView& e) {
      // Questions and skills only of the chain (the why baseline); all proposals, decisions, corrections.
      if ((e.type == "ai.question.asked" || e.type == "ai.skill.executed") && e.stream != "case-bench") return true;
      line = fmt::format("{}\t{}\t{}\t", e.position, e.id.to_string(), e.type);
      copy_field(line, e.stream);
      line += '\t';
      copy_field(line, e.metadata.empty() ? std::string_view("{}") : e.metadata);
      line += '\t';
      copy_field(line, e.data);
      line += '\n';
      return std::fwrite(line.data(), 1, line.size(), f) == line.size();
    });
    if (!st.ok() || std::fclose(f) != 0) fail("pg dump: " + st.to_string());
  }

  auto emit = [&](const std::string& body) {
    std::printf("{\"system\":\"cairn\",%s,\"decisions\":%llu,\"events\":%llu,\"durability\":\"none (the build); the measured work only reads\","
                "\"machine\":%s,\"date\":\"%s\"}\n",
                body.c_str(), (unsigned long long)summary->decisions, (unsigned long long)head, a.machine.c_str(), date.c_str());
    std::fflush(stdout);
  };

  // Exports: each format twice (the second run must give the same bytes); the faster run is reported.
  for (cairn::ExportFormat f : {cairn::ExportFormat::kSft, cairn::ExportFormat::kPreference, cairn::ExportFormat::kKto,
                                cairn::ExportFormat::kOpenAiSft}) {
    cairn::ExportQuery q;
    q.format = f;
    q.as_of = head - 1;
    double best = 1e30;
    std::string sha;
    cairn::ExportManifest m;
    for (int run = 0; run < 2; ++run) {
      const auto s = Clock::now();
      auto r = cairn::ledger_export(store, q, [](std::string_view) { return true; });
      const double t = secs(Clock::now() - s);
      if (!r.ok()) fail("export: " + r.status().to_string());
      if (run == 1 && r->sha256_hex != sha) fail("export: two runs at one position differ");
      sha = r->sha256_hex;
      m = *r;
      best = std::min(best, t);
    }
    const uint64_t decided = m.accepted + m.edited + m.rejected + m.expired;
    emit(fmt::format("\"workload\":\"ledger-export\",\"format\":\"{}\",\"rows\":{},\"decided\":{},\"bytes\":{},\"seconds\":{:.3f},"
                     "\"rows_per_s\":{:.0f},\"decisions_per_s\":{:.0f},\"MB_per_s\":{:.1f},\"stat\":\"best of 2 (same SHA-256)\","
                     "\"note\":\"reads the log from position 0, folds, writes JSONL and hashes it; output discarded\"",
                     cairn::export_format_name(f), m.rows, decided, m.bytes, best, m.rows / best, decided / best, m.bytes / best / 1e6));
  }

  // The built-in projections from position 0.
  cairn::ProjectionsOptions po;
  po.dir = a.dir + "/projections";
  const auto c0 = Clock::now();
  auto projections = cairn::open_projections(store, po);
  if (!projections.ok()) fail("projections: " + projections.status().to_string());
  cairn::Projections& p = **projections;
  wait_for(p, cairn::ledger::kDecisionsProjection, head);
  const double decisions_s = secs(Clock::now() - c0);
  wait_for(p, cairn::ledger::kLineageProjection, head);
  const double lineage_s = secs(Clock::now() - c0);
  emit(fmt::format("\"workload\":\"ledger-catch-up\",\"seconds_decisions\":{:.2f},\"seconds_lineage\":{:.2f},\"events_per_s\":{:.0f},"
                   "\"note\":\"$ai.decisions, $ai.lineage, $streams and $types catch up together from position 0 on 2 cores\"",
                   decisions_s, lineage_s, head / lineage_s));

  // Rates.
  {
    std::vector<double> ms;
    cairn::RatesQuery q;
    q.by = {"model", "prompt_version", "skill", "day"};
    size_t groups = 0;
    for (int i = 0; i < 30; ++i) {
      const auto s = Clock::now();
      auto r = cairn::ledger_rates(p, q);
      ms.push_back(secs(Clock::now() - s) * 1000);
      if (!r.ok()) fail("rates: " + r.status().to_string());
      groups = std::count(r->begin(), r->end(), '{');
    }
    auto [p50, p99] = p50_p99(ms);
    emit(fmt::format("\"workload\":\"ledger-rates\",\"by\":\"model,prompt_version,skill,day\",\"queries\":30,\"p50_ms\":{:.2f},"
                     "\"p99_ms\":{:.2f},\"json_objects\":{}",
                     p50, p99, groups));
  }

  // why over HTTP: cairnd's API and HTTP server in this process, a client on one keep-alive connection.
  {
    std::filesystem::create_directories(a.dir + "/keys");
    auto keys = cairn::server::KeyStore::open(a.dir + "/keys");
    if (!keys.ok()) fail("keys: " + keys.status().to_string());
    auto admin = (*keys)->create(cairn::server::Role::kAdmin, {}, "bench");
    if (!admin.ok()) fail("key: " + admin.status().to_string());
    boost::asio::io_context ioc;
    cairn::server::Api api(store, **keys, cairn::server::ApiOptions{}, &p);
    cairn::server::HttpServer server(ioc, cairn::server::HttpLimits{},
                                     [&api](cairn::server::Request req, cairn::server::Respond respond,
                                            cairn::server::RespondStream respond_stream) {
                                       api.handle(std::move(req), std::move(respond), std::move(respond_stream));
                                     });
    if (auto st = server.start("127.0.0.1", 0); !st.ok()) fail("http: " + st.to_string());
    std::thread io([&] { ioc.run(); });
    boost::asio::io_context cio;
    tcp::resolver resolver(cio);
    beast::tcp_stream stream(cio);
    stream.connect(resolver.resolve("127.0.0.1", std::to_string(server.port())));
    const std::string target = "/v1/why/" + chain_last.to_string();
    std::vector<double> ms;
    size_t chain = 0, bytes = 0;
    for (int i = 0; i < 320; ++i) {
      bhttp::request<bhttp::string_body> req{bhttp::verb::get, target, 11};
      req.set(bhttp::field::host, "127.0.0.1");
      req.set(bhttp::field::authorization, "Bearer " + admin->second);
      req.keep_alive(true);
      const auto s = Clock::now();
      bhttp::write(stream, req);
      beast::flat_buffer buf;
      bhttp::response<bhttp::string_body> res;
      bhttp::read(stream, buf, res);
      const double t = secs(Clock::now() - s) * 1000;
      if (res.result_int() != 200) fail("why: HTTP " + std::to_string(res.result_int()) + " " + res.body());
      if (i >= 20) ms.push_back(t);  // the first ones warm the caches
      bytes = res.body().size();
      chain = 0;
      for (size_t pos = 0; (pos = res.body().find("\"caused_by\"", pos)) != std::string::npos; ++pos) ++chain;
    }
    if (chain != 20) fail(fmt::format("why: the chain has {} events, not 20", chain));
    auto [p50, p99] = p50_p99(ms);
    emit(fmt::format("\"workload\":\"ledger-why\",\"chain_last_id\":\"{}\",\"chain_events\":{},\"answer_bytes\":{},\"requests\":300,\"p50_ms\":{:.2f},\"p99_ms\":{:.2f},"
                     "\"note\":\"GET /v1/why/{{id}} through cairnd's HTTP server in this process, one keep-alive connection\"",
                     chain_last.to_string(), chain, bytes, p50, p99));
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    server.stop();
    api.begin_shutdown();
    ioc.stop();
    io.join();
  }
  if (auto st = p.close(); !st.ok()) fail("close projections: " + st.to_string());
  if (auto st = store.close(); !st.ok()) fail("close: " + st.to_string());
  std::filesystem::remove_all(a.dir);
  return 0;
}
