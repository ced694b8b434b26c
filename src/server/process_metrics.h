// The standard process metrics of the Prometheus client libraries (process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds, process_max_fds, process_start_time_seconds), read from
// /proc/self, and cairn_build_info. Linux only. A value that cannot be read is left out, never invented.
// Thread-safe (reads /proc on every call).
#pragma once

#include <string>
#include <string_view>

namespace cairn::server {

// The Prometheus text of those series, each with its HELP and TYPE lines.
std::string process_metrics_text();
// cairn_build_info{version="…"} 1.
std::string build_info_text(std::string_view version);

}  // namespace cairn::server
