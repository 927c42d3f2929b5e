#!/usr/bin/env bash
# Vigil beside its peers, through the shared peer harness (issue 13): one
# run of ../shared/peer-bench for runit, daemontools and this build's
# vigil, on the same machine and the same static child, then the report.
# The verdict is against the best peer in the same run (docs/performance.md).
#
#   tests/bench/peer.sh [BUILD_DIR] [bench.py options...]
#   tests/bench/peer.sh build --tests restart --reps 20      # a quick look
#
# Defaults: restart (40 kills), steady (N = 100 and 1000, 30 s windows,
# with --load) and mass (3 × 100 killed at once). As root; installs
# runit and daemontools from Debian if they are missing. PEER_BENCH
# names the harness (default ../shared/peer-bench next to the checkout);
# it is copied to a temporary directory (the shared one is read only),
# and the results stay there (printed at the end).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-build}"
[ $# -gt 0 ] && shift
vigil_bin="$(cd "$root" && realpath "$build/vigil")"
[ -x "$vigil_bin" ] || { echo "peer.sh: no vigil at $vigil_bin (build first)" >&2; exit 2; }
src="${PEER_BENCH:-$root/../shared/peer-bench}"
[ -f "$src/bench.py" ] || { echo "peer.sh: no peer harness at $src (set PEER_BENCH)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "peer.sh: run as root (the harness uses the proc connector)" >&2; exit 2; }
if ! command -v runsv > /dev/null || ! command -v supervise > /dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends runit daemontools > /dev/null
fi
work="$(mktemp -d /tmp/vigil-peer.XXXXXX)"
cp -r "$src/." "$work/"
cd "$work"
make -s
args=("$@")
defaults=0
[ ${#args[@]} -gt 0 ] ||
  defaults=1 args=(--tests restart,steady,mass --reps 40 --ns 100,1000 --window 30 --load)
export VIGIL_BIN="$vigil_bin"
for sv in runit daemontools vigil; do
  ./bench.py "adapters/$sv.sh" "${args[@]}"
  # 1000 killed at once, reported the same way (a file of its own).
  [ $defaults = 1 ] &&
    ./bench.py "adapters/$sv.sh" --tests mass --mass-n 1000 --mass-reps 1 --out "results/$sv-1000.json"
done
./report.py results/runit.json results/daemontools.json results/vigil.json | tee results/tables.md
[ $defaults = 1 ] &&
  ./report.py results/runit-1000.json results/daemontools-1000.json results/vigil-1000.json |
  tee results/tables-1000.md
echo "peer.sh: results in $work/results" >&2
