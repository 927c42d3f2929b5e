// CsvWriter: the metrics CSV files (one row per watch per sample) in one
// directory, named metrics-YYYYMMDD.csv by local date, a new file each
// day and whenever one passes `max_bytes` (metrics-YYYYMMDD-N.csv), the
// oldest removed beyond `keep` files. Each file starts with the header.
//
// A write never stops the daemon: a full disk, an unwritable or missing
// directory, or anything else is reported once through `on_error` and the
// rows of that sample are dropped; the next sample tries again, and
// `on_recovered` says when writing works again. The file is opened with
// O_NONBLOCK, so a FIFO put in its place cannot block the loop either.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <string>

#include "host/core/fd.hpp"

namespace vigil {

class CsvWriter {
 public:
  struct Options {
    std::string dir;
    uint64_t max_bytes = 64ull << 20;
    size_t keep = 14;  // files kept (0: all)
  };
  using OnError = std::function<void(const std::string& path, const std::string& error)>;
  using OnRecovered = std::function<void(const std::string& path, uint64_t dropped_rows)>;

  CsvWriter(Options options, OnError on_error, OnRecovered on_recovered);

  // Appends `rows` (whole lines, `count` of them) at wall time `now`.
  // False when they were dropped.
  bool write(const std::string& rows, uint64_t count, time_t now);
  const std::string& path() const { return path_; }
  bool failing() const { return failing_; }

 private:
  bool open_for(time_t now, std::string& error);
  void prune();
  void fail(const std::string& error);

  Options options_;
  OnError on_error_;
  OnRecovered on_recovered_;
  Fd fd_;
  std::string path_;
  std::string day_;  // YYYYMMDD of the open file
  int seq_ = 0;      // -N suffix within the day
  uint64_t size_ = 0;
  bool failing_ = false;
  bool torn_ = false;  // a short write left a partial line
  uint64_t dropped_ = 0;
};

}  // namespace vigil
