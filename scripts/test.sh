#!/usr/bin/env bash
# test.sh — the README's second command: set up, build kiln with
# AddressSanitizer + UBSan and warnings as errors, generate the ONNX node
# conformance data, and run the whole suite with CTest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
build="$root/build/asan"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	-DKILN_SANITIZE=ON -DKILN_WERROR=ON >/dev/null
cmake --build "$build" -j 2
jobs="$(nproc 2>/dev/null || echo 2)"
ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
	ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
