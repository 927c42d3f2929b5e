// Resolver: getaddrinfo on a few worker threads, answers through one
// eventfd on the loop. The workers share a Pool with the loop side; the
// Pool outlives the Resolver for as long as a worker is still inside
// getaddrinfo (which cannot be interrupted), so destroying the Resolver
// never waits for the network.
#include "host/net/resolver.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>

#include "host/core/strings.hpp"
#include "host/loop/per_loop.hpp"

namespace vigil {

namespace {

// Enough for a daemon's few names (syslog hosts, probe hosts, peers); a
// lookup stuck on a dead DNS server holds a worker until getaddrinfo
// gives up, and the rest queue behind the others meanwhile.
constexpr size_t kMaxWorkers = 4;
// A worker with nothing to do for this long ends (threads cost nothing
// while the daemon does not resolve).
constexpr auto kWorkerIdle = std::chrono::seconds(10);

struct Job {
  ResolveId id;
  std::string host;
  std::string port;
  int socktype;
  int family;
};

struct Answer {
  ResolveId id;
  std::vector<ResolvedAddress> addresses;
  std::string error;
};

// What the loop and the workers share.
struct Pool {
  std::mutex mu;
  std::condition_variable wake;
  std::deque<Job> jobs;
  std::vector<Answer> answers;
  size_t workers = 0;
  size_t idle = 0;
  bool stop = false;
  Fd efd;  // written by a worker when it adds an answer
};

void worker(std::shared_ptr<Pool> pool) {
  std::unique_lock<std::mutex> lock(pool->mu);
  for (;;) {
    ++pool->idle;
    bool got = pool->wake.wait_for(lock, kWorkerIdle,
                                   [&] { return pool->stop || !pool->jobs.empty(); });
    --pool->idle;
    if (pool->stop || !got) break;
    Job job = std::move(pool->jobs.front());
    pool->jobs.pop_front();
    lock.unlock();
    Answer answer{job.id, {}, {}};
    addrinfo hints{};
    hints.ai_socktype = job.socktype;
    hints.ai_family = job.family;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* out = nullptr;
    int rc = getaddrinfo(job.host.c_str(), job.port.c_str(), &hints, &out);
    if (rc != 0 || !out) {
      answer.error = "cannot resolve host '" + job.host + "': " +
                     (rc == EAI_SYSTEM ? errno_text(errno) : std::string(gai_strerror(rc)));
    } else {
      for (addrinfo* a = out; a; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
        ResolvedAddress r;
        memcpy(&r.storage, a->ai_addr, a->ai_addrlen);
        r.len = a->ai_addrlen;
        answer.addresses.push_back(r);
      }
      if (answer.addresses.empty()) answer.error = "cannot resolve host '" + job.host + "'";
    }
    if (out) freeaddrinfo(out);
    lock.lock();
    if (pool->stop) break;
    pool->answers.push_back(std::move(answer));
    uint64_t one = 1;
    ssize_t w = write(pool->efd.get(), &one, sizeof one);
    (void)w;
  }
  --pool->workers;
}

}  // namespace

struct Resolver::Impl {
  explicit Impl(EventLoop& l) : loop(l) {}

  struct Pending {
    Done done;
    MonoTime started;
    TimerId timer = 0;
  };

  EventLoop& loop;
  ResolveId next = 1;
  std::map<ResolveId, Pending> pending;
  std::shared_ptr<Pool> pool;  // made at the first lookup of a name
  WatchId watch = 0;
  std::shared_ptr<int> alive = std::make_shared<int>(0);

  bool ensure_pool(std::string& error);
  void drain();
  void answer(ResolveId id, ResolveResult r);
  void forget(ResolveId id);
  void drop_job(ResolveId id);
};

bool Resolver::Impl::ensure_pool(std::string& error) {
  if (pool) return true;
  auto p = std::make_shared<Pool>();
  p->efd = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!p->efd) {
    error = "eventfd: " + errno_text(errno);
    return false;
  }
  pool = std::move(p);
  watch = loop.add(pool->efd.get(), EPOLLIN, [this](uint32_t) { drain(); });
  return true;
}

// Hands over every answer in, each to its query if still waiting. A
// callback may cancel other queries or destroy the Resolver: checked.
void Resolver::Impl::drain() {
  uint64_t n = 0;
  ssize_t r = read(pool->efd.get(), &n, sizeof n);
  (void)r;
  std::vector<Answer> answers;
  {
    std::lock_guard<std::mutex> lock(pool->mu);
    answers.swap(pool->answers);
  }
  std::weak_ptr<int> token = alive;
  for (auto& a : answers) {
    if (token.expired()) return;
    ResolveResult res;
    res.addresses = std::move(a.addresses);
    res.error = std::move(a.error);
    answer(a.id, std::move(res));
  }
}

void Resolver::Impl::answer(ResolveId id, ResolveResult r) {
  auto it = pending.find(id);
  if (it == pending.end()) return;  // cancelled, or timed out
  Pending p = std::move(it->second);
  pending.erase(it);
  loop.cancel(p.timer);
  r.elapsed = to_seconds(loop.now() - p.started);
  if (p.done) p.done(r);
}

void Resolver::Impl::forget(ResolveId id) {
  auto it = pending.find(id);
  if (it == pending.end()) return;
  loop.cancel(it->second.timer);
  pending.erase(it);
  drop_job(id);
}

// A query not yet taken by a worker leaves the queue.
void Resolver::Impl::drop_job(ResolveId id) {
  if (!pool) return;
  std::lock_guard<std::mutex> lock(pool->mu);
  auto job = std::find_if(pool->jobs.begin(), pool->jobs.end(),
                          [id](const Job& j) { return j.id == id; });
  if (job != pool->jobs.end()) pool->jobs.erase(job);
}

Resolver::Resolver(EventLoop& loop) : impl_(std::make_shared<Impl>(loop)) {}

Resolver::~Resolver() {
  for (auto& [id, p] : impl_->pending) impl_->loop.cancel(p.timer);
  impl_->pending.clear();
  if (impl_->pool) {
    impl_->loop.remove(impl_->watch);
    std::lock_guard<std::mutex> lock(impl_->pool->mu);
    impl_->pool->stop = true;
    impl_->pool->jobs.clear();
    impl_->pool->wake.notify_all();
  }
}

std::shared_ptr<Resolver> Resolver::for_loop(EventLoop& loop) {
  return per_loop<Resolver>(loop);
}

ResolveId Resolver::resolve(const std::string& host, uint16_t port, Options options, Done done) {
  Impl& m = *impl_;
  ResolveId id = m.next++;
  m.pending[id] = Impl::Pending{std::move(done), m.loop.now(), 0};
  auto answer_later = [&m, id](ResolveResult r) {
    m.loop.post([&m, id, alive = std::weak_ptr<int>(m.alive), r = std::move(r)]() mutable {
      if (!alive.expired()) m.answer(id, std::move(r));
    });
  };
  if (auto numeric = numeric_address(host, port)) {
    ResolveResult r;
    r.addresses.push_back(*numeric);
    answer_later(std::move(r));
    return id;
  }
  std::string name = host;
  if (name.size() > 2 && name.front() == '[' && name.back() == ']')
    name = name.substr(1, name.size() - 2);
  std::string error;
  if (name.empty()) error = "cannot resolve an empty host name";
  if (error.empty()) m.ensure_pool(error);
  if (error.empty()) {
    std::lock_guard<std::mutex> lock(m.pool->mu);
    m.pool->jobs.push_back(Job{id, name, std::to_string(port), options.socktype, options.family});
    if (m.pool->idle > 0 || m.pool->workers >= kMaxWorkers) {
      m.pool->wake.notify_one();
    } else {
      try {
        std::thread(worker, m.pool).detach();
        ++m.pool->workers;
      } catch (const std::exception& e) {
        if (m.pool->workers == 0) {
          m.pool->jobs.pop_back();
          error = std::string("cannot start a resolver thread: ") + e.what();
        }
      }
    }
  }
  if (!error.empty()) {
    ResolveResult r;
    r.error = error;
    answer_later(std::move(r));
    return id;
  }
  Duration timeout = options.timeout;
  m.pending[id].timer = m.loop.after(timeout, [&m, id, name, timeout] {
    auto it = m.pending.find(id);
    if (it == m.pending.end()) return;
    it->second.timer = 0;
    ResolveResult r;
    r.error = "resolving '" + name + "' timed out after " + seconds_text(to_seconds(timeout));
    m.drop_job(id);
    m.answer(id, std::move(r));
  });
  return id;
}

void Resolver::cancel(ResolveId id) {
  impl_->forget(id);
}

size_t Resolver::in_flight() const {
  return impl_->pending.size();
}

std::string ResolvedAddress::text() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (family() == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (family() == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "?";
}

namespace {

// `in` (a sockaddr_in or sockaddr_in6) with its family, address and port.
template <class In, class Addr>
ResolvedAddress make_address(int family, const Addr& addr, uint16_t port) {
  In in{};
  if constexpr (std::is_same_v<In, sockaddr_in>) {
    in.sin_family = static_cast<sa_family_t>(family);
    in.sin_addr = addr;
    in.sin_port = htons(port);
  } else {
    in.sin6_family = static_cast<sa_family_t>(family);
    in.sin6_addr = addr;
    in.sin6_port = htons(port);
  }
  ResolvedAddress r;
  memcpy(&r.storage, &in, sizeof in);
  r.len = sizeof in;
  return r;
}

}  // namespace

std::optional<ResolvedAddress> numeric_address(const std::string& host, uint16_t port) {
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1)
    return make_address<sockaddr_in>(AF_INET, v4, port);
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1)
    return make_address<sockaddr_in6>(AF_INET6, v6, port);
  return std::nullopt;
}

bool split_host_port(const std::string& text, std::string& host, uint16_t& port,
                     std::string& error) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    error = "expected host:port, got '" + text + "'";
    return false;
  }
  std::string h = text.substr(0, colon), p = text.substr(colon + 1);
  if (h.front() == '[') {
    if (h.back() != ']' || h.size() < 3) {
      error = "expected [address]:port, got '" + text + "'";
      return false;
    }
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string::npos) {
    error = "an IPv6 address needs brackets: [" + h + "]:" + p + ", got '" + text + "'";
    return false;
  }
  bool digits = p.size() <= 5 && std::all_of(p.begin(), p.end(), ::isdigit);
  int n = digits ? std::stoi(p) : 0;
  if (n < 1 || n > 65535) {
    error = "bad port '" + p + "' in '" + text + "' (1-65535)";
    return false;
  }
  host = h;
  port = static_cast<uint16_t>(n);
  return true;
}

}  // namespace vigil
