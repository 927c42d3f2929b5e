// docs/messages.md must document every message id the code can emit.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "host/core/events.hpp"

TEST(Catalog, IdsAreUniqueOrderedAndDocumented) {
  std::ifstream f(VIGIL_SOURCE_DIR "/docs/messages.md");
  ASSERT_TRUE(f) << "docs/messages.md is missing";
  std::stringstream ss;
  ss << f.rdbuf();
  std::string doc = ss.str();
  std::set<std::string> ids, names;
  const auto& cat = vigil::message_catalog();
  ASSERT_EQ(cat.size(), static_cast<size_t>(vigil::Msg::kCount));
  for (size_t i = 0; i < cat.size(); ++i) {
    const auto& m = cat[i];
    EXPECT_EQ(static_cast<size_t>(m.msg), i) << m.id << " is out of enum order";
    EXPECT_TRUE(ids.insert(m.id).second) << "duplicate id " << m.id;
    EXPECT_TRUE(names.insert(m.name).second) << "duplicate name " << m.name;
    EXPECT_NE(doc.find(m.id), std::string::npos) << m.id << " is not in docs/messages.md";
    EXPECT_NE(doc.find(m.name), std::string::npos) << m.name << " is not in docs/messages.md";
  }
}

TEST(Catalog, TemplatesRenderFields) {
  nlohmann::json f = {{"watch", "api"}, {"pid", 42}, {"how", "exited 3"}, {"uptime", 1.25}};
  EXPECT_EQ(vigil::render_template("{watch}: pid {pid} {how} after {uptime}s", f),
            "api: pid 42 exited 3 after 1.25s");
  EXPECT_EQ(vigil::render_template("{missing} stays", f), "{missing} stays");
  EXPECT_EQ(vigil::render_template("unclosed {brace", f), "unclosed {brace");
  // Found writing tests/fuzz/formats_fuzz: a field holding a list or table
  // with bytes that are not UTF-8 (a process's argv, a probe's output)
  // made the rendering throw, out of EventLog::emit.
  nlohmann::json g = {{"argv", {"ok", "bad \xff"}}, {"nested", {{"k", "\xc0\x80"}}}};
  EXPECT_EQ(vigil::render_template("{argv} {nested}", g),
            "[\"ok\",\"bad \xEF\xBF\xBD\"] {\"k\":\"\xEF\xBF\xBD\xEF\xBF\xBD\"}");
}
