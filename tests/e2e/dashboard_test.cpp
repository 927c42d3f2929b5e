// The dashboard's API routes end to end (host/api/dashboard.cpp): a real
// vigil serving HTTPS on loopback with tokens, driven by curl. The
// browser scenarios are in tests/web (dashboard_browser_test.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/e2e/harness.hpp"
#include "tests/e2e/net_fixture.hpp"

namespace vigil::test {
namespace {

std::string lua_str(const std::string& s) { return "\"" + s + "\""; }

struct Reply {
  int status = 0;
  std::string headers, body;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

class Dashboard : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = Certs::make(d_.dir() + "/certs", "IP:127.0.0.1,DNS:localhost");
    if (!certs_.ok) GTEST_SKIP() << "openssl could not make certificates: " << certs_.error;
    port_ = free_port();
    url_ = "https://127.0.0.1:" + std::to_string(port_);
    tokens_ = d_.dir() + "/tokens";
    for (auto* who : {"deploy", "reader"}) {
      auto r = run_command({VIGIL_BINARY, "token", "add", who, "--file", tokens_});
      ASSERT_EQ(r.code, 0) << r.err;
      (std::string(who) == "deploy" ? deploy_ : reader_) = r.out.substr(0, r.out.find('\n'));
    }
    d_.write_rule("web.lua", "watch \"web\" { start = { \"/bin/sleep\", \"10201\" } }\n");
    d_.write_rule("api.lua", "api { listen = " + lua_str("127.0.0.1:" + std::to_string(port_)) +
                                 ", cert = " + lua_str(certs_.server) + ", key = " +
                                 lua_str(certs_.server_key) + ", tokens = " + lua_str(tokens_) +
                                 ", operators = { \"deploy\" } }\n");
    ASSERT_TRUE(d_.start()) << d_.output();
    ASSERT_TRUE(d_.wait_event("VGL0227")) << d_.output();
    ASSERT_TRUE(wait_for([&] { return d_.watch_state("web") == "running"; }));
  }

  // curl, with a token ("" for none) and a JSON body for POST.
  Reply call(const std::string& method, const std::string& path, const std::string& token,
             const std::string& body = "") {
    std::string n = std::to_string(++calls_);
    std::string out = d_.dir() + "/reply" + n, head = d_.dir() + "/head" + n;
    std::vector<std::string> argv = {"/usr/bin/curl", "-sS", "--cacert", certs_.ca, "-o", out,
                                     "-D", head, "-w", "%{http_code}", "-X", method};
    if (!token.empty()) argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
    if (method == "POST") {
      std::string in = d_.dir() + "/body" + n;
      write_file(in, body);
      argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", "@" + in});
    }
    argv.push_back(url_ + path);
    auto r = run_command(argv);
    Reply rep;
    rep.status = r.code == 0 ? std::atoi(r.out.c_str()) : -1;
    rep.headers = read_file(head);
    rep.body = read_file(out);
    return rep;
  }
  static std::string body(const std::string& name, const std::string& text,
                          const std::optional<std::string>& hash = std::nullopt) {
    nlohmann::json j = {{"name", name}, {"text", text}};
    if (hash) j["hash"] = *hash;
    return j.dump();
  }

  Daemon d_;
  Certs certs_;
  int port_ = 0;
  int calls_ = 0;
  std::string url_, tokens_, deploy_, reader_;
};

TEST_F(Dashboard, ServesItsFilesWithoutCredentialsUnderACsp) {
  Reply r = call("GET", "/", "");
  ASSERT_EQ(r.status, 200) << r.headers << r.body;
  EXPECT_NE(r.headers.find("Content-Security-Policy: default-src 'self'"), std::string::npos) << r.headers;
  EXPECT_NE(r.headers.find("X-Content-Type-Options: nosniff"), std::string::npos) << r.headers;
  EXPECT_NE(r.headers.find("Content-Type: text/html"), std::string::npos) << r.headers;
  EXPECT_NE(r.body.find("<script src=\"/ui/app.js\""), std::string::npos);
  // No inline script or style: the CSP would refuse it.
  EXPECT_EQ(r.body.find("<script>"), std::string::npos);
  EXPECT_EQ(r.body.find("style="), std::string::npos);
  r = call("GET", "/ui/app.js", "");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("Content-Type: text/javascript"), std::string::npos) << r.headers;
  EXPECT_NE(r.headers.find("Content-Security-Policy: default-src 'self'"), std::string::npos);
  r = call("GET", "/ui/app.css", "");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("Content-Type: text/css"), std::string::npos) << r.headers;
  EXPECT_EQ(call("GET", "/ui/nosuch.js", "").status, 404);
  EXPECT_EQ(call("GET", "/ui/..%2fapi.lua", "").status, 404);
  // The data still needs credentials.
  EXPECT_EQ(call("GET", "/v1/status", "").status, 401);
  EXPECT_EQ(call("GET", "/v1/schema/watch", "").status, 401);
}

TEST_F(Dashboard, WhoamiSaysWhetherTheCallerMayAct) {
  auto j = call("GET", "/v1/whoami", reader_).json();
  EXPECT_EQ(j.value("operate", true), false) << j;
  EXPECT_EQ(j["identity"].value("name", ""), "reader");
  j = call("GET", "/v1/whoami", deploy_).json();
  EXPECT_EQ(j.value("operate", false), true) << j;
}

TEST_F(Dashboard, TheSchemaIsTheOneTheStdlibChecksWith) {
  Reply r = call("GET", "/v1/schema/watch", reader_);
  ASSERT_EQ(r.status, 200) << r.body;
  auto s = r.json()["schema"];
  ASSERT_EQ(s.value("type", ""), "table") << s;
  auto limit = s["fields"]["restart"]["options"]["table"]["fields"]["limit"];
  EXPECT_EQ(limit.value("type", ""), "integer") << s["fields"]["restart"];
  EXPECT_EQ(limit.value("min", -1), 0);
  EXPECT_EQ(s["fields"]["start"].value("type", ""), "command");
  EXPECT_EQ(s["fields"]["mode"]["values"], nlohmann::json::array({"act", "observe"}));
  auto probes = s["fields"]["probes"];
  EXPECT_EQ(probes.value("type", ""), "probes");
  EXPECT_EQ(probes["kinds"]["http"]["fields"]["url"].value("format", ""), "url") << probes;
  EXPECT_EQ(probes["kinds"]["tcp"]["fields"]["port"].value("max", 0), 65535);
  EXPECT_EQ(probes["required"]["tcp"], nlohmann::json::array({"port"}));
  r = call("GET", "/v1/schema/group", reader_);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["schema"]["fields"]["strategy"].value("type", ""), "enum");
  EXPECT_EQ(call("GET", "/v1/schema/nosuch", reader_).status, 404);
}

TEST_F(Dashboard, CheckGivesFileLineAndKeyAndTouchesNothing) {
  std::string bad =
      "-- made by the form\nwatch \"x\" { start = { \"/bin/sleep\", \"10202\" }, restart = { limit = \"abc\" } }\n";
  // A reader may not (a POST), whatever the text.
  EXPECT_EQ(call("POST", "/v1/rules/check", reader_, body("x.lua", bad)).status, 403);
  Reply r = call("POST", "/v1/rules/check", deploy_, body("x.lua", bad));
  ASSERT_EQ(r.status, 400) << r.body;
  auto e = r.json()["errors"][0];
  EXPECT_EQ(e.value("file", ""), "x.lua") << r.body;
  EXPECT_EQ(e.value("line", 0), 2) << r.body;
  EXPECT_EQ(e.value("key", ""), "restart.limit") << r.body;
  EXPECT_NE(e.value("message", "").find("expected an integer"), std::string::npos) << r.body;
  // The message names the rules directory's file, not the check's copy.
  EXPECT_NE(r.body.find(d_.rules_dir() + "/x.lua:2"), std::string::npos) << r.body;
  // A second watch of the same name as one in another file: the whole set is checked.
  r = call("POST", "/v1/rules/check", deploy_,
           body("y.lua", "watch \"web\" { start = { \"/bin/sleep\", \"1\" } }\n"));
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("declared twice"), std::string::npos) << r.body;
  r = call("POST", "/v1/rules/check", deploy_,
           body("x.lua", "watch \"x\" { start = { \"/bin/sleep\", \"10202\" } }\n"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(access((d_.rules_dir() + "/x.lua").c_str(), F_OK), -1);
  EXPECT_EQ(d_.watch_state("x"), "");
}

TEST_F(Dashboard, WriteRefusesTraversalStaleHashesAndReaders) {
  std::string good = "watch \"x\" { start = { \"/bin/sleep\", \"10203\" } }\n";
  for (const char* name : {"../evil.lua", "lib/x.lua", "X.lua", "x.txt", ".lua", "x.lua/"}) {
    Reply r = call("POST", "/v1/rules/write", deploy_, body(name, good, ""));
    EXPECT_EQ(r.status, 400) << name << ": " << r.body;
  }
  EXPECT_EQ(access((d_.dir() + "/evil.lua").c_str(), F_OK), -1);
  EXPECT_EQ(call("POST", "/v1/rules/write", reader_, body("x.lua", good, "")).status, 403);
  EXPECT_EQ(call("POST", "/v1/rules/write", deploy_, body("x.lua", good)).status, 400);  // no hash

  // A new file ("" read): written, loaded, running.
  Reply r = call("POST", "/v1/rules/write", deploy_, body("x.lua", good, ""));
  ASSERT_EQ(r.status, 200) << r.body;
  std::string hash = r.json().value("hash", "");
  EXPECT_EQ(hash.rfind("sha256:", 0), 0u) << r.body;
  ASSERT_TRUE(wait_for([&] { return d_.watch_state("x") == "running"; })) << d_.output();
  EXPECT_EQ(call("GET", "/v1/rules/x.lua", deploy_).json().value("hash", ""), hash);
  // A rule file's text is for operators (it may hold passwords); its hash is in the list.
  EXPECT_EQ(call("GET", "/v1/rules/x.lua", reader_).status, 403);
  EXPECT_NE(call("GET", "/v1/rules", reader_).body.find(hash), std::string::npos);

  // The form read it as new, it exists now: refused.
  r = call("POST", "/v1/rules/write", deploy_, body("x.lua", good, ""));
  EXPECT_EQ(r.status, 409) << r.body;
  // Changed on disk since the form read it: refused, the file as the other writer left it.
  std::string other = "watch \"x\" { start = { \"/bin/sleep\", \"10204\" } }\n";
  write_file(d_.rules_dir() + "/x.lua", other);
  r = call("POST", "/v1/rules/write", deploy_,
           body("x.lua", "watch \"x\" { start = { \"/bin/sleep\", \"10205\" } }\n", hash));
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.json().value("error", "").find("changed on disk"), std::string::npos) << r.body;
  EXPECT_EQ(read_file(d_.rules_dir() + "/x.lua"), other);

  // The daemon hot-reloads the file changed on disk: x runs the other
  // writer's command before anything below reads its pid.
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d_.watch_pid("x");
    return p > 0 && d_.watch_state("x") == "running" &&
           read_file("/proc/" + std::to_string(p) + "/cmdline").find("10204") != std::string::npos;
  })) << d_.output();
  // A bad text with the right hash: refused by the check, nothing written, nothing touched.
  std::string now = call("GET", "/v1/rules/x.lua", deploy_).json().value("hash", "");
  pid_t web = d_.watch_pid("web"), x = d_.watch_pid("x");
  r = call("POST", "/v1/rules/write", deploy_,
           body("x.lua", "watch \"x\" { start = { \"/bin/sleep\", \"1\" }, restart = { limt = 3 } }\n", now));
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("did you mean 'limit'"), std::string::npos) << r.body;
  EXPECT_EQ(read_file(d_.rules_dir() + "/x.lua"), other);
  EXPECT_EQ(d_.watch_pid("web"), web);
  EXPECT_EQ(d_.watch_pid("x"), x);
}

TEST_F(Dashboard, OutputTailIsForOperators) {
  d_.write_rule("talk.lua",
                "watch \"talk\" { start = { \"/bin/sh\", \"-c\", \"seq 1 3000; echo oops >&2; exec sleep 10206\" } }\n");
  ASSERT_EQ(run_command({VIGIL_BINARY, "--socket", d_.socket(), "reload"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return d_.watch_state("talk") == "running"; })) << d_.output();
  EXPECT_EQ(call("GET", "/v1/watches/talk/output", reader_).status, 403);
  Reply r;
  ASSERT_TRUE(wait_for([&] {
    r = call("GET", "/v1/watches/talk/output?stream=stderr", deploy_);
    return r.body.find("oops") != std::string::npos;
  })) << r.body;
  r = call("GET", "/v1/watches/talk/output?bytes=100", deploy_);
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = r.json();
  EXPECT_TRUE(j.value("truncated", false)) << r.body;
  // The tail, from a line's start.
  std::string text = j.value("text", "");
  EXPECT_NE(text.find("3000\n"), std::string::npos) << text;
  EXPECT_EQ(text.front() == '\n' || text.size() > 100, false) << text;
  EXPECT_EQ(call("GET", "/v1/watches/talk/output?stream=stdin", deploy_).status, 400);
  EXPECT_EQ(call("GET", "/v1/watches/talk/output?bytes=abc", deploy_).status, 400);
  EXPECT_EQ(call("GET", "/v1/watches/talk/output?bytes=99999999", deploy_).status, 400);
  EXPECT_EQ(call("GET", "/v1/watches/nosuch/output", deploy_).status, 404);
}

TEST_F(Dashboard, MalformedRequestsAreAnsweredAndTheDaemonGoesOn) {
  EXPECT_EQ(call("POST", "/v1/rules/check", deploy_, "not json").status, 400);
  EXPECT_EQ(call("POST", "/v1/rules/check", deploy_, "[1,2]").status, 400);
  EXPECT_EQ(call("POST", "/v1/rules/check", deploy_, R"({"name":5,"text":"x"})").status, 400);
  EXPECT_EQ(call("POST", "/v1/rules/check", deploy_, R"({"name":"x.lua"})").status, 400);
  EXPECT_EQ(call("POST", "/v1/rules/check", deploy_, std::string(2 << 20, '{')).status, 413);
  EXPECT_EQ(call("POST", "/v1/rules/check", deploy_,
                 body("x.lua", "watch \"x\" { start = " + std::string(300 * 1024, ' ') + "}"))
                .status,
            413);
  // A rule that never ends is cut by the load budget, as `vigil check`'s.
  Reply r = call("POST", "/v1/rules/check", deploy_, body("x.lua", "while true do end\n"));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(call("GET", "/v1/ping", reader_).status, 200);
  EXPECT_TRUE(d_.running());
}

}  // namespace
}  // namespace vigil::test
