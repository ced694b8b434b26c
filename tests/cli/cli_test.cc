// The `cairn` binary as a user runs it: exit codes, messages, export/import round trip, verify.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include "testing/temp_dir.h"

namespace {

struct CliRun {
  int code;
  std::string out;
};

CliRun run(const std::string& args) {
  const std::string cmd = std::string(CAIRN_CLI) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(Cli, AppendReadVerifyAndErrors) {
  cairn::testing::TempDir dir;
  const std::string d = "--data " + dir.path();
  auto r = run("append " + d + " conv-1 test.question.asked '{\"q\":1}' --expected no_stream");
  ASSERT_EQ(r.code, 0) << r.out;
  r = run("append " + d + " conv-1 test.question.asked '{\"q\":2}' --expected no_stream");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("wrong_expected_revision"), std::string::npos) << r.out;
  r = run("append " + d + " conv-1 t '{broken'");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("events[0].data"), std::string::npos) << r.out;
  r = run("append " + d + " conv-1 t '{}' --expected banana");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--expected"), std::string::npos) << r.out;
  r = run("append " + d + " conv-1 t '{}' --durability maybe");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run("read " + d + " conv-1 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"data\":{\"q\":1}"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\"q\":2"), std::string::npos) << r.out;
  r = run("read " + d + " nope-1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("does not exist"), std::string::npos);
  r = run("verify " + dir.path());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("ok: 1 segments"), std::string::npos) << r.out;
  r = run("append " + d + " conv-1 t '{}' --durability none");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("durability: none"), std::string::npos) << r.out;  // every output says so
}

TEST(Cli, ExportImportReproducesTheChainHead) {
  cairn::testing::TempDir a, b, files;
  const std::string da = "--data " + a.path();
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(run("append " + da + " s-" + std::to_string(i % 2) + " t '{\"i\": " + std::to_string(i) + " }'").code, 0);
  std::ofstream(files.sub("events.ndjson"))
      << "{\"type\":\"x\",\"data\":[1, 2],\"metadata\":{\"correlation_id\":\"c\"}}\n"
      << "{\"type\":\"y\",\"data_text\":\"\\\"plain string\\\"\"}\n"
      << "{\"type\":\"z\",\"content_type\":\"application/octet-stream\",\"data_base64\":\"AAEC\"}\n";
  ASSERT_EQ(run("append " + da + " multi-1 --events " + files.sub("events.ndjson")).code, 0);
  auto exp = run("export " + a.path() + " -o " + files.sub("export.ndjson"));
  ASSERT_EQ(exp.code, 0) << exp.out;
  auto imp = run("import --data " + b.path() + " " + files.sub("export.ndjson"));
  ASSERT_EQ(imp.code, 0) << imp.out;
  auto va = run("verify " + a.path() + " --json");
  auto vb = run("verify " + b.path() + " --json");
  auto head = [](const std::string& s) { return s.substr(s.find("chain_head")); };
  EXPECT_EQ(head(va.out), head(vb.out)) << va.out << vb.out;
  EXPECT_NE(va.out.find("\"events\":8"), std::string::npos) << va.out;
  auto ra = run("read " + da + " --json");
  auto rb = run("read --data " + b.path() + " --json");
  EXPECT_EQ(ra.out, rb.out);
  // A malformed import line changes nothing and names the line.
  std::ofstream(files.sub("bad.ndjson")) << "{\"position\":0}\n";
  auto bad = run("import --data " + b.path() + " " + files.sub("bad.ndjson"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("line 1"), std::string::npos) << bad.out;
  EXPECT_EQ(run("verify " + b.path() + " --json").out, vb.out);
}

TEST(Cli, JsonWithLineBreaksStaysOneLine) {
  cairn::testing::TempDir dir;
  const std::string d = "--data " + dir.path();
  std::ofstream(dir.sub("data.json")) << "{\n  \"a\": 1\n}";
  ASSERT_EQ(run("append " + d + " s-1 t --data-file " + dir.sub("data.json")).code, 0);
  auto r = run("read " + d + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find("\"data_text\":\"{\\n"), std::string::npos) << r.out;
}

TEST(Cli, VerifyReportsCorruptionWithFileAndOffset) {
  cairn::testing::TempDir dir;
  const std::string d = "--data " + dir.path();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(run("append " + d + " s-1 t '{\"payload\":\"abcdefgh\"}'").code, 0);
  const std::string seg = dir.path() + "/log/00000000000000000000.seg";
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<long>(f.tellg());
    f.seekp(size - 300);  // inside an earlier, complete commit
    f.put('#');
  }
  auto r = run("verify " + dir.path());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("BROKEN"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("00000000000000000000.seg offset"), std::string::npos) << r.out;
}

TEST(Cli, TailPrintsTheLastEvents) {
  cairn::testing::TempDir dir;
  const std::string d = "--data " + dir.path();
  for (int i = 0; i < 4; ++i) ASSERT_EQ(run("append " + d + " s-1 t '{\"n\":" + std::to_string(i) + "}'").code, 0);
  auto r = run("tail " + d + " -n 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("\"n\":1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"n\":2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"n\":3"), std::string::npos) << r.out;
  r = run("tail " + d + " -f --for 0.3 -n 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"n\":3"), std::string::npos) << r.out;
}

TEST(Cli, TailFollowSeesAppendsOfAnotherProcess) {
  cairn::testing::TempDir dir;
  const std::string d = "--data " + dir.path();
  ASSERT_EQ(run("append " + d + " s-1 t '{\"n\":0}'").code, 0);
  CliRun follower;
  std::thread t([&] { follower = run("tail " + d + " -f --for 3 --poll 0.05 -n 1"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(run("append " + d + " s-1 t '{\"n\":1}'").code, 0);
  ASSERT_EQ(run("append " + d + " s-2 t '{\"n\":2}'").code, 0);
  t.join();
  ASSERT_EQ(follower.code, 0) << follower.out;
  const auto a = follower.out.find("\"n\":0"), b = follower.out.find("\"n\":1"), c = follower.out.find("\"n\":2");
  ASSERT_NE(a, std::string::npos) << follower.out;
  ASSERT_NE(b, std::string::npos) << follower.out;
  ASSERT_NE(c, std::string::npos) << follower.out;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(follower.out.find("\"n\":1", b + 1), std::string::npos) << "printed twice: " << follower.out;
}

}  // namespace
