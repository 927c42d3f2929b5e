// End-to-end: `vigil discover` on a machine state the test makes (the test
// is a subreaper: see harness.cpp), and mode = "observe" on a real daemon.
// Every process of the test carries the test's directory in its command
// line; the proposals are filtered to those (the machine runs others).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// One program for every role (its file name says which); python3, as a
// program an operator would run.
const char* kService = R"PY(import os, socket, sys, time
role = os.path.basename(sys.argv[0])[:-3]
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0" if role == "nsd" else "127.0.0.1", port)); s.listen(8); return s
if role == "fakeinit":
    # An init-like parent: starts the daemon (in a session of its own), waits.
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.execv(sys.executable, [sys.executable, os.path.dirname(sys.argv[0]) + "/listend.py"] + sys.argv[1:])
    os.waitpid(pid, 0); sys.exit(0)
if role == "oddd" and len(sys.argv) == 1:
    # What a proposal must quote: newlines and quotes in argv and environment.
    os.execve(sys.executable, [sys.executable, sys.argv[0], "line\nbreak", "x]]\"y\r"],
              dict(os.environ, ODD="a\nb"))
if role != "cronjob" and os.getsid(0) != os.getpid():
    os.setsid()
if role in ("listend", "nsd"):
    s = listen(int(sys.argv[1]))
if role == "preforkd":
    s = listen(int(sys.argv[1]))
    for _ in range(3):
        if os.fork() == 0:
            while True: time.sleep(60)
if role == "cronjob":
    time.sleep(0.3); sys.exit(0)
while True: time.sleep(60)
)PY";

const char* kPython = "/usr/bin/python3";

// A child of the test in the test's session (as a program an init-like
// parent starts); the program's own setsid decides its session.
pid_t start(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0), dup2(null, 1);
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execv(a[0], a.data());
    _exit(127);
  }
  return pid;
}

bool can_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  close(fd);
  return ok;
}

// Live processes whose cmdline contains `text`.
int count_procs(const std::string& text) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string c = read_file(e.path().string() + "/cmdline");
    for (auto& ch : c) if (ch == '\0') ch = ' ';
    std::string st = read_file(e.path().string() + "/stat");
    if (c.find(text) != std::string::npos && st.find(") Z") == std::string::npos) ++n;
  }
  return n;
}

// Kills every process whose cmdline names the directory (the test's
// own), then reaps what is ours: also when an assertion failed.
struct Cleanup {
  std::string dir, netns;
  ~Cleanup() {
    for (int round = 0; round < 3; ++round)
      for (const auto& e : std::filesystem::directory_iterator("/proc")) {
        std::string name = e.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string c = read_file(e.path().string() + "/cmdline");
        for (auto& ch : c) if (ch == '\0') ch = ' ';
        if (c.find(dir) != std::string::npos) kill(std::stoi(name), SIGKILL);
      }
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (!netns.empty()) run_command({"/usr/sbin/ip", "netns", "del", netns});
    std::filesystem::remove_all(dir);
  }
};

}  // namespace

TEST(DiscoverTest, ProposesExactlyTheSteadyProcessesWithNamesInstancesCountsAndRecovery) {
  char tmpl[] = "/tmp/vgl-disc-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  Cleanup cleanup{dir, "vgl-" + std::filesystem::path(dir).filename().string().substr(9)};
  for (const char* role :
       {"fakeinit", "listend", "preforkd", "instd", "nsd", "flappy", "cronjob", "oddd"})
    write_file(dir + "/" + role + ".py", kService);
  std::filesystem::create_directories(dir + "/init.d");
  write_file(dir + "/init.d/instd", "#!/bin/sh\nDAEMON=" + dir + "/instd.py\n");
  std::filesystem::permissions(dir + "/init.d/instd", std::filesystem::perms::owner_all);
  int p_listen = free_port(), p_prefork = free_port(), p_ns = 4321;
  start({kPython, dir + "/fakeinit.py", std::to_string(p_listen)});
  start({kPython, dir + "/preforkd.py", std::to_string(p_prefork)});
  start({kPython, dir + "/instd.py", "--name", "e1"});
  start({kPython, dir + "/instd.py", "--name", "e2"});
  pid_t flappy = start({kPython, dir + "/flappy.py"});
  start({kPython, dir + "/oddd.py"});
  // An interactive shell loop on a terminal of its own.
  start({"/usr/bin/script", "-qc", "bash -c 'while :; do sleep 0.2; done' " + dir, "/dev/null"});
  ASSERT_EQ(run_command({"/usr/sbin/ip", "netns", "add", cleanup.netns}).code, 0);
  start({"/usr/sbin/ip", "netns", "exec", cleanup.netns, kPython, dir + "/nsd.py",
         std::to_string(p_ns)});
  ASSERT_TRUE(wait_for([&] { return can_connect(p_listen) && can_connect(p_prefork); }));
  ASSERT_TRUE(wait_for([&] { return count_procs(dir + "/preforkd.py") == 4; }));
  ASSERT_TRUE(wait_for([&] {
    return run_command({"/usr/sbin/ip", "netns", "exec", cleanup.netns, "/bin/sh", "-c",
                        "grep -qi ':10E1 .* 0A ' /proc/net/tcp"}).code == 0;
  }));
  ASSERT_TRUE(wait_for([&] { return count_procs("while :; do sleep") >= 1; }));

  // discover in the background; the test acts after its first scan.
  std::string out = dir + "/out.json", err = dir + "/err.txt", rules = dir + "/discovered.lua";
  pid_t disc = fork();
  if (disc == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(o, 1), dup2(e, 2);
    execl(VIGIL_BINARY, VIGIL_BINARY, "discover", "--window", "4s", "--every", "1s", "--json",
          "--write", rules.c_str(), "--init-dir", (dir + "/init.d").c_str(), nullptr);
    _exit(127);
  }
  ASSERT_TRUE(wait_for([&] { return read_file(err).find("scan 1/5") != std::string::npos; }));
  // Restarted during the window: killed, started again by hand.
  kill(flappy, SIGKILL);
  ASSERT_TRUE(reap(flappy));
  start({kPython, dir + "/flappy.py"});
  // A short-lived job, as cron would start one.
  start({kPython, dir + "/cronjob.py"});
  int status = 0;
  ASSERT_TRUE(wait_for([&] { return waitpid(disc, &status, WNOHANG) == disc; }, 30s));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(err);

  json reply = json::parse(read_file(out));
  std::map<std::string, json> mine;
  for (const auto& c : reply["candidates"]) {
    std::string argv;
    for (const auto& a : c["process"]["argv"]) argv += a.get<std::string>() + " ";
    if (argv.find(dir) != std::string::npos) mine[c["name"]] = c;
  }
  std::set<std::string> names;
  for (const auto& [n, c] : mine) names.insert(n);
  EXPECT_EQ(names, (std::set<std::string>{"flappy", "instd-e1", "instd-e2", "listend", "nsd",
                                          "oddd", "preforkd"}))
      << reply.dump(1);
  ASSERT_EQ(mine.size(), 7u);
  EXPECT_EQ(mine["listend"]["process"]["listening"][0]["port"], p_listen);
  EXPECT_EQ(mine["listend"]["recovery"]["method"], "start");
  EXPECT_EQ(mine["preforkd"]["workers"], 3);
  EXPECT_EQ(mine["instd-e1"]["instance"], "e1");
  EXPECT_EQ(mine["instd-e2"]["instance"], "e2");
  EXPECT_EQ(mine["instd-e1"]["recovery"]["method"], "init_script");
  EXPECT_EQ(mine["instd-e1"]["recovery"]["command"], dir + "/init.d/instd restart");
  EXPECT_EQ(mine["nsd"]["process"]["listening"][0]["port"], p_ns);
  EXPECT_NE(mine["nsd"]["process"]["netns"], mine["listend"]["process"]["netns"]);
  EXPECT_EQ(mine["flappy"]["restarts"], 1);
  EXPECT_EQ(mine["preforkd"]["restarts"], 0);

  // The file is a rule set vigil accepts, every watch observed.
  std::string text = read_file(rules);
  EXPECT_NE(text.find("watch \"preforkd\""), std::string::npos);
  EXPECT_NE(text.find("count = { min = 4 }"), std::string::npos) << text;
  EXPECT_NE(text.find("cmdline = \"--name e1\""), std::string::npos) << text;
  CommandResult chk = run_command({VIGIL_BINARY, "check", rules});
  EXPECT_EQ(chk.code, 0) << chk.err << text;
}

TEST(DiscoverTest, RefusesAShortWindowAndAnExistingFile) {
  CommandResult r = run_command({VIGIL_BINARY, "discover", "--window", "1s", "--every", "1s"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("shorter than two scans"), std::string::npos) << r.err;
  char tmpl[] = "/tmp/vgl-disc-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string file = std::string(tmpl) + "/taken.lua";
  write_file(file, "-- mine\n");
  r = run_command({VIGIL_BINARY, "discover", "--window", "2s", "--every", "1s", "--write", file});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("exists (add --force"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(file), "-- mine\n");
  r = run_command(
      {VIGIL_BINARY, "discover", "--window", "0.2s", "--every", "0.1s", "--write", file, "--force"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(read_file(file).find("mode = \"observe\""), std::string::npos);
  CommandResult chk = run_command({VIGIL_BINARY, "check", file});
  EXPECT_EQ(chk.code, 0) << chk.err << read_file(file);
  std::filesystem::remove_all(tmpl);
}

TEST(ObserveTest, AnObservedProcessKilledIsNotRestartedAndIsAdoptedWhenItComesBack) {
  Daemon d;
  std::string prog = d.dir() + "/observed-sleep";
  std::filesystem::copy_file("/bin/sleep", prog);
  std::filesystem::permissions(prog, std::filesystem::perms::owner_all);
  d.write_rule("obs.lua", "watch 'obs' { mode = 'observe', match = { exe = '" + prog +
                              "' }, restart_script = '" + prog + " 1000' }\n");
  pid_t first = spawn_external({prog, "1000"});
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("obs") == first; })) << d.output();
  EXPECT_EQ(d.watch("obs")["mode"], "observe");
  EXPECT_NE(d.cli({"status"}).out.find("running (observe)"), std::string::npos);
  kill(first, SIGKILL);
  ASSERT_TRUE(reap(first));
  ASSERT_TRUE(d.wait_event("VGL0209", "obs")) << d.output();
  // Not restarted: no restart script ran, nothing of it runs.
  EXPECT_EQ(d.count_events("VGL0104", "obs"), 0);
  EXPECT_EQ(d.count_events("VGL0123", "obs"), 0);
  EXPECT_EQ(d.watch_pid("obs"), 0);
  EXPECT_EQ(count_procs(prog), 0);
  pid_t again = spawn_external({prog, "1000"});
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("obs") == again; })) << d.output();
  // An operator's stop lets go of it: still running.
  EXPECT_EQ(d.cli({"stop", "obs"}).code, 0);
  ASSERT_TRUE(d.wait_event("VGL0160", "obs")) << d.output();
  EXPECT_TRUE(process_alive(again));
  kill(again, SIGKILL);
  reap(again);
  d.stop();
}
