#!/bin/bash
# daemon_rss.sh BINARY [STDLIB] [TAG]: starts `vigil run` on 10 idle watches and
# prints its VmRSS, RssAnon, RssFile (kB) and Pss 2 s later (docs/performance.md,
# "Memory"). STDLIB: another stdlib (an older binary's); "" for the binary's own.
# For a comparison run it several times, interleaved: RssFile moves by ±100 kB.
set -u
B=$1; S=${2:-}; T=${3:-vigil}; D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
mkdir "$D/rules"
cat > "$D/rules/r.lua" <<'LUA'
for i = 1, 10 do
  watch ("w" .. i) { start = { "/bin/sleep", "1000000" }, checks = false, log = false }
end
LUA
"$B" run --rules "$D/rules" --socket "$D/s" --state-dir "$D/st" ${S:+--stdlib "$S"} --quiet >"$D/out" 2>&1 &
P=$!
sleep 2
r=$(awk '/VmRSS|RssAnon|RssFile/{printf "%s %s ",$1,$2}' /proc/$P/status)
echo "$T $r Pss: $(awk '/^Pss:/{print $2}' /proc/$P/smaps_rollup)"
kill $P; wait $P 2>/dev/null
