// Wire formats of the event sinks, as pure functions (unit-tested):
// RFC 5424 syslog messages with structured data, RFC 6587 octet-counting
// framing, the journald native protocol, and the JSON line of the history.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "host/core/events.hpp"

namespace vigil {

// RFC 5424 §6.3.3: inside an SD-PARAM value, '"', '\' and ']' are escaped
// with a backslash. Invalid UTF-8 is replaced so the message stays valid.
std::string sd_escape(std::string_view value);
// An SD-NAME: printable US-ASCII except '=', ' ', ']', '"', at most 32
// characters; other characters become '_'.
std::string sd_name(std::string_view name);

// The syslog severity (0 emergency .. 7 debug) of an event severity.
int syslog_severity(Severity s);

struct SyslogHeader {
  int facility = 3;  // daemon
  std::string hostname = "-";
  std::string app = "vigil";
  int pid = 0;
};

// "<PRI>1 TIMESTAMP HOST vigil PID VGLnnnn [vigil@32473 id=.. event=..
// severity=.. watch=.. field=..] MSG". 32473 is the private enterprise
// number RFC 5612 reserves for examples; `msg` is the sink's text.
std::string format_rfc5424(const Event& ev, const SyslogHeader& h, std::string_view msg);

// RFC 6587 §3.4.1 octet counting: "LEN SP MSG".
std::string octet_frame(std::string_view msg);

// The journald native protocol: "NAME=value\n", or for a value with a
// newline "NAME\n" + 64-bit little-endian length + value + "\n".
void journal_append(std::string& out, std::string_view name, std::string_view value);
// A field name journald accepts: [A-Z0-9_], not starting with a digit or
// '_', at most 64 characters. "pid" -> "PID", "per-minute" -> "PER_MINUTE".
std::string journal_field_name(std::string_view name);
// The whole datagram for an event: MESSAGE, PRIORITY, SYSLOG_FACILITY,
// SYSLOG_IDENTIFIER, MESSAGE_ID, VIGIL_ID, VIGIL_EVENT, VIGIL_WATCH and
// VIGIL_<FIELD> for each field.
std::string journal_entry(const Event& ev, int facility, std::string_view msg);
// MESSAGE_ID of a catalog event: a fixed 96-bit prefix and the number of
// the VGL id in the last 32 bits, as 32 hex digits. VGL0102 ->
// "5d1e2a8c9f4b47e3a6c0b7d2" "00000066". Stable as long as ids are.
std::string journal_message_id(const MessageDef& def);

// The text of a field value as sinks show it: strings as they are, numbers
// and others as JSON.
std::string field_text(const nlohmann::json& v);

}  // namespace vigil
