#include "cli/pg_cmds.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "cairn/postgres.h"
#include "base/text.h"
#include "cli/progress.h"
#include "codec/event_json.h"

namespace cairn::cli {
namespace {

int fail(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
  return st.code() == ErrorCode::kInvalidArgument ? 2 : 1;
}

int print_report(const Result<PgMigrateReport>& r, bool roles) {
  if (!r.ok()) return fail(r.status());
  if (roles) {
    for (const auto& line : r->roles) std::printf("%s\n", line.c_str());
    if (r->roles.empty()) std::printf("roles: nothing to change\n");
  }
  if (r->applied.empty()) {
    std::printf("schema at version %d: nothing to apply\n", r->to_version);
    return 0;
  }
  for (const auto& m : r->applied) std::printf("applied %s\n", m.c_str());
  std::printf("schema at version %d (was %d)\n", r->to_version, r->from_version);
  return 0;
}

}  // namespace

int cmd_pg_init(const PgArgs& a) {
  PgInitOptions o;
  o.app_role = a.app_role;
  o.reader_role = a.reader_role;
  if (const char* pw = std::getenv("CAIRN_PG_APP_PASSWORD")) o.app_password = pw;
  // The reader login gets the same password (docs/scaling.md) unless CAIRN_PG_READER_PASSWORD gives it its
  // own; an empty variable counts as unset.
  o.reader_password = o.app_password;
  if (const char* pw = std::getenv("CAIRN_PG_READER_PASSWORD"); pw && *pw) o.reader_password = pw;
  return print_report(pg_init(a.admin, o), true);
}

int cmd_pg_migrate(const PgArgs& a) { return print_report(pg_migrate(a.admin), false); }

int cmd_pg_verify(const std::string& backend, bool json) {
  Progress progress("verifying");
  auto r = pg_verify(backend, [&](uint64_t done, uint64_t total) { progress.update(done, total, "events"); });
  progress.done();
  if (!r.ok()) return fail(r.status());
  if (json) {
    std::string out = fmt::format(R"({{"ok":{},"backend":"postgres","seals":{},"events":{},"bytes":{},"streams":{},"chain_head":"{}")",
                                  r->ok, r->segments, r->events, r->bytes, r->streams, r->chain_head_hex);
    if (!r->ok) {
      if (r->position) out += fmt::format(",\"position\":{}", *r->position);
      out += ",\"problem\":";
      base::append_json_string(out, r->problem);
    }
    out += "}";
    std::puts(out.c_str());
  } else if (r->ok) {
    std::printf("ok: %llu seals, %llu events, %llu streams, %llu payload bytes\nchain head (last seal): %s\n",
                (unsigned long long)r->segments, (unsigned long long)r->events, (unsigned long long)r->streams,
                (unsigned long long)r->bytes, r->chain_head_hex.c_str());
  } else {
    std::printf("BROKEN at position %llu: %s\n", (unsigned long long)r->position.value_or(0), r->problem.c_str());
    std::printf("verified before it: %llu seals, %llu events; chain head there: %s\n", (unsigned long long)r->segments,
                (unsigned long long)r->events, r->chain_head_hex.c_str());
  }
  return r->ok ? 0 : 1;
}

}  // namespace cairn::cli
