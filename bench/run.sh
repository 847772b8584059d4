#!/usr/bin/env bash
# run.sh — kiln's benchmarks in one command: set up (scripts/setup.sh), build
# kiln and the bench tools (Release, build/release), build the benchmark
# models, then bench/compare.py: compile times, kiln against onnxruntime per
# model and thread count, and the GEMM table. Tables on stdout, progress on
# stderr, every number in build/bench/results.json. See docs/benchmarks.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
	cat <<EOF
usage: bench/run.sh [--threads 1,2] [--repeat N] [--quick] [--build-dir DIR]

  --threads LIST   thread counts for the model benchmark (default 1,2)
  --repeat N       timed runs per model, thread count and runtime (default 50)
  --quick          fewer runs, GEMM sizes up to 1024 and ResNet-18's shapes only
  --build-dir DIR  the Release build to use (default build/release)
EOF
}

threads=1,2
build="$root/build/release"
extra=()
while (($#)); do
	case "$1" in
	--threads)
		[[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { usage >&2; exit 2; }
		threads="$2"
		shift 2
		;;
	--repeat)
		[[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
		extra+=(--repeat "$2")
		shift 2
		;;
	--quick)
		extra+=(--quick)
		shift
		;;
	--build-dir)
		[[ $# -ge 2 && -n "$2" ]] || { usage >&2; exit 2; }
		build="$(realpath -m "$2")"
		shift 2
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "bench/run.sh: unexpected argument '$1'" >&2
		usage >&2
		exit 2
		;;
	esac
done

log() { echo "bench: $*" >&2; }

log "setup (scripts/setup.sh)"
"$root/scripts/setup.sh" >&2
py="$root/build/venv/bin/python"

log "building $build (Release)"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
# Only what the benchmarks run: a test that does not build must not stop them.
cmake --build "$build" -j 2 --target kiln kiln-bench-model kiln-bench-gemm >&2

out="$root/build/bench"
log "building the models into build/bench/models"
"$py" "$root/tests/models/build_models.py" "$out/models" >&2

"$py" "$root/bench/compare.py" --kiln "$build/kiln" \
	--bench-model "$build/bench/kiln-bench-model" --bench-gemm "$build/bench/kiln-bench-gemm" \
	--models-dir "$out/models" --out-dir "$out" --threads "$threads" ${extra[@]+"${extra[@]}"}
