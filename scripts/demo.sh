#!/usr/bin/env bash
# demo.sh — the README's first command: set up, build kiln (Release), and run
# its main job on the bundled example model: compile it to a shared object
# (with its C header), run that, and run the reference interpreter beside it.
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
mkdir -p build/demo-out
echo
echo "\$ kiln compile examples/mlp.onnx -o build/demo-out/mlp.so --stats"
"$kiln" compile examples/mlp.onnx -o build/demo-out/mlp.so --stats
echo
echo "\$ kiln run build/demo-out/mlp.so examples/mlp_input.npy --output-dir build/demo-out --print"
"$kiln" run build/demo-out/mlp.so examples/mlp_input.npy --output-dir build/demo-out --print
echo
echo "\$ kiln run examples/mlp.onnx examples/mlp_input.npy --output-dir build/demo-out/interp --print"
"$kiln" run examples/mlp.onnx examples/mlp_input.npy --output-dir build/demo-out/interp --print
