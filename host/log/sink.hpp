// Sink: one destination of the event log (console, text file, JSON lines
// file, syslog, journald). The event log hands every event to every sink;
// a sink never blocks the loop: what it cannot deliver now it queues
// (bounded) or reports once as an event of its own (VGL0012-VGL0016).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "host/core/events.hpp"

namespace vigil {

class EventLoop;

// A rule's formatter (`format = function(ev) ... end`): true and the text,
// or false and the error. Set by lua/lua_log.cpp; the host only calls it.
using SinkFormatter = std::function<bool(const Event& ev, std::string& out, std::string& error)>;

// How the sink reports on itself: the event log emits these after the
// event being written (never from inside a write).
using SinkReporter = std::function<void(Msg msg, nlohmann::json fields)>;

// What a sink is, as the command line or `vigil.log.sink{...}` says.
struct SinkSpec {
  std::string kind;     // console | file | json | syslog | journald
  std::string address;  // syslog: /dev/log, unix:/p, udp:h:p, tcp:h:p; journald: socket
  std::string facility = "daemon";
  std::string path;              // file, json
  size_t max_bytes = 10u << 20;  // file, json: rotated at this size ...
  size_t keep = 3;               // ... keeping this many old files
  size_t queue = 10000;          // syslog, journald: events held while undeliverable
  Severity min_severity = Severity::Info;
  SinkFormatter format;  // empty: the default text
  std::string where;     // the rule's file:line, for reports

  // Two specs with the same key are the same destination: a reload keeps
  // the sink (its connection and queue) and only takes the new formatter.
  std::string key() const;
  std::string name() const;  // for reports: "syslog tcp:127.0.0.1:514"
};

class Sink {
 public:
  virtual ~Sink() = default;
  // `formatted`: the formatter's output, or null for the default text.
  virtual void write(const Event& ev, const std::string* formatted) = 0;

  const SinkSpec& spec() const { return spec_; }
  void set_formatter(SinkFormatter f) {
    spec_.format = std::move(f);
    formatter_failed_ = false;
  }
  // Reported once per formatter: set when its first error was reported.
  bool formatter_failed_ = false;

 protected:
  explicit Sink(SinkSpec spec) : spec_(std::move(spec)) {}
  SinkSpec spec_;
};

// Makes the sink a spec describes; null and `error` when the spec is not
// valid (an unknown kind, an address that does not parse). A destination
// that is valid but unreachable still makes a sink: it queues and retries.
// Socket sinks (syslog, journald) need the loop.
std::unique_ptr<Sink> make_sink(const SinkSpec& spec, EventLoop* loop, SinkReporter report,
                                std::string& error);

// "daemon", "local0".."local7", "user", ... -> the RFC 5424 facility code,
// or -1.
int facility_code(const std::string& name);

// "info", "warning", ... -> the severity; false when unknown.
bool parse_severity(const std::string& name, Severity& out);

}  // namespace vigil
