#include "host/metrics/csv_writer.hpp"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "host/core/strings.hpp"
#include "host/daemon/paths.hpp"
#include "host/metrics/sample.hpp"

namespace vigil {

CsvWriter::CsvWriter(Options options, OnError on_error, OnRecovered on_recovered)
    : options_(std::move(options)),
      on_error_(std::move(on_error)),
      on_recovered_(std::move(on_recovered)) {}

void CsvWriter::fail(const std::string& error) {
  fd_.reset();
  if (!failing_) {
    failing_ = true;
    if (on_error_) on_error_(path_.empty() ? options_.dir : path_, error);
  }
}

bool CsvWriter::open_for(time_t now, std::string& error) {
  tm local;
  localtime_r(&now, &local);
  char day[16];
  strftime(day, sizeof day, "%Y%m%d", &local);
  bool new_day = day_ != day;
  if (fd_ && !new_day && size_ < options_.max_bytes) return true;
  if (new_day) {
    day_ = day;
    seq_ = 0;
  } else if (fd_) {
    ++seq_;  // the file is full: the next one of the day
  }
  fd_.reset();
  if (auto e = make_dirs(options_.dir, 0750); !e.empty()) {
    path_ = options_.dir;
    error = e;
    return false;
  }
  for (;;) {
    path_ = options_.dir + "/metrics-" + day_ + (seq_ ? "-" + std::to_string(seq_) : "") + ".csv";
    fd_ = Fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0640));
    if (!fd_) {
      error = errno_text(errno);
      return false;
    }
    struct stat st;
    if (fstat(fd_.get(), &st) != 0) {
      error = errno_text(errno);
      return false;
    }
    size_ = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
    // A daemon restarted on a day whose file is already full goes on in
    // the next one.
    if (size_ < options_.max_bytes) break;
    ++seq_;
  }
  torn_ = false;
  if (size_ == 0) {
    std::string header = kCsvHeader;
    ssize_t n = ::write(fd_.get(), header.data(), header.size());
    if (n != static_cast<ssize_t>(header.size())) {
      error = n < 0 ? errno_text(errno) : "short write";
      return false;
    }
    size_ += header.size();
  }
  prune();
  return true;
}

// Keeps the newest `keep` metrics files (by name: the date, then the
// sequence number within the day).
void CsvWriter::prune() {
  if (options_.keep == 0) return;
  DIR* d = opendir(options_.dir.c_str());
  if (!d) return;
  struct File {
    std::string day;
    int seq;
    std::string name;
  };
  std::vector<File> files;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (!n.starts_with("metrics-") || !n.ends_with(".csv") || n.size() < 20) continue;
    std::string day = n.substr(8, 8);
    std::string rest = n.substr(16, n.size() - 20);  // "" or "-N"
    int seq = rest.empty() ? 0 : atoi(rest.c_str() + 1);
    files.push_back({day, seq, n});
  }
  closedir(d);
  if (files.size() <= options_.keep) return;
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) {
    return a.day != b.day ? a.day < b.day : a.seq < b.seq;
  });
  for (size_t i = 0; i + options_.keep < files.size(); ++i)
    ::unlink((options_.dir + "/" + files[i].name).c_str());
}

bool CsvWriter::write(const std::string& rows, uint64_t count, time_t now) {
  std::string error;
  if (!open_for(now, error)) {
    fail(error);
    dropped_ += count;
    return false;
  }
  std::string buf;
  const std::string* data = &rows;
  if (torn_) {
    buf = "\n" + rows;  // end the partial line instead of gluing a row to it
    data = &buf;
  }
  ssize_t n = ::write(fd_.get(), data->data(), data->size());
  if (n > 0) size_ += static_cast<uint64_t>(n);
  if (n != static_cast<ssize_t>(data->size())) {
    int err = errno;
    torn_ = n > 0 || torn_;
    fail(n < 0 ? errno_text(err) : "short write (" + errno_text(ENOSPC) + "?)");
    dropped_ += count;
    return false;
  }
  torn_ = false;
  if (failing_) {
    failing_ = false;
    if (on_recovered_) on_recovered_(path_, dropped_);
    dropped_ = 0;
  }
  return true;
}

}  // namespace vigil
