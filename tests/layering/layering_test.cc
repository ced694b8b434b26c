// The layering the build promises (docs/architecture.md, "Dependency table"), checked against the sources:
// every `#include "<folder>/..."` in src/<module>/ must name the module itself, the public API (cairn/) or a
// folder its row allows; the table must have a row for every folder of src/ and stay acyclic; the public
// headers and examples/ include nothing but the public API. The checker runs on the real tree, and on a small
// tree with known faults to show that it finds them.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

using Table = std::map<std::string, std::set<std::string>>;  // module -> the folders it may include

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c) && c != '`'; };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// The rows of the first Markdown table under the "## Dependency table" heading: | module | may include | ...
// "—" (or "-") in the second column: nothing but the public API. Problems go to *errors.
Table parse_table(const std::string& markdown, std::vector<std::string>* errors) {
  Table t;
  std::istringstream in(markdown);
  std::string line;
  bool in_section = false, in_table = false;
  int row = 0;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) {
      if (in_section) break;
      in_section = line == "## Dependency table";
      continue;
    }
    if (!in_section) continue;
    if (line.rfind("|", 0) != 0) {
      if (in_table) break;
      continue;
    }
    in_table = true;
    if (++row <= 2) continue;  // the header and its |---| line
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream cs(line.substr(1));
    while (std::getline(cs, cell, '|')) cells.push_back(trim(cell));
    if (cells.size() < 2 || cells[0].empty()) {
      errors->push_back("docs/architecture.md: a dependency-table row without a module and its list: " + line);
      continue;
    }
    std::set<std::string>& allowed = t[cells[0]];
    std::istringstream list(cells[1]);
    std::string dep;
    while (std::getline(list, dep, ',')) {
      dep = trim(dep);
      if (!dep.empty() && dep != "—" && dep != "-") allowed.insert(dep);
    }
  }
  if (t.empty()) errors->push_back("docs/architecture.md: no table under \"## Dependency table\"");
  return t;
}

// A cycle in the table, as "a -> b -> a", or "".
std::string find_cycle(const Table& t) {
  std::map<std::string, int> mark;  // 1: on the path, 2: done
  std::vector<std::string> path;
  std::string cycle;
  std::function<bool(const std::string&)> visit = [&](const std::string& m) {
    mark[m] = 1;
    path.push_back(m);
    if (auto it = t.find(m); it != t.end())
      for (const std::string& d : it->second) {
        if (mark[d] == 1) {
          auto from = std::find(path.begin(), path.end(), d);
          for (auto p = from; p != path.end(); ++p) cycle += *p + " -> ";
          cycle += d;
          return true;
        }
        if (mark[d] == 0 && visit(d)) return true;
      }
    path.pop_back();
    mark[m] = 2;
    return false;
  };
  for (const auto& [m, deps] : t)
    if (mark[m] == 0 && visit(m)) return cycle;
  return "";
}

// Calls f(file, line number, folder) for each `#include "folder/..."` in the C++ files under dir.
void for_each_include(const fs::path& dir, const std::function<void(const fs::path&, int, const std::string&)>& f) {
  static const std::regex include_re(R"re(^\s*#\s*include\s+"([A-Za-z0-9_]+)/)re");
  if (!fs::exists(dir)) return;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const auto ext = entry.path().extension();
    if (!entry.is_regular_file() || (ext != ".h" && ext != ".cc" && ext != ".hpp" && ext != ".cpp")) continue;
    std::istringstream in(read_file(entry.path()));
    std::string line;
    int n = 0;
    std::smatch m;
    while (std::getline(in, line))
      if (++n, std::regex_search(line, m, include_re)) f(entry.path(), n, m[1].str());
  }
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : ", ") + x;
  return out.empty() ? "nothing but cairn/" : out;
}

// Every way the tree at root breaks the table in root/docs/architecture.md.
std::vector<std::string> check_layering(const fs::path& root) {
  std::vector<std::string> errors;
  const Table t = parse_table(read_file(root / "docs" / "architecture.md"), &errors);
  if (std::string c = find_cycle(t); !c.empty()) errors.push_back("docs/architecture.md: the table has a cycle: " + c);
  for (const auto& [m, deps] : t)
    for (const std::string& d : deps)
      if (!t.count(d)) errors.push_back("docs/architecture.md: " + m + " may use '" + d + "', which has no row");
  for (const auto& entry : fs::directory_iterator(root / "src")) {
    if (!entry.is_directory()) continue;
    const std::string module = entry.path().filename().string();
    auto row = t.find(module);
    if (row == t.end()) {
      errors.push_back("src/" + module + "/ has no row in the dependency table of docs/architecture.md");
      continue;
    }
    for_each_include(entry.path(), [&](const fs::path& file, int line, const std::string& folder) {
      if (folder == module || folder == "cairn" || row->second.count(folder)) return;
      errors.push_back(fs::relative(file, root).string() + ":" + std::to_string(line) + ": " + module +
                       " includes " + folder + "/, but docs/architecture.md lets it use only " + join(row->second));
    });
  }
  for (const char* public_only : {"include", "examples"})
    for_each_include(root / public_only, [&](const fs::path& file, int line, const std::string& folder) {
      if (folder != "cairn")
        errors.push_back(fs::relative(file, root).string() + ":" + std::to_string(line) + ": includes " + folder +
                         "/; " + public_only + "/ may use only the public API (cairn/)");
    });
  return errors;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

TEST(Layering, TheSourcesKeepTheDependencyTable) {
  const std::vector<std::string> errors = check_layering(CAIRN_SOURCE_DIR);
  std::string all;
  for (const auto& e : errors) all += e + "\n";
  EXPECT_TRUE(errors.empty()) << all;
}

// The checker on a tree with known faults: an upward include, a folder without a row, a cycle in the table, a
// private header in an example.
TEST(Layering, TheCheckerFindsUpwardIncludesMissingRowsAndCycles) {
  const fs::path root = fs::temp_directory_path() / ("cairn-layering-" + std::to_string(::getpid()));
  fs::remove_all(root);
  write(root / "docs/architecture.md",
        "# x\n\n## Dependency table\n\n| module | may include |\n|---|---|\n| base | — |\n| log | base |\n"
        "| store | log, base |\n\n## Next\n\n| log | store |\n");
  write(root / "src/base/a.h", "#include \"cairn/status.h\"\n");
  write(root / "src/log/record.cc", "#include \"log/record.h\"\n#include \"base/a.h\"\n");
  write(root / "src/store/s.cc", "#include \"log/record.h\"\n");
  write(root / "include/cairn/x.h", "#include \"cairn/status.h\"\n");
  EXPECT_TRUE(check_layering(root).empty()) << "a tree that keeps its table";

  write(root / "src/log/verify.cc", "#include <vector>\n  #include \"store/s.h\"\n");
  write(root / "src/extra/e.cc", "\n");
  write(root / "examples/e.cc", "#include \"store/s.h\"\n");
  auto errors = check_layering(root);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_NE(std::find(errors.begin(), errors.end(),
                      "src/extra/ has no row in the dependency table of docs/architecture.md"),
            errors.end());
  EXPECT_NE(std::find(errors.begin(), errors.end(),
                      "src/log/verify.cc:2: log includes store/, but docs/architecture.md lets it use only base"),
            errors.end());
  EXPECT_NE(std::find(errors.begin(), errors.end(),
                      "examples/e.cc:1: includes store/; examples/ may use only the public API (cairn/)"),
            errors.end());

  write(root / "docs/architecture.md",
        "## Dependency table\n\n| module | may include |\n|---|---|\n| base | — |\n| log | base, store |\n"
        "| store | log |\n| extra | gone |\n");
  errors = check_layering(root);
  EXPECT_NE(std::find(errors.begin(), errors.end(), "docs/architecture.md: the table has a cycle: log -> store -> log"),
            errors.end());
  EXPECT_NE(std::find(errors.begin(), errors.end(), "docs/architecture.md: extra may use 'gone', which has no row"),
            errors.end());
  fs::remove_all(root);
}

}  // namespace
