#include "host/proc/proc_stat.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

using vigil::parse_proc_stat;

// Recorded from this machine's /proc (fields after comm shortened to what
// proc(5) defines; the layout is what matters).
constexpr const char* kSleep =
    "3429 (sleep) S 3426 3429 3429 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 1525519 2478080 "
    "224 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";

TEST(ProcStat, ParsesOrdinaryLine) {
  auto st = parse_proc_stat(kSleep);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, 3429);
  EXPECT_EQ(st->comm, "sleep");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 3426);
  EXPECT_EQ(st->pgrp, 3429);
  EXPECT_EQ(st->session, 3429);
  EXPECT_EQ(st->num_threads, 1);
  EXPECT_EQ(st->start_time, 1525519u);
  EXPECT_EQ(st->vsize, 2478080u);
  EXPECT_EQ(st->rss_pages, 224);
}

TEST(ProcStat, CommWithSpacesParenthesesAndNewline) {
  std::string line = kSleep;
  for (std::string comm : {"a b", "x) S 1 2 (y", "new\nline", ")", "((", ""}) {
    std::string l = line;
    l.replace(l.find("(sleep)"), 7, "(" + comm + ")");
    auto st = parse_proc_stat(l);
    ASSERT_TRUE(st) << comm;
    EXPECT_EQ(st->comm, comm);
    EXPECT_EQ(st->state, 'S');
    EXPECT_EQ(st->ppid, 3426);
    EXPECT_EQ(st->start_time, 1525519u);
  }
}

TEST(ProcStat, RejectsTruncatedLines) {
  EXPECT_FALSE(parse_proc_stat(""));
  EXPECT_FALSE(parse_proc_stat("12 (x"));
  EXPECT_FALSE(parse_proc_stat("12 (x) S 1 2"));
  EXPECT_FALSE(parse_proc_stat("abc (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"));
}

TEST(ProcStat, ReadsOwnProcess) {
  auto st = vigil::read_proc_stat(getpid());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, getpid());
  EXPECT_EQ(st->ppid, getppid());
  EXPECT_GT(st->start_time, 0u);
  EXPECT_TRUE(vigil::proc_alive(getpid(), st->start_time));
  EXPECT_FALSE(vigil::proc_alive(getpid(), st->start_time + 1));  // a recycled pid is not us
}
