#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs the unit tests
# (CTest) and the integration tests (pytest, real FUSE mounts), then does
# the same with an AddressSanitizer/UndefinedBehaviorSanitizer build. The
# delivery checks (tests/delivery) and the fuzz targets' regression run
# (scripts/fuzz.sh) run once.
# Integration tests need root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTEST=(/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/fakes tests/integration)

echo "== build"
BUILD_DIR=build scripts/setup.sh
echo "== unit tests"
ctest --test-dir build --output-on-failure --timeout 120
echo "== fuzz targets: every kept input, then ${SECRETFS_FUZZ_SECONDS:-10} s each"
bash scripts/fuzz.sh regress "${SECRETFS_FUZZ_SECONDS:-10}"
echo "== integration tests, delivery checks (image rootfs, manifests, workflows, units)"
SECRETFS_BIN="$PWD/build/secretfs" "${PYTEST[@]}" tests/delivery

if [[ ${SECRETFS_SKIP_SANITIZE:-0} != 1 ]]; then
	echo "== sanitizer build (ASan + UBSan)"
	BUILD_DIR=build-asan scripts/setup.sh -DSECRETFS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	echo "== unit tests (sanitizers)"
	ctest --test-dir build-asan --output-on-failure --timeout 300
	echo "== integration tests (sanitizers)"
	SECRETFS_SANITIZE=1 SECRETFS_BIN="$PWD/build-asan/secretfs" "${PYTEST[@]}"
fi
