// The JSON and text forms of a VerifyReport (include/cairn/maintenance.h): one writer for `cairn verify`
// offline, POST /v1/verify in cairnd and `cairn verify --url`, so the three print the same.
// JSON: {"ok","segments","commits","events","bytes","streams","removed_payloads","torn_tail_bytes","chain_head"}
// and, when !ok, "file", "offset", "position" (absent when unknown) and "problem". Stateless, thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "cairn/maintenance.h"
#include "cairn/status.h"

namespace cairn::codec {

std::string verify_report_json(const VerifyReport& r);
// The lines `cairn verify` prints (each ending in a newline).
std::string verify_report_text(const VerifyReport& r);
// The inverse of verify_report_json (for the CLI reading cairnd's answer); kInvalidArgument naming the field.
Result<VerifyReport> verify_report_from_json(std::string_view text);

}  // namespace cairn::codec
