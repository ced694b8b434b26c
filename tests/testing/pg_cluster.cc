#include "testing/pg_cluster.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace cairn::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal or on timeout
  bool timed_out = false;
  std::string out, err;
};

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string find_program(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    for (std::string d; std::getline(ss, d, ':');)
      if (!d.empty()) dirs.push_back(d);
  }
  // runuser lives in sbin, which a non-login root PATH may lack.
  for (const char* d : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.push_back(d);
  for (const auto& d : dirs) {
    std::string p = d + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// The child's environment without PG* variables: a developer's PGHOST/PGPORT/PGSERVICE/PGOPTIONS would
// otherwise point the tools at some other server or change how they connect.
std::vector<std::string> child_env() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, "PG", 2) != 0) env.emplace_back(*e);
  return env;
}

// Runs argv (argv[0] a path) without a shell, optionally as the postgres user via runuser, in cwd, feeding
// `input` on stdin and capturing stdout/stderr. False only when the process could not be run at all.
bool run(std::vector<std::string> argv, bool as_pg, const std::string& cwd, const std::string& input,
         std::chrono::milliseconds timeout, RunResult* r, std::string* error) {
  *r = RunResult{};
  if (as_pg) {
    // Never destroyed: clusters held in statics are stopped from exit handlers that run after this one's.
    static const std::string& runuser = *new std::string(find_program("runuser"));
    if (runuser.empty()) {
      *error = "runuser not found (needed to run PostgreSQL tools as user postgres when root)";
      return false;
    }
    argv.insert(argv.begin(), {runuser, "-u", "postgres", "--"});
  }
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<std::string> env_strings = child_env();
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return *error = errno_text("pipe"), false;
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]);
    return *error = errno_text("pipe"), false;
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]), ::close(out[0]), ::close(out[1]);
    return *error = errno_text("pipe"), false;
  }

  // SIGPIPE is blocked while we feed stdin (a child that exits early must not kill the test process);
  // the child gets the original mask back before exec.
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  sigset_t pending_before;
  sigpending(&pending_before);

  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    ::setpgid(0, 0);  // own process group, so a timeout can kill runuser and what it started
    ::dup2(in[0], 0), ::dup2(out[1], 1), ::dup2(err[1], 2);
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    ::signal(SIGPIPE, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    // Keep the test process's other descriptors (sockets, files) out of the servers.
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
#endif
      for (int fd = 3; fd < 4096; ++fd) ::close(fd);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(in[0]), ::close(out[1]), ::close(err[1]);
  if (pid < 0) {
    ::close(in[1]), ::close(out[0]), ::close(err[0]);
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return *error = errno_text("fork"), false;
  }

  int in_fd = in[1];
  size_t written = 0;
  if (input.empty()) ::close(in_fd), in_fd = -1;
  for (int fd : {in_fd, out[0], err[0]})
    if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  int fds[2] = {out[0], err[0]};
  std::string* sinks[2] = {&r->out, &r->err};
  auto drain = [&](int i) {
    char buf[8192];
    for (;;) {
      ssize_t n = ::read(fds[i], buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, n);
        continue;
      }
      if (n == 0 || (errno != EINTR && errno != EAGAIN)) ::close(fds[i]), fds[i] = -1;
      if (n < 0 && errno == EINTR) continue;
      return;
    }
  };

  const auto deadline = Clock::now() + timeout;
  int status = 0;
  bool exited = false;
  while (!exited) {
    pollfd p[3];
    int np = 0;
    for (int i = 0; i < 2; ++i)
      if (fds[i] >= 0) p[np++] = {fds[i], POLLIN, 0};
    if (in_fd >= 0) p[np++] = {in_fd, POLLOUT, 0};
    // Short slices: we also poll the child's exit, in case something it started keeps a pipe open.
    ::poll(p, np, 50);
    for (int i = 0; i < 2; ++i)
      if (fds[i] >= 0) drain(i);
    if (in_fd >= 0) {
      ssize_t n = ::write(in_fd, input.data() + written, input.size() - written);
      if (n > 0) written += n;
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) ::close(in_fd), in_fd = -1;
    }
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) exited = true;
    if (!exited && Clock::now() > deadline) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r->timed_out = exited = true;
    }
  }
  for (int i = 0; i < 2; ++i)
    if (fds[i] >= 0) drain(i);
  for (int fd : {in_fd, fds[0], fds[1]})
    if (fd >= 0) ::close(fd);

  // Swallow a SIGPIPE our stdin writes raised, then restore the caller's mask.
  sigset_t pending;
  sigpending(&pending);
  if (sigismember(&pending, SIGPIPE) && !sigismember(&pending_before, SIGPIPE)) {
    timespec zero{0, 0};
    ::sigtimedwait(&block, nullptr, &zero);
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);

  if (!r->timed_out && WIFEXITED(status)) r->exit_code = WEXITSTATUS(status);
  return true;
}

std::string describe(const std::vector<std::string>& argv, const RunResult& r) {
  std::string s = argv.empty() ? "?" : std::filesystem::path(argv[0]).filename().string();
  if (r.timed_out) s += " timed out";
  else if (r.exit_code < 0) s += " killed by a signal";
  else s += " exited with " + std::to_string(r.exit_code);
  std::string text = r.err.empty() ? r.out : r.out + r.err;
  if (!text.empty()) s += ":\n" + text;
  return s;
}

std::string read_file(const std::string& path, size_t from = 0) {
  // Streamed, not sized up front: /proc files report a size of 0.
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  if (from > 0 && !f.seekg(static_cast<std::streamoff>(from))) return "";
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

size_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
}

std::string log_tail(const std::string& path) {
  constexpr size_t kTail = 4000;
  size_t size = file_size(path);
  std::string s = read_file(path, size > kTail ? size - kTail : 0);
  if (size > kTail) {
    auto nl = s.find('\n');
    if (nl != std::string::npos) s.erase(0, nl + 1);
  }
  return "\n--- tail of " + path + " ---\n" + s;
}

bool write_file(const std::string& path, const std::string& text, std::string* error) {
  // Truncating the existing file keeps its owner (postgres) and mode.
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return *error = "cannot write " + path, false;
  return true;
}

std::string conf_quote(const std::string& v) {
  std::string q = "'";
  for (char c : v) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

std::string conninfo_quote(const std::string& v) {
  bool plain = !v.empty();
  for (char c : v)
    if (c == ' ' || c == '\'' || c == '\\' || c == '\t' || c == '\n') plain = false;
  if (plain) return v;
  std::string q = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') q += '\\';
    q += c;
  }
  return q + "'";
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n')) ++i;
  return s.substr(i);
}

// A port nobody listens on right now. Another process may take it before the server binds it; start_server
// retries on a fresh port when that happens.
int free_port(std::string* error) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return *error = errno_text("socket"), 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  else
    *error = errno_text("bind 127.0.0.1:0");
  ::close(fd);
  return port;
}

// State letter and parent pid from /proc/<pid>/stat; false when the process does not exist.
bool proc_stat(pid_t pid, char* state, pid_t* ppid) {
  std::string s = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto rp = s.rfind(')');  // the command name may contain spaces and parentheses
  if (rp == std::string::npos || rp + 4 > s.size()) return false;
  std::istringstream rest(s.substr(rp + 2));
  long pp = 0;
  rest >> *state >> pp;
  *ppid = static_cast<pid_t>(pp);
  return true;
}

// Exited or a zombie: a zombie holds no shared memory or sockets, and whoever inherited it may never reap it.
bool gone(pid_t pid) {
  char st = 0;
  pid_t pp = 0;
  return !proc_stat(pid, &st, &pp) || st == 'Z' || st == 'X';
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> kids;
  DIR* d = ::opendir("/proc");
  if (!d) return kids;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end) continue;
    char st = 0;
    pid_t pp = 0;
    if (proc_stat(static_cast<pid_t>(pid), &st, &pp) && pp == parent) kids.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return kids;
}

bool wait_gone(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    bool all = true;
    for (pid_t p : pids) all = all && gone(p);
    if (all) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
}

pid_t postmaster_pid(const std::string& data) {
  std::string s = read_file(data + "/postmaster.pid");
  return s.empty() ? 0 : static_cast<pid_t>(std::atol(s.c_str()));
}

// SIGKILLs the postmaster of `data` and waits until it and all its children are gone. The postmaster is
// stopped first so the set of children cannot change between listing and killing it.
bool kill_postmaster(const std::string& data, std::string* error) {
  pid_t pid = postmaster_pid(data);
  if (pid <= 0) return *error = "no postmaster.pid in " + data, false;
  if (::kill(pid, SIGSTOP) != 0) return *error = errno_text("kill(SIGSTOP) postmaster " + std::to_string(pid)), false;
  for (auto deadline = Clock::now() + 2s; Clock::now() < deadline;) {
    char st = 0;
    pid_t pp = 0;
    if (!proc_stat(pid, &st, &pp) || st == 'T' || st == 'Z') break;
    std::this_thread::sleep_for(1ms);
  }
  std::vector<pid_t> kids = children_of(pid);
  ::kill(pid, SIGKILL);
  if (!wait_gone({pid}, 10s)) return *error = "postmaster " + std::to_string(pid) + " survived SIGKILL", false;
  // Children notice the postmaster's death and exit by themselves; one stuck in a long operation is killed
  // after a while, which a real crash of the machine would also do.
  if (!wait_gone(kids, 30s)) {
    for (pid_t k : kids) ::kill(k, SIGKILL);
    if (!wait_gone(kids, 10s)) return *error = "children of postmaster " + std::to_string(pid) + " did not exit", false;
  }
  // A postmaster left as an unreaped zombie (a container's PID 1 may not reap) still answers kill(pid, 0),
  // so the new one would take its lock files for a live server's. It is dead: remove them.
  if (postmaster_pid(data) == pid && ::kill(pid, 0) == 0) {
    // postmaster.pid: line 4 is the port, line 5 the first socket directory.
    std::istringstream lines(read_file(data + "/postmaster.pid"));
    std::string line, port, sockdir;
    for (int n = 1; std::getline(lines, line) && n <= 5; ++n) {
      if (n == 4) port = line;
      if (n == 5) sockdir = line;
    }
    if (!port.empty() && !sockdir.empty()) ::unlink((sockdir + "/.s.PGSQL." + port + ".lock").c_str());
    ::unlink((data + "/postmaster.pid").c_str());
  }
  return true;
}

// True when the part of a server log written since `from` says the listen port was taken.
bool port_was_taken(const std::string& log, size_t from) {
  std::string s = read_file(log, from);
  return s.find("Address already in use") != std::string::npos || s.find("could not bind") != std::string::npos;
}

// Whether a user other than root can walk down to `dir` (postgres needs to reach its data directory).
std::string untraversable_ancestor(const std::string& dir, uid_t uid, gid_t gid) {
  namespace fs = std::filesystem;
  for (fs::path p = fs::path(dir).parent_path(); !p.empty(); p = p.parent_path()) {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) return p.string();
    bool ok = (st.st_mode & S_IXOTH) || (st.st_uid == uid && (st.st_mode & S_IXUSR)) ||
              (st.st_gid == gid && (st.st_mode & S_IXGRP));
    if (!ok) return p.string();
    if (p == p.root_path()) break;
  }
  return "";
}

}  // namespace

std::unique_ptr<PgCluster> PgCluster::start(const PgClusterOptions& o, std::string* error) {
  std::unique_ptr<PgCluster> c(new PgCluster());
  c->owner_pid_ = ::getpid();
  const char* bindir = std::getenv("CAIRN_PG_BINDIR");
  c->bindir_ = bindir && *bindir ? bindir : "/usr/lib/postgresql/15/bin";
  for (const char* tool : {"initdb", "pg_ctl", "postgres", "psql", "pg_basebackup"}) {
    if (::access((c->bindir_ + "/" + tool).c_str(), X_OK) != 0) {
      *error = "PostgreSQL tool not found: " + c->bindir_ + "/" + tool + " (set CAIRN_PG_BINDIR)";
      return nullptr;
    }
  }
  // initdb and postgres refuse to run as root.
  c->as_pg_ = ::geteuid() == 0;
  if (c->as_pg_) {
    passwd* pw = ::getpwnam("postgres");
    if (!pw) return *error = "running as root but there is no user 'postgres' to run the server as", nullptr;
    c->pg_uid_ = pw->pw_uid;
    c->pg_gid_ = pw->pw_gid;
    c->superuser_ = "postgres";
  } else {
    passwd* pw = ::getpwuid(::geteuid());
    if (!pw) return *error = "cannot find the name of uid " + std::to_string(::geteuid()), nullptr;
    c->superuser_ = pw->pw_name;
  }

  const char* base = std::getenv("TMPDIR");
  // A short name: the Unix socket path (dir + "/.s.PGSQL.NNNNN") must fit in 107 bytes.
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cairn-pg-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return *error = errno_text("mkdtemp " + tmpl), nullptr;
  c->dir_ = tmpl;  // from here the destructor cleans up
  if (::chmod(c->dir_.c_str(), 0755) != 0) return *error = errno_text("chmod " + c->dir_), nullptr;
  if (c->as_pg_) {
    if (::chown(c->dir_.c_str(), c->pg_uid_, c->pg_gid_) != 0) return *error = errno_text("chown " + c->dir_), nullptr;
    std::string bad = untraversable_ancestor(c->dir_, c->pg_uid_, c->pg_gid_);
    if (!bad.empty())
      return *error = "user postgres cannot enter " + bad + "; point TMPDIR at a world-traversable directory", nullptr;
  }
  c->start_reaper();
  if (!c->init_primary(o, error)) return nullptr;
  if (o.replica && !c->init_replica(error)) return nullptr;
  return c;
}

// A test process that dies without running destructors (a crash, an abort, a CTest timeout) would leave
// its servers running. A small shell waits on a pipe that only this process holds open; when it reads end
// of file it stops both servers (immediate mode) and removes the directory. It is exec'ed right after the
// fork, so it is safe from a multi-threaded parent, and the pipe's write end is close-on-exec, so no server
// or tool inherits it.
void PgCluster::start_reaper() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;  // best effort: the destructor still cleans up normally
  const std::string stop = [&] {
    std::string cmd;
    for (const std::string& data : {replica_dir(), data_dir()}) {
      std::string one = "'" + bindir_ + "/pg_ctl' -D '" + data + "' -m immediate -w stop";
      if (as_pg_) one = "'" + find_program("runuser") + "' -u postgres -- " + one;
      cmd += "[ -f '" + data + "/postmaster.pid' ] && " + one + " >/dev/null 2>&1; ";
    }
    return cmd;
  }();
  const std::string script = "read -r _; " + stop + "rm -rf '" + dir_ + "'";
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return;
  }
  if (pid == 0) {
    ::dup2(fds[0], 0);  // dup2 clears close-on-exec on the copy
    ::setsid();         // outside the test's process group: a group kill must not take the reaper with it
    const char* argv[] = {"/bin/sh", "-c", script.c_str(), nullptr};
    ::execv("/bin/sh", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(fds[0]);
  reaper_fd_ = fds[1];
  reaper_pid_ = pid;
}

bool PgCluster::init_primary(const PgClusterOptions& o, std::string* error) {
  // --no-sync: the cluster is thrown away; durability of initdb's files does not matter.
  std::vector<std::string> argv = {bindir_ + "/initdb", "-D", data_dir(), "-U", superuser_, "-A", "trust",
                                   "-E", "UTF8", "--locale=C", "--no-sync"};
  RunResult r;
  if (!run(argv, as_pg_, dir_, "", 120s, &r, error)) return false;
  if (r.exit_code != 0) return *error = describe(argv, r), false;

  // With -A trust initdb's pg_hba.conf allows replication from 127.0.0.1; a custom template might not.
  std::string hba = read_file(data_dir() + "/pg_hba.conf");
  bool has_repl = false;
  std::istringstream lines(hba);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    if (w.size() >= 5 && w[0] == "host" && w[1] == "replication" && w[2] == "all" && w[3] == "127.0.0.1/32" &&
        w[4] == "trust")
      has_repl = true;
  }
  if (!has_repl) hba += "\nhost replication all 127.0.0.1/32 trust\n";
  // The first matching line wins, so these go before initdb's trust lines.
  if (o.password_auth)
    hba = "host all " + superuser_ + " 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n" + hba;
  if (!write_file(data_dir() + "/pg_hba.conf", hba, error)) return false;

  primary_conf_base_ = read_file(data_dir() + "/postgresql.conf");
  if (primary_conf_base_.empty()) return *error = "cannot read " + data_dir() + "/postgresql.conf", false;
  // An over-long socket path would stop the server; TCP alone is enough for the tests.
  std::string sockdir = dir_.size() + 20 > 107 ? "" : dir_;
  std::string conf = "\n# cairn::testing::PgCluster\n"
                     "listen_addresses='127.0.0.1'\n"
                     "unix_socket_directories=" + conf_quote(sockdir) + "\n"
                     "fsync=" + std::string(o.fsync ? "on" : "off") + "\n"
                     "synchronous_commit=on\n"
                     "full_page_writes=on\n"
                     "shared_buffers=256MB\n"
                     "max_connections=300\n"
                     "wal_level=replica\n"
                     "max_wal_senders=5\n"
                     "hot_standby=on\n"
                     "wal_retrieve_retry_interval=100ms\n"
                     "log_min_messages=warning\n"
                     "logging_collector=off\n" +
                     o.extra_conf + "\n";
  primary_conf_base_ += conf;
  return start_server(data_dir(), primary_log(), primary_conf_base_, "", true, &port_, error);
}

bool PgCluster::init_replica(std::string* error) {
  // -c fast: do not wait for a spread checkpoint on an idle server.
  std::vector<std::string> argv = {bindir_ + "/pg_basebackup", "-h", "127.0.0.1", "-p", std::to_string(port_),
                                   "-U", superuser_, "-D", replica_dir(), "-R", "-X", "stream", "-c", "fast",
                                   "--no-sync"};
  RunResult r;
  if (!run(argv, as_pg_, dir_, "", 300s, &r, error)) return false;
  if (r.exit_code != 0) return *error = describe(argv, r) + log_tail(primary_log()), false;
  // The copied postgresql.conf carries the primary's settings and port; a later port= line wins.
  std::string base = read_file(replica_dir() + "/postgresql.conf");
  if (base.empty()) return *error = "cannot read " + replica_dir() + "/postgresql.conf", false;
  if (!start_server(replica_dir(), replica_log(), base, "", true, &replica_port_, error)) return false;

  const auto deadline = Clock::now() + 60s;
  for (;;) {
    std::string out, err;
    if (psql_at(replica_port_, replica_log(), "select pg_is_in_recovery()", &out, &err, "postgres") &&
        trim(out) == "t")
      return true;
    if (Clock::now() > deadline) {
      *error = "replica on port " + std::to_string(replica_port_) + " is not a hot standby: " +
               (err.empty() ? "pg_is_in_recovery() = " + trim(out) + log_tail(replica_log()) : err);
      return false;
    }
    std::this_thread::sleep_for(50ms);
  }
}

// Writes postgresql.conf = conf_base + conf_extra + port and starts the server. With pick_port, a fresh
// port is chosen, and chosen again when the server failed because someone else took it meanwhile.
bool PgCluster::start_server(const std::string& data, const std::string& log, const std::string& conf_base,
                             const std::string& conf_extra, bool pick_port, int* port, std::string* error) {
  for (int attempt = 0;; ++attempt) {
    if (pick_port) {
      *port = free_port(error);
      if (*port == 0) return false;
    }
    if (!write_file(data + "/postgresql.conf", conf_base + conf_extra + "port=" + std::to_string(*port) + "\n", error))
      return false;
    size_t log_start = file_size(log);
    std::vector<std::string> argv = {bindir_ + "/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start"};
    RunResult r;
    if (!run(argv, as_pg_, dir_, "", 120s, &r, error)) return false;
    if (r.exit_code == 0) return true;
    if (pick_port && attempt < 5 && port_was_taken(log, log_start)) continue;
    *error = "starting PostgreSQL in " + data + " on port " + std::to_string(*port) + ": " + describe(argv, r) +
             log_tail(log);
    return false;
  }
}

void PgCluster::stop_server(const std::string& data) const {
  if (::access((data + "/postmaster.pid").c_str(), F_OK) != 0) return;
  std::string ignored;
  for (const char* mode : {"fast", "immediate"}) {
    std::vector<std::string> argv = {bindir_ + "/pg_ctl", "-D", data, "-m", mode, "-w", "-t", "60", "stop"};
    RunResult r;
    if (run(argv, as_pg_, dir_, "", 90s, &r, &ignored) && r.exit_code == 0) return;
  }
  // pg_ctl could not stop it; do not leave a server behind on a deleted directory.
  if (postmaster_pid(data) > 0) kill_postmaster(data, &ignored);
}

PgCluster::~PgCluster() {
  // A forked child (death tests) that exits must not stop the parent's servers.
  if (owner_pid_ != ::getpid() || dir_.empty()) return;
  stop_server(replica_dir());
  stop_server(data_dir());
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (reaper_fd_ >= 0) {
    ::close(reaper_fd_);  // the reaper finds nothing left to stop, and exits
    int status = 0;
    ::waitpid(reaper_pid_, &status, 0);
  }
}

std::string PgCluster::conninfo(const std::string& user, const std::string& dbname) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=" + conninfo_quote(user) +
         " dbname=" + conninfo_quote(dbname);
}

std::string PgCluster::replica_conninfo(const std::string& user, const std::string& dbname) const {
  return "host=127.0.0.1 port=" + std::to_string(replica_port_) + " user=" + conninfo_quote(user) +
         " dbname=" + conninfo_quote(dbname);
}

bool PgCluster::psql_at(int port, const std::string& log, const std::string& sql, std::string* out,
                        std::string* error, const std::string& dbname) const {
  // Over TCP with trust auth, so psql itself can run as the current user. The script goes on stdin (-f -)
  // so that ON_ERROR_STOP applies statement by statement.
  std::vector<std::string> argv = {bindir_ + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                   "-h", "127.0.0.1", "-p", std::to_string(port), "-U", superuser_,
                                   "-d", dbname, "-f", "-"};
  RunResult r;
  if (!run(argv, false, dir_, sql.empty() ? std::string("\n") : sql + "\n", 300s, &r, error)) return false;
  if (out) *out = r.out;
  if (r.exit_code == 0) return true;
  *error = describe(argv, r);
  if (r.exit_code != 3) *error += log_tail(log);  // 3 = the SQL failed; anything else may be the server
  return false;
}

bool PgCluster::psql(const std::string& sql, std::string* out, std::string* error, const std::string& dbname) const {
  return psql_at(port_, primary_log(), sql, out, error, dbname);
}

bool PgCluster::replica_psql(const std::string& sql, std::string* out, std::string* error,
                             const std::string& dbname) const {
  if (replica_port_ == 0) return *error = "this cluster has no replica", false;
  return psql_at(replica_port_, replica_log(), sql, out, error, dbname);
}

bool PgCluster::kill9_and_restart(std::string* error) {
  if (!kill_postmaster(data_dir(), error)) {
    *error += log_tail(primary_log());
    return false;
  }
  // Same conf and port: the replica's primary_conninfo points at it.
  return start_server(data_dir(), primary_log(), primary_conf_base_, "", false, &port_, error);
}

bool PgCluster::stop_primary(std::string* error) {
  std::vector<std::string> argv = {bindir_ + "/pg_ctl", "-D", data_dir(), "-m", "immediate", "-w", "-t", "60", "stop"};
  RunResult r;
  if (!run(argv, as_pg_, dir_, "", 90s, &r, error)) return false;
  if (r.exit_code != 0) return *error = describe(argv, r) + log_tail(primary_log()), false;
  return true;
}

bool PgCluster::start_primary(std::string* error) {
  return start_server(data_dir(), primary_log(), primary_conf_base_, "", false, &port_, error);
}

bool PgCluster::wait_replica_caught_up(std::chrono::milliseconds timeout, std::string* error) const {
  if (replica_port_ == 0) return *error = "this cluster has no replica", false;
  std::string lsn;
  if (!psql("select pg_current_wal_lsn()", &lsn, error)) return false;
  lsn = trim(lsn);
  const std::string check = "select coalesce(pg_last_wal_replay_lsn() >= '" + lsn + "'::pg_lsn, false)";
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    std::string out, err;
    bool ok = replica_psql(check, &out, &err);
    if (ok && trim(out) == "t") return true;
    if (Clock::now() > deadline) {
      std::string replayed;
      std::string ignored;
      replica_psql("select pg_last_wal_replay_lsn()", &replayed, &ignored);
      *error = "replica did not replay up to " + lsn + " within " + std::to_string(timeout.count()) +
               " ms (replayed: " + trim(replayed) + ")" + (ok ? "" : ": " + err) + log_tail(replica_log());
      return false;
    }
    std::this_thread::sleep_for(20ms);
  }
}

PgCluster* PgCluster::shared(std::string* error) {
  static std::mutex mu;
  // Destroyed at exit like any static, which stops the servers (unless the process dies abruptly).
  static std::unique_ptr<PgCluster> cluster;
  static std::string failure;
  static bool tried = false;
  std::lock_guard<std::mutex> lock(mu);
  if (!tried) {
    tried = true;
    PgClusterOptions o;
    o.replica = true;
    cluster = start(o, &failure);
  }
  if (!cluster) *error = failure;
  return cluster.get();
}

}  // namespace cairn::testing
