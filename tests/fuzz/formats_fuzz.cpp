// libFuzzer target: the event sinks' wire formats on events with fuzzed
// fields: the RFC 5424 message (and its octet-counted frame), the journald
// datagram, the JSON line of the history, and the text line of the log
// file (the real file and json sinks, writing to /dev/null). Events come
// from the real EventLog::emit (catalog templates rendered with the
// fields) and, for the formatters, also with a fuzzed time. Each output
// is parsed back and checked against what its consumer accepts.
#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>

#include <cstring>
#include <string>
#include <string_view>

#include "host/core/events.hpp"
#include "host/log/formats.hpp"
#include "host/log/sink.hpp"

namespace {

#define CHECK(cond) \
  do {              \
    if (!(cond)) abort(); \
  } while (0)

// Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above
// U+10FFFF.
bool strict_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return false;
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// What journald's native protocol accepts (systemd's journal_field_valid
// and the binary-safe form): every field NAME=value\n or NAME\n<le64>value\n.
void check_journal(std::string_view d) {
  while (!d.empty()) {
    size_t end = d.find_first_of("=\n");
    CHECK(end != std::string_view::npos);
    std::string_view name = d.substr(0, end);
    CHECK(!name.empty() && name.size() <= 64);
    CHECK(name[0] != '_' && !(name[0] >= '0' && name[0] <= '9'));
    for (char c : name) CHECK((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
    if (d[end] == '=') {
      size_t nl = d.find('\n', end);
      CHECK(nl != std::string_view::npos);
      d.remove_prefix(nl + 1);
    } else {
      d.remove_prefix(end + 1);
      CHECK(d.size() >= 8);
      uint64_t n = 0;
      for (int i = 0; i < 8; ++i) n |= uint64_t(static_cast<unsigned char>(d[i])) << (8 * i);
      d.remove_prefix(8);
      CHECK(n < d.size() && d[n] == '\n');
      d.remove_prefix(n + 1);
    }
  }
}

// RFC 5424: "<PRI>1 TS HOST APP PROCID MSGID [SD-ID *(SP SD-PARAM)]
// [SP MSG]", all of it valid UTF-8 here; SD-NAMEs printable US-ASCII
// without '=', SP, ']', '"'; in PARAM-VALUEs '"', '\' and ']' escaped.
void check_rfc5424(std::string_view m) {
  CHECK(strict_utf8(m));
  CHECK(m.size() > 3 && m[0] == '<');
  size_t sd = m.find(" [vigil@32473");
  CHECK(sd != std::string_view::npos);
  std::string_view head = m.substr(0, sd);
  int spaces = 0;
  for (char c : head) spaces += c == ' ';
  CHECK(spaces == 5);  // PRI+VERSION, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID
  std::string_view rest = m.substr(sd + 13);
  while (!rest.empty() && rest[0] == ' ') {
    rest.remove_prefix(1);
    size_t eq = rest.find('=');
    CHECK(eq != std::string_view::npos && eq > 0 && eq <= 32);
    for (char c : rest.substr(0, eq)) CHECK(c > 32 && c < 127 && c != ']' && c != '"');
    rest.remove_prefix(eq + 1);
    CHECK(!rest.empty() && rest[0] == '"');
    rest.remove_prefix(1);
    for (;;) {
      CHECK(!rest.empty());
      char c = rest[0];
      rest.remove_prefix(1);
      if (c == '\\') {
        CHECK(!rest.empty());
        rest.remove_prefix(1);
        continue;
      }
      CHECK(c != ']');
      if (c == '"') break;
    }
  }
  CHECK(!rest.empty() && rest[0] == ']');
  rest.remove_prefix(1);
  CHECK(rest.empty() || rest[0] == ' ');
}

nlohmann::json fuzzed_value(FuzzedDataProvider& p, int depth) {
  switch (p.ConsumeIntegralInRange<int>(0, depth > 2 ? 5 : 7)) {
    case 0: return p.ConsumeRandomLengthString(64);  // any bytes, invalid UTF-8 too
    case 1: return p.ConsumeIntegral<int64_t>();
    case 2: return p.ConsumeIntegral<uint64_t>();
    case 3: {
      double d;
      uint64_t bits = p.ConsumeIntegral<uint64_t>();
      memcpy(&d, &bits, sizeof d);  // NaN and infinities too
      return d;
    }
    case 4: return p.ConsumeBool();
    case 5: return nullptr;
    case 6: {
      nlohmann::json a = nlohmann::json::array();
      for (int n = p.ConsumeIntegralInRange(0, 4); n > 0; --n) a.push_back(fuzzed_value(p, depth + 1));
      return a;
    }
    default: {
      nlohmann::json o = nlohmann::json::object();
      for (int n = p.ConsumeIntegralInRange(0, 4); n > 0; --n)
        o[p.ConsumeRandomLengthString(16)] = fuzzed_value(p, depth + 1);
      return o;
    }
  }
}

struct Sinks {
  vigil::EventLog log;
  const vigil::Event* last = nullptr;
  Sinks() : log(options()) {
    for (const char* kind : {"file", "json"}) {
      vigil::SinkSpec s;
      s.kind = kind;
      s.path = "/dev/null";
      s.min_severity = vigil::Severity::Debug;
      std::string error;
      log.add_sink(vigil::make_sink(s, nullptr, {}, error));
    }
  }
  static vigil::LogOptions options() {
    vigil::LogOptions o;
    o.console = false;
    return o;
  }
};

void check_formats(const vigil::Event& ev, int facility, std::string_view msg) {
  vigil::SyslogHeader h;
  h.facility = facility;
  h.hostname = "host";
  h.pid = 1234;
  std::string m = vigil::format_rfc5424(ev, h, msg);
  check_rfc5424(m);
  std::string framed = vigil::octet_frame(m);
  CHECK(framed == std::to_string(m.size()) + " " + m);
  check_journal(vigil::journal_entry(ev, facility, msg));
  const std::string& line = ev.json_line();
  CHECK(line.find('\n') == std::string::npos);
  auto back = nlohmann::json::parse(line, nullptr, false);
  CHECK(back.is_object() && back["seq"] == ev.seq);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Sinks* sinks = new Sinks;  // lives for the process
  FuzzedDataProvider p(data, size);
  auto msg = static_cast<vigil::Msg>(
      p.ConsumeIntegralInRange<size_t>(0, static_cast<size_t>(vigil::Msg::kCount) - 1));
  auto sev = static_cast<vigil::Severity>(p.ConsumeIntegralInRange(0, 5));
  int facility = p.ConsumeIntegralInRange(0, 23);
  std::string watch = p.ConsumeRandomLengthString(48);
  bool own_text = p.ConsumeBool();
  std::string text = p.ConsumeRandomLengthString(256);
  double time = p.ConsumeFloatingPointInRange<double>(0, 1e10);  // to 2286
  nlohmann::json fields = nlohmann::json::object();
  for (int n = p.ConsumeIntegralInRange(0, 8); n > 0; --n)
    fields[p.ConsumeRandomLengthString(80)] = fuzzed_value(p, 0);

  // The daemon's path: template rendering, sinks, ring, listener.
  const vigil::Event* seen = nullptr;
  vigil::Event copy;
  sinks->log.set_listener([&](const vigil::Event& ev) {
    if (!seen) copy = ev, seen = &copy;
  });
  if (own_text)
    sinks->log.emit(msg, sev, watch, fields, text);
  else
    sinks->log.emit(msg, watch, fields);
  sinks->log.set_listener({});
  CHECK(seen != nullptr);
  check_formats(copy, facility, copy.text);

  // The formatters alone, at any time, with any message text.
  vigil::Event ev;
  ev.seq = 7;
  ev.time = time;
  ev.msg = msg;
  ev.severity = sev;
  ev.watch = watch;
  ev.fields = fields;
  ev.text = text;
  check_formats(ev, facility, text);
  return 0;
}
