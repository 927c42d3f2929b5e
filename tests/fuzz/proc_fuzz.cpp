// libFuzzer target: the /proc parsers, on any text. The first byte picks
// the parser, the rest is the file's content. Each parser must return
// (a value or a refusal) without reading outside its input; a few
// invariants are checked on the way.
#include <stdlib.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "host/metrics/sample.hpp"
#include "host/proc/proc_files.hpp"
#include "host/proc/proc_stat.hpp"

namespace {

#define CHECK(cond) \
  do {              \
    if (!(cond)) abort(); \
  } while (0)

enum Parser : uint8_t {
  kStat,        // /proc/PID/stat
  kStatus,      // /proc/PID/status
  kCmdline,     // /proc/PID/cmdline
  kTcp,         // /proc/PID/net/tcp and tcp6
  kLimits,      // /proc/PID/limits
  kIo,          // /proc/PID/io
  kCtxt,        // the context switches of /proc/PID/status (metrics)
  kSchedstat,   // /proc/PID/schedstat
  kSocketLink,  // readlink of /proc/PID/fd/N
  kChildren,    // /proc/PID/task/TID/children
  kParsers
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto which = static_cast<Parser>(data[0] % kParsers);
  // A heap copy of exactly the content: ASan sees any read past it.
  std::vector<char> buf(data + 1, data + size);
  std::string_view text(buf.data(), buf.size());
  switch (which) {
    case kStat: {
      vigil::ProcStat reused;
      reused.comm = "a previous, longer comm that the parse must replace";
      bool ok = vigil::parse_proc_stat(text, reused);
      auto fresh = vigil::parse_proc_stat(text);
      CHECK(ok == fresh.has_value());
      if (ok) {
        CHECK(reused.comm == fresh->comm && reused.pid == fresh->pid &&
              reused.start_time == fresh->start_time && reused.exit_code == fresh->exit_code);
        CHECK(reused.comm.size() <= text.size());
      }
      break;
    }
    case kStatus: vigil::parse_proc_status(text); break;
    case kCmdline: {
      std::string_view line = vigil::cmdline_text(buf.data(), buf.size());
      CHECK(line.size() <= buf.size() && line.find('\0') == std::string_view::npos);
      break;
    }
    case kTcp: {
      size_t n = 0;
      vigil::parse_tcp_table(text, [&](const vigil::TcpSocket&) { ++n; });
      CHECK(n <= text.size());
      break;
    }
    case kLimits: vigil::parse_nofile_limit(text); break;
    case kIo: vigil::parse_proc_io(text); break;
    case kCtxt: {
      uint64_t v = 0, i = 0;
      vigil::parse_ctxt_switches(text, v, i);
      break;
    }
    case kSchedstat: vigil::parse_schedstat_runs(text); break;
    case kSocketLink: {
      auto ino = vigil::socket_link_inode(text);
      if (ino) CHECK(text.starts_with("socket:[") && text.ends_with("]"));
      break;
    }
    case kChildren: {
      std::vector<pid_t> pids;
      vigil::parse_pid_list(text, pids);
      CHECK(pids.size() <= text.size());
      break;
    }
    case kParsers: break;
  }
  return 0;
}
