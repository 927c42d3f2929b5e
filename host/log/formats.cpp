#include "host/log/formats.hpp"

#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "host/core/clock.hpp"

namespace vigil {

namespace {

// Replaces invalid UTF-8 with U+FFFD (one per byte that starts no valid
// sequence) so that a field copied from a process's output cannot make the
// message unparsable. Valid is RFC 3629's: the shortest form, no
// surrogates (U+D800..DFFF), nothing above U+10FFFF.
std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    // The range the second byte must be in (RFC 3629 §4): it rules out
    // the overlong forms, the surrogates and what is above U+10FFFF.
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) len = 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      ok = k == 1 ? d >= lo && d <= hi : (d & 0xC0) == 0x80;
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

void sd_param(std::string& out, std::string_view name, std::string_view value) {
  out += ' ';
  out += sd_name(name);
  out += "=\"";
  out += sd_escape(value);
  out += '"';
}

}  // namespace

std::string field_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string sd_escape(std::string_view value) {
  std::string valid = valid_utf8(value);
  std::string out;
  out.reserve(valid.size() + 8);
  for (char c : valid) {
    if (c == '"' || c == '\\' || c == ']') out += '\\';
    out += c;
  }
  return out;
}

std::string sd_name(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, 32)) {
    bool ok = c > 32 && c < 127 && c != '=' && c != ']' && c != '"';
    out += ok ? c : '_';
  }
  return out.empty() ? "_" : out;
}

int syslog_severity(Severity s) {
  switch (s) {
    case Severity::Debug: return 7;
    case Severity::Info: return 6;
    case Severity::Notice: return 5;
    case Severity::Warning: return 4;
    case Severity::Error: return 3;
    case Severity::Critical: return 2;
  }
  return 6;
}

std::string format_rfc5424(const Event& ev, const SyslogHeader& h, std::string_view msg) {
  const MessageDef& def = message_def(ev.msg);
  std::string out = "<" + std::to_string(h.facility * 8 + syslog_severity(ev.severity)) + ">1 ";
  out += format_time(ev.time, 6, false);  // "2026-11-22T02:07:28.712345Z"
  out += ' ';
  out += h.hostname.empty() ? "-" : h.hostname;
  out += ' ';
  out += h.app;
  out += ' ';
  out += h.pid > 0 ? std::to_string(h.pid) : "-";
  out += ' ';
  out += def.id;  // MSGID: what filters key on
  out += " [vigil@32473";
  sd_param(out, "id", def.id);
  sd_param(out, "event", def.name);
  sd_param(out, "severity", severity_name(ev.severity));
  if (!ev.watch.empty()) sd_param(out, "watch", ev.watch);
  if (ev.fields.is_object())
    for (const auto& [k, v] : ev.fields.items()) {
      if (v.is_null() || k == "watch") continue;
      sd_param(out, k, field_text(v));
    }
  out += ']';
  if (!msg.empty()) {
    out += ' ';
    out += valid_utf8(msg);
  }
  return out;
}

std::string octet_frame(std::string_view msg) {
  std::string out = std::to_string(msg.size());
  out += ' ';
  out.append(msg);
  return out;
}

void journal_append(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  if (value.find('\n') == std::string_view::npos) {
    out += '=';
    out.append(value);
    out += '\n';
    return;
  }
  out += '\n';
  uint64_t n = value.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  out.append(value);
  out += '\n';
}

std::string journal_field_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c >= 'a' && c <= 'z')
      out += static_cast<char>(c - 'a' + 'A');
    else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
      out += c;
    else
      out += '_';
  }
  while (!out.empty() && (out[0] == '_' || (out[0] >= '0' && out[0] <= '9'))) out.erase(0, 1);
  return out.substr(0, 64);
}

std::string journal_message_id(const MessageDef& def) {
  unsigned long number = strtoul(def.id + 3, nullptr, 10);  // "VGL0102" -> 102
  char buf[40];
  snprintf(buf, sizeof buf, "5d1e2a8c9f4b47e3a6c0b7d2%08lx", number);
  return buf;
}

std::string journal_entry(const Event& ev, int facility, std::string_view msg) {
  const MessageDef& def = message_def(ev.msg);
  std::string out;
  out.reserve(256 + msg.size());
  journal_append(out, "MESSAGE", msg);
  journal_append(out, "PRIORITY", std::to_string(syslog_severity(ev.severity)));
  journal_append(out, "SYSLOG_FACILITY", std::to_string(facility));
  journal_append(out, "SYSLOG_IDENTIFIER", "vigil");
  journal_append(out, "MESSAGE_ID", journal_message_id(def));
  journal_append(out, "VIGIL_ID", def.id);
  journal_append(out, "VIGIL_EVENT", def.name);
  if (!ev.watch.empty()) journal_append(out, "VIGIL_WATCH", ev.watch);
  if (ev.fields.is_object())
    for (const auto& [k, v] : ev.fields.items()) {
      if (v.is_null() || k == "watch") continue;
      // journald takes names of at most 64 characters, the prefix included.
      std::string name = journal_field_name(k).substr(0, 64 - 6);
      if (name.empty()) continue;
      journal_append(out, "VIGIL_" + name, field_text(v));
    }
  return out;
}

}  // namespace vigil
