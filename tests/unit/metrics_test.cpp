// The metrics mechanism on fixed input and real sockets and files:
// /proc/PID/io parsing, the Prometheus text format (every line parses,
// labels are escaped), the CSV rows, the CSV writer's rotation and its
// failures (a real ENOSPC from /dev/full), and the HTTP endpoint on the
// event loop with a client that never sends its request.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"
#include "host/metrics/csv_writer.hpp"
#include "host/metrics/http_endpoint.hpp"
#include "host/metrics/sample.hpp"
#include "host/proc/proc_files.hpp"

using namespace vigil;
using namespace std::chrono_literals;

namespace {

// Recorded with `cat /proc/PID/io` on this machine (a dd writing a file).
constexpr const char* kIo =
    "rchar: 104861598\n"
    "wchar: 104857600\n"
    "syscr: 105\n"
    "syscw: 100\n"
    "read_bytes: 8192\n"
    "write_bytes: 104857600\n"
    "cancelled_write_bytes: 0\n";

WatchSample running_sample(const std::string& name) {
  WatchSample s;
  s.watch = name;
  s.state = "running";
  s.up = true;
  s.pid = 4242;
  s.processes = 1;
  s.restarts = 3;
  s.time = 1795000000.25;
  s.cpu_user_percent = 97.5;
  s.cpu_system_percent = 1.25;
  s.rss_bytes = 1 << 20;
  s.vsz_bytes = 8 << 20;
  s.threads = 2;
  s.open_fds = 4;
  s.uptime = 12.5;
  s.cpu_user_seconds = 11.5;
  s.cpu_system_seconds = 0.25;
  s.read_bytes = 8192;
  s.write_bytes = 4096;
  s.io_known = true;
  s.voluntary_ctxt = 10;
  s.involuntary_ctxt = 20;
  return s;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Splits a CSV line (RFC 4180 quoting) into fields.
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"')
        out.back() += '"', ++i;
      else if (c == '"')
        quoted = false;
      else
        out.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

std::string temp_dir() {
  std::string d = std::filesystem::temp_directory_path() /
                  ("vigil-metrics-test-" + std::to_string(getpid()) + "-" +
                   std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace

TEST(ProcIo, RecordedText) {
  auto io = parse_proc_io(kIo);
  ASSERT_TRUE(io);
  EXPECT_EQ(io->rchar, 104861598u);
  EXPECT_EQ(io->wchar, 104857600u);
  EXPECT_EQ(io->read_bytes, 8192u);
  EXPECT_EQ(io->write_bytes, 104857600u);
}

TEST(ProcIo, MissingOrBadFieldsAreRefused) {
  EXPECT_FALSE(parse_proc_io(""));
  EXPECT_FALSE(parse_proc_io("rchar: 1\nwchar: 2\n"));
  EXPECT_FALSE(parse_proc_io("rchar: x\nwchar: 2\nread_bytes: 3\nwrite_bytes: 4\n"));
}

TEST(ProcIo, LiveProcessCountsItsOwnWrites) {
  std::string d = temp_dir();
  auto before = parse_proc_io([] {
    std::ifstream f("/proc/self/io");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }());
  ASSERT_TRUE(before);
  {
    std::ofstream f(d + "/x");
    f << std::string(100000, 'x');
  }
  std::ifstream f("/proc/self/io");
  std::stringstream ss;
  ss << f.rdbuf();
  auto after = parse_proc_io(ss.str());
  ASSERT_TRUE(after);
  EXPECT_GE(after->wchar - before->wchar, 100000u);
  std::filesystem::remove_all(d);
}

TEST(CtxtSwitches, FromTheEndOfStatus) {
  // The tail of a recorded /proc/PID/status (kernel 6.18).
  const char* status =
      "Name:\tsleep\nUid:\t0\t0\t0\t0\nThreads:\t1\n"
      "Mems_allowed_list:\t0\n"
      "voluntary_ctxt_switches:\t17\n"
      "nonvoluntary_ctxt_switches:\t3\n";
  uint64_t v = 0, iv = 0;
  ASSERT_TRUE(parse_ctxt_switches(status, v, iv));
  EXPECT_EQ(v, 17u);
  EXPECT_EQ(iv, 3u);
  EXPECT_FALSE(parse_ctxt_switches("Name:\tx\nvoluntary_ctxt_switches:\t1\n", v, iv));
  EXPECT_FALSE(parse_ctxt_switches("", v, iv));
  // A live one agrees with the full status parser.
  std::ifstream f("/proc/self/status");
  std::stringstream ss;
  ss << f.rdbuf();
  auto full = parse_proc_status(ss.str());
  ASSERT_TRUE(full);
  ASSERT_TRUE(parse_ctxt_switches(ss.str(), v, iv));
  EXPECT_EQ(v, full->voluntary_ctxt);
  EXPECT_EQ(iv, full->nonvoluntary_ctxt);
}

TEST(Schedstat, RunsIsTheThirdField) {
  EXPECT_EQ(parse_schedstat_runs("1949064 106123 12\n"), 12u);
  EXPECT_EQ(parse_schedstat_runs("1949064 106123\n"), 0u);
  EXPECT_EQ(parse_schedstat_runs(""), 0u);
}

TEST(Prometheus, EveryLineParsesAndFamiliesHaveHelpAndType) {
  WatchSample down;
  down.watch = "down";
  down.state = "backoff";
  down.restarts = 7;
  std::string text = render_prometheus({running_sample("web"), down});
  std::regex sample_re(
      R"re(^([a-z_]+)\{watch="((?:[^"\\]|\\.)*)"(,[a-z]+="[a-z]+")?\} (-?[0-9]+(\.[0-9]+)?)$)re");
  std::regex help_re(R"re(^# HELP ([a-z_]+) .+$)re");
  std::regex type_re(R"re(^# TYPE ([a-z_]+) (gauge|counter)$)re");
  std::set<std::string> typed, helped;
  std::map<std::string, std::string> types;
  std::map<std::string, int> web_series;
  for (const auto& l : lines(text)) {
    std::smatch m;
    if (std::regex_match(l, m, help_re)) {
      helped.insert(m[1]);
    } else if (std::regex_match(l, m, type_re)) {
      typed.insert(m[1]);
      types[m[1]] = m[2];
    } else {
      ASSERT_TRUE(std::regex_match(l, m, sample_re)) << "unparsable line: " << l;
      EXPECT_TRUE(typed.contains(m[1])) << "sample before its # TYPE: " << l;
      if (types[m[1]] == "counter") {
        EXPECT_TRUE(std::string(m[1]).ends_with("_total")) << l;
      }
      if (m[2] == "web") ++web_series[m[1]];
    }
  }
  EXPECT_EQ(typed, helped);
  for (const char* name :
       {"vigil_process_cpu_seconds_total", "vigil_process_resident_memory_bytes",
        "vigil_process_virtual_memory_bytes", "vigil_process_threads", "vigil_process_open_fds",
        "vigil_process_read_bytes_total", "vigil_process_written_bytes_total",
        "vigil_process_context_switches_total", "vigil_process_uptime_seconds",
        "vigil_watch_restarts_total", "vigil_watch_up"})
    EXPECT_GT(web_series[name], 0) << name << " missing in\n" << text;
  EXPECT_EQ(web_series["vigil_process_cpu_seconds_total"], 2);
  EXPECT_NE(text.find("vigil_process_cpu_seconds_total{watch=\"web\",mode=\"user\"} 11.5\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("vigil_process_context_switches_total{watch=\"web\",kind=\"involuntary\"} 20\n"),
      std::string::npos);
  EXPECT_NE(text.find("vigil_watch_up{watch=\"down\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("vigil_watch_restarts_total{watch=\"down\"} 7\n"), std::string::npos);
  // No process: no memory gauge for it, and no io counters it never had.
  EXPECT_EQ(text.find("vigil_process_resident_memory_bytes{watch=\"down\"}"), std::string::npos);
  EXPECT_EQ(text.find("vigil_process_read_bytes_total{watch=\"down\"}"), std::string::npos);
}

TEST(Prometheus, LabelValuesAreEscaped) {
  EXPECT_EQ(prometheus_escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  std::string text = render_prometheus({running_sample("we\"ird\\name\n")});
  EXPECT_NE(text.find("vigil_watch_up{watch=\"we\\\"ird\\\\name\\n\"} 1\n"), std::string::npos)
      << text;
}

TEST(Csv, RowsMatchTheHeader) {
  auto header = csv_fields(std::string(kCsvHeader, strlen(kCsvHeader) - 1));
  ASSERT_EQ(header.front(), "time");
  std::string rows;
  append_csv_row(rows, running_sample("web"));
  WatchSample down;
  down.watch = "a,\"b\"";
  down.state = "stopped";
  append_csv_row(rows, down);
  auto ls = lines(rows);
  ASSERT_EQ(ls.size(), 2u);
  auto web = csv_fields(ls[0]);
  ASSERT_EQ(web.size(), header.size()) << ls[0];
  std::map<std::string, std::string> row;
  for (size_t i = 0; i < header.size(); ++i) row[header[i]] = web[i];
  EXPECT_EQ(row["time"], "2026-11-18T11:06:40.250Z");
  EXPECT_EQ(row["watch"], "web");
  EXPECT_EQ(row["pid"], "4242");
  EXPECT_EQ(row["cpu_user_percent"], "97.50");
  EXPECT_EQ(row["rss_bytes"], "1048576");
  EXPECT_EQ(row["open_fds"], "4");
  EXPECT_EQ(row["read_bytes"], "8192");
  EXPECT_EQ(row["involuntary_ctxt_switches"], "20");
  EXPECT_EQ(row["uptime_seconds"], "12.5");
  auto d = csv_fields(ls[1]);
  ASSERT_EQ(d.size(), header.size()) << ls[1];
  EXPECT_EQ(d[1], "a,\"b\"");
  EXPECT_EQ(d[4], "");  // no pid
}

TEST(CsvWriter, HeaderRowsAndRotationBySize) {
  std::string d = temp_dir();
  int errors = 0;
  CsvWriter w({d + "/m", 4096, 2}, [&](auto&, auto&) { ++errors; }, {});
  std::string rows;
  append_csv_row(rows, running_sample("web"));
  time_t now = 1795000000;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(w.write(rows, 1, now));
  EXPECT_EQ(errors, 0);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(d + "/m"))
    names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  // About 20 KB of rows in 4 KB files, only the newest 2 kept.
  ASSERT_EQ(names.size(), 2u) << names.front();
  for (const auto& n : names) {
    EXPECT_TRUE(n.starts_with("metrics-2026")) << n;
    std::ifstream f(d + "/m/" + n);
    std::string first;
    std::getline(f, first);
    EXPECT_EQ(first + "\n", kCsvHeader) << n;
    EXPECT_LE(std::filesystem::file_size(d + "/m/" + n), 4096u + rows.size());
  }
  // Another day: another file.
  ASSERT_TRUE(w.write(rows, 1, now + 86400));
  EXPECT_NE(w.path().find(names[0].substr(0, 16)), 0u);
  std::filesystem::remove_all(d);
}

// A full disk: the day's file is a symlink to /dev/full, whose writes fail
// with ENOSPC. One error event, rows dropped, then recovery once the file
// is writable again.
TEST(CsvWriter, FullDiskIsReportedOnceAndRecovers) {
  std::string d = temp_dir();
  std::vector<std::string> errors;
  std::vector<uint64_t> recovered;
  CsvWriter w(
      {d, 1 << 20, 0},
      [&](const std::string& path, const std::string& e) { errors.push_back(path + ": " + e); },
      [&](const std::string&, uint64_t dropped) { recovered.push_back(dropped); });
  time_t now = time(nullptr);
  tm local;
  localtime_r(&now, &local);
  char day[16];
  strftime(day, sizeof day, "%Y%m%d", &local);
  std::string file = d + "/metrics-" + day + ".csv";
  std::filesystem::create_symlink("/dev/full", file);
  std::string rows;
  append_csv_row(rows, running_sample("web"));
  EXPECT_FALSE(w.write(rows, 1, now));
  EXPECT_FALSE(w.write(rows, 1, now));
  EXPECT_FALSE(w.write(rows, 1, now));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("No space left on device"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find(file), std::string::npos) << errors[0];
  std::filesystem::remove(file);
  EXPECT_TRUE(w.write(rows, 1, now));
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0], 3u);
  EXPECT_FALSE(w.failing());
  std::filesystem::remove_all(d);
}

TEST(CsvWriter, DirectoryThatCannotBeMadeIsAnError) {
  std::string d = temp_dir();
  std::ofstream(d + "/file") << "x";
  std::vector<std::string> errors;
  CsvWriter w(
      {d + "/file/metrics", 1 << 20, 0},
      [&](const std::string& path, const std::string& e) { errors.push_back(path + ": " + e); },
      {});
  EXPECT_FALSE(w.write("x\n", 1, time(nullptr)));
  EXPECT_FALSE(w.write("x\n", 1, time(nullptr)));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find(d + "/file"), std::string::npos) << errors[0];
  std::filesystem::remove_all(d);
}

TEST(ListenAddress, ParsesAndRefusesWithTheValue) {
  ListenAddress a;
  std::string err;
  ASSERT_TRUE(parse_listen_address("127.0.0.1:9464", a, err)) << err;
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 9464);
  ASSERT_TRUE(parse_listen_address("[::1]:80", a, err)) << err;
  EXPECT_TRUE(a.v6);
  EXPECT_EQ(a.text(), "[::1]:80");
  ASSERT_TRUE(parse_listen_address("localhost:1", a, err));
  EXPECT_EQ(a.host, "127.0.0.1");
  for (const char* bad : {"9464", "127.0.0.1:", "127.0.0.1:99999", "example.com:80", "::1:80"}) {
    EXPECT_FALSE(parse_listen_address(bad, a, err)) << bad;
    EXPECT_NE(err.find(bad), std::string::npos) << err;
  }
}

namespace {

// A blocking HTTP GET in the test's thread; the loop runs in another.
std::string http_get(int port, const std::string& path) {
  Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "connect failed";
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  if (write(s.get(), req.data(), req.size()) != static_cast<ssize_t>(req.size())) return "";
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(s.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

}  // namespace

TEST(HttpEndpoint, ServesMetricsWhileAClientStaysSilent) {
  EventLoop loop;
  std::atomic<int> renders{0};
  HttpEndpoint ep(loop, [&] {
    ++renders;
    return std::string("vigil_watch_up{watch=\"a\"} 1\n");
  });
  ListenAddress a;
  std::string err;
  ASSERT_TRUE(parse_listen_address("127.0.0.1:0", a, err));
  ASSERT_TRUE(ep.listen(a, err)) << err;
  int port = ep.port();
  ASSERT_GT(port, 0);
  std::atomic<bool> done{false};
  std::string got, missing;
  std::thread client([&] {
    // A client that connects and never sends: the loop must not wait for it.
    Fd silent(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(silent.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    got = http_get(port, "/metrics");
    missing = http_get(port, "/nope");
    done = true;
  });
  auto deadline = MonoClock::now() + 10s;
  while (!done && MonoClock::now() < deadline) loop.run_once(50ms);
  client.join();
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200 OK\r\n")) << got;
  EXPECT_NE(got.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << got;
  EXPECT_TRUE(got.ends_with("\r\n\r\nvigil_watch_up{watch=\"a\"} 1\n")) << got;
  EXPECT_TRUE(missing.starts_with("HTTP/1.1 404")) << missing;
  EXPECT_EQ(renders, 1);
}

TEST(HttpEndpoint, PortInUseIsAnError) {
  EventLoop loop;
  Fd taken(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(taken.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(listen(taken.get(), 1), 0);
  socklen_t len = sizeof sa;
  getsockname(taken.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  HttpEndpoint ep(loop, [] { return std::string(); });
  ListenAddress a;
  std::string err;
  ASSERT_TRUE(parse_listen_address("127.0.0.1:" + std::to_string(ntohs(sa.sin_port)), a, err));
  EXPECT_FALSE(ep.listen(a, err));
  EXPECT_NE(err.find("Address already in use"), std::string::npos) << err;
}
