#!/usr/bin/env bash
# demo.sh — the README's first command: set up, build kiln (Release), and run
# its main job on the bundled example model.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
cmake -S "$root" -B "$root/build/release" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build/release" -j 2
# Relative paths from the root, so the output reads like the commands shown.
cd "$root"
kiln=build/release/kiln
echo
echo "\$ kiln inspect --summary examples/mlp.onnx"
"$kiln" inspect --summary examples/mlp.onnx
echo
echo "\$ kiln run examples/mlp.onnx examples/mlp_input.npy --output-dir build/demo-out --print"
"$kiln" run examples/mlp.onnx examples/mlp_input.npy --output-dir build/demo-out --print
