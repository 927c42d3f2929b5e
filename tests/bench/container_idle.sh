#!/bin/bash
# container_idle.sh BINARY [N] [WINDOW]: a private Podman API service with N
# running busybox containers (default 100), a vigil daemon watching each
# (`container "cI" { match = { name = "cI" } }`), then the daemon's on-CPU
# time over WINDOW seconds (default 30; /proc/PID/schedstat of every
# thread) and its VmRSS / Pss. docs/performance.md, "Issue 17: containers".
# Root; needs podman, runc, busybox-static (.ci/deps).
set -eu
B=$(realpath "$1"); N=${2:-100}; WIN=${3:-30}
D=$(mktemp -d /tmp/vigil-cidle-XXXXXX)
P="podman --root $D/storage --runroot $D/run"
cleanup() {
  [ -n "${V:-}" ] && kill "$V" 2>/dev/null && wait "$V" 2>/dev/null
  $P rm -a -f -t 0 >/dev/null 2>&1 || true
  [ -n "${S:-}" ] && kill "$S" 2>/dev/null && wait "$S" 2>/dev/null
  $P system reset -f >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT
cat > "$D/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]
[engine]
runtime = "runc"
lock_type = "file"
events_logger = "file"
tmp_dir = "$D/tmp"
[network]
network_config_dir = "$D/net"
CONF
export CONTAINERS_CONF=$D/containers.conf TMPDIR=$D
mkdir -p "$D"/rootfs/{bin,proc,sys,dev,etc,tmp}
cp /bin/busybox "$D/rootfs/bin/busybox"
for a in sh sleep; do ln -sf busybox "$D/rootfs/bin/$a"; done
tar -C "$D/rootfs" -cf "$D/bb.tar" .
$P import --change 'CMD ["/bin/sh"]' "$D/bb.tar" localhost/bb:latest >/dev/null
setsid $P system service --time=0 "unix://$D/api.sock" >"$D/svc.log" 2>&1 </dev/null &
S=$!
for _ in $(seq 100); do curl -sf --unix-socket "$D/api.sock" http://d/_ping >/dev/null 2>&1 && break; sleep 0.1; done
t0=$(date +%s.%N)
for i in $(seq "$N"); do
  $P run -d --name "c$i" --network none localhost/bb:latest sh -c 'trap "exit 0" TERM; while :; do sleep 60; done' >/dev/null
done
echo "started $N containers in $(echo "$(date +%s.%N) - $t0" | bc) s" >&2
mkdir -p "$D/rules"
{
  echo "docker = { socket = \"$D/api.sock\" }"
  echo "for i = 1, $N do container (\"c\" .. i) { match = { name = \"c\" .. i } } end"
} > "$D/rules/c.lua"
"$B" run --rules "$D/rules" --socket "$D/v.sock" --state-dir "$D/st" --quiet >"$D/vigil.out" 2>&1 &
V=$!
for _ in $(seq 300); do
  n=$("$B" --socket "$D/v.sock" status --json 2>/dev/null | python3 -c 'import json,sys
try: print(sum(1 for w in json.load(sys.stdin) if w.get("state")=="running"))
except Exception: print(0)')
  [ "$n" -ge "$N" ] && break; sleep 0.2
done
echo "vigil: $n of $N container watches running" >&2
sleep 5   # let the start settle before the window
oncpu() { cat /proc/$V/task/*/schedstat | awk '{s+=$1} END {print s}'; }
a=$(oncpu); sleep "$WIN"; b=$(oncpu)
echo "idle on-CPU over ${WIN}s: $(echo "scale=4; ($b - $a) / ($WIN * 10000000)" | bc) % of a core"
awk '/VmRSS/{print "VmRSS", $2, "kB"}' /proc/$V/status
echo "Pss $(awk '/^Pss:/{print $2}' /proc/$V/smaps_rollup) kB"
