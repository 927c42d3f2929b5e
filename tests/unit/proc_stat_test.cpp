#include "host/proc/proc_stat.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

using vigil::parse_proc_stat;
using vigil::ProcStat;

namespace {

// Recorded on this machine (Debian 12, kernel 6.18) with `cat /proc/PID/stat`,
// kept byte for byte, trailing newline included. A perl with 3 extra
// threads, started as a grandchild of a job-control shell so that ppid,
// pgrp and session all differ. By hand, fields (1-based as in proc(5)):
// 1 pid 15062, 2 comm perl, 3 state S, 4 ppid 15061, 5 pgrp 15060,
// 6 session 15059, 9 flags 4194304, 10 minflt 755, 11 cminflt 0,
// 12 majflt 1, 13 cmajflt 0, 14 utime 59, 15 stime 15, 20 num_threads 4,
// 22 starttime 679540, 23 vsize 236650496, 24 rss 1797, 42 blkio 0; 52
// fields in all.
constexpr const char* kPerl =
    "15062 (perl) S 15061 15060 15059 0 -1 4194304 755 0 1 0 59 15 0 0 20 0 4 0 679540 "
    "236650496 1797 18446744073709551615 94537530605568 94537532260773 140725953215920 0 0 0 0 "
    "128 0 0 0 0 17 1 0 0 0 0 0 94537534038056 94537534108500 94537989963776 140725953222926 "
    "140725953223118 140725953223118 140725953224682 0\n";

// kPerl with field 42 (delayacct_blkio_ticks) changed from 0 to 37 by hand:
// kernel.task_delayacct is off on the recording machine, so every recorded
// value there is 0 and could not tell field 42 from its neighbours.
constexpr const char* kPerlBlkio37 =
    "15062 (perl) S 15061 15060 15059 0 -1 4194304 755 0 1 0 59 15 0 0 20 0 4 0 679540 "
    "236650496 1797 18446744073709551615 94537530605568 94537532260773 140725953215920 0 0 0 0 "
    "128 0 0 0 0 17 1 0 0 37 0 0 94537534038056 94537534108500 94537989963776 140725953222926 "
    "140725953223118 140725953223118 140725953224682 0\n";

// /proc/2/stat: kthreadd. flags 2129984 = 0x208040 (PF_KTHREAD 0x200000 |
// PF_NOFREEZE 0x8000 | PF_FORKNOEXEC 0x40); starttime 19; 1 thread; no
// memory (vsize 0, rss 0).
constexpr const char* kKthreadd =
    "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 19 0 0 18446744073709551615 0 0 "
    "0 0 0 0 0 2147483647 0 1 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

// /proc/16/stat: a kernel thread whose name is longer than a user
// process's 15-byte comm (the kernel shows kernel threads' full names).
constexpr const char* kLongKthread =
    "16 (rcu_exp_par_gp_kthread_worker/0) S 2 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 19 0 0 "
    "18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

// The fields after "(comm) " of a sample, split at spaces (fields 3..).
std::vector<std::string> fields_after_comm(const std::string& line) {
  std::istringstream in(line.substr(line.rfind(')') + 2));
  std::vector<std::string> out;
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

// The sample cut after field `last` (1-based), as the kernel would end it.
std::string cut_after_field(const std::string& line, size_t last, const char* end = "\n") {
  std::string out = line.substr(0, line.rfind(')') + 1);
  auto f = fields_after_comm(line);
  for (size_t i = 3; i <= last; ++i) out += " " + f.at(i - 3);
  return out + end;
}

void expect_perl(const ProcStat& st, uint64_t blkio) {
  EXPECT_EQ(st.pid, 15062);
  EXPECT_EQ(st.comm, "perl");
  EXPECT_EQ(st.state, 'S');
  EXPECT_EQ(st.ppid, 15061);
  EXPECT_EQ(st.pgrp, 15060);
  EXPECT_EQ(st.session, 15059);
  EXPECT_EQ(st.flags, 4194304u);
  EXPECT_FALSE(st.kernel_thread());
  EXPECT_FALSE(st.dead());
  EXPECT_EQ(st.minflt, 755u);
  EXPECT_EQ(st.majflt, 1u);
  EXPECT_EQ(st.utime, 59u);
  EXPECT_EQ(st.stime, 15u);
  EXPECT_EQ(st.num_threads, 4);
  EXPECT_EQ(st.start_time, 679540u);
  EXPECT_EQ(st.vsize, 236650496u);
  EXPECT_EQ(st.rss_pages, 1797);
  EXPECT_EQ(st.blkio_ticks, blkio);
}

void expect_same(const ProcStat& a, const ProcStat& b) {
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.comm, b.comm);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.ppid, b.ppid);
  EXPECT_EQ(a.pgrp, b.pgrp);
  EXPECT_EQ(a.session, b.session);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.minflt, b.minflt);
  EXPECT_EQ(a.majflt, b.majflt);
  EXPECT_EQ(a.utime, b.utime);
  EXPECT_EQ(a.stime, b.stime);
  EXPECT_EQ(a.num_threads, b.num_threads);
  EXPECT_EQ(a.start_time, b.start_time);
  EXPECT_EQ(a.vsize, b.vsize);
  EXPECT_EQ(a.rss_pages, b.rss_pages);
  EXPECT_EQ(a.blkio_ticks, b.blkio_ticks);
  EXPECT_EQ(a.exit_code, b.exit_code);
}

}  // namespace

TEST(ProcStat, SamplesHaveTheFieldCountTheTestsAssume) {
  EXPECT_EQ(fields_after_comm(kPerl).size() + 2, 52u);
  EXPECT_EQ(fields_after_comm(kPerlBlkio37).at(42 - 3), "37");
  EXPECT_EQ(fields_after_comm(kKthreadd).size() + 2, 52u);
}

TEST(ProcStat, OrdinaryProcessEveryField) {
  auto st = parse_proc_stat(kPerl);
  ASSERT_TRUE(st);
  expect_perl(*st, 0);
}

TEST(ProcStat, BlkioTicksIsField42) {
  auto st = parse_proc_stat(kPerlBlkio37);
  ASSERT_TRUE(st);
  expect_perl(*st, 37);
}

TEST(ProcStat, KernelThread) {
  auto st = parse_proc_stat(kKthreadd);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, 2);
  EXPECT_EQ(st->comm, "kthreadd");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 0);
  EXPECT_EQ(st->pgrp, 0);
  EXPECT_EQ(st->session, 0);
  EXPECT_EQ(st->flags, 2129984u);
  EXPECT_TRUE(st->kernel_thread());
  EXPECT_EQ(st->minflt, 0u);
  EXPECT_EQ(st->majflt, 0u);
  EXPECT_EQ(st->utime, 0u);
  EXPECT_EQ(st->stime, 0u);
  EXPECT_EQ(st->num_threads, 1);
  EXPECT_EQ(st->start_time, 19u);
  EXPECT_EQ(st->vsize, 0u);
  EXPECT_EQ(st->rss_pages, 0);
  EXPECT_EQ(st->blkio_ticks, 0u);

  auto lng = parse_proc_stat(kLongKthread);
  ASSERT_TRUE(lng);
  EXPECT_EQ(lng->pid, 16);
  EXPECT_EQ(lng->comm, "rcu_exp_par_gp_kthread_worker/0");
  EXPECT_EQ(lng->ppid, 2);
  EXPECT_TRUE(lng->kernel_thread());
}

TEST(ProcStat, CommWithSpacesParenthesesAndNewline) {
  const std::string line = kPerl;
  for (std::string comm : {"a b", " lead", "trail ", "x) S 1 2 (y", "new\nline", "end\n", ")", "((",
                           "a)b) c", "())", "1 (2) 3", ""}) {
    std::string l = line;
    l.replace(l.find("(perl)"), 6, "(" + comm + ")");
    auto st = parse_proc_stat(l);
    ASSERT_TRUE(st) << comm;
    EXPECT_EQ(st->pid, 15062) << comm;
    EXPECT_EQ(st->comm, comm);
    ProcStat want = *parse_proc_stat(kPerl);
    want.comm = comm;
    expect_same(*st, want);
  }
}

TEST(ProcStat, TruncatedBeforeField24IsRejected) {
  for (size_t last = 3; last <= 23; ++last) {
    EXPECT_FALSE(parse_proc_stat(cut_after_field(kPerl, last))) << "cut after field " << last;
    EXPECT_FALSE(parse_proc_stat(cut_after_field(kPerl, last, ""))) << "cut after field " << last;
    EXPECT_FALSE(parse_proc_stat(cut_after_field(kPerl, last, " "))) << "cut after field " << last;
  }
  EXPECT_FALSE(parse_proc_stat(""));
  EXPECT_FALSE(parse_proc_stat("15062 (perl"));
  EXPECT_FALSE(parse_proc_stat("15062 (perl)"));
  EXPECT_FALSE(parse_proc_stat("(perl) S 1 2 3 0 -1 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"));
  EXPECT_FALSE(
      parse_proc_stat("abc (x) S 1 2 3 0 -1 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"));
}

TEST(ProcStat, TruncatedAfterField24ParsesWithoutBlkio) {
  // Fields 24..41 present, 42 missing (older kernels, or a cut line): the
  // line parses and blkio_ticks is 0.
  for (size_t last = 24; last <= 41; ++last) {
    for (const char* end : {"\n", "", " "}) {
      auto st = parse_proc_stat(cut_after_field(kPerlBlkio37, last, end));
      ASSERT_TRUE(st) << "cut after field " << last;
      expect_perl(*st, 0);
    }
  }
  for (size_t last = 42; last <= 52; ++last) {
    auto st = parse_proc_stat(cut_after_field(kPerlBlkio37, last));
    ASSERT_TRUE(st) << "cut after field " << last;
    expect_perl(*st, 37);
  }
}

TEST(ProcStat, ReusedOutputIsFullyOverwritten) {
  ProcStat out;
  // Start from the long kernel thread: comm's storage grows past 15 bytes.
  ASSERT_TRUE(parse_proc_stat(kLongKthread, out));
  const char* storage = out.comm.data();
  size_t capacity = out.comm.capacity();

  ASSERT_TRUE(parse_proc_stat(kPerlBlkio37, out));
  expect_perl(out, 37);
  EXPECT_EQ(out.comm.data(), storage) << "comm's storage is reused";
  EXPECT_EQ(out.comm.capacity(), capacity);

  // Every field of the kernel thread replaces the perl's, blkio included.
  ASSERT_TRUE(parse_proc_stat(kKthreadd, out));
  expect_same(out, *parse_proc_stat(kKthreadd));

  // A line without field 42 clears what the previous one left there.
  ASSERT_TRUE(parse_proc_stat(kPerlBlkio37, out));
  ASSERT_EQ(out.blkio_ticks, 37u);
  ASSERT_TRUE(parse_proc_stat(cut_after_field(kPerlBlkio37, 30), out));
  expect_perl(out, 0);

  // Garbage fields left by a caller are all replaced.
  ProcStat dirty;
  dirty.pid = dirty.ppid = dirty.pgrp = dirty.session = -5;
  dirty.comm = "something else entirely";
  dirty.state = 'X';
  dirty.flags = 0xffffffffu;
  dirty.minflt = dirty.majflt = dirty.utime = dirty.stime = dirty.start_time = dirty.vsize =
      dirty.blkio_ticks = 99;
  dirty.num_threads = dirty.rss_pages = -99;
  ASSERT_TRUE(parse_proc_stat(kKthreadd, dirty));
  expect_same(dirty, *parse_proc_stat(kKthreadd));
}

TEST(ProcStat, ReadsOwnProcess) {
  auto st = vigil::read_proc_stat(getpid());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, getpid());
  EXPECT_EQ(st->ppid, getppid());
  EXPECT_EQ(st->pgrp, getpgrp());
  EXPECT_EQ(st->session, getsid(0));
  EXPECT_EQ(st->state, 'R');  // it is reading its own stat
  EXPECT_GT(st->start_time, 0u);
  EXPECT_EQ(vigil::proc_start_time(getpid()), st->start_time);
  EXPECT_TRUE(vigil::proc_alive(getpid(), st->start_time));
  EXPECT_FALSE(vigil::proc_alive(getpid(), st->start_time + 1));  // a recycled pid is not us
}

TEST(ProcStat, ExitCodeIsField52) {
  // The recorded perl is alive: its field 52 is 0. Cut before 52: absent.
  EXPECT_EQ(parse_proc_stat(kPerl)->exit_code, 0);
  EXPECT_EQ(parse_proc_stat(cut_after_field(kPerl, 51))->exit_code, -1);
  EXPECT_EQ(parse_proc_stat(cut_after_field(kPerl, 42))->exit_code, -1);
  // A zombie shows the status its parent would reap: exit 7 -> 7 << 8.
  pid_t child = fork();
  if (child == 0) _exit(7);
  ASSERT_GT(child, 0);
  std::optional<ProcStat> st;
  for (int i = 0; i < 2000; ++i) {  // until the kernel has made it a zombie
    st = vigil::read_proc_stat(child);
    if (st && st->state == 'Z') break;
    usleep(1000);
  }
  ASSERT_TRUE(st);
  EXPECT_EQ(st->state, 'Z');
  EXPECT_EQ(st->exit_code, 7 << 8);
  waitpid(child, nullptr, 0);
}
