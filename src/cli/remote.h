// The `cairn` commands against a running cairnd (--url / CAIRN_URL, --key / CAIRN_KEY) instead of a data
// directory: the same arguments and the same output formats as offline. Plain HTTP (cairnd has no TLS yet).
// Exit codes as offline: 0 done, 1 the operation failed, 2 bad usage or input (HTTP 400/413/415).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"

namespace cairn::cli {

struct RemoteFlags {
  std::string url;  // http://HOST:PORT
  std::string key;
};

// One HTTP exchange with cairnd; method is "GET", "POST", "DELETE"; a non-empty body is sent as JSON.
struct Reply {
  unsigned status = 0;
  std::string body;
};
Result<Reply> http_call(const RemoteFlags& r, std::string_view method, const std::string& target,
                        const std::string& body = "");
// Prints an error answer (or a Status) the way offline errors are printed; returns the exit code.
int fail_reply(const Reply& rep);
int fail_status(const Status& st);
// %-escapes one path segment.
std::string encode_segment(std::string_view s);

int remote_append(const RemoteFlags& r, const AppendArgs& a);
int remote_read(const RemoteFlags& r, const ReadArgs& a);
int remote_tail(const RemoteFlags& r, const ReadArgs& a);
int remote_stats(const RemoteFlags& r, bool json);
// POST /v1/verify: prints what `cairn verify` prints offline; exit 1 when the log is broken.
int remote_verify(const RemoteFlags& r, bool json);
int remote_streams(const RemoteFlags& r, const std::string& prefix, std::optional<uint64_t> limit, bool json);

struct KeyArgs {
  std::string role;
  std::vector<std::string> streams;
  std::string name;
  std::string id;
  bool json = false;
};
int remote_keys_create(const RemoteFlags& r, const KeyArgs& k);
int remote_keys_list(const RemoteFlags& r, const KeyArgs& k);
int remote_keys_revoke(const RemoteFlags& r, const KeyArgs& k);

}  // namespace cairn::cli
