#!/usr/bin/env bash
# setup.sh — installs, idempotently, everything kiln's build and tests need:
# Debian packages (apt-get) and a Python venv at build/venv (onnx, onnxruntime,
# numpy from PyPI) for the conformance data and the model tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

debs=(build-essential cmake ninja-build pkg-config protobuf-c-compiler libprotobuf-c-dev
      libcmocka-dev libopenblas-dev llvm-19-dev llvm-19-tools clang-19 python3 python3-venv graphviz)
missing=()
for p in "${debs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "setup: installing Debian packages: ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

venv="$root/build/venv"
want="onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6"
stamp="$venv/.kiln-requirements"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	echo "setup: creating Python venv at build/venv ($want)"
	mkdir -p "$root/build"
	python3 -m venv "$venv"
	"$venv/bin/python" -m pip install -q --upgrade pip
	"$venv/bin/python" -m pip install -q $want
	echo "$want" > "$stamp"
fi
