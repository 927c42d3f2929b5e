#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DVIGIL_FUZZ=ON) into build-fuzz/
# and runs each for SECONDS (default 60) from its corpus in
# tests/fuzz/corpus/TARGET (read only: new inputs go to
# build-fuzz/corpus/TARGET). A crash, a leak, an out-of-memory or a
# timeout fails the run, and the input is left in build-fuzz/artifacts/.
# The last line of each target's output (build-fuzz/TARGET.log) gives the
# executions and coverage (cov: edges, ft: features).
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]   TARGET: proc formats pattern control rules
#
# To add what a long run found to the kept corpus, minimised:
#   build-fuzz/tests/fuzz/TARGET_fuzz -merge=1 tests/fuzz/corpus/TARGET build-fuzz/corpus/TARGET
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(proc formats pattern control rules)
# ccache when the machine has it (not required).
launcher=()
command -v ccache > /dev/null &&
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DVIGIL_FUZZ=ON "${launcher[@]}" > /dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/%/_fuzz}"
mkdir -p build-fuzz/artifacts
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384
        -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t-")
  [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
  echo "fuzz: $t for ${secs}s" >&2
  if "build-fuzz/tests/fuzz/${t}_fuzz" "${args[@]}" "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" \
      > "build-fuzz/$t.log" 2>&1; then
    echo "fuzz: $t: $(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "build-fuzz/$t.log" | tail -n 1)" >&2
  else
    echo "fuzz: $t FAILED: see build-fuzz/$t.log and build-fuzz/artifacts/" >&2
    grep -E -A40 '^==[0-9]+==|runtime error|ALARM|Timeout|out-of-memory' "build-fuzz/$t.log" | head -n 80 >&2 || true
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]}" >&2
  exit 1
fi
