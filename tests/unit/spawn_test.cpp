// spawn: what a spawn hands back about its child without asking /proc.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host/core/pidfd.hpp"
#include "host/proc/proc_stat.hpp"
#include "host/supervise/spawn.hpp"

using namespace vigil;

// The start time comes from the boot clock read around the clone (issue
// 13: reading it back from /proc was a fifth of a restart): it must be
// exactly what /proc/PID/stat says, the identity every later check of
// the process compares with. Many spawns, so that some straddle a tick.
TEST(Spawn, TheStartTimeIsWhatProcSays) {
  for (int i = 0; i < 300; ++i) {
    std::string error;
    auto s = spawn_command({"/bin/sleep", "100"}, error);
    ASSERT_TRUE(s) << error;
    ASSERT_FALSE(s->failure);
    EXPECT_EQ(s->start_time, proc_start_time(s->pid)) << "spawn " << i;
    // The pidfd is the child's.
    EXPECT_EQ(pidfd_send_signal(s->pidfd.get(), SIGKILL, nullptr, 0), 0);
    int status = 0;
    ASSERT_EQ(waitpid(s->pid, &status, 0), s->pid);
    EXPECT_TRUE(WIFSIGNALED(status));
  }
}
