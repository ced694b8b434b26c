// The route table (src/server/routes.cc) and docs/openapi.yaml name the same operations: every method of
// every route is documented, and every documented operation has a route. A "*" segment of a route matches
// a "{param}" segment of the document. The document is read with a small line reader of its `paths:`
// section (two-space-indented paths, four-space-indented methods), which is the shape the file keeps.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "server/routes.h"

namespace {

using Operation = std::pair<std::string, std::string>;  // method (upper case), path with "*" for parameters

// "/v1/streams/{stream}" -> "/v1/streams/*"
std::string normalize(const std::string& path) {
  std::string out;
  std::stringstream ss(path.substr(1));
  std::string seg;
  while (std::getline(ss, seg, '/')) out += "/" + (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}' ? "*" : seg);
  return out.empty() ? "/" : out;
}

std::set<Operation> documented() {
  std::ifstream in(std::string(CAIRN_SOURCE_DIR) + "/docs/openapi.yaml");
  EXPECT_TRUE(in) << "cannot read docs/openapi.yaml under " << CAIRN_SOURCE_DIR;
  static const std::set<std::string> kMethods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"};
  std::set<Operation> ops;
  bool in_paths = false;
  std::string path, line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line[0] != ' ' && line[0] != '#') {  // a top-level key
      in_paths = line == "paths:";
      continue;
    }
    if (!in_paths) continue;
    if (line.starts_with("  /") && line.back() == ':') {
      path = normalize(line.substr(2, line.size() - 3));
    } else if (line.starts_with("    ") && line[4] != ' ' && line.back() == ':' && !path.empty()) {
      std::string m = line.substr(4, line.size() - 5);
      if (kMethods.count(m)) {
        for (char& ch : m) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        ops.insert({m, path});
      }
    }
  }
  return ops;
}

std::set<Operation> routed() {
  std::set<Operation> ops;
  for (const auto& r : cairn::server::routes()) {
    std::string path;
    for (auto seg : r.pattern) path += "/" + std::string(seg);
    for (const auto& m : r.methods) {
      const auto name = boost::beast::http::to_string(m.verb);
      ops.insert({std::string(name.data(), name.size()), path});
    }
  }
  return ops;
}

// Guards the reader itself: a reader that found nothing would make the comparisons below vacuous.
TEST(ServerRoutesDoc, TheDocumentIsRead) {
  const auto docs = documented();
  EXPECT_GE(docs.size(), 30u);
  EXPECT_TRUE(docs.count({"POST", "/v1/streams/*"}));
}

TEST(ServerRoutesDoc, EveryRouteIsDocumented) {
  const auto docs = documented();
  for (const auto& op : routed()) EXPECT_TRUE(docs.count(op)) << op.first << " " << op.second << " is not in docs/openapi.yaml";
}

TEST(ServerRoutesDoc, EveryDocumentedOperationHasARoute) {
  const auto routes = routed();
  for (const auto& op : documented())
    EXPECT_TRUE(routes.count(op)) << op.first << " " << op.second << " is documented but cairnd has no such route";
}

}  // namespace
