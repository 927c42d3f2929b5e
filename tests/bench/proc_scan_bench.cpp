// vigil_proc_bench: what vigil's /proc discovery path costs on a machine
// with many processes (Google Benchmark; see README.md next to this file).
//
// Before the benchmarks run it forks --procs children (10000 by default)
// that only block in pause(): no exec, one process group, each with
// PR_SET_PDEATHSIG so that they die with the bench whatever happens to it.
// They are SIGKILLed and reaped at the end, and on SIGINT/SIGTERM.
//
// Measured:
//   scan/*        PidIterator over /proc + ProcReader::stat of every pid
//   find/*        find_processes with a name-only matcher (stat only) and
//                 with matchers that read status and cmdline of everyone
//   stat_one/*    ProcReader::stat of one pid (the per-watch steady state)
// Every benchmark reports, per iteration, the allocations made
// (allocs_per_iter, bytes_per_iter: calls to malloc and friends and to
// operator new, counted by the replacements below) and the files opened
// (opens_per_iter). --where=N prints the call stacks of the first N
// allocations of one warm pass of each path.
#include <benchmark/benchmark.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "host/proc/match.hpp"
#include "host/proc/proc_files.hpp"
#include "host/proc/proc_scan.hpp"
#include "host/proc/proc_stat.hpp"

// ------------------------------------------------ counting allocations

namespace {

std::atomic<uint64_t> g_allocs{0};
std::atomic<uint64_t> g_bytes{0};
std::atomic<uint64_t> g_opens{0};
std::atomic<int> g_trace{0};  // print the stack of this many more allocations
thread_local bool t_tracing = false;

void note_alloc(size_t bytes) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (g_trace.load(std::memory_order_relaxed) > 0 && !t_tracing) {
    t_tracing = true;
    if (g_trace.fetch_sub(1) > 0) {
      char head[64];
      int n = snprintf(head, sizeof head, "--- allocation of %zu bytes:\n", bytes);
      ssize_t ignored = write(2, head, static_cast<size_t>(n));
      (void)ignored;
      void* frames[24];
      backtrace_symbols_fd(frames, backtrace(frames, 24), 2);
    }
    t_tracing = false;
  }
}

}  // namespace

// glibc's allocator under its internal names: the replacements below
// count and forward, so whatever calls malloc (libstdc++, libc's own
// regexec, getdents buffers) is counted, once.
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void __libc_free(void*);
void* __libc_memalign(size_t, size_t);
void* __libc_valloc(size_t);
void* __libc_pvalloc(size_t);

void* malloc(size_t n) noexcept {
  note_alloc(n);
  return __libc_malloc(n);
}
void* calloc(size_t count, size_t size) noexcept {
  note_alloc(count * size);
  return __libc_calloc(count, size);
}
void* realloc(void* p, size_t n) noexcept {
  note_alloc(n);
  return __libc_realloc(p, n);
}
void free(void* p) noexcept {
  __libc_free(p);
}
void* memalign(size_t align, size_t n) noexcept {
  note_alloc(n);
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) noexcept {
  note_alloc(n);
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) noexcept {
  note_alloc(n);
  void* p = __libc_memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
void* valloc(size_t n) noexcept {
  note_alloc(n);
  return __libc_valloc(n);
}
void* pvalloc(size_t n) noexcept {
  note_alloc(n);
  return __libc_pvalloc(n);
}

// Files opened: which /proc files a path reads, per process.
int open(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  g_opens.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, flags, mode));
}
int open64(const char* path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  g_opens.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, flags, mode));
}
}

// operator new/delete: counted here and served by glibc directly, so an
// allocation is not counted again by malloc above.
void* operator new(size_t n) {
  note_alloc(n);
  if (void* p = __libc_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  return operator new(n);
}
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  note_alloc(n);
  return __libc_malloc(n ? n : 1);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return operator new(n, std::nothrow);
}
void operator delete(void* p) noexcept {
  __libc_free(p);
}
void operator delete[](void* p) noexcept {
  __libc_free(p);
}
void operator delete(void* p, size_t) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, size_t) noexcept {
  __libc_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  __libc_free(p);
}

namespace {

using namespace vigil;

// Counts over the benchmark loop, reported per iteration.
class Counted {
 public:
  Counted() : allocs_(g_allocs.load()), bytes_(g_bytes.load()), opens_(g_opens.load()) {}
  // Reads the counts first: filling state.counters allocates too.
  void report(benchmark::State& state, double procs_per_iter = 0) {
    double allocs = static_cast<double>(g_allocs.load() - allocs_);
    double bytes = static_cast<double>(g_bytes.load() - bytes_);
    double opens = static_cast<double>(g_opens.load() - opens_);
    double iters = static_cast<double>(state.iterations());
    if (iters == 0) return;
    state.counters["allocs_per_iter"] = allocs / iters;
    state.counters["bytes_per_iter"] = bytes / iters;
    state.counters["opens_per_iter"] = opens / iters;
    if (procs_per_iter > 0) {
      state.counters["procs"] = procs_per_iter;
      // Time per process (shown as seconds with an SI prefix).
      state.counters["per_proc"] = benchmark::Counter(
          procs_per_iter * iters, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    }
  }

 private:
  uint64_t allocs_, bytes_, opens_;
};

// ------------------------------------------------------ the crowd

// `n` children that block in pause(), in one process group led by the
// first. They die with the bench (PR_SET_PDEATHSIG) even if it is killed;
// stop() kills the group and reaps every one.
class Crowd {
 public:
  bool start(int n, std::string& error) {
    pid_t self = getpid();
    pids_.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      pid_t pid = fork();
      if (pid < 0) {
        error =
            "fork " + std::to_string(i + 1) + " of " + std::to_string(n) + ": " + strerror(errno);
        return false;
      }
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != self) _exit(0);  // the bench died before prctl
        setpgid(0, pgid_);                // 0 for the first: it leads the group
        for (;;) pause();
      }
      if (pgid_ == 0) pgid_ = pid;
      setpgid(pid, pgid_);  // also here, so the group is right before the child runs
      pids_.push_back(pid);
    }
    return true;
  }

  void stop() {
    if (pgid_ == 0) return;
    kill(-pgid_, SIGKILL);
    size_t reaped = 0;
    for (;;) {
      int status;
      pid_t r = waitpid(-pgid_, &status, 0);
      if (r > 0)
        ++reaped;
      else if (errno != EINTR)
        break;
    }
    if (reaped != pids_.size())
      fprintf(stderr, "vigil_proc_bench: reaped %zu of %zu children\n", reaped, pids_.size());
    pgid_ = 0;
    pids_.clear();
  }

  ~Crowd() { stop(); }
  pid_t pgid() const { return pgid_; }
  pid_t middle() const { return pids_.empty() ? getpid() : pids_[pids_.size() / 2]; }
  size_t size() const { return pids_.size(); }

 private:
  pid_t pgid_ = 0;
  std::vector<pid_t> pids_;
};

volatile sig_atomic_t g_crowd_pgid = 0;

void on_fatal(int sig) {
  if (g_crowd_pgid > 0) kill(-g_crowd_pgid, SIGKILL);
  signal(sig, SIG_DFL);
  raise(sig);
}

bool raise_limit(int resource, rlim_t want, const char* name) {
  rlimit rl{};
  if (getrlimit(resource, &rl) != 0) return false;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
    if (setrlimit(resource, &rl) != 0) {
      fprintf(stderr, "vigil_proc_bench: raising %s to %llu: %s\n", name,
              static_cast<unsigned long long>(want), strerror(errno));
      return false;
    }
  }
  return true;
}

size_t count_processes() {
  size_t n = 0;
  PidIterator it;
  while (it.next()) ++n;
  return n;
}

long read_long(const char* path) {
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  long v = -1;
  if (fscanf(f, "%ld", &v) != 1) v = -1;
  fclose(f);
  return v;
}

long mem_available_kib() {
  FILE* f = fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %ld kB", &v) == 1) break;
  fclose(f);
  return v;
}

// ----------------------------------------------------- the paths measured

// The discovery path: every pid, its stat into one reused ProcStat (what
// find_processes does).
size_t scan_reused(ProcReader& reader, ProcStat& st) {
  size_t n = 0;
  PidIterator it;
  while (auto pid = it.next())
    if (reader.stat(*pid, st)) ++n;
  benchmark::DoNotOptimize(st.start_time);
  return n;
}

// The same with the convenience overload: a fresh ProcStat per pid.
size_t scan_copies(ProcReader& reader) {
  size_t n = 0;
  PidIterator it;
  while (auto pid = it.next()) {
    auto st = reader.stat(*pid);
    if (st) ++n;
    benchmark::DoNotOptimize(st);
  }
  return n;
}

size_t iterate_only() {
  size_t n = 0;
  PidIterator it;
  while (auto pid = it.next()) {
    benchmark::DoNotOptimize(*pid);
    ++n;
  }
  return n;
}

Matcher compile_or_die(const MatchSpec& spec) {
  std::string error;
  auto m = Matcher::compile(spec, error);
  if (!m) {
    fprintf(stderr, "vigil_proc_bench: %s: %s\n", spec.describe().c_str(), error.c_str());
    exit(2);
  }
  return *m;
}

struct Finder {
  const char* label;
  MatchSpec spec;
};

std::vector<Finder> finders() {
  std::vector<Finder> out;
  MatchSpec s;
  s.name = "no-such-comm";  // hits nothing: stat of everyone, nothing else
  out.push_back({"name_only", s});
  s = MatchSpec{};
  s.name = "vigil_proc_bench";  // the crowd's comm (cut to 15): every child hits
  out.push_back({"name_hits_crowd", s});
  s = MatchSpec{};
  s.cmdline = "--no-such-argument";  // status and cmdline of every root process
  s.user = "root";
  out.push_back({"cmdline_user", s});
  s = MatchSpec{};
  s.cmdline_re = "--no-such-argument$";  // the same with a regex
  s.user = "root";
  out.push_back({"cmdline_re_user", s});
  return out;
}

void print_where(const char* label, const std::function<void()>& pass, int n) {
  pass();  // warm: buffers grow, one-time allocations happen
  fprintf(stderr, "=== %s: stacks of the first %d allocations of a warm pass\n", label, n);
  uint64_t before = g_allocs.load();
  g_trace.store(n);
  pass();
  g_trace.store(0);
  fprintf(stderr, "=== %s: %llu allocations in the pass\n", label,
          static_cast<unsigned long long>(g_allocs.load() - before));
}

void usage(const char* program) {
  fprintf(stderr,
          "usage: %s [--procs=N] [--where=N] [benchmark flags]\n"
          "  --procs=N   extra processes to create for the run (default 10000)\n"
          "  --where=N   print the stacks of the first N allocations of each path\n"
          "Google Benchmark flags (--benchmark_filter, --benchmark_repetitions, ...) also apply.\n",
          program);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  int procs = 10000;
  int where = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.starts_with("--procs=")) {
      procs = atoi(a.c_str() + 8);
    } else if (a.starts_with("--where=")) {
      where = atoi(a.c_str() + 8);
    } else {
      usage(argv[0]);
      return 2;
    }
  }
  if (procs < 0) {
    usage(argv[0]);
    return 2;
  }

  // Processes that would exist: stay well under pid_max.
  size_t existing = count_processes();
  long pid_max = read_long("/proc/sys/kernel/pid_max");
  if (pid_max > 0 && existing + static_cast<size_t>(procs) + 1000 > static_cast<size_t>(pid_max)) {
    fprintf(stderr,
            "vigil_proc_bench: %d more processes do not fit under pid_max %ld (%zu exist)\n", procs,
            pid_max, existing);
    return 1;
  }
  auto want = static_cast<rlim_t>(existing + static_cast<size_t>(procs) + 1000);
  if (!raise_limit(RLIMIT_NPROC, want, "RLIMIT_NPROC") && getuid() != 0) return 1;
  // (The children hold no descriptors; the bench opens one at a time.)
  raise_limit(RLIMIT_NOFILE, 1024, "RLIMIT_NOFILE");

  void* warm[2];
  backtrace(warm, 2);  // loads libgcc_s now, not inside a traced allocation

  Crowd crowd;
  long avail_before = mem_available_kib();
  auto t0 = std::chrono::steady_clock::now();
  std::string error;
  bool ok = crowd.start(procs, error);
  g_crowd_pgid = crowd.pgid();
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS})
    signal(sig, on_fatal);
  if (!ok) {
    fprintf(stderr, "vigil_proc_bench: %s\n", error.c_str());
    return 1;  // ~Crowd kills and reaps what was started
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long avail_after = mem_available_kib();
  size_t total = count_processes();
  fprintf(stderr,
          "vigil_proc_bench: %zu processes before, %zu children created in %.2f s, %zu "
          "processes now; MemAvailable %ld -> %ld MiB\n",
          existing, crowd.size(), secs, total, avail_before / 1024, avail_after / 1024);
  benchmark::AddCustomContext("processes", std::to_string(total));
  benchmark::AddCustomContext("extra_processes", std::to_string(crowd.size()));

  ProcReader reader;
  ProcStat st;
  pid_t one = crowd.middle();

  if (where > 0) {
    print_where(
        "scan/reused_stat", [&] { scan_reused(reader, st); }, where);
    print_where(
        "scan/stat_copies", [&] { scan_copies(reader); }, where);
    for (const Finder& f : finders()) {
      Matcher m = compile_or_die(f.spec);
      print_where(
          f.label, [&] { benchmark::DoNotOptimize(find_processes(m, reader)); }, where);
    }
  }

  benchmark::RegisterBenchmark("scan/iterate_only", [](benchmark::State& state) {
    Counted c;
    size_t n = 0;
    for (auto _ : state) n = iterate_only();
    c.report(state, static_cast<double>(n));
  })->Unit(benchmark::kMillisecond);

  benchmark::RegisterBenchmark("scan/reused_stat", [&](benchmark::State& state) {
    scan_reused(reader, st);  // warm: the reader's buffer and comm's storage
    Counted c;
    size_t n = 0;
    for (auto _ : state) n = scan_reused(reader, st);
    c.report(state, static_cast<double>(n));
  })->Unit(benchmark::kMillisecond);

  benchmark::RegisterBenchmark("scan/stat_copies", [&](benchmark::State& state) {
    scan_copies(reader);
    Counted c;
    size_t n = 0;
    for (auto _ : state) n = scan_copies(reader);
    c.report(state, static_cast<double>(n));
  })->Unit(benchmark::kMillisecond);

  for (const Finder& f : finders()) {
    Matcher m = compile_or_die(f.spec);
    benchmark::RegisterBenchmark((std::string("find/") + f.label).c_str(),
                                 [&reader, m](benchmark::State& state) {
                                   benchmark::DoNotOptimize(find_processes(m, reader));  // warm
                                   double procs = static_cast<double>(count_processes());
                                   Counted c;
                                   size_t found = 0;
                                   for (auto _ : state) {
                                     auto r = find_processes(m, reader);
                                     found = r.size();
                                     benchmark::DoNotOptimize(r.data());
                                   }
                                   c.report(state, procs);
                                   state.counters["found"] = static_cast<double>(found);
                                 })
        ->Unit(benchmark::kMillisecond);
  }

  benchmark::RegisterBenchmark("stat_one/reused", [&reader, one](benchmark::State& state) {
    ProcStat one_st;
    reader.stat(one, one_st);
    Counted c;
    for (auto _ : state) {
      bool ok = reader.stat(one, one_st);
      benchmark::DoNotOptimize(ok);
    }
    c.report(state);
  });
  benchmark::RegisterBenchmark("stat_one/copy", [&reader, one](benchmark::State& state) {
    Counted c;
    for (auto _ : state) {
      auto s = reader.stat(one);
      benchmark::DoNotOptimize(s);
    }
    c.report(state);
  });
  benchmark::RegisterBenchmark("stat_one/read_proc_stat", [one](benchmark::State& state) {
    Counted c;
    for (auto _ : state) {
      auto s = read_proc_stat(one);
      benchmark::DoNotOptimize(s);
    }
    c.report(state);
  });

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  auto t1 = std::chrono::steady_clock::now();
  crowd.stop();
  g_crowd_pgid = 0;
  fprintf(stderr, "vigil_proc_bench: children killed and reaped in %.2f s\n",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
  return 0;
}
