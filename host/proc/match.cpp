#include "host/proc/match.hpp"

#include <pwd.h>

#include <algorithm>
#include <charconv>

#include "host/proc/proc_scan.hpp"

namespace vigil {

namespace {
constexpr size_t kCommLen = 15;  // TASK_COMM_LEN - 1
}

bool MatchSpec::has_keys() const {
  return !name.empty() || !exe.empty() || !cmdline.empty() || !cmdline_re.empty() ||
         !user.empty() || uid || !parent.empty() || ppid || !cgroup.empty();
}

const char* select_name(MatchSpec::Select s) {
  switch (s) {
    case MatchSpec::Select::Oldest: return "oldest";
    case MatchSpec::Select::Newest: return "newest";
    case MatchSpec::Select::All: return "all";
  }
  return "oldest";
}

std::string MatchSpec::describe() const {
  std::string out;
  auto add = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    if (!out.empty()) out += ' ';
    out += k;
    out += '=';
    out += v;
  };
  add("name", name);
  add("exe", exe);
  add("cmdline", cmdline);
  add("cmdline_re", cmdline_re);
  add("user", user.empty() && uid ? std::to_string(*uid) : user);
  add("parent", parent);
  if (ppid) add("ppid", std::to_string(*ppid));
  add("cgroup", cgroup);
  if (kernel) add("kernel", "true");
  return out;
}

std::optional<Matcher> Matcher::compile(const MatchSpec& spec, std::string& error) {
  Matcher m;
  m.spec_ = spec;
  if (!spec.has_keys()) {
    error =
        "match: needs at least one of name, exe, cmdline, cmdline_re, user, uid, parent, "
        "ppid, cgroup";
    return std::nullopt;
  }
  if (!spec.user.empty()) {
    // A name, or digits for a uid that has no passwd entry.
    uid_t uid = 0;
    const char* s = spec.user.c_str();
    auto [end, ec] = std::from_chars(s, s + spec.user.size(), uid);
    if (ec != std::errc() || end != s + spec.user.size()) {
      std::vector<char> buf(16384);
      passwd pw, *res = nullptr;
      if (getpwnam_r(s, &pw, buf.data(), buf.size(), &res) != 0 || !res) {
        error = "match.user: no such user '" + spec.user + "'";
        return std::nullopt;
      }
      uid = res->pw_uid;
    }
    if (spec.uid && *spec.uid != uid) {
      error = "match: user '" + spec.user + "' is uid " + std::to_string(uid) + ", not uid " +
              std::to_string(*spec.uid);
      return std::nullopt;
    }
    m.spec_.uid = uid;
  }
  if (!spec.cmdline_re.empty()) {
    regex_t re;
    int rc = regcomp(&re, spec.cmdline_re.c_str(), REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char msg[256];
      regerror(rc, &re, msg, sizeof msg);
      error = "match.cmdline_re: " + std::string(msg) + " in '" + spec.cmdline_re + "'";
      return std::nullopt;
    }
    m.re_ = std::shared_ptr<regex_t>(new regex_t(re), [](regex_t* r) {
      regfree(r);
      delete r;
    });
  }
  m.comm_ = spec.name.substr(0, std::min(spec.name.size(), kCommLen));
  return m;
}

void ProcView::reset(const ProcStat& st) {
  st_ = &st;
  loaded_ = missing_ = 0;
}

const ProcStatus* ProcView::status() {
  if (!(loaded_ & kStatus)) {
    loaded_ |= kStatus;
    if (auto s = reader_.status(st_->pid))
      status_ = *s;
    else
      missing_ |= kStatus;
  }
  return missing_ & kStatus ? nullptr : &status_;
}

const std::string* ProcView::exe() {
  if (!(loaded_ & kExe)) {
    loaded_ |= kExe;
    if (auto e = reader_.exe(st_->pid))
      exe_.assign(e->data(), e->size());
    else
      missing_ |= kExe;
  }
  return missing_ & kExe ? nullptr : &exe_;
}

const std::string* ProcView::cmdline() {
  if (!(loaded_ & kCmdline)) {
    loaded_ |= kCmdline;
    if (auto c = reader_.cmdline(st_->pid))
      cmdline_.assign(c->data(), c->size());
    else
      missing_ |= kCmdline;
  }
  return missing_ & kCmdline ? nullptr : &cmdline_;
}

const std::string* ProcView::cgroup() {
  if (!(loaded_ & kCgroup)) {
    loaded_ |= kCgroup;
    if (auto c = reader_.read(st_->pid, "cgroup"))
      cgroup_.assign(c->data(), c->size());
    else
      missing_ |= kCgroup;
  }
  return missing_ & kCgroup ? nullptr : &cgroup_;
}

bool Matcher::matches(const ProcStat& st, ProcReader& reader, pid_t parent_pid) const {
  ProcView view(reader);
  view.reset(st);
  return matches(view, parent_pid);
}

bool Matcher::matches(ProcView& view, pid_t parent_pid) const {
  const ProcStat& st = view.stat();
  if (st.dead()) return false;
  if (st.kernel_thread() != spec_.kernel) return false;
  // A process's comm is cut to 15 bytes; a kernel thread's name is shown whole.
  if (!spec_.name.empty() && st.comm != (st.kernel_thread() ? spec_.name : comm_)) return false;
  if (spec_.ppid && st.ppid != *spec_.ppid) return false;
  if (!spec_.parent.empty() && (parent_pid <= 0 || st.ppid != parent_pid)) return false;
  if (spec_.uid) {
    const ProcStatus* status = view.status();
    if (!status || status->euid != *spec_.uid) return false;
  }
  if (!spec_.exe.empty()) {
    const std::string* exe = view.exe();
    if (!exe || *exe != spec_.exe) return false;
  }
  if (!spec_.cmdline.empty() || re_) {
    const std::string* cmd = view.cmdline();
    if (!cmd) return false;
    if (!spec_.cmdline.empty() && cmd->find(spec_.cmdline) == std::string::npos) return false;
    if (re_ && regexec(re_.get(), cmd->c_str(), 0, nullptr, 0) != 0) return false;
  }
  if (!spec_.cgroup.empty()) {
    const std::string* cg = view.cgroup();
    if (!cg || cg->find(spec_.cgroup) == std::string::npos) return false;
  }
  return true;
}

void scan_processes(ProcReader& reader, const std::vector<pid_t>& exclude,
                    const std::function<void(ProcView&)>& fn) {
  auto excluded = [&](pid_t p) {
    return std::find(exclude.begin(), exclude.end(), p) != exclude.end();
  };
  PidIterator it;
  ProcStat st;
  ProcView view(reader);
  while (auto pid = it.next()) {
    if (excluded(*pid)) continue;
    if (!reader.stat(*pid, st) || excluded(st.pgrp)) continue;
    view.reset(st);
    fn(view);
  }
}

std::vector<FoundProcess> find_processes(const Matcher& m, ProcReader& reader, pid_t parent_pid,
                                         const std::vector<pid_t>& exclude) {
  std::vector<FoundProcess> out;
  scan_processes(reader, exclude, [&](ProcView& v) {
    if (m.matches(v, parent_pid)) out.push_back({v.stat().pid, v.stat().start_time});
  });
  std::sort(out.begin(), out.end(), [](const FoundProcess& a, const FoundProcess& b) {
    return a.start_time != b.start_time ? a.start_time < b.start_time : a.pid < b.pid;
  });
  return out;
}

}  // namespace vigil
