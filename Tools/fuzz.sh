#!/usr/bin/env bash
# Tools/fuzz.sh: builds the fuzz targets of Tests/Fuzz with libFuzzer and runs each for a
# bounded time (Docs/fuzzing.md).
#
#   Tools/fuzz.sh [-t SECONDS] [TARGET...]    targets: resp filter commands formats (default all)
#   FUZZ_SECONDS=N                            the same as -t N (default 60 per target)
#
# The build is a release build with -sanitize=fuzzer in its own folder, .build-fuzz (the
# plain .build is left alone). Each target starts from its seeds, Tests/Fuzz/corpus/<target>,
# and keeps what it finds in .build-fuzz/corpus/<target> (not committed). Inputs are at most
# 4096 bytes (-max_len): longer ones reach stack depths that are known and tracked apart.
# Exit status: non-zero if any target crashed, timed out (30 s on one input) or ran out of
# memory; that input is kept in .build-fuzz/artifacts/<target>/ and its path printed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
while getopts "t:" opt; do
  case "$opt" in
    t) seconds="$OPTARG" ;;
    *) echo "usage: Tools/fuzz.sh [-t SECONDS] [resp|filter|commands|formats ...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(resp filter commands formats)

# gold fails on these links (an internal error in its DWARF reader); lld links them.
flags=(-c release --scratch-path .build-fuzz
       -Xswiftc -sanitize=fuzzer -Xswiftc -DLOOKALIKE_FUZZ -Xswiftc -use-ld=lld)
start=$SECONDS
for t in "${targets[@]}"; do
  [ -d "Tests/Fuzz/$t" ] || { echo "fuzz.sh: no target '$t' in Tests/Fuzz" >&2; exit 2; }
  swift build "${flags[@]}" --product "fuzz-$t"
done
bin="$(swift build "${flags[@]}" --show-bin-path)"
echo "fuzz.sh: built ${targets[*]} in $((SECONDS - start)) s"

failed=()
for t in "${targets[@]}"; do
  corpus=".build-fuzz/corpus/$t"
  artifacts=".build-fuzz/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  echo "fuzz.sh: fuzz-$t for $seconds s"
  t0=$SECONDS
  # SWIFT_BACKTRACE=enable=no: the Swift runtime's backtracer would take the crash signal
  # before libFuzzer, which then could not save the input.
  # OMP_WAIT_POLICY=passive: FAISS's OpenMP threads sleep between index builds, not spin.
  if SWIFT_BACKTRACE=enable=no OMP_WAIT_POLICY=passive "$bin/fuzz-$t" \
      -max_total_time="$seconds" -max_len=4096 -timeout=30 -rss_limit_mb=4096 \
      -artifact_prefix="$artifacts" -print_final_stats=1 \
      "$corpus" "Tests/Fuzz/corpus/$t" > ".build-fuzz/fuzz-$t.log" 2>&1; then
    echo "fuzz.sh: fuzz-$t ok after $((SECONDS - t0)) s: $(grep -E '^stat::number_of_executed_units' ".build-fuzz/fuzz-$t.log" | awk '{print $2}') inputs, corpus $(ls "$corpus" | wc -l) files"
  else
    failed+=("$t")
    tail -n 60 ".build-fuzz/fuzz-$t.log"
    input="$(grep -oE "Test unit written to [^ ]+" ".build-fuzz/fuzz-$t.log" | tail -1 | sed 's/Test unit written to //')"
    echo "fuzz.sh: fuzz-$t FAILED after $((SECONDS - t0)) s; input kept at ${input:-?} (log .build-fuzz/fuzz-$t.log)"
    echo "fuzz.sh: rerun it with: SWIFT_BACKTRACE=enable=no $bin/fuzz-$t ${input:-INPUT}"
  fi
done
echo "fuzz.sh: total $((SECONDS - start)) s"
[ ${#failed[@]} -eq 0 ] || { echo "fuzz.sh: failed: ${failed[*]}" >&2; exit 1; }
