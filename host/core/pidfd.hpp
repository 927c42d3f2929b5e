// pidfd calls through syscall(2): glibc 2.36's <sys/pidfd.h> lacks C++
// linkage, and a raw syscall is all these are anyway.
#pragma once

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <optional>

namespace vigil {

inline int pidfd_open(pid_t pid, unsigned flags) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}
inline int pidfd_send_signal(int pidfd, int sig, siginfo_t* info, unsigned flags) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags));
}

// PIDFD_GET_INFO (Linux 6.13; with PIDFD_INFO_EXIT, 6.15, also after the
// process was reaped): the cgroup (v2) id of the process, or the one it
// was in when it exited. nullopt where the kernel cannot tell.
inline std::optional<uint64_t> pidfd_cgroup_id(int pidfd) {
  struct Info {  // struct pidfd_info, its first (64-byte) version
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t ids[11];
    int32_t exit_code;
  };
  static_assert(sizeof(Info) == 64);
  constexpr uint64_t kCgroupId = 1u << 2, kExit = 1u << 3;
  constexpr unsigned long kGetInfo = (3ul << 30) | (sizeof(Info) << 16) | (0xFFul << 8) | 11;
  Info info;
  memset(&info, 0, sizeof info);
  info.mask = kCgroupId | kExit;
  if (pidfd < 0 || ::ioctl(pidfd, kGetInfo, &info) != 0 || !(info.mask & kCgroupId))
    return std::nullopt;
  return info.cgroupid;
}

// Whether `pidfd` and the process now at `pid` are one process (pidfs,
// Linux 6.9: one inode per process, never reused). false when pid is
// gone, or was reused since the pidfd was made.
inline bool pidfd_is(int pidfd, pid_t pid) {
  int now = pidfd_open(pid, 0);
  if (now < 0) return false;
  struct stat a, b;
  bool same =
      fstat(pidfd, &a) == 0 && fstat(now, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
  ::close(now);
  return same;
}

}  // namespace vigil
