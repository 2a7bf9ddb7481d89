#include "launch/launcher.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/util/error.h"

extern char** environ;

namespace tess::launch {
namespace {

using Clock = std::chrono::steady_clock;

// A line longer than this without a newline is relayed in pieces.
constexpr size_t kMaxLine = 1 << 20;
// After the last rank exited, output still buffered in the pipes is relayed
// for at most this long (a detached grandchild may keep a pipe open).
constexpr auto kDrainTime = std::chrono::seconds(2);

// Self-pipe: the signal handler only writes the signal number into it.
int g_signal_write_fd = -1;

void on_signal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  if (g_signal_write_fd >= 0) (void)!write(g_signal_write_fd, &b, 1);
  errno = saved;
}

void write_all(int fd, const std::string& s) {
  const char* p = s.data();
  size_t left = s.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // our own stdout/stderr is gone; nothing sensible to do
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void say(const std::string& message) { write_all(STDERR_FILENO, "tess launch: " + message + "\n"); }

std::string signal_name(int sig) {
  const char* d = strsignal(sig);
  return fmt::format("signal {} ({})", sig, d ? d : "unknown");
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by " + signal_name(WTERMSIG(status));
  return fmt::format("ended with status {}", status);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// One child's stdout or stderr, relayed with a prefix, whole lines at a time.
struct Stream {
  int fd = -1;       // read end, -1 once closed
  int dest = -1;     // STDOUT_FILENO or STDERR_FILENO
  std::string buf;   // bytes after the last relayed newline

  void relay(const std::string& prefix, bool eof) {
    std::string out;
    size_t start = 0;
    for (;;) {
      size_t nl = buf.find('\n', start);
      if (nl == std::string::npos) break;
      out += prefix;
      out.append(buf, start, nl + 1 - start);
      start = nl + 1;
    }
    buf.erase(0, start);
    if (!buf.empty() && (eof || buf.size() >= kMaxLine)) {
      out += prefix + buf + "\n";
      buf.clear();
    }
    if (!out.empty()) write_all(dest, out);
  }

  void close_fd(const std::string& prefix) {
    relay(prefix, true);
    if (fd >= 0) close(fd);
    fd = -1;
  }
};

struct Child {
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;
  std::string prefix;
  Stream out, err;
};

// Installs the launcher's handlers for the duration of a launch and puts the
// previous ones back afterwards.
class SignalScope {
 public:
  SignalScope() {
    if (pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0)
      throw Error(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
    g_signal_write_fd = fds_[1];
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NOCLDSTOP;  // no SA_RESTART: poll() wakes up either way
    for (int i = 0; i < kCount; ++i) sigaction(kSignals[i], &sa, &old_[i]);
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe_);  // a closed stdout must not kill the launcher
  }
  ~SignalScope() {
    for (int i = 0; i < kCount; ++i) sigaction(kSignals[i], &old_[i], nullptr);
    sigaction(SIGPIPE, &old_pipe_, nullptr);
    g_signal_write_fd = -1;
    close(fds_[0]);
    close(fds_[1]);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

  int read_fd() const { return fds_[0]; }
  // Signals received since the last call, in order.
  std::vector<int> drain() {
    std::vector<int> sigs;
    unsigned char b[64];
    for (;;) {
      ssize_t n = read(fds_[0], b, sizeof b);
      if (n > 0) {
        sigs.insert(sigs.end(), b, b + n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    return sigs;
  }

  static constexpr int kCount = 3;
  static constexpr int kSignals[kCount] = {SIGINT, SIGTERM, SIGCHLD};

 private:
  int fds_[2] = {-1, -1};
  struct sigaction old_[kCount] {};
  struct sigaction old_pipe_ {};
};

std::string resolve_program(const std::string& program) {
  if (program.empty()) {
    std::vector<char> buf(4096);
    ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
    if (n <= 0) throw Error(fmt::format("cannot find the tess binary (/proc/self/exe): {}", std::strerror(errno)));
    return std::string(buf.data(), static_cast<size_t>(n));
  }
  if (program.find('/') != std::string::npos) {
    if (access(program.c_str(), X_OK) != 0)
      throw Error(fmt::format("cannot execute '{}': {}", program, std::strerror(errno)));
    return program;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  for (;;) {
    size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  throw Error(fmt::format("cannot execute '{}': not found in PATH", program));
}

void validate(const LaunchSpec& s) {
  if (s.nproc < 1) throw Error(fmt::format("--nproc must be at least 1 (got {})", s.nproc));
  if (s.nnodes < 1) throw Error(fmt::format("--nnodes must be at least 1 (got {})", s.nnodes));
  if (s.node_rank < 0 || s.node_rank >= s.nnodes)
    throw Error(fmt::format("--node-rank must be in [0, {}) (got {})", s.nnodes, s.node_rank));
  if (s.master_addr.empty()) throw Error("--master-addr must not be empty");
  if (s.master_port < 0 || s.master_port > 65535)
    throw Error(fmt::format("--master-port must be in [1, 65535] (got {})", s.master_port));
  if (s.nnodes > 1 && s.master_port == 0)
    throw Error("--master-port is required when --nnodes > 1 (every node must use the same one)");
  if (!(s.grace_seconds >= 0)) throw Error(fmt::format("--grace-seconds must be >= 0 (got {})", s.grace_seconds));
  if (s.program.empty() && s.args.empty())
    throw Error("nothing to launch: give the tess arguments after `--`, e.g. `tess launch --nproc 2 -- train c.yaml`");
}

// Environment for one rank: ours minus the torchrun variables, plus them.
std::vector<std::string> child_environment(const LaunchSpec& s, int local_rank, int port) {
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"RANK", std::to_string(s.node_rank * s.nproc + local_rank)},
      {"WORLD_SIZE", std::to_string(s.nnodes * s.nproc)},
      {"LOCAL_RANK", std::to_string(local_rank)},
      {"LOCAL_WORLD_SIZE", std::to_string(s.nproc)},
      {"GROUP_RANK", std::to_string(s.node_rank)},
      {"MASTER_ADDR", s.master_addr},
      {"MASTER_PORT", std::to_string(port)},
  };
  std::set<std::string> names;
  for (const auto& v : vars) names.insert(v.first);
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string entry = *e;
    if (names.count(entry.substr(0, entry.find('=')))) continue;
    env.push_back(std::move(entry));
  }
  for (const auto& v : vars) env.push_back(v.first + "=" + v.second);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Signals the child's process group (it leads one), so shells' children and
// other helpers it started go too.
void signal_child(const Child& c, int sig) {
  if (!c.running) return;
  if (kill(-c.pid, sig) != 0) kill(c.pid, sig);
}

}  // namespace

int pick_free_port(const std::string& addr) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(addr.c_str(), "0", &hints, &res);
  if (rc != 0) throw Error(fmt::format("cannot resolve master address '{}': {}", addr, gai_strerror(rc)));
  std::string last_error = "no usable address";
  int port = 0;
  for (addrinfo* ai = res; ai && port == 0; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      if (ss.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
      if (ss.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    } else {
      last_error = std::strerror(errno);
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (port == 0) throw Error(fmt::format("cannot bind a free port on master address '{}': {}", addr, last_error));
  return port;
}

int run_launch(const LaunchSpec& spec) {
  validate(spec);
  std::string program = resolve_program(spec.program);
  int port = spec.master_port != 0 ? spec.master_port : pick_free_port(spec.master_addr);

  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv = c_strings(argv_strings);
  const std::string exec_failed = fmt::format("tess launch: cannot execute '{}'\n", program);

  std::fflush(stdout);
  std::fflush(stderr);
  SignalScope signals;

  std::vector<Child> children(static_cast<size_t>(spec.nproc));
  std::optional<int> failure_code;  // exit code of the first failing rank
  std::string failure_text;
  std::optional<Clock::time_point> kill_at;  // when stopping: SIGKILL survivors then
  bool killed = false;

  auto stop_all = [&](const std::string& why) {
    if (kill_at) return;
    int alive = 0;
    for (auto& c : children) alive += c.running ? 1 : 0;
    if (alive > 0)
      say(fmt::format("{}; stopping the other {} rank(s) (SIGTERM, SIGKILL after {} s)", why, alive,
                      spec.grace_seconds));
    else
      say(why);
    for (auto& c : children) signal_child(c, SIGTERM);
    kill_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(spec.grace_seconds));
  };

  // Start the ranks. Signals stay blocked across fork so a child never runs
  // the launcher's handler before it execs.
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t launcher_pid = getpid();
  for (int local = 0; local < spec.nproc; ++local) {
    Child& c = children[static_cast<size_t>(local)];
    c.rank = spec.node_rank * spec.nproc + local;
    c.prefix = fmt::format("[rank {}] ", c.rank);
    std::vector<std::string> env_strings = child_environment(spec, local, port);
    std::vector<char*> envp = c_strings(env_strings);
    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0) {
      failure_text = fmt::format("cannot create a pipe: {}", std::strerror(errno));
      break;
    }
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
      failure_text = fmt::format("cannot create a pipe: {}", std::strerror(errno));
      close(out_pipe[0]);
      close(out_pipe[1]);
      break;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
      // Child: only async-signal-safe calls until execve.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // the launcher died: stop like on a forwarded SIGTERM
      if (getppid() != launcher_pid) _exit(143);
      for (int sig : {SIGINT, SIGTERM, SIGCHLD, SIGPIPE}) signal(sig, SIG_DFL);
      sigprocmask(SIG_SETMASK, &old, nullptr);
      dup2(out_pipe[1], STDOUT_FILENO);
      dup2(err_pipe[1], STDERR_FILENO);
      if (devnull >= 0) dup2(devnull, STDIN_FILENO);
      execve(program.c_str(), argv.data(), envp.data());
      (void)!write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
      _exit(127);
    }
    int fork_errno = errno;
    if (pid > 0) setpgid(pid, pid);  // also here, so the group exists before we signal it
    sigprocmask(SIG_SETMASK, &old, nullptr);
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (pid < 0) {
      close(out_pipe[0]);
      close(err_pipe[0]);
      failure_text = fmt::format("cannot start rank {}: fork failed: {}", c.rank, std::strerror(fork_errno));
      break;
    }
    c.pid = pid;
    c.running = true;
    c.out = Stream{out_pipe[0], STDOUT_FILENO, {}};
    c.err = Stream{err_pipe[0], STDERR_FILENO, {}};
  }
  if (devnull >= 0) close(devnull);
  if (!failure_text.empty()) {
    failure_code = 1;
    stop_all(failure_text);
  }

  std::optional<Clock::time_point> drain_until;
  std::vector<pollfd> fds;
  std::vector<Stream*> fd_streams;
  std::vector<Child*> fd_children;
  for (;;) {
    // Reap whoever exited.
    for (auto& c : children) {
      if (!c.running) continue;
      int status = 0;
      pid_t r = waitpid(c.pid, &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      c.running = false;
      c.status = r < 0 ? (1 << 8) : status;
      bool ok = WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0;
      if (ok) continue;
      std::string what = fmt::format("rank {} (pid {}) {}", c.rank, c.pid, describe_status(c.status));
      if (!failure_code) {
        failure_code = exit_code_of(c.status);
        failure_text = what;
        stop_all(what);
      } else {
        say(what);
      }
    }
    bool any_running = std::any_of(children.begin(), children.end(), [](const Child& c) { return c.running; });
    bool any_open = std::any_of(children.begin(), children.end(),
                                [](const Child& c) { return c.out.fd >= 0 || c.err.fd >= 0; });
    auto now = Clock::now();
    if (!any_running) {
      if (!any_open) break;
      if (!drain_until) drain_until = now + kDrainTime;
      if (now >= *drain_until) break;
    }
    if (kill_at && !killed && any_running && now >= *kill_at) {
      std::string names;
      for (auto& c : children)
        if (c.running) names += fmt::format("{}{}", names.empty() ? "" : ", ", c.rank);
      say(fmt::format("rank(s) {} still running after {} s: sending SIGKILL", names, spec.grace_seconds));
      for (auto& c : children) signal_child(c, SIGKILL);
      killed = true;
    }

    fds.clear();
    fd_streams.clear();
    fd_children.clear();
    fds.push_back({signals.read_fd(), POLLIN, 0});
    fd_streams.push_back(nullptr);
    fd_children.push_back(nullptr);
    for (auto& c : children)
      for (Stream* s : {&c.out, &c.err})
        if (s->fd >= 0) {
          fds.push_back({s->fd, POLLIN, 0});
          fd_streams.push_back(s);
          fd_children.push_back(&c);
        }
    // Wake up for the next deadline, and at least every second in any case.
    auto wait = std::chrono::milliseconds(1000);
    auto until = [&](Clock::time_point t) {
      auto d = std::chrono::duration_cast<std::chrono::milliseconds>(t - now) + std::chrono::milliseconds(1);
      wait = std::max(std::chrono::milliseconds(0), std::min(wait, d));
    };
    if (kill_at && !killed) until(*kill_at);
    if (drain_until) until(*drain_until);
    int n = poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(fmt::format("poll failed: {}", std::strerror(errno)));
    }
    if (fds[0].revents) {
      for (int sig : signals.drain()) {
        if (sig != SIGINT && sig != SIGTERM) continue;  // SIGCHLD: reaped at the top
        int alive = 0;
        for (auto& c : children) {
          if (c.running) ++alive;
          signal_child(c, sig);
        }
        say(fmt::format("received {}; forwarded it to {} rank(s)", signal_name(sig), alive));
      }
    }
    char buf[65536];
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Stream& s = *fd_streams[i];
      const std::string& prefix = fd_children[i]->prefix;
      ssize_t r = read(s.fd, buf, sizeof buf);
      if (r > 0) {
        s.buf.append(buf, static_cast<size_t>(r));
        s.relay(prefix, false);
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        s.close_fd(prefix);
      }
    }
  }
  for (auto& c : children) {
    c.out.close_fd(c.prefix);
    c.err.close_fd(c.prefix);
  }
  if (failure_code) {
    say("failed: " + failure_text);
    return *failure_code;
  }
  return 0;
}

}  // namespace tess::launch
