// End-to-end: the metrics of real processes. A busy loop uses about one
// core and a sleep none: the CSV rows, `vigil top` and a real HTTP scrape
// of the Prometheus endpoint must say so (with wide margins: the machine
// is a shared 2-core VM). A port in use and an unwritable metrics
// directory are events, and the daemon goes on supervising.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>

#include "host/core/fd.hpp"
#include "host/proc/proc_stat.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

const char* kRules =
    "watch \"busy\" { start = { \"/bin/sh\", \"-c\", \"while :; do :; done\" }, checks = false }\n"
    "watch \"idle\" { start = { \"/bin/sleep\", \"100000\" }, checks = false }\n";

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out(1);
  for (char c : line) {  // the watch names here need no quoting
    if (c == ',')
      out.emplace_back();
    else
      out.back() += c;
  }
  return out;
}

using Row = std::map<std::string, std::string>;

// Every row of every CSV file in dir, as column -> value.
std::vector<Row> csv_rows(const std::string& dir) {
  std::vector<Row> rows;
  if (!std::filesystem::is_directory(dir)) return rows;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto lines = split_lines(read_file(f));
    if (lines.empty()) continue;
    auto header = split_csv(lines[0]);
    for (size_t i = 1; i < lines.size(); ++i) {
      auto fields = split_csv(lines[i]);
      if (fields.size() != header.size()) continue;  // the last line may be in flight
      Row r;
      for (size_t k = 0; k < header.size(); ++k) r[header[k]] = fields[k];
      rows.push_back(std::move(r));
    }
  }
  return rows;
}

std::vector<Row> rows_of(const std::vector<Row>& rows, const std::string& watch) {
  std::vector<Row> out;
  for (const auto& r : rows)
    if (r.at("watch") == watch) out.push_back(r);
  return out;
}

double num(const Row& r, const char* key) {
  auto it = r.find(key);
  return it == r.end() || it->second.empty() ? -1 : std::stod(it->second);
}

// RFC 3339 UTC with milliseconds -> seconds since the epoch.
double wall_of(const std::string& t) {
  tm parts{};
  strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &parts);
  double ms = t.size() > 20 ? std::stod(t.substr(19, 4)) : 0;  // ".250"
  return static_cast<double>(timegm(&parts)) + ms;
}

// utime + stime of pid, from the kernel, in seconds.
double proc_cpu_seconds(pid_t pid) {
  auto st = vigil::read_proc_stat(pid);
  if (!st) return -1;
  return static_cast<double>(st->utime + st->stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double cpu(const Row& r) {
  return num(r, "cpu_user_percent") + num(r, "cpu_system_percent");
}

std::string http_get(int port, const std::string& path) {
  vigil::Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(s.get(), req.data(), req.size()) != static_cast<ssize_t>(req.size())) return "";
  std::string out;
  char buf[8192];
  ssize_t n;
  while ((n = read(s.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

// Parses a scrape's body: series ("name{labels}") -> value. Every line
// must be a comment or a sample; a line that is neither fails the test.
std::map<std::string, double> parse_scrape(const std::string& response) {
  std::map<std::string, double> out;
  size_t body = response.find("\r\n\r\n");
  EXPECT_NE(body, std::string::npos) << response;
  if (body == std::string::npos) return out;
  static const std::regex sample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? ([-+]?[0-9.eE+-]+|NaN|[+-]Inf)$)re");
  static const std::regex comment(R"re(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)re");
  for (const auto& l : split_lines(response.substr(body + 4))) {
    std::smatch m;
    if (std::regex_match(l, m, comment)) continue;
    if (!std::regex_match(l, m, sample)) {
      ADD_FAILURE() << "line does not parse: '" << l << "'";
      continue;
    }
    out[m[1].str() + m[2].str()] = std::stod(m[3]);
  }
  return out;
}

}  // namespace

TEST(Metrics, BusyLoopAndSleepInCsvAndTop) {
  Daemon d;
  d.write_rule("a.lua", kRules);
  ASSERT_TRUE(d.start({"--metrics-interval", "0.5"})) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0020")) << d.output();
  std::string dir = d.state_dir() + "/metrics";
  // Rows after the first of each process (its first figure is since it
  // started): wait for a few.
  ASSERT_TRUE(wait_for(
      [&] {
        auto rows = csv_rows(dir);
        return rows_of(rows, "busy").size() >= 6 && rows_of(rows, "idle").size() >= 6;
      },
      30s))
      << d.output();
  auto rows = csv_rows(dir);
  auto busy = rows_of(rows, "busy");
  auto idle = rows_of(rows, "idle");
  double busy_cpu = 0, idle_cpu = 0;
  for (size_t i = busy.size() - 4; i < busy.size(); ++i) busy_cpu += cpu(busy[i]) / 4;
  for (size_t i = idle.size() - 4; i < idle.size(); ++i) idle_cpu += cpu(idle[i]) / 4;
  // ~100 % of one core, shared with whatever else runs on 2 cores (a
  // loaded machine gives it much less: the exact checks are below).
  EXPECT_GE(busy_cpu, 15) << busy.back().at("cpu_user_percent");
  EXPECT_LE(busy_cpu, 115);
  // Each row's CPU % is its CPU seconds' growth over the time between the
  // two rows.
  for (size_t i = busy.size() - 3; i < busy.size(); ++i) {
    double dt = wall_of(busy[i].at("time")) - wall_of(busy[i - 1].at("time"));
    double dcpu = num(busy[i], "cpu_user_seconds") + num(busy[i], "cpu_system_seconds") -
                  num(busy[i - 1], "cpu_user_seconds") - num(busy[i - 1], "cpu_system_seconds");
    ASSERT_GT(dt, 0.1);
    EXPECT_NEAR(cpu(busy[i]), dcpu / dt * 100, 10) << "row " << i;
  }
  // The CPU seconds are the kernel's own figure for the process: between
  // what /proc said before the row was sampled and after.
  {
    pid_t bp = d.watch_pid("busy");
    double before = proc_cpu_seconds(bp);
    size_t n = rows_of(csv_rows(dir), "busy").size();
    ASSERT_TRUE(wait_for([&] { return rows_of(csv_rows(dir), "busy").size() > n; }, 10s));
    double after = proc_cpu_seconds(bp);
    Row r = rows_of(csv_rows(dir), "busy")[n];
    double row_cpu = num(r, "cpu_user_seconds") + num(r, "cpu_system_seconds");
    EXPECT_GE(row_cpu, before - 0.02);
    EXPECT_LE(row_cpu, after + 0.02);
    EXPECT_GT(after, 0.1);
  }
  EXPECT_LE(idle_cpu, 5);
  const Row& b = busy.back();
  EXPECT_EQ(b.at("state"), "running");
  EXPECT_EQ(b.at("up"), "1");
  EXPECT_EQ(b.at("pid"), std::to_string(d.watch_pid("busy")));
  EXPECT_GT(num(b, "rss_bytes"), 0);
  EXPECT_GT(num(b, "vsz_bytes"), num(b, "rss_bytes"));
  EXPECT_EQ(num(b, "threads"), 1);
  EXPECT_GE(num(b, "open_fds"), 3);  // stdin, stdout, stderr
  EXPECT_GE(num(b, "cpu_user_seconds"), 0.3);
  EXPECT_GE(num(b, "involuntary_ctxt_switches") + num(b, "voluntary_ctxt_switches"), 1);
  EXPECT_GE(num(b, "read_bytes"), 0);  // root reads /proc/PID/io
  // Uptime grows by the interval from row to row.
  EXPECT_GT(num(b, "uptime_seconds"), num(busy[busy.size() - 3], "uptime_seconds"));
  EXPECT_LE(num(idle.back(), "cpu_user_seconds"), 0.2);

  // vigil top: one frame, and its JSON.
  auto top = d.cli({"top", "--once"});
  ASSERT_EQ(top.code, 0) << top.err;
  EXPECT_NE(top.out.find("WATCH"), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("busy"), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("idle"), std::string::npos) << top.out;
  auto tj = d.cli({"top", "--json"});
  ASSERT_EQ(tj.code, 0) << tj.err;
  auto watches = nlohmann::json::parse(tj.out);
  ASSERT_EQ(watches.size(), 2u) << tj.out;
  EXPECT_EQ(watches[0]["watch"], "busy");
  EXPECT_GT(watches[0]["cpu_user_seconds"].get<double>(), 0.3);
  EXPECT_EQ(watches[0]["pid"], d.watch_pid("busy"));
}

TEST(Metrics, TopWithoutMetricsSaysHowToTurnThemOn) {
  Daemon d;
  d.write_rule("a.lua", kRules);
  ASSERT_TRUE(d.start()) << d.output();
  auto top = d.cli({"top", "--once"});
  EXPECT_EQ(top.code, 1);
  EXPECT_NE(top.err.find("--metrics"), std::string::npos) << top.err;
  EXPECT_FALSE(std::filesystem::exists(d.state_dir() + "/metrics"));
}

TEST(Metrics, PrometheusScrapeParsesAndCountersGrow) {
  Daemon d;
  d.write_rule("a.lua", kRules);
  int port = free_port();
  ASSERT_TRUE(d.start({"--metrics-interval", "0.3", "--metrics-listen",
                       "127.0.0.1:" + std::to_string(port), "--no-metrics-csv"}))
      << d.output();
  const std::string cpu_user = "vigil_process_cpu_seconds_total{watch=\"busy\",mode=\"user\"}";
  std::map<std::string, double> first;
  ASSERT_TRUE(wait_for(
      [&] {
        first = parse_scrape(http_get(port, "/metrics"));
        return first.contains(cpu_user) && first[cpu_user] > 0;
      },
      20s))
      << d.output();
  for (const char* series :
       {"vigil_watch_up{watch=\"busy\"}", "vigil_watch_restarts_total{watch=\"busy\"}",
        "vigil_process_cpu_seconds_total{watch=\"busy\",mode=\"system\"}",
        "vigil_process_resident_memory_bytes{watch=\"busy\"}",
        "vigil_process_virtual_memory_bytes{watch=\"busy\"}",
        "vigil_process_threads{watch=\"busy\"}", "vigil_process_open_fds{watch=\"busy\"}",
        "vigil_process_read_bytes_total{watch=\"busy\"}",
        "vigil_process_written_bytes_total{watch=\"busy\"}",
        "vigil_process_context_switches_total{watch=\"busy\",kind=\"voluntary\"}",
        "vigil_process_context_switches_total{watch=\"busy\",kind=\"involuntary\"}",
        "vigil_process_uptime_seconds{watch=\"busy\"}", "vigil_watch_up{watch=\"idle\"}"})
    EXPECT_TRUE(first.contains(series)) << series;
  EXPECT_EQ(first["vigil_watch_up{watch=\"busy\"}"], 1);
  EXPECT_GT(first["vigil_process_resident_memory_bytes{watch=\"busy\"}"], 0);
  // The counter grows (a busy loop), and never goes back.
  std::map<std::string, double> second;
  ASSERT_TRUE(wait_for(
      [&] {
        second = parse_scrape(http_get(port, "/metrics"));
        return second[cpu_user] > first[cpu_user] + 0.1;
      },
      20s));
  for (const auto& [series, v] : first) {
    if (series.find("_total{") != std::string::npos) {
      EXPECT_GE(second[series], v) << series << " went down";
    }
  }

  // A restart: the restart counter goes up and the CPU counter still does
  // not go down, though the new process starts from zero.
  pid_t old = d.watch_pid("busy");
  ASSERT_EQ(kill(old, SIGKILL), 0);
  std::map<std::string, double> third;
  ASSERT_TRUE(wait_for(
      [&] {
        third = parse_scrape(http_get(port, "/metrics"));
        return third["vigil_watch_restarts_total{watch=\"busy\"}"] >= 1 &&
               third["vigil_watch_up{watch=\"busy\"}"] == 1 &&
               third["vigil_process_uptime_seconds{watch=\"busy\"}"] <
                   second["vigil_process_uptime_seconds{watch=\"busy\"}"];
      },
      20s))
      << d.output();
  EXPECT_GE(third[cpu_user], second[cpu_user]);
  // A reload keeps the counters (the host owns them, not the rules).
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  auto reloaded = parse_scrape(http_get(port, "/metrics"));
  EXPECT_GE(reloaded[cpu_user], third[cpu_user]);
  EXPECT_GE(reloaded["vigil_watch_restarts_total{watch=\"busy\"}"], 1);

  // A client that sends half a request and stalls holds up nothing: the
  // daemon answers its control socket and other scrapes meanwhile.
  vigil::Fd stalled(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(stalled.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(write(stalled.get(), "GET /met", 8), 8);
  EXPECT_EQ(d.cli({"ping"}).code, 0);
  EXPECT_TRUE(parse_scrape(http_get(port, "/metrics")).contains(cpu_user));

  auto other = http_get(port, "/nothing");
  EXPECT_TRUE(other.starts_with("HTTP/1.1 404")) << other;
}

TEST(Metrics, PortInUseIsAnEventAndTheDaemonGoesOn) {
  vigil::Fd taken(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(taken.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(taken.get(), 1), 0);
  socklen_t len = sizeof a;
  getsockname(taken.get(), reinterpret_cast<sockaddr*>(&a), &len);
  std::string address = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));

  Daemon d;
  d.write_rule("a.lua", kRules);
  ASSERT_TRUE(d.start({"--metrics-interval", "0.3", "--metrics-listen", address})) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0023")) << d.output();
  auto ev = d.last_event("VGL0023");
  EXPECT_EQ(ev["fields"]["address"], address);
  EXPECT_NE(ev["message"].get<std::string>().find(address), std::string::npos) << ev.dump();
  EXPECT_NE(ev["message"].get<std::string>().find("Address already in use"), std::string::npos);
  auto st = d.cli({"status"});
  EXPECT_EQ(st.code, 0) << st.err;
  EXPECT_NE(st.out.find("busy"), std::string::npos);
  // Sampling goes on without the endpoint.
  ASSERT_TRUE(wait_for(
      [&] { return rows_of(csv_rows(d.state_dir() + "/metrics"), "busy").size() >= 2; }, 20s));
  EXPECT_TRUE(d.running());
}

TEST(Metrics, UnwritableDirectoryIsAnEventAndMonitoringGoesOn) {
  Daemon d;
  d.write_rule("a.lua", kRules);
  write_file(d.dir() + "/not-a-dir", "x");
  std::string dir = d.dir() + "/not-a-dir/metrics";
  ASSERT_TRUE(d.start({"--metrics-interval", "0.2", "--metrics-dir", dir})) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0021")) << d.output();
  auto ev = d.last_event("VGL0021");
  EXPECT_NE(ev["fields"]["path"].get<std::string>().find("not-a-dir"), std::string::npos)
      << ev.dump();
  // Once per episode, not once per sample.
  pid_t first = d.watch_pid("busy");
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] {
        pid_t p = d.watch_pid("busy");
        return p > 0 && p != first && d.watch_state("busy") == "running";
      },
      20s))
      << d.output();
  // A few more samples have been tried by now.
  ASSERT_TRUE(wait_for([&] {
    auto top = d.cli({"top", "--json"});
    if (top.code != 0) return false;
    auto w = nlohmann::json::parse(top.out);
    return w.size() == 2 && w[0]["restarts"] == 1;
  }));
  EXPECT_EQ(d.count_events("VGL0021"), 1);
  EXPECT_EQ(d.cli({"status"}).code, 0);
}

TEST(Metrics, BadOptionsNameTheValue) {
  Daemon d;
  d.write_rule("a.lua", kRules);
  auto r = run_command({VIGIL_BINARY, "--socket", d.socket(), "run", "--rules", d.rules_dir(),
                        "--state-dir", d.state_dir(), "--metrics-listen", "nowhere"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--metrics-listen"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nowhere"), std::string::npos) << r.err;
  r = run_command({VIGIL_BINARY, "--socket", d.socket(), "run", "--rules", d.rules_dir(),
                   "--state-dir", d.state_dir(), "--metrics-interval", "0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--metrics-interval"), std::string::npos) << r.err;
}

// A members watch is the sum of its processes: two copies of a shell (one
// in a busy loop, one waiting) that vigil did not start.
TEST(Metrics, MembersWatchSumsItsProcesses) {
  Daemon d;
  std::string name = "vm" + std::filesystem::path(d.dir()).filename().string().substr(10, 10);
  std::string prog = d.dir() + "/" + name;
  std::filesystem::copy_file("/bin/sh", prog);
  std::filesystem::permissions(prog, std::filesystem::perms::owner_all);
  pid_t busy = spawn_external({prog, "-c", "while :; do :; done"});
  // Blocked opening a FIFO nobody writes: asleep, and without a child.
  std::string fifo = d.dir() + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  pid_t idle = spawn_external({prog, "-c", "read x < " + fifo});
  d.write_rule("a.lua", "watch \"pair\" { match = { name = \"" + name +
                            "\" }, count = { min = 0 }, checks = false }\n");
  ASSERT_TRUE(d.start({"--metrics-interval", "0.3", "--no-metrics-csv"})) << d.output();
  nlohmann::json w;
  ASSERT_TRUE(wait_for(
      [&] {
        auto r = d.cli({"top", "--json"});
        if (r.code != 0) return false;
        auto all = nlohmann::json::parse(r.out);
        if (all.size() != 1 || all[0]["processes"] != 2) return false;
        w = all[0];
        // A few samples after both were first seen.
        return w["uptime"].get<double>() > 1.5;
      },
      20s))
      << d.output() << w.dump();
  EXPECT_TRUE(w["pid"].is_null()) << w.dump();
  EXPECT_EQ(w["threads"], 2);
  EXPECT_GE(w["open_fds"].get<int>(), 6);  // 3 each at least
  double cpu = w["cpu_user_percent"].get<double>() + w["cpu_system_percent"].get<double>();
  EXPECT_GE(cpu, 15) << w.dump();  // a busy loop, on a machine that may be loaded
  EXPECT_LE(cpu, 215) << w.dump();
  // One member ends: the count drops, the counters do not.
  double before = w["cpu_user_seconds"].get<double>();
  kill(busy, SIGKILL);
  reap(busy);
  ASSERT_TRUE(wait_for([&] {
    auto r = d.cli({"top", "--json"});
    if (r.code != 0) return false;
    w = nlohmann::json::parse(r.out)[0];
    return w["processes"] == 1;
  }));
  EXPECT_GE(w["cpu_user_seconds"].get<double>(), before);
  kill(idle, SIGKILL);
  reap(idle);
}

// The last hour of one watch, kept in memory for the dashboard's plots:
// a point per max(interval, 10 s), the newest sample first kept.
TEST(Metrics, AWatchsLastHourIsKeptAndServed) {
  Daemon d;
  d.write_rule("a.lua", kRules);
  ASSERT_TRUE(d.start({"--metrics-interval", "0.3", "--no-metrics-csv"})) << d.output();
  auto get = [&](const std::string& target) {
    auto r = run_command({"/usr/bin/curl", "-sS", "--max-time", "30", "--unix-socket", d.socket(), "-w",
                          "\n%{http_code}", "http://vigil" + target});
    size_t nl = r.out.rfind('\n');
    auto j = nlohmann::json::parse(nl == std::string::npos ? "" : r.out.substr(0, nl), nullptr, false);
    return std::make_pair(j, nl == std::string::npos ? 0 : std::atoi(r.out.c_str() + nl + 1));
  };
  nlohmann::json h;
  ASSERT_TRUE(wait_for([&] {
    auto [j, status] = get("/v1/watches/idle/metrics");
    h = j;
    return status == 200 && j.is_object() && !j["points"].empty();
  })) << h.dump() << d.output();
  EXPECT_EQ(h["watch"], "idle");
  EXPECT_EQ(h["step"], 10) << "a point every 10 s at most, whatever the interval";
  const auto& p = h["points"].back();
  ASSERT_EQ(p.size(), 4u) << h.dump();
  EXPECT_NEAR(p[0].get<double>(), static_cast<double>(time(nullptr)), 60) << "unix seconds";
  EXPECT_GE(p[3].get<int>(), 0) << "its fds";
  // Samples every 0.3 s add a point only once 10 s have passed: in 1.5 s
  // (five samples) at most one more.
  size_t before = h["points"].size();
  auto t = std::chrono::steady_clock::now();
  wait_for([&] { return std::chrono::steady_clock::now() - t > 1500ms; }, 3s);
  EXPECT_LE(get("/v1/watches/idle/metrics").first["points"].size(), before + 1);
  EXPECT_EQ(get("/v1/watches/nosuch/metrics").second, 404);
}
