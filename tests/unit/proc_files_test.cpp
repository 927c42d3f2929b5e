// parse_proc_status and cmdline_text on recorded text, and ProcReader on
// live processes the test starts.
#include "host/proc/proc_files.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/proc_test_support.hpp"

using namespace vigil;
using namespace vigil::proc_test;

namespace {

// Recorded on this machine with `cat /proc/PID/status`, byte for byte. A
// perl that set real uid 1001, effective uid 1002, real gid 2002 and
// effective gid 2003 (`($<, $>) = (1001, 1002)` after setting the gids)
// and holds 146500 kB in an array.
constexpr const char* kPerlUidStatus =
    "Name:\tperl\n"
    "Umask:\t0022\n"
    "State:\tS (sleeping)\n"
    "Tgid:\t15145\n"
    "Ngid:\t0\n"
    "Pid:\t15145\n"
    "PPid:\t1\n"
    "TracerPid:\t0\n"
    "Uid:\t1001\t1002\t0\t1002\n"
    "Gid:\t2002\t2003\t0\t2003\n"
    "FDSize:\t256\n"
    "Groups:\t2003 \n"
    "NStgid:\t15145\n"
    "NSpid:\t15145\n"
    "NSpgid:\t15142\n"
    "NSsid:\t10705\n"
    "Kthread:\t0\n"
    "VmPeak:\t  149216 kB\n"
    "VmSize:\t  149216 kB\n"
    "VmLck:\t       0 kB\n"
    "VmPin:\t       0 kB\n"
    "VmHWM:\t  146500 kB\n"
    "VmRSS:\t  146500 kB\n"
    "RssAnon:\t  141768 kB\n"
    "RssFile:\t    4732 kB\n"
    "RssShmem:\t       0 kB\n"
    "VmData:\t  141760 kB\n"
    "VmStk:\t     132 kB\n"
    "VmExe:\t    1620 kB\n"
    "VmLib:\t    2080 kB\n"
    "VmPTE:\t     332 kB\n"
    "VmSwap:\t       0 kB\n"
    "HugetlbPages:\t       0 kB\n"
    "CoreDumping:\t0\n"
    "THP_enabled:\t1\n"
    "untag_mask:\t0xffffffffffffffff\n"
    "Threads:\t1\n"
    "SigQ:\t0/96365\n"
    "SigPnd:\t0000000000000000\n"
    "ShdPnd:\t0000000000000000\n"
    "SigBlk:\t0000000000000000\n"
    "SigIgn:\t0000000000000086\n"
    "SigCgt:\t0000000000000000\n"
    "CapInh:\t0000000000000000\n"
    "CapPrm:\t000001fffeffffff\n"
    "CapEff:\t0000000000000000\n"
    "CapBnd:\t000001fffeffffff\n"
    "CapAmb:\t0000000000000000\n"
    "NoNewPrivs:\t0\n"
    "Seccomp:\t0\n"
    "Seccomp_filters:\t0\n"
    "Speculation_Store_Bypass:\tvulnerable\n"
    "SpeculationIndirectBranch:\talways enabled\n"
    "Cpus_allowed:\t3\n"
    "Cpus_allowed_list:\t0-1\n"
    "Mems_allowed:\t00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000001\n"
    "Mems_allowed_list:\t0\n"
    "voluntary_ctxt_switches:\t1\n"
    "nonvoluntary_ctxt_switches:\t3\n";

// A perl with 3 extra threads (Threads: 4), all ids 0.
constexpr const char* kPerlThreadsStatus =
    "Name:\tperl\n"
    "Umask:\t0022\n"
    "State:\tS (sleeping)\n"
    "Tgid:\t15397\n"
    "Ngid:\t0\n"
    "Pid:\t15397\n"
    "PPid:\t15395\n"
    "TracerPid:\t0\n"
    "Uid:\t0\t0\t0\t0\n"
    "Gid:\t0\t0\t0\t0\n"
    "FDSize:\t256\n"
    "Groups:\t \n"
    "NStgid:\t15397\n"
    "NSpid:\t15397\n"
    "NSpgid:\t15395\n"
    "NSsid:\t10705\n"
    "Kthread:\t0\n"
    "VmPeak:\t  254564 kB\n"
    "VmSize:\t  254564 kB\n"
    "VmLck:\t       0 kB\n"
    "VmPin:\t       0 kB\n"
    "VmHWM:\t   30948 kB\n"
    "VmRSS:\t   30948 kB\n"
    "RssAnon:\t   25936 kB\n"
    "RssFile:\t    5012 kB\n"
    "RssShmem:\t       0 kB\n"
    "VmData:\t   50844 kB\n"
    "VmStk:\t     132 kB\n"
    "VmExe:\t    1620 kB\n"
    "VmLib:\t    2100 kB\n"
    "VmPTE:\t     132 kB\n"
    "VmSwap:\t       0 kB\n"
    "HugetlbPages:\t       0 kB\n"
    "CoreDumping:\t0\n"
    "THP_enabled:\t1\n"
    "untag_mask:\t0xffffffffffffffff\n"
    "Threads:\t4\n"
    "SigQ:\t0/96365\n"
    "SigPnd:\t0000000000000000\n"
    "ShdPnd:\t0000000000000000\n"
    "SigBlk:\t0000000000000000\n"
    "SigIgn:\t0000000000000086\n"
    "SigCgt:\t0000000100000000\n"
    "CapInh:\t0000000000000000\n"
    "CapPrm:\t000001fffeffffff\n"
    "CapEff:\t000001fffeffffff\n"
    "CapBnd:\t000001fffeffffff\n"
    "CapAmb:\t0000000000000000\n"
    "NoNewPrivs:\t0\n"
    "Seccomp:\t0\n"
    "Seccomp_filters:\t0\n"
    "Speculation_Store_Bypass:\tvulnerable\n"
    "SpeculationIndirectBranch:\talways enabled\n"
    "Cpus_allowed:\t3\n"
    "Cpus_allowed_list:\t0-1\n"
    "Mems_allowed:\t00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000001\n"
    "Mems_allowed_list:\t0\n"
    "voluntary_ctxt_switches:\t3\n"
    "nonvoluntary_ctxt_switches:\t3\n";

// /proc/2/status: kthreadd. A kernel thread has no Vm* lines at all.
constexpr const char* kKthreaddStatus =
    "Name:\tkthreadd\n"
    "Umask:\t0022\n"
    "State:\tS (sleeping)\n"
    "Tgid:\t2\n"
    "Ngid:\t0\n"
    "Pid:\t2\n"
    "PPid:\t0\n"
    "TracerPid:\t0\n"
    "Uid:\t0\t0\t0\t0\n"
    "Gid:\t0\t0\t0\t0\n"
    "FDSize:\t64\n"
    "Groups:\t \n"
    "NStgid:\t2\n"
    "NSpid:\t2\n"
    "NSpgid:\t0\n"
    "NSsid:\t0\n"
    "Kthread:\t1\n"
    "Threads:\t1\n"
    "SigQ:\t0/96365\n"
    "SigPnd:\t0000000000000000\n"
    "ShdPnd:\t0000000000000000\n"
    "SigBlk:\t0000000000000000\n"
    "SigIgn:\tffffffffffffffff\n"
    "SigCgt:\t0000000000000000\n"
    "CapInh:\t0000000000000000\n"
    "CapPrm:\t000001ffffffffff\n"
    "CapEff:\t000001ffffffffff\n"
    "CapBnd:\t000001ffffffffff\n"
    "CapAmb:\t0000000000000000\n"
    "NoNewPrivs:\t0\n"
    "Seccomp:\t0\n"
    "Seccomp_filters:\t0\n"
    "Speculation_Store_Bypass:\tvulnerable\n"
    "SpeculationIndirectBranch:\talways enabled\n"
    "Cpus_allowed:\t3\n"
    "Cpus_allowed_list:\t0-1\n"
    "Mems_allowed:\t00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,"
    "00000000,00000000,00000000,00000001\n"
    "Mems_allowed_list:\t0\n"
    "voluntary_ctxt_switches:\t72\n"
    "nonvoluntary_ctxt_switches:\t0\n";

std::string without_line(std::string text, const std::string& prefix) {
  size_t at = text.find("\n" + prefix);
  if (at == std::string::npos) return text;
  size_t end = text.find('\n', at + 1);
  return text.erase(at + 1, end - at);
}

}  // namespace

TEST(ProcStatus, RecordedUserProcess) {
  auto st = parse_proc_status(kPerlUidStatus);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->uid, 1001u);
  EXPECT_EQ(st->euid, 1002u);
  EXPECT_EQ(st->gid, 2002u);
  EXPECT_EQ(st->egid, 2003u);
  EXPECT_EQ(st->threads, 1);
  EXPECT_EQ(st->vm_size_kib, 149216u);
  EXPECT_EQ(st->vm_rss_kib, 146500u);  // not VmHWM (same value here) nor RssAnon/RssFile
  EXPECT_EQ(st->voluntary_ctxt, 1u);
  EXPECT_EQ(st->nonvoluntary_ctxt, 3u);

  auto threads = parse_proc_status(kPerlThreadsStatus);
  ASSERT_TRUE(threads);
  EXPECT_EQ(threads->uid, 0u);
  EXPECT_EQ(threads->euid, 0u);
  EXPECT_EQ(threads->threads, 4);
  EXPECT_EQ(threads->vm_size_kib, 254564u);
  EXPECT_EQ(threads->vm_rss_kib, 30948u);
  EXPECT_EQ(threads->voluntary_ctxt, 3u);
  EXPECT_EQ(threads->nonvoluntary_ctxt, 3u);
}

TEST(ProcStatus, VmRssIsTheVmRssLine) {
  // VmHWM equals VmRSS in the recorded sample: without VmRSS the value
  // must be 0, not VmHWM's or RssAnon's.
  auto st = parse_proc_status(without_line(kPerlUidStatus, "VmRSS:"));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->vm_rss_kib, 0u);
  EXPECT_EQ(st->vm_size_kib, 149216u);
  st = parse_proc_status(without_line(kPerlUidStatus, "VmSize:"));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->vm_size_kib, 0u);  // not VmPeak's
}

TEST(ProcStatus, KernelThreadHasNoMemory) {
  auto st = parse_proc_status(kKthreaddStatus);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->uid, 0u);
  EXPECT_EQ(st->euid, 0u);
  EXPECT_EQ(st->threads, 1);
  EXPECT_EQ(st->vm_size_kib, 0u);
  EXPECT_EQ(st->vm_rss_kib, 0u);
  EXPECT_EQ(st->voluntary_ctxt, 72u);
  EXPECT_EQ(st->nonvoluntary_ctxt, 0u);
}

TEST(ProcStatus, NoUidLineIsNotAStatus) {
  std::string text = without_line(kPerlUidStatus, "Uid:");
  ASSERT_EQ(text.find("Uid:"), std::string::npos);
  EXPECT_FALSE(parse_proc_status(text));
  EXPECT_FALSE(parse_proc_status(""));
  EXPECT_FALSE(parse_proc_status("Name:\tx\nUid:\tabc\tdef\n"));
  EXPECT_FALSE(parse_proc_status("Name:\tx\nUid:\t5\n"));  // real without effective
  EXPECT_TRUE(parse_proc_status("Uid:\t5\t6\t7\t8"));      // no newline at the end
}

TEST(ProcCmdline, JoinsArgumentsWithSpaces) {
  auto text = [](std::string raw) {
    std::string copy = raw;
    return std::string(cmdline_text(copy.data(), copy.size()));
  };
  using namespace std::string_literals;
  EXPECT_EQ(text("/bin/sleep\0"
                 "1000\0"s),
            "/bin/sleep 1000");
  EXPECT_EQ(text("a\0b\0c\0"s), "a b c");
  EXPECT_EQ(text("a\0b\0\0\0"s), "a b");               // several trailing NULs
  EXPECT_EQ(text("a\0\0b\0"s), "a  b");                // an empty argument inside
  EXPECT_EQ(text("no terminator"s), "no terminator");  // a rewritten argv (setproctitle)
  EXPECT_EQ(text("one arg with spaces\0two\0"s), "one arg with spaces two");
  EXPECT_EQ(text("\0"s), "");
  EXPECT_EQ(text(""s), "");

  // Rewrites in place and views the caller's buffer.
  std::string raw = "x\0y\0"s;
  std::string_view v = cmdline_text(raw.data(), raw.size());
  EXPECT_EQ(v.data(), raw.data());
  EXPECT_EQ(raw, "x y\0"s);
}

TEST(ProcReader, LiveProcess) {
  // Started with distinct real and effective ids, so status cannot mix them up.
  Child child = spawn({"sleep with spaces", "1000"}, {.path = "/bin/sleep", .in_child = [] {
                                                        return setresgid(4321, 4322, 4322) == 0 &&
                                                               setresuid(1234, 1235, 1235) == 0;
                                                      }});
  ASSERT_TRUE(child);
  ProcReader reader;

  auto st = reader.stat(child.pid());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, child.pid());
  EXPECT_EQ(st->comm, "sleep");
  EXPECT_EQ(st->ppid, getpid());
  EXPECT_EQ(st->pgrp, getpgrp());
  EXPECT_EQ(st->num_threads, 1);
  EXPECT_FALSE(st->kernel_thread());
  EXPECT_FALSE(st->dead());
  EXPECT_GT(st->vsize, 0u);
  // (Not rss_pages: the kernel sums RSS from per-CPU counters lazily, and a
  // freshly exec'd sleep reads as 0 pages now and then.)
  auto self = reader.stat(getpid());
  ASSERT_TRUE(self);
  EXPECT_GE(st->start_time, self->start_time);
  EXPECT_LE(st->start_time, boottime_ticks());

  ProcStat reused;
  ASSERT_TRUE(reader.stat(child.pid(), reused));
  EXPECT_EQ(reused.start_time, st->start_time);

  auto status = reader.status(child.pid());
  ASSERT_TRUE(status);
  EXPECT_EQ(status->uid, 1234u);
  EXPECT_EQ(status->euid, 1235u);
  EXPECT_EQ(status->gid, 4321u);
  EXPECT_EQ(status->egid, 4322u);
  EXPECT_EQ(status->threads, 1);
  EXPECT_GT(status->vm_size_kib, 0u);

  auto cmd = reader.cmdline(child.pid());
  ASSERT_TRUE(cmd);
  EXPECT_EQ(*cmd, "sleep with spaces 1000");

  auto exe = reader.exe(child.pid());
  ASSERT_TRUE(exe);
  EXPECT_EQ(*exe, sleep_binary());

  auto text = reader.read(child.pid(), "comm");
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "sleep\n");
}

TEST(ProcReader, ExeOfADeletedBinaryIsItsOriginalPath) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string path = dir.copy_executable("/bin/sleep", "vigil sleep copy");  // a space too
  Child child = spawn({path, "1000"});
  ASSERT_TRUE(child);
  ASSERT_EQ(unlink(path.c_str()), 0);
  // What the kernel shows now, read without ProcReader.
  char link[4096];
  ssize_t n = readlink(proc_path(child.pid(), "exe").c_str(), link, sizeof link);
  ASSERT_GT(n, 0);
  ASSERT_EQ(std::string(link, static_cast<size_t>(n)), path + " (deleted)");

  ProcReader reader;
  auto exe = reader.exe(child.pid());
  ASSERT_TRUE(exe);
  EXPECT_EQ(*exe, path);
}

TEST(ProcReader, KernelThread) {
  ProcReader reader;
  auto st = reader.stat(2);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->kernel_thread());
  EXPECT_FALSE(reader.exe(2)) << "a kernel thread has no executable";
  auto cmd = reader.cmdline(2);
  ASSERT_TRUE(cmd);
  EXPECT_EQ(*cmd, "");
  auto status = reader.status(2);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->vm_rss_kib, 0u);
}

TEST(ProcReader, GoneProcess) {
  ProcReader reader;
  // pids are below pid_max: this one never exists.
  auto pid_max = read_file("/proc/sys/kernel/pid_max");
  ASSERT_TRUE(pid_max);
  pid_t never = std::stoi(*pid_max);
  EXPECT_FALSE(reader.stat(never));
  ProcStat st;
  EXPECT_FALSE(reader.stat(never, st));
  EXPECT_FALSE(reader.status(never));
  EXPECT_FALSE(reader.cmdline(never));
  EXPECT_FALSE(reader.exe(never));
  EXPECT_FALSE(reader.read(never, "stat"));
  EXPECT_EQ(reader.count_fds(never), -1);
  EXPECT_TRUE(reader.children(never).empty());

  // A process that existed, reaped. (Its pid may be reused in between by
  // someone else: then it is another process, with another start time.)
  Child child = spawn({"/bin/sleep", "1000"});
  ASSERT_TRUE(child);
  pid_t pid = child.pid();
  auto before = reader.stat(pid);
  ASSERT_TRUE(before);
  child.kill_and_wait();
  auto after = reader.stat(pid);
  EXPECT_TRUE(!after || after->start_time != before->start_time);
  if (!after) {
    EXPECT_FALSE(reader.status(pid));
    EXPECT_FALSE(reader.exe(pid));
    EXPECT_FALSE(reader.cmdline(pid));
    EXPECT_EQ(reader.count_fds(pid), -1);
  }
}

TEST(ProcReader, Zombie) {
  Child child = spawn({"/bin/sleep", "1000"});
  ASSERT_TRUE(child);
  ASSERT_EQ(kill(child.pid(), SIGKILL), 0);
  ASSERT_TRUE(child.wait_zombie());
  ProcReader reader;
  auto st = reader.stat(child.pid());
  ASSERT_TRUE(st) << "a zombie still has its stat";
  EXPECT_EQ(st->state, 'Z');
  EXPECT_TRUE(st->dead());
  EXPECT_FALSE(reader.exe(child.pid()));
  auto cmd = reader.cmdline(child.pid());
  EXPECT_TRUE(!cmd || cmd->empty());
}

TEST(ProcReader, CountFds) {
  // 0, 1, 2 on /dev/null, 3 the ready pipe, then `extra` more: enough
  // entries that /proc/PID/fd takes several getdents64 calls.
  constexpr int kExtra = 1000;
  Pipe ready;
  Child child = fork_child([&] {
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 ||
        dup2(ready.w.get(), 3) < 0 || close_range(4, ~0u, 0) != 0)
      _exit(1);
    for (int i = 0; i < kExtra; ++i)
      if (open("/dev/null", O_RDONLY) < 0) _exit(2);
    if (write(3, "k", 1) != 1) _exit(3);
    pause_forever();
  });
  ASSERT_TRUE(child);
  ready.w.reset();
  char c = 0;
  ASSERT_EQ(read(ready.r.get(), &c, 1), 1) << "the child could not set up its descriptors";
  ProcReader reader;
  EXPECT_EQ(reader.count_fds(child.pid()), 4 + kExtra);
}

TEST(ProcReader, CountFdsOfOwnProcess) {
  ProcReader reader;
  int before = reader.count_fds(getpid());
  ASSERT_GT(before, 0);
  {
    Pipe p;
    EXPECT_EQ(reader.count_fds(getpid()), before + 2);
  }
  EXPECT_EQ(reader.count_fds(getpid()), before);
}

TEST(ProcReader, ChildrenOfEveryThread) {
  // A parent with 3 children: two forked by its main thread, one by a
  // second thread (listed in that thread's task/TID/children only).
  Subreaper subreaper;
  ASSERT_TRUE(subreaper.ok());
  Pipe report;  // the parent writes: the second thread's tid, then the 3 child pids
  Child parent = fork_child(
      [&] {
        report.r.reset();
        pid_t pids[4] = {};
        for (int i = 1; i <= 2; ++i) {
          pids[i] = fork();
          if (pids[i] == 0) pause_forever();
        }
        std::thread second([&] {
          pids[0] = gettid();
          pids[3] = fork();
          if (pids[3] == 0) pause_forever();
          if (write(report.w.get(), pids, sizeof pids) != sizeof pids) _exit(1);
          pause_forever();
        });
        pause_forever();
      },
      /*own_group=*/true);
  ASSERT_TRUE(parent);
  GroupGuard group(parent);
  report.w.reset();
  pid_t pids[4] = {};
  ASSERT_EQ(read(report.r.get(), pids, sizeof pids), static_cast<ssize_t>(sizeof pids));
  pid_t thread = pids[0];

  ProcReader reader;
  auto found = reader.children(parent.pid());
  std::sort(found.begin(), found.end());
  std::vector<pid_t> want{pids[1], pids[2], pids[3]};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(found, want);
  // The third child is listed under the second thread, not the leader.
  std::string task = "/proc/" + std::to_string(parent.pid()) + "/task/";
  auto leader = read_file(task + std::to_string(parent.pid()) + "/children");
  ASSERT_TRUE(leader);
  EXPECT_EQ(leader->find(std::to_string(pids[3]) + " "), std::string::npos);
  auto second = read_file(task + std::to_string(thread) + "/children");
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, std::to_string(pids[3]) + " ");

  Child lonely = spawn({"/bin/sleep", "1000"});
  ASSERT_TRUE(lonely);
  EXPECT_TRUE(reader.children(lonely.pid()).empty());
}

// Recorded from this machine's /proc/PID/net/tcp: the header, a LISTEN
// socket on 127.0.0.1:53139 with 3 connections waiting (rx_queue), one
// in CLOSE_WAIT (state 08).
TEST(ProcNetTcp, ParsesStatesPortsQueuesAndInodes) {
  const char* table =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
      "timeout inode                                                     \n"
      "   1: 0100007F:CF93 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        "
      "0 1221730 4 000000008caef3ad 100 0 0 10 0                   \n"
      "   2: 0100007F:CF93 0100007F:B7C2 08 00000000:00000001 00:00000000 00000000     0        "
      "0 1221744 1 0000000042f2a8d1 20 4 30 10 -1                 \n";
  std::vector<vigil::TcpSocket> got;
  ASSERT_TRUE(vigil::parse_tcp_table(table, [&](const vigil::TcpSocket& t) { got.push_back(t); }));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].state, vigil::kTcpListen);
  EXPECT_EQ(got[0].local_port, 53139u);
  EXPECT_EQ(got[0].rx_queue, 3u);
  EXPECT_EQ(got[0].inode, 1221730u);
  EXPECT_EQ(got[1].state, vigil::kTcpCloseWait);
  EXPECT_EQ(got[1].inode, 1221744u);
  // Only the header: no sockets. Garbage: an error.
  got.clear();
  EXPECT_TRUE(
      vigil::parse_tcp_table("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when\n",
                             [&](const vigil::TcpSocket& t) { got.push_back(t); }));
  EXPECT_TRUE(got.empty());
  EXPECT_FALSE(vigil::parse_tcp_table("header\n   1: garbage\n", [](const vigil::TcpSocket&) {}));
}

// One parser for the fd link text, for the probes' socket_inodes and the
// dumps' fd list (which used sscanf("socket:[%lu]"): it took "socket:[-1"
// and "socket:[12x" as sockets 2^64-1 and 12).
TEST(ProcFdLink, SocketInodeOnlyFromAWholeSocketLink) {
  EXPECT_EQ(socket_link_inode("socket:[12345]"), 12345u);
  EXPECT_EQ(socket_link_inode("socket:[0]"), 0u);
  for (const char* bad : {"socket:[]", "socket:[-1]", "socket:[12x]", "socket:[12", "socket:12]",
                          "pipe:[12345]", "anon_inode:[eventfd]", "/dev/null", "socket:[",
                          "socket:[99999999999999999999]", ""})
    EXPECT_FALSE(socket_link_inode(bad).has_value()) << bad;
}

TEST(ProcChildren, PidList) {
  std::vector<pid_t> pids;
  parse_pid_list("12 345 6789 ", pids);
  EXPECT_EQ(pids, (std::vector<pid_t>{12, 345, 6789}));
  pids.clear();
  parse_pid_list("", pids);
  parse_pid_list("x 1", pids);
  EXPECT_TRUE(pids.empty());
}

TEST(ProcLimits, SoftNofileLimit) {
  const char* limits =
      "Limit                     Soft Limit           Hard Limit           Units     \n"
      "Max cpu time              unlimited            unlimited            seconds   \n"
      "Max open files            1024                 20000                files     \n";
  EXPECT_EQ(vigil::parse_nofile_limit(limits), 1024u);
  EXPECT_EQ(vigil::parse_nofile_limit("Max open files            unlimited  unlimited  files\n"),
            0u);
  EXPECT_EQ(vigil::parse_nofile_limit(""), 0u);
}
