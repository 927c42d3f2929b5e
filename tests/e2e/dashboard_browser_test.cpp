// The dashboard in a real browser (tests/web/dashboard.test.js, node and
// puppeteer-core driving Debian's chromium) against a real vigil started
// here: the overview, a killed process's row going to restarting and back
// over the event stream, a reader's page without actions and its forged
// POST refused, the rule form with a bad and a good value and a file
// changed on disk while the form was open. Screenshots of
// each page: BUILD/tests/web-artifacts/. Skips (exit 77) when node,
// chromium or tests/web/node_modules (npm ci) is missing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/e2e/harness.hpp"
#include "tests/e2e/net_fixture.hpp"

namespace vigil::test {
namespace {

std::string lua_str(const std::string& s) { return "\"" + s + "\""; }

std::string find_program(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    std::string p = std::string(dir) + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

TEST(DashboardBrowser, OverviewLiveRowsRolesAndTheRuleForm) {
  std::string node = find_program("node");
  std::string chromium = getenv("CHROMIUM") ? getenv("CHROMIUM") : find_program("chromium");
  std::string web = std::string(VIGIL_SOURCE_DIR) + "/tests/web";
  if (node.empty()) GTEST_SKIP() << "no node (apt-get install nodejs npm, or .ci/deps)";
  if (chromium.empty()) GTEST_SKIP() << "no chromium (apt-get install chromium, or .ci/deps)";
  if (access((web + "/node_modules/puppeteer-core/package.json").c_str(), F_OK) != 0)
    GTEST_SKIP() << "no puppeteer-core in " << web << "/node_modules (npm ci --no-audit --no-fund there, or .ci/deps)";

  Daemon d;
  Certs certs = Certs::make(d.dir() + "/certs", "IP:127.0.0.1,DNS:localhost");
  if (!certs.ok) GTEST_SKIP() << "openssl could not make certificates: " << certs.error;
  int port = free_port();
  std::string tokens = d.dir() + "/tokens";
  std::string operator_token, reader_token;
  for (auto* who : {"deploy", "reader"}) {
    auto r = run_command({VIGIL_BINARY, "token", "add", who, "--file", tokens});
    ASSERT_EQ(r.code, 0) << r.err;
    (std::string(who) == "deploy" ? operator_token : reader_token) = r.out.substr(0, r.out.find('\n'));
  }
  d.write_rule("db.lua", "watch \"db\" { start = { \"/bin/sleep\", \"10311\" } }\n");
  // A restart delay: the row's "restarting" lasts long enough to be seen.
  d.write_rule("web.lua",
               "watch \"web\" { start = { \"/bin/sleep\", \"10312\" } }\n"
               "group \"shop\" { \"db\", \"web\",\n"
               "  restart = { limit = 3, within = \"10m\", delay = \"1500ms\" } }\n");
  d.write_rule("api.lua", "api { listen = " + lua_str("127.0.0.1:" + std::to_string(port)) +
                              ", cert = " + lua_str(certs.server) + ", key = " +
                              lua_str(certs.server_key) + ", tokens = " + lua_str(tokens) +
                              ", operators = { \"deploy\" } }\n");
  ASSERT_TRUE(d.start({"--metrics", "--metrics-interval", "1"})) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0227")) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("web") == "running"; }));

  std::string artifacts = std::string(VIGIL_BUILD_DIR) + "/tests/web-artifacts";
  std::string log = d.dir() + "/browser.log";
  pid_t c = spawn_external(
      {"/usr/bin/env", "VIGIL_URL=https://127.0.0.1:" + std::to_string(port),
       "OPERATOR_TOKEN=" + operator_token, "READER_TOKEN=" + reader_token,
       "ARTIFACTS=" + artifacts, "RULES_DIR=" + d.rules_dir(), "CHROMIUM=" + chromium, "HOME=" + d.dir(), "/bin/sh", "-c",
       "exec " + node + " " + web + "/dashboard.test.js > " + log + " 2>&1"});
  int status = 0;
  ASSERT_TRUE(wait_for([&] { return waitpid(c, &status, WNOHANG) == c; },
                       std::chrono::seconds(150)))
      << "the browser test did not end\n" << read_file(log);
  std::string out = read_file(log);
  std::cout << out;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code == 77) GTEST_SKIP() << out;
  EXPECT_EQ(code, 0) << out << "\n--- vigil ---\n" << d.output();
  EXPECT_TRUE(d.running());
}

}  // namespace
}  // namespace vigil::test
