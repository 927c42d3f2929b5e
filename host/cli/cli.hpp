// The control CLI: what each `vigil COMMAND` does once host/main.cpp has
// parsed its command line (CLI11). Each command returns the process's
// exit code; a usage error (a bad value found after parsing) throws
// UsageError, which main turns into exit 2 with the message.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/control/client.hpp"
#include "host/remote/peer_link.hpp"

namespace vigil::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Replies are read with types: a reply of another shape (something else
// on the socket, another version) throws nlohmann::json::exception, which
// main reports as an unexpected reply (exit 3), never a crash.

// Exit codes shared by the control commands.
inline constexpr int kExitFailed = 1;       // the daemon refused or the command failed
inline constexpr int kExitUsage = 2;        // bad command line
inline constexpr int kExitNoDaemon = 3;     // the daemon cannot be reached
inline constexpr int kExitSilent = 4;       // the daemon did not answer within --timeout
inline constexpr int kExitWaitTimeout = 124;  // `vigil wait`: --timeout passed (as timeout(1))

// `vigil status NAME --check` (LSB init script status codes).
inline constexpr int kLsbRunning = 0;   // running and ready
inline constexpr int kLsbDegraded = 1;  // LSB "dead and pid file exists": here degraded, restarting
inline constexpr int kLsbStopped = 3;   // not running
inline constexpr int kLsbUnknown = 4;   // status unknown: no such name, or no daemon

// The options every control command takes (before or after its name).
struct Global {
  std::string socket;
  ControlCall call;
  // --node URL (--ca, --cert, --key, --pin, --token-file): requests go to
  // that node's remote API instead of the socket; a peer's settings, as
  // the rules' peer declarations give them (host/remote).
  std::optional<PeerConfig> node;
  std::vector<PeerConfig> nodes;  // --nodes FILE: status across these
};

// --nodes FILE: the peers a Lua file declares (peer "name" { url = ... },
// as in the rules); throws UsageError with the file's errors.
std::vector<PeerConfig> load_nodes(const std::string& file, const std::string& stdlib_dir);
// One request to a node's API; nullopt and code as request() does.
std::optional<nlohmann::json> remote_request(const Global& g, const PeerConfig& node,
                                             const nlohmann::json& req, int& code,
                                             std::string* error = nullptr);
// `vigil --nodes FILE status`: one table across the nodes.
int cmd_status_nodes(Global& g, const struct StatusArgs& a);

// Seconds for --timeout / VIGIL_TIMEOUT and the like (10, 2.5, 30s, 2m);
// throws UsageError naming `what`.
double parse_timeout(const std::string& what, const std::string& v);
// "90s", "30m", "1h", "2d", "1.5h" or plain seconds; -1 when not valid.
double parse_duration(const std::string& s);

// Sends `req`; on failure prints why and sets `code` (3 unreachable,
// 4 silent). nullopt then.
std::optional<nlohmann::json> request(const Global& g, const nlohmann::json& req, int& code);

// The commands (host/cli/*.cpp).
struct StatusArgs {
  std::vector<std::string> names;
  bool json = false;
  bool all = false;    // --json: the whole reply (daemon, watches, groups)
  bool check = false;  // exit with the LSB code of the names
  int events = 5;      // events shown per name
};
int cmd_status(Global& g, const StatusArgs& a);
// The LSB code of one watch or group object (status --json / inspect).
int lsb_code(const nlohmann::json& item);

struct SimpleArgs {  // start, stop, restart, explain, pause, resume, reload, ping, quit,
                     // failover, cluster
  std::string cmd;
  std::string name;
  std::string to;  // failover --to NODE
  bool all = false;
  bool keep = false;
  bool json = false;
};
int cmd_simple(Global& g, const SimpleArgs& a);

struct SetArgs {
  std::string name, key, value;
  bool to_default = false;
  bool json = false;
};
int cmd_set(Global& g, const SetArgs& a);

struct SignalArgs {
  std::string name, signal;
  bool json = false;
};
int cmd_signal(Global& g, const SignalArgs& a);

struct WaitArgs {
  std::string name;
  std::string until = "ready";
  std::optional<double> timeout;  // seconds; none: as long as it takes
  bool json = false;
};
int cmd_wait(Global& g, const WaitArgs& a);

struct EventsArgs {
  std::optional<long> n;
  std::string watch, id, since, state_dir;
  bool json = false;
};
int cmd_events(Global& g, const EventsArgs& a);

struct DumpsArgs {
  std::string watch;
  bool json = false;
};
int cmd_dumps(Global& g, const DumpsArgs& a);

// `vigil token add|remove NAME`: the remote API's bearer tokens (host/api/tokens.hpp).
struct TokenArgs {
  std::string action;  // add, remove
  std::string name;
  std::string file = "/etc/vigil/tokens";
};
int cmd_token(const TokenArgs& a);

struct LogsArgs {
  std::string name;
  long lines = 10;
  bool follow = false;
  bool stderr_stream = false;
  std::string state_dir;  // where to look when no daemon answers
};
int cmd_logs(Global& g, const LogsArgs& a);

// Printing (print.cpp).
void print_status(const nlohmann::json& reply);
// One node's status reply (null when it did not answer: error says why).
struct NodeStatus {
  std::string name;
  nlohmann::json reply;
  std::string error;
};
void print_status_nodes(const std::vector<NodeStatus>& nodes);
void print_explain(const nlohmann::json& reply);
void print_events(const nlohmann::json& events);
void print_inspect(const nlohmann::json& item);
void print_cluster(const nlohmann::json& reply);
std::string human_duration(double seconds);

// The event history files (history.cpp): the events at or after
// filter.since (and of filter.watch / filter.id); the newest `limit`
// when limit > 0. nullopt and `error` when a file cannot be read.
std::optional<nlohmann::json> read_history(const std::string& path, const nlohmann::json& filter,
                                           size_t limit, std::string& error);

}  // namespace vigil::cli
