#!/usr/bin/env bash
# demo.sh — the README's first command: set up, build kiln (Release), and run
# its main job on the bundled example model.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
cmake -S "$root" -B "$root/build/release" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build/release"
kiln="$root/build/release/kiln"
model="$root/examples/mlp.onnx"
echo
echo "\$ kiln inspect --summary examples/mlp.onnx"
"$kiln" inspect --summary "$model"
echo
echo "\$ kiln run examples/mlp.onnx examples/mlp_input.npy --output-dir build/demo-out"
"$kiln" run "$model" "$root/examples/mlp_input.npy" --output-dir "$root/build/demo-out" --print
