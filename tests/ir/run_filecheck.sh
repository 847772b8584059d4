#!/bin/sh
# run_filecheck.sh KILN FILECHECK TEST.kir — one FileCheck test of a graph pass:
# runs `kiln opt TEST.kir ARGS --full-constants`, ARGS from the test's
# "// RUN: ARGS" line, and checks the printed IR against its CHECK lines.
set -eu
kiln=$1 filecheck=$2 test=$3
args=$(sed -n 's|^// RUN: ||p' "$test" | head -n 1)
[ -n "$args" ] || { echo "$test: no '// RUN: ARGS' line" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# shellcheck disable=SC2086 # ARGS is a list of flags
"$kiln" opt "$test" $args --full-constants > "$out"
"$filecheck" --input-file "$out" "$test"
