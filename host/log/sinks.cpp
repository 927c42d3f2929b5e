// The sinks: console, text file, JSON lines file, syslog (unix datagram,
// UDP, TCP) and journald. See sink.hpp.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <deque>

#include "host/core/clock.hpp"
#include "host/core/fd.hpp"
#include "host/core/strings.hpp"
#include "host/log/formats.hpp"
#include "host/log/sink.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/resolver.hpp"

namespace vigil {

namespace {

// The classic text line, or the formatter's text as it is.
std::string text_line(const Event& ev, const std::string& text, bool formatted) {
  if (formatted) return text + "\n";
  // "2026-11-22T02:07:28.712+00:00" (local time)
  std::string line = format_time(ev.time, 3, true);
  line += ' ';
  line += severity_name(ev.severity);
  line += ' ';
  line += message_def(ev.msg).id;
  line += ' ';
  line += text;
  line += '\n';
  return line;
}

bool write_all(int fd, const std::string& s, int& err) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

// A file appended to line by line, rotated by size (path -> path.1 ->
// ... path.keep) and reopened when something else moved it away
// (logrotate): checked at most once a second.
class RotatingFile {
 public:
  RotatingFile(std::string path, size_t max_bytes, size_t keep)
      : path_(std::move(path)), max_(max_bytes), keep_(keep) {}

  // False and the error when the line could not be written.
  bool append(const std::string& line, std::string& error) {
    MonoTime now = MonoClock::now();
    if (fd_ && now - last_check_ > std::chrono::seconds(1)) {
      last_check_ = now;
      struct stat a, b;
      if (::stat(path_.c_str(), &a) != 0 || fstat(fd_.get(), &b) != 0 || a.st_ino != b.st_ino ||
          a.st_dev != b.st_dev)
        fd_.reset();
    }
    if (fd_ && max_ > 0 && size_ + line.size() > max_ && size_ > 0) rotate();
    if (!fd_ && !open(error)) return false;
    int err = 0;
    if (!write_all(fd_.get(), line, err)) {
      error = errno_text(err);
      // A short write leaves part of a line: start the next on its own.
      struct stat st;
      if (fstat(fd_.get(), &st) == 0) size_ = static_cast<size_t>(st.st_size);
      return false;
    }
    size_ += line.size();
    return true;
  }

 private:
  bool open(std::string& error) {
    fd_ = Fd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!fd_) {
      error = errno_text(errno);
      return false;
    }
    struct stat st;
    size_ = fstat(fd_.get(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
    last_check_ = MonoClock::now();
    return true;
  }
  void rotate() {
    fd_.reset();
    size_t keep = keep_ == 0 ? 1 : keep_;
    for (size_t i = keep; i > 1; --i)
      ::rename((path_ + "." + std::to_string(i - 1)).c_str(),
               (path_ + "." + std::to_string(i)).c_str());
    ::rename(path_.c_str(), (path_ + ".1").c_str());
  }

  std::string path_;
  size_t max_;
  size_t keep_;
  Fd fd_;
  size_t size_ = 0;
  MonoTime last_check_{};
};

// stderr, for an operator running vigil in a terminal: spdlog colours the
// line by severity when stderr is a terminal, and writes it plain when not.
class ConsoleSink : public Sink {
 public:
  explicit ConsoleSink(SinkSpec spec) : Sink(std::move(spec)) {
    out_.set_pattern("%^%v%$");  // our line as it is, coloured whole
  }
  void write(const Event& ev, const std::string* formatted) override {
    if (ev.severity < spec_.min_severity) return;
    std::string line = text_line(ev, formatted ? *formatted : ev.text, formatted != nullptr);
    line.pop_back();  // spdlog ends the line
    out_.log(spdlog::details::log_msg("vigil", level(ev.severity), line));
  }

 private:
  static spdlog::level::level_enum level(Severity s) {
    switch (s) {
      case Severity::Debug: return spdlog::level::debug;
      case Severity::Info: return spdlog::level::info;
      case Severity::Notice: return spdlog::level::info;
      case Severity::Warning: return spdlog::level::warn;
      case Severity::Error: return spdlog::level::err;
      case Severity::Critical: return spdlog::level::critical;
    }
    return spdlog::level::info;
  }
  spdlog::sinks::stderr_color_sink_st out_;
};

// Text or JSON lines in a rotated file; one error event when writing
// starts failing (full disk), one when it works again.
class FileSink : public Sink {
 public:
  // With a loop, lines written in one loop iteration go out in one
  // write(2) after it (posted); without one, each line at once.
  FileSink(SinkSpec spec, EventLoop* loop, SinkReporter report)
      : Sink(std::move(spec)),
        file_(spec_.path, spec_.max_bytes, spec_.keep),
        loop_(loop),
        report_(std::move(report)),
        alive_(std::make_shared<int>(0)) {}
  ~FileSink() override {
    report_ = [](Msg, nlohmann::json) {};  // the log is going away too
    flush();
  }

  void write(const Event& ev, const std::string* formatted) override {
    if (ev.severity < spec_.min_severity) return;
    if (spec_.kind == "json") {
      pending_ += formatted ? *formatted : ev.json_line();
      pending_ += '\n';
    } else {
      pending_ += text_line(ev, formatted ? *formatted : ev.text, formatted != nullptr);
    }
    ++pending_lines_;
    if (!loop_ || pending_.size() > (256u << 10)) return flush();
    if (flush_posted_) return;
    flush_posted_ = true;
    std::weak_ptr<int> alive = alive_;
    loop_->post([this, alive] {
      if (alive.expired()) return;
      flush_posted_ = false;
      flush();
    });
  }

 private:
  void flush() {
    if (pending_.empty()) return;
    std::string batch = std::move(pending_);
    uint64_t lines = std::exchange(pending_lines_, 0);
    pending_.clear();
    std::string error;
    if (file_.append(batch, error)) {
      if (failing_) {
        failing_ = false;
        report_(Msg::SinkRecovered,
                {{"sink", spec_.name()}, {"address", spec_.path}, {"lost", lost_}});
        lost_ = 0;
      }
      return;
    }
    lost_ += lines;
    if (!failing_) {
      failing_ = true;
      report_(Msg::SinkWriteFailed,
              {{"sink", spec_.name()}, {"path", spec_.path}, {"error", error}});
    }
  }

  RotatingFile file_;
  EventLoop* loop_;
  SinkReporter report_;
  std::string pending_;
  uint64_t pending_lines_ = 0;
  bool flush_posted_ = false;
  bool failing_ = false;
  uint64_t lost_ = 0;
  std::shared_ptr<int> alive_;
};

enum class Transport { UnixDgram, Udp, Tcp, Journal };

// syslog and journald over a socket. Nonblocking: an event the socket
// cannot take now waits in a bounded queue, drained when the socket is
// writable again or the connection is back; the oldest are dropped (and
// counted, VGL0014) when the queue is full. A connection that fails is
// retried with backoff (0.1 s doubling to 30 s) on the loop. A host
// name (udp:/tcp:) is resolved by the loop's Resolver before each
// connection, never on the loop: events queue meanwhile.
class SocketSink : public Sink {
 public:
  // `name` non-empty: a host name to resolve for `port` (addr is then unused).
  SocketSink(SinkSpec spec, EventLoop& loop, SinkReporter report, Transport t,
             const sockaddr_storage& addr, socklen_t len, int facility, std::string name = {},
             uint16_t port = 0)
      : Sink(std::move(spec)),
        loop_(loop),
        report_(std::move(report)),
        transport_(t),
        addr_(addr),
        addr_len_(len),
        host_(std::move(name)),
        port_(port),
        alive_(std::make_shared<int>(0)) {
    header_.facility = facility;
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) == 0 && host[0]) header_.hostname = host;
    header_.pid = getpid();
    connect();
  }
  ~SocketSink() override {
    report_ = [](Msg, nlohmann::json) {};  // the log is going away too
    if (connected_) flush();               // what the last iteration emitted (nonblocking)
    close();
    if (resolving_) resolver_->cancel(resolving_);
    if (retry_) loop_.cancel(retry_);
    if (drop_timer_) loop_.cancel(drop_timer_);
    if (recover_timer_) loop_.cancel(recover_timer_);
  }

  void write(const Event& ev, const std::string* formatted) override {
    if (ev.severity < spec_.min_severity) return;
    // A drop notice into a full queue would drop another event, and be
    // reported 5 s later, and so on for as long as the queue stays full.
    if (ev.msg == Msg::EventsDropped && queue_.size() >= std::max<size_t>(spec_.queue, 1)) return;
    const std::string& text = formatted ? *formatted : ev.text;
    std::string payload;
    if (transport_ == Transport::Journal) {
      payload = journal_entry(ev, header_.facility, text);
    } else {
      payload = format_rfc5424(ev, header_, text);
      if (transport_ == Transport::Tcp) payload = octet_frame(payload);
    }
    enqueue(std::move(payload));
    // Sent after the loop's current callback: what one iteration emits
    // goes out in one sendmmsg (or one TCP write).
    if (!connected_ || flush_posted_ || writable_wanted_) return;
    flush_posted_ = true;
    std::weak_ptr<int> alive = alive_;
    loop_.post([this, alive] {
      if (alive.expired()) return;
      flush_posted_ = false;
      flush();
    });
  }

 private:
  enum class Sent { Done, Partial, WouldBlock, Failed };

  void enqueue(std::string payload) {
    if (queue_.size() >= std::max<size_t>(spec_.queue, 1)) {
      queue_.pop_front();
      count_drop();
    }
    queue_.push_back(std::move(payload));
  }

  void count_drop() {
    ++dropped_;
    if (drop_timer_) return;
    // One notice per 5 s of dropping, not one per event.
    drop_timer_ = loop_.after(std::chrono::seconds(5), [this] {
      drop_timer_ = 0;
      report_drops();
    });
  }
  void report_drops() {
    if (dropped_ == 0) return;
    uint64_t n = std::exchange(dropped_, 0);
    report_(Msg::EventsDropped, {{"sink", spec_.name()}, {"count", n}, {"queue", spec_.queue}});
  }

  Sent send_now(const std::string& payload, int& err) {
    if (transport_ == Transport::Tcp) {
      ssize_t n = ::send(fd_.get(), payload.data(), payload.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        err = errno;
        return err == EAGAIN || err == EWOULDBLOCK || err == EINTR ? Sent::WouldBlock
                                                                   : Sent::Failed;
      }
      if (static_cast<size_t>(n) < payload.size()) {
        inflight_ = payload;
        inflight_off_ = static_cast<size_t>(n);
        want_writable(true);
        return Sent::Partial;
      }
      return Sent::Done;
    }
    ssize_t n = ::send(fd_.get(), payload.data(), payload.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return Sent::Done;
    err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return Sent::WouldBlock;
    if (err == EMSGSIZE || err == ENOBUFS) {
      // journald takes a big entry as a sealed memfd (as sd_journal does);
      // a syslog datagram that big is cut to 8 KiB.
      if (transport_ == Transport::Journal) return send_memfd(payload, err);
      std::string cut = payload.substr(0, 8192);
      return ::send(fd_.get(), cut.data(), cut.size(), MSG_DONTWAIT | MSG_NOSIGNAL) >= 0
                 ? Sent::Done
                 : Sent::WouldBlock;
    }
    return Sent::Failed;
  }

  Sent send_memfd(const std::string& payload, int& err) {
    Fd mem(memfd_create("vigil-journal", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    int werr = 0;
    if (!mem || !write_all(mem.get(), payload, werr) ||
        fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) <
            0) {
      err = mem ? (werr ? werr : errno) : errno;
      return Sent::Done;  // cannot be sent at all: not a reason to stall the queue
    }
    msghdr mh{};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int mfd = mem.get();
    memcpy(CMSG_DATA(c), &mfd, sizeof mfd);
    if (::sendmsg(fd_.get(), &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return Sent::Done;
    err = errno;
    return err == EAGAIN || err == EWOULDBLOCK ? Sent::WouldBlock : Sent::Failed;
  }

  void connect() {
    retry_ = 0;
    if (host_.empty()) return connect_address();
    // The name's next address after a failure; a new lookup once all failed.
    if (++next_addr_ >= addrs_.size()) return resolve();
    addr_ = addrs_[next_addr_].storage;
    addr_len_ = addrs_[next_addr_].len;
    connect_address();
  }

  // Looked up again before each connection: the name may move.
  void resolve() {
    if (!resolver_) resolver_ = Resolver::for_loop(loop_);
    Resolver::Options options;
    options.socktype = transport_ == Transport::Tcp ? SOCK_STREAM : SOCK_DGRAM;
    std::weak_ptr<int> alive = alive_;
    resolving_ = resolver_->resolve(host_, port_, options, [this, alive](const ResolveResult& r) {
      if (alive.expired()) return;
      resolving_ = 0;
      if (!r.ok()) return fail(r.error);
      addrs_ = r.addresses;
      next_addr_ = 0;
      addr_ = addrs_[0].storage;
      addr_len_ = addrs_[0].len;
      connect_address();
    });
  }

  void connect_address() {
    int type = transport_ == Transport::Tcp ? SOCK_STREAM : SOCK_DGRAM;
    fd_ = Fd(::socket(addr_.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_) return fail(errno);
    if (transport_ == Transport::Journal || transport_ == Transport::UnixDgram) {
      int sz = 8 << 20;  // room for a burst before EAGAIN
      setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    }
    int rc = ::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
    if (rc != 0 && errno != EINPROGRESS) return fail(errno);
    uint32_t events = transport_ == Transport::Tcp ? uint32_t{EPOLLIN} : 0u;
    connecting_ = rc != 0;
    if (connecting_) events |= EPOLLOUT;
    std::weak_ptr<int> alive = alive_;
    watch_ = loop_.add(fd_.get(), events, [this, alive](uint32_t ev) {
      if (!alive.expired()) on_io(ev);
    });
    if (!connecting_) on_connected();
  }

  void on_connected() {
    connecting_ = false;
    connected_ = true;
    want_writable(false);
    flush();
  }

  void on_io(uint32_t ev) {
    if (connecting_) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return fail(err);
      if (ev & (EPOLLOUT | EPOLLIN)) return on_connected();
      return;
    }
    if (ev & EPOLLIN) {
      // A syslog server sends nothing: data or EOF means it is closing.
      char buf[512];
      ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return fail(n == 0 ? EPIPE : errno);
    }
    if (ev & (EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      return fail(err ? err : EPIPE);
    }
    if (ev & EPOLLOUT) flush();
  }

  // Sends what waits, until the socket would block.
  void flush() {
    size_t sent = 0;
    while (connected_) {
      if (!inflight_.empty()) {
        ssize_t n = ::send(fd_.get(), inflight_.data() + inflight_off_,
                           inflight_.size() - inflight_off_, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return want_writable(true);
          return fail(errno);
        }
        inflight_off_ += static_cast<size_t>(n);
        if (inflight_off_ < inflight_.size()) return want_writable(true);
        inflight_.clear();
        inflight_off_ = 0;
        ++sent;
        continue;
      }
      if (queue_.empty()) break;
      if (transport_ == Transport::Tcp) {
        // Whole frames, up to 64 KiB, in one write.
        while (!queue_.empty() &&
               (inflight_.empty() || inflight_.size() + queue_.front().size() <= 65536)) {
          inflight_ += queue_.front();
          queue_.pop_front();
        }
        continue;
      }
      size_t batch = std::min<size_t>(queue_.size(), 64);
      mmsghdr msgs[64];
      iovec iov[64];
      for (size_t i = 0; i < batch; ++i) {
        iov[i] = {queue_[i].data(), queue_[i].size()};
        msgs[i] = {};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int n =
          ::sendmmsg(fd_.get(), msgs, static_cast<unsigned>(batch), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        queue_.erase(queue_.begin(), queue_.begin() + n);
        sent += static_cast<size_t>(n);
        continue;
      }
      // The first one failed: the single-message path knows what to do.
      int err = 0;
      Sent r = send_now(queue_.front(), err);
      if (r == Sent::WouldBlock) return want_writable(true);
      if (r == Sent::Failed) return fail(err);
      queue_.pop_front();
      ++sent;
    }
    want_writable(false);
    resent_ += sent;
    if (unreachable_ && !recover_timer_) {
      // Recovered once delivery has worked for a while (1 s; UDP 10 s: a
      // send succeeds even to a closed port, the refusal comes back later
      // and the kernel sends at most about one refusal a second), so a
      // flapping server does not become a report per reconnect.
      std::weak_ptr<int> alive = alive_;
      auto settle = std::chrono::seconds(transport_ == Transport::Udp ? 10 : 1);
      recover_timer_ = loop_.after(settle, [this, alive] {
        if (alive.expired()) return;
        recover_timer_ = 0;
        unreachable_ = false;
        backoff_ = 0.1;
        report_(Msg::SinkRecovered,
                {{"sink", spec_.name()}, {"address", address()}, {"queued", resent_}});
        resent_ = 0;
        report_drops();
      });
    }
  }

  void want_writable(bool on) {
    if (!watch_ || writable_wanted_ == on) return;
    writable_wanted_ = on;
    uint32_t events =
        (transport_ == Transport::Tcp ? uint32_t{EPOLLIN} : 0u) | (on ? uint32_t{EPOLLOUT} : 0u);
    loop_.modify(watch_, events);
  }

  void close() {
    if (watch_) loop_.remove(watch_);
    watch_ = 0;
    writable_wanted_ = false;
    fd_.reset();
    connected_ = connecting_ = false;
  }

  // The destination cannot take events: report once, keep queueing, and
  // try again later.
  void fail(int err) { fail(errno_text(err)); }
  void fail(const std::string& error) {
    close();
    if (recover_timer_) loop_.cancel(recover_timer_);
    recover_timer_ = 0;
    if (!inflight_.empty()) {
      // A frame cut in the middle is sent again whole on the next connection.
      queue_.push_front(std::move(inflight_));
      inflight_.clear();
      inflight_off_ = 0;
    }
    if (!unreachable_) {
      unreachable_ = true;
      report_(Msg::SinkUnreachable, {{"sink", spec_.name()},
                                     {"address", address()},
                                     {"error", error},
                                     {"queue", spec_.queue}});
    }
    if (retry_) return;
    std::weak_ptr<int> alive = alive_;
    retry_ = loop_.after(from_seconds(backoff_), [this, alive] {
      if (!alive.expired()) connect();
    });
    backoff_ = std::min(backoff_ * 2, 30.0);
  }

  std::string address() const {
    return spec_.address.empty() ? "/run/systemd/journal/socket" : spec_.address;
  }

  EventLoop& loop_;
  SinkReporter report_;
  Transport transport_;
  sockaddr_storage addr_;
  socklen_t addr_len_;
  std::string host_;  // a name to resolve before connecting ("": addr_ is it)
  uint16_t port_;
  std::shared_ptr<Resolver> resolver_;
  ResolveId resolving_ = 0;
  std::vector<ResolvedAddress> addrs_;  // the name's, from the last lookup
  size_t next_addr_ = 0;
  SyslogHeader header_;
  Fd fd_;
  WatchId watch_ = 0;
  bool connected_ = false;
  bool connecting_ = false;
  bool writable_wanted_ = false;
  bool flush_posted_ = false;
  bool unreachable_ = false;
  std::deque<std::string> queue_;
  std::string inflight_;
  size_t inflight_off_ = 0;
  uint64_t dropped_ = 0;
  TimerId retry_ = 0;
  TimerId drop_timer_ = 0;
  TimerId recover_timer_ = 0;
  uint64_t resent_ = 0;  // sent since the destination came back
  double backoff_ = 0.1;
  std::shared_ptr<int> alive_;
};

bool unix_address(const std::string& path, sockaddr_storage& ss, socklen_t& len,
                  std::string& error) {
  sockaddr_un un{};
  if (path.empty() || path.size() >= sizeof un.sun_path) {
    error = "bad unix socket path '" + path + "'";
    return false;
  }
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path.data(), path.size());
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, &un, sizeof un);
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// "host:port" (host may be [v6]): a numeric address into ss/len, or a
// name left in `name` for the sink to resolve on the loop (never here:
// make_sink runs on the loop, at start and at reload).
bool inet_address(const std::string& hp, sockaddr_storage& ss, socklen_t& len, std::string& name,
                  uint16_t& port, std::string& error) {
  std::string host;
  if (!split_host_port(hp, host, port, error)) return false;
  if (auto numeric = numeric_address(host, port)) {
    ss = numeric->storage;
    len = numeric->len;
  } else {
    name = host;
  }
  return true;
}

}  // namespace

std::string SinkSpec::key() const {
  return kind + "|" + address + "|" + facility + "|" + path + "|" + std::to_string(max_bytes) +
         "|" + std::to_string(keep) + "|" + std::to_string(queue) + "|" +
         std::string(severity_name(min_severity));
}

std::string SinkSpec::name() const {
  if (kind == "file" || kind == "json") return kind + " " + path;
  if (kind == "syslog") return "syslog " + (address.empty() ? "/dev/log" : address);
  if (kind == "journald" && !address.empty()) return "journald " + address;
  return kind;
}

int facility_code(const std::string& name) {
  static const char* const kNames[] = {
      "kern",   "user",   "mail",     "daemon", "auth",   "syslog",   "lpr",     "news",
      "uucp",   "cron",   "authpriv", "ftp",    "ntp",    "security", "console", "clock",
      "local0", "local1", "local2",   "local3", "local4", "local5",   "local6",  "local7"};
  for (int i = 0; i < 24; ++i)
    if (name == kNames[i]) return i;
  return -1;
}

bool parse_severity(const std::string& name, Severity& out) {
  for (Severity s : {Severity::Debug, Severity::Info, Severity::Notice, Severity::Warning,
                     Severity::Error, Severity::Critical})
    if (name == severity_name(s)) {
      out = s;
      return true;
    }
  if (name == "warn") {
    out = Severity::Warning;
    return true;
  }
  return false;
}

std::unique_ptr<Sink> make_sink(const SinkSpec& spec, EventLoop* loop, SinkReporter report,
                                std::string& error) {
  if (spec.kind == "console") return std::make_unique<ConsoleSink>(spec);
  if (spec.kind == "file" || spec.kind == "json") {
    if (spec.path.empty()) {
      error = spec.kind + " sink: a path is required";
      return nullptr;
    }
    return std::make_unique<FileSink>(spec, loop, std::move(report));
  }
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string name;
  uint16_t port = 0;
  if ((spec.kind == "journald" || spec.kind == "syslog") && !loop) {
    error = spec.kind + " sink: needs the event loop";
    return nullptr;
  }
  if (spec.kind == "journald") {
    std::string path = spec.address.empty() ? "/run/systemd/journal/socket" : spec.address;
    if (!unix_address(path, ss, len, error)) return nullptr;
    return std::make_unique<SocketSink>(
        spec, *loop, std::move(report), Transport::Journal, ss, len,
        facility_code(spec.facility) < 0 ? 3 : facility_code(spec.facility));
  }
  if (spec.kind == "syslog") {
    int facility = facility_code(spec.facility);
    if (facility < 0) {
      error = "syslog sink: unknown facility '" + spec.facility + "'";
      return nullptr;
    }
    std::string a = spec.address.empty() ? "/dev/log" : spec.address;
    Transport t = Transport::UnixDgram;
    bool ok = false;
    if (a.starts_with("udp:")) {
      t = Transport::Udp;
      ok = inet_address(a.substr(4), ss, len, name, port, error);
    } else if (a.starts_with("tcp:")) {
      t = Transport::Tcp;
      ok = inet_address(a.substr(4), ss, len, name, port, error);
    } else if (a.starts_with("unix:")) {
      ok = unix_address(a.substr(5), ss, len, error);
    } else if (a.starts_with("/")) {
      ok = unix_address(a, ss, len, error);
    } else {
      error =
          "syslog sink: address must be /path, unix:/path, udp:host:port or tcp:host:port, "
          "got '" +
          a + "'";
    }
    if (!ok) {
      if (error.find("syslog sink") != 0) error = "syslog sink: " + error;
      return nullptr;
    }
    return std::make_unique<SocketSink>(spec, *loop, std::move(report), t, ss, len, facility,
                                        name, port);
  }
  error = "unknown sink kind '" + spec.kind + "' (console, file, json, syslog, journald)";
  return nullptr;
}

}  // namespace vigil
