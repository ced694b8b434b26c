#include "cli/projection_cmds.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cairn/projection.h"
#include "cli/backend.h"

namespace cairn::cli {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

std::string query_string(std::vector<std::pair<std::string, std::string>> params) {
  std::string q;
  for (const auto& [k, v] : params) {
    q += q.empty() ? "?" : "&";
    q += k + "=" + encode_segment(v);
  }
  return q;
}

Result<json> definition_body(const ProjectionArgs& a) {
  json def = json::object();
  if (!a.definition_file.empty()) {
    auto text = read_input(a.definition_file);
    if (!text.ok()) return text.status();
    def = json::parse(*text, nullptr, false);
    if (def.is_discarded() || !def.is_object())
      return Status::invalid_argument(fmt::format("--definition {}: not a JSON object", a.definition_file));
  }
  if (!a.name.empty()) def["name"] = a.name;
  if (a.version) def["version"] = *a.version;
  if (!a.lua_file.empty()) {
    auto code = read_input(a.lua_file);
    if (!code.ok()) return code.status();
    def["lua"] = *code;
  }
  if (!a.partition_by.empty() || !a.partition_field.empty())
    def["partition"] = {{"by", a.partition_by.empty() ? "none" : a.partition_by}, {"field", a.partition_field}};
  if (!a.types.empty() || !a.type_prefix.empty() || !a.stream_prefix.empty() || !a.category.empty())
    def["source"] = {{"types", a.types}, {"type_prefix", a.type_prefix}, {"stream_prefix", a.stream_prefix}, {"category", a.category}};
  if (a.snapshot_every) def["snapshot_every"] = *a.snapshot_every;
  if (a.max_instructions || a.max_memory) {
    json limits = json::object();
    if (a.max_instructions) limits["instructions_per_event"] = *a.max_instructions;
    if (a.max_memory) limits["memory_bytes"] = *a.max_memory;
    def["limits"] = limits;
  }
  if (!a.description.empty()) def["description"] = a.description;
  if (a.resume) def["resume"] = true;
  if (!def.contains("lua")) return Status::invalid_argument("--lua FILE (or --definition FILE with a \"lua\" field) is required");
  return def;
}

void print_status_line(const ojson& s) {
  std::string extra;
  if (s.value("language", "") != "lua") extra += fmt::format("  ({})", s.value("language", ""));
  if (s.contains("fault") && !s["fault"].is_null())
    extra += fmt::format("  FAULT at {}: {}", s["fault"].value("position", 0ull), s["fault"].value("message", ""));
  if (s.contains("rebuild") && !s["rebuild"].is_null())
    extra += fmt::format("  rebuilding {}/{}", s["rebuild"].value("position", 0ull), s["rebuild"].value("target", 0ull));
  std::printf("%s\n", fmt::format("{:<24} v{:<3} {:<6} {:<11} position {:<10} lag {:<8} {:>8.0f} ev/s  {} partitions{}",
                                  s.value("name", ""), s.value("version", 0u), s.value("active", false) ? "active" : "",
                                  s.value("phase", ""), s.value("position", 0ull), s.value("lag", 0ull),
                                  s.value("events_per_second", 0.0), s.value("partitions", 0ull), extra)
                          .c_str());
}

int print_reply(const Reply& rep) {
  std::printf("%s\n", rep.body.c_str());
  return 0;
}

}  // namespace

int cmd_projection(const StoreFlags& flags, const RemoteFlags& remote, const ProjectionArgs& a) {
  auto opened = open_backend(flags, remote);
  if (!opened.ok()) return fail_status(opened.status());
  std::unique_ptr<Backend> backend = std::move(*opened);
  const std::string base = "/v1/projections";
  const std::string one = base + "/" + encode_segment(a.name);
  std::vector<std::pair<std::string, std::string>> vq;
  if (a.version) vq.emplace_back("version", std::to_string(*a.version));
  auto call = [&](std::string_view method, const std::string& target, const std::string& body = "") -> Result<Reply> {
    return backend->call(method, target, body);
  };
  auto run = [&](std::string_view method, const std::string& target, const std::string& body = "") -> int {
    auto rep = call(method, target, body);
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status >= 300) return fail_reply(*rep);
    return print_reply(*rep);
  };

  if (a.action == "list") {
    auto rep = call("GET", base);
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status >= 300) return fail_reply(*rep);
    if (a.json) return print_reply(*rep);
    const ojson j = ojson::parse(rep->body, nullptr, false);
    for (const auto& s : j["projections"]) print_status_line(s);
    return 0;
  }
  if (a.action == "create" || a.action == "deploy") {
    auto def = definition_body(a);
    if (!def.ok()) return fail_status(def.status());
    auto rep = call("POST", a.action == "create" ? base : one + "/versions", def->dump());
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status >= 300) return fail_reply(*rep);
    if (a.json) return print_reply(*rep);
    const ojson s = ojson::parse(rep->body, nullptr, false);
    std::printf("%s %s v%u%s\n", rep->status == 201 ? "registered" : "unchanged", s.value("name", "").c_str(),
                s.value("version", 0u),
                s.value("active", false) ? "" : " (building beside the active version; it takes over once caught up)");
    return 0;
  }
  if (a.action == "show" || a.action == "versions") {
    if (a.action == "show" && !a.json) {
      auto rep = call("GET", one + query_string(vq));
      if (!rep.ok()) return fail_status(rep.status());
      if (rep->status >= 300) return fail_reply(*rep);
      const ojson s = ojson::parse(rep->body, nullptr, false);
      print_status_line(s);
      for (const auto& v : s["versions"])
        std::printf("  v%-3u %-6s %-11s position %llu\n", v.value("version", 0u), v.value("active", false) ? "active" : "",
                    v.value("phase", "").c_str(), static_cast<unsigned long long>(v.value("position", 0ull)));
      if (s["definition"].contains("lua")) std::printf("---- lua\n%s\n", s["definition"]["lua"].get<std::string>().c_str());
      return 0;
    }
    return run("GET", a.action == "show" ? one + query_string(vq) : one + "/versions");
  }
  if (a.action == "state" || a.action == "partitions" || a.action == "digest") {
    std::vector<std::pair<std::string, std::string>> q = vq;
    if (a.action == "state") {
      if (!a.key.empty()) q.emplace_back("key", a.key);
      if (a.as_of) q.emplace_back("as_of", std::to_string(*a.as_of));
      if (!a.as_of_time.empty()) q.emplace_back("as_of_time", a.as_of_time);
      if (a.wait_for) q.emplace_back("wait_for", std::to_string(*a.wait_for));
      if (a.timeout_ms) q.emplace_back("timeout_ms", std::to_string(*a.timeout_ms));
    } else if (a.action == "partitions") {
      if (!a.after.empty()) q.emplace_back("after", a.after);
      if (a.limit) q.emplace_back("limit", std::to_string(*a.limit));
    }
    backend->settle(a.name, a.version.value_or(0));
    return run("GET", one + "/" + a.action + query_string(q));
  }
  if (a.action == "verify") {
    backend->settle(a.name, a.version.value_or(0));
    auto q = vq;
    if (a.max_differences) q.emplace_back("max_differences", std::to_string(*a.max_differences));
    auto rep = call("POST", one + "/verify" + query_string(q));
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status >= 300) return fail_reply(*rep);
    const ojson r = ojson::parse(rep->body, nullptr, false);
    const bool equal = r.value("equal", false);
    if (a.json) {
      print_reply(*rep);
    } else if (equal) {
      std::printf("equal: %s v%u at position %llu, %llu partitions, digest %s\n", r.value("name", "").c_str(),
                  r.value("version", 0u), static_cast<unsigned long long>(r.value("position", 0ull)),
                  static_cast<unsigned long long>(r.value("partitions", 0ull)), r.value("live_digest", "").c_str());
    } else {
      std::printf("DIFFERENT: %s v%u at position %llu: live %s, rebuilt %s\n", r.value("name", "").c_str(),
                  r.value("version", 0u), static_cast<unsigned long long>(r.value("position", 0ull)),
                  r.value("live_digest", "").c_str(), r.value("rebuilt_digest", "").c_str());
      for (const auto& d : r["differences"])
        std::printf("  key %s\n    live:    %s\n    rebuilt: %s\n", d["key"].dump().c_str(), d["live"].dump().c_str(),
                    d["rebuilt"].dump().c_str());
    }
    return equal ? 0 : 1;
  }
  if (a.action == "rebuild") {
    auto rep = call("POST", one + "/rebuild" + query_string(vq));
    if (!rep.ok()) return fail_status(rep.status());
    if (rep->status >= 300) return fail_reply(*rep);
    const bool offline = remote.url.empty();
    if (!a.wait && !offline) {
      std::printf("rebuild of %s started in the background; follow it with: cairn projection show %s\n", a.name.c_str(),
                  a.name.c_str());
      return 0;
    }
    const bool tty = isatty(STDERR_FILENO);
    auto last_line = std::chrono::steady_clock::now();
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      auto st = call("GET", one + "/rebuild" + query_string(vq));
      if (!st.ok()) return fail_status(st.status());
      if (st->status >= 300) return fail_reply(*st);
      const ojson j = ojson::parse(st->body, nullptr, false);
      if (!j.value("running", false)) {
        if (j.contains("fault") && !j["fault"].is_null()) {
          std::fprintf(stderr, "%serror: faulted: the rebuild stopped at position %llu: %s\n", tty ? "\n" : "",
                       static_cast<unsigned long long>(j["fault"].value("position", 0ull)),
                       j["fault"].value("message", "").c_str());
          return 1;
        }
        break;
      }
      const auto& p = j["rebuild"];
      const uint64_t pos = p.value("position", 0ull), target = p.value("target", 0ull);
      if (tty) {
        draw_progress("rebuilding", pos, target, p.value("events_per_second", 0.0), p.value("eta_seconds", 0.0));
      } else if (std::chrono::steady_clock::now() - last_line > std::chrono::seconds(2)) {
        std::fprintf(stderr, "rebuilding: position %llu of %llu\n", static_cast<unsigned long long>(pos),
                     static_cast<unsigned long long>(target));
        last_line = std::chrono::steady_clock::now();
      }
    }
    if (tty) std::fprintf(stderr, "\n");
    std::printf("rebuilt %s; the rebuilt state now answers queries\n", a.name.c_str());
    return 0;
  }
  if (a.action == "activate" || a.action == "drop") {
    if (!a.version) {
      std::fprintf(stderr, "error: %s needs a version\n", a.action.c_str());
      return 2;
    }
    const std::string target = one + "/versions/" + std::to_string(*a.version);
    return a.action == "activate" ? run("POST", target + "/activate") : run("DELETE", target);
  }
  std::fprintf(stderr, "error: unknown projection action '%s'\n", a.action.c_str());
  return 2;
}

}  // namespace cairn::cli
