#!/usr/bin/env bash
# Makes cmake/text-order.txt: the functions a daemon runs, in the order
# the linker (lld) puts first in vigil's text, so that the code it never
# runs (the other commands, cluster adapters, containers, the dashboard)
# lies together and is never mapped (docs/performance.md, "Issue 13: the
# text in the order it runs"). Rerun it when the daemon's code has moved a
# lot; a stale list only costs resident memory, never correctness.
#
#   tests/bench/text_order.sh [BUILD_DIR]     (default: build; as root)
#
# 1. An instrumented vigil (-finstrument-functions, tests/bench/func_trace.c)
#    in BUILD_DIR-trace runs the scenario below once and records every
#    function it entered.
# 2. BUILD_DIR's vigil is linked again in that order, run under
#    `perf record -e page-faults`, and every function whose page was
#    faulted outside the list is added (a fault maps 64 kB around it; what
#    the instrumented build does not see: libstdc++'s own code, clones,
#    static constructors), ITER times.
# 3. The names that BUILD_DIR's vigil has are written, in order.
# The scenario: N watches of `sleep` (the peer harness's rules, with the
# state checks' pass every second instead of every 30 s) started, a few
# passes, a restart of one, of two, of ten at once, a status request, a
# reload, and an idle wait.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "$root" && realpath "${1:-build}")"
trace="$build-trace"
N=${N:-1000} ITER=${ITER:-30}
command -v perf > /dev/null || { echo "text_order.sh: needs perf (linux-perf)" >&2; exit 2; }
command -v ld.lld > /dev/null || { echo "text_order.sh: needs lld" >&2; exit 2; }
[ -f "$build/CMakeFiles/vigil.dir/link.txt" ] || { echo "text_order.sh: build $build first" >&2; exit 2; }
work="$(mktemp -d /tmp/vigil-text-order.XXXXXX)"
trap 'pkill -f -- "--socket $work/vigil.sock" 2> /dev/null || true; pkill -f "sleep 31$$" 2> /dev/null || true' EXIT

echo "text_order.sh: the instrumented build ($trace)"
cc -O2 -c "$root/tests/bench/func_trace.c" -o "$work/func_trace.o"
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$root" -B "$trace" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVIGIL_TESTS=OFF "${launcher[@]}" \
  -DVIGIL_TEXT_ORDER=OFF -DCMAKE_CXX_FLAGS=-finstrument-functions \
  -DCMAKE_EXE_LINKER_FLAGS="$work/func_trace.o" > /dev/null
cmake --build "$trace" --target vigil -j"$(nproc)" > "$work/build.log" 2>&1 ||
  { tail -20 "$work/build.log" >&2; exit 1; }

mkdir -p "$work/rules" "$work/state"
for i in $(seq 1 "$N"); do
  echo "watch \"w$i\" { start = { \"/bin/sleep\", \"31$$\" }, checks = { every = \"1s\", blocked = \"2s\" },"
  echo "  restart = { limit = 1000000, within = \"1s\", reset = \"1s\" } }"
done > "$work/rules/bench.lua"

# scenario BINARY SECONDS [PREFIX...]: runs the daemon (under PREFIX) and
# drives it; returns when the daemon has ended.
scenario() {
  local bin=$1 secs=$2; shift 2
  rm -rf "$work/state"/* "$work/vigil.sock"
  VIGIL_STDLIB="$root/stdlib" "$@" "$bin" run --rules "$work/rules" --socket "$work/vigil.sock" \
    --state-dir "$work/state" > "$work/daemon.log" 2>&1 &
  local runner=$! deadline=$((SECONDS + 60))
  until [ "$(pgrep -c -f "sleep 31$$")" -ge "$N" ]; do
    [ $SECONDS -lt $deadline ] || { echo "text_order.sh: the watches did not start" >&2; exit 1; }
    sleep 0.2
  done
  sleep 3  # state-check passes
  # The daemon itself (not perf, whose command line holds the daemon's).
  local daemon
  daemon=$(pgrep -f -- "^$bin run --rules $work/rules")
  pkill -KILL -f -o "sleep 31$$"
  sleep 1
  pkill -KILL -f "sleep 31$$" -n; pkill -KILL -f "sleep 31$$" -o  # two more, and then ten at once
  for p in $(pgrep -f "sleep 31$$" | head -10); do kill -KILL "$p"; done
  sleep 1
  "$build/vigil" --socket "$work/vigil.sock" status > /dev/null
  kill -HUP "$daemon"
  sleep "$secs"
  kill -TERM "$daemon"
  wait "$runner" || true
  pkill -f "sleep 31$$" || true
}

echo "text_order.sh: tracing the functions a daemon runs"
VIGIL_FUNC_TRACE="$work/trace.txt" scenario "$trace/vigil" 10
# Offsets -> names (the instrumented binary), first the ones it ran.
python3 - "$trace/vigil" "$work/trace.txt" "$work/order.txt" << 'EOF'
import subprocess, sys
nm = subprocess.run(["nm", sys.argv[1]], capture_output=True, text=True).stdout
at = {}  # an address may have several names (C1 and C2 of a constructor)
for line in nm.splitlines():
    p = line.split()
    if len(p) == 3 and p[1] in "tTwW":
        at.setdefault(int(p[0], 16), []).append(p[2])
names = sorted({n for x in open(sys.argv[2]) for n in at.get(int(x, 16), [])})
open(sys.argv[3], "w").write("\n".join(names) + "\n")
print(f"text_order.sh: {len(names)} functions ran")
EOF

# BUILD_DIR's own link of vigil, with this list instead of its own.
link_cmd="$(sed -e "s| -o vigil | -o $work/vigil |" -e "s| -fuse-ld=lld||; s| -Wl,--symbol-ordering-file=[^ ]*||; s| -Wl,--no-warn-symbol-ordering||" \
  -e "s|-Wl,--gc-sections|-Wl,--gc-sections -fuse-ld=lld -Wl,--symbol-ordering-file=$work/order.txt -Wl,--no-warn-symbol-ordering|" \
  "$build/CMakeFiles/vigil.dir/link.txt")"
for i in $(seq 1 "$ITER"); do
  (cd "$build" && eval "$link_cmd")
  scenario "$work/vigil" 3 perf record -q -e page-faults -c 1 -d -o "$work/pf.data"
  perf script --no-demangle -i "$work/pf.data" -F addr,ip,sym,dso 2> /dev/null > "$work/pf.txt"
  # Instruction faults in vigil's text (the fault's address is where the
  # instruction is): the function there, by the binary's own symbols.
  python3 - "$work/vigil" "$work/pf.txt" "$work/order.txt" << 'EOF'
import bisect, re, subprocess, sys
binary, faults, order = sys.argv[1:4]
syms = []
for line in subprocess.run(["nm", "-S", binary], capture_output=True, text=True).stdout.splitlines():
    p = line.split()
    if len(p) == 4 and p[2] in "tTwW":
        syms.append((int(p[0], 16), int(p[1], 16), p[3]))
syms.sort()
starts = [s[0] for s in syms]
by_name = {s[2]: s[0] for s in syms}
row = re.compile(r"\s*([0-9a-f]+)\s+(.*?)\s+\(([^)]*)\)\s+([0-9a-f]+)\s+(.*?)\s+\(([^)]*)\)\s*$")
hits = []
for line in open(faults):
    m = row.match(line)
    if m and m.group(6) == binary and abs(int(m.group(1), 16) - int(m.group(4), 16)) < 4096:
        hits.append((int(m.group(4), 16), m.group(5).split("+")[0]))
base = next((ip - by_name[s] for ip, s in hits if s in by_name), None)
have = [x for x in open(order).read().split("\n") if x]
known, new = set(have), []
for ip, _ in hits if base is not None else []:
    i = bisect.bisect_right(starts, ip - base) - 1
    if i < 0 or ip - base >= syms[i][0] + max(syms[i][1], 1):
        continue
    while i > 0 and syms[i - 1][0] == syms[i][0]:
        i -= 1
    while i < len(syms) and syms[i][0] <= ip - base < syms[i][0] + max(syms[i][1], 1):
        if syms[i][2] not in known:
            known.add(syms[i][2])
            new.append(syms[i][2])
        i += 1
open(order, "w").write("\n".join(have + new) + "\n")
print(f"text_order.sh: {len(hits)} text faults, {len(new)} functions added")
EOF
done

# Only the names the real build has, in order.
python3 - "$build/vigil" "$work/order.txt" "$root/cmake/text-order.txt" << 'EOF'
import subprocess, sys
real = set()
for line in subprocess.run(["nm", sys.argv[1]], capture_output=True, text=True).stdout.splitlines():
    p = line.split()
    if len(p) == 3 and p[1] in "tTwW":
        real.add(p[2])
names = [x for x in open(sys.argv[2]).read().split("\n") if x in real]
out = ["# vigil's text order (lld --symbol-ordering-file): made by tests/bench/text_order.sh"] + names
open(sys.argv[3], "w").write("\n".join(out) + "\n")
print(f"text_order.sh: {len(names)} functions written to cmake/text-order.txt")
EOF
rm -rf "$work"
