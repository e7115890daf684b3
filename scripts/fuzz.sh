#!/usr/bin/env bash
# The libFuzzer targets (tests/fuzz/fuzz_<target>.c), built with clang into
# build-fuzz/ (or $BUILD_DIR) with ASan and UBSan.
#   scripts/fuzz.sh regress [SECONDS]  every corpus input once, then SECONDS
#                                      (default 10) of fuzzing per target from
#                                      a copy of its corpus (what the test
#                                      suite runs)
#   scripts/fuzz.sh run SECONDS [TARGET...]
#                                      fuzz for SECONDS per target, growing a
#                                      working corpus in build-fuzz/work/; prints
#                                      executions and coverage (edges)
# A crash leaves crash-* in build-fuzz/artifacts/ and fails the script; keep
# the input as tests/fuzz/corpus/<target>/crash-<what> once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-regress}
shift || true
seconds=${1:-10}
shift || true

if ! command -v clang >/dev/null; then
	SUDO=""
	[[ $(id -u) -eq 0 ]] || SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
fi
BUILD_DIR=${BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$BUILD_DIR" -DSECRETFS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null

targets=("$@")
if ((${#targets[@]} == 0)); then
	for f in tests/fuzz/fuzz_*.c; do
		t=${f##*/fuzz_}
		targets+=("${t%.c}")
	done
fi
mkdir -p "$BUILD_DIR/artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in "${targets[@]}"; do
	bin="$BUILD_DIR/fuzz_$t"
	corpus="tests/fuzz/corpus/$t"
	dict=()
	[[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")
	work="$BUILD_DIR/work/$t"
	mkdir -p "$work"
	if [[ $mode == regress ]]; then
		# Each kept input once: the regressions.
		if ! "$bin" -runs=0 "${dict[@]}" "$corpus" >"$BUILD_DIR/$t.log" 2>&1; then
			echo "fuzz $t: a corpus input fails"; tail -40 "$BUILD_DIR/$t.log"; status=1; continue
		fi
		rm -rf "$work" && mkdir -p "$work"
	fi
	if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$BUILD_DIR/artifacts/$t-" "${dict[@]}" "$work" "$corpus" \
		>"$BUILD_DIR/$t.log" 2>&1; then
		echo "fuzz $t: FAILED"; grep -E "ERROR|SUMMARY|artifact|Test unit written" "$BUILD_DIR/$t.log" | head -20
		status=1
		continue
	fi
	execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$BUILD_DIR/$t.log" | grep -oE "[0-9]+$" || echo "?")
	cov=$(grep -oE "cov: [0-9]+" "$BUILD_DIR/$t.log" | tail -1 | grep -oE "[0-9]+" || echo "?")
	echo "fuzz $t: ok, $execs executions, $cov edges, ${seconds}s"
done
exit $status
