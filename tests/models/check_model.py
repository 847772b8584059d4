#!/usr/bin/env python3
"""check_model.py — runs one model through kiln and onnxruntime and compares.

Usage: check_model.py [--kiln PATH] [--compiled N] [--threads N] MODEL NAME=FILE.npy ...

The reference is onnxruntime on the CPU with one thread and every graph
optimisation disabled, so it computes the graph as written. kiln runs as
`kiln run MODEL --input NAME=FILE.npy ... --output-dir DIR` (the binary from
--kiln, else $KILN_BIN), which writes DIR/<output>.npy with the output name
sanitised ('/' and other characters outside [A-Za-z0-9._-] become '_').
With --compiled N the model is first compiled (`kiln compile MODEL -o
DIR/model.so -ON`) and the .so is run the same way, through libkiln_rt,
with --threads threads (default 2).

Each output must have the reference's dtype and shape and satisfy
numpy.allclose(kiln, ref, rtol=1e-4, atol=1e-5). Prints the max absolute and
relative error per output and PASS/FAIL; exits non-zero on a mismatch or when
kiln fails.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

RTOL, ATOL = 1e-4, 1e-5


def sanitise(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def reference(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return names, sess.run(names, feeds)


def compare(name, got, ref):
    """Prints one line for an output; returns True if it matches."""
    if got.dtype != ref.dtype or got.shape != ref.shape:
        print(f"  {name}: FAIL: expected {ref.dtype}{list(ref.shape)}, "
              f"got {got.dtype}{list(got.shape)}")
        return False
    if not np.issubdtype(ref.dtype, np.floating):
        bad = int(np.count_nonzero(got != ref))
        print(f"  {name}: {'PASS' if bad == 0 else 'FAIL'}: {bad} of {ref.size} elements differ")
        return bad == 0
    g, r = got.astype(np.float64), ref.astype(np.float64)
    nan_ok = np.array_equal(np.isnan(g), np.isnan(r))
    diff = np.abs(g - r)
    diff[np.isnan(g) & np.isnan(r)] = 0
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    rel = diff / np.maximum(np.abs(r), np.finfo(np.float32).tiny)
    max_rel = float(np.nanmax(rel)) if rel.size else 0.0
    close = ~(diff <= ATOL + RTOL * np.abs(r))
    bad = int(np.count_nonzero(close))
    ok = nan_ok and bad == 0
    line = (f"  {name}: {'PASS' if ok else 'FAIL'}: max abs err {max_abs:.3g}, "
            f"max rel err {max_rel:.3g} (rtol {RTOL:g}, atol {ATOL:g}); "
            f"ref max |x| {float(np.nanmax(np.abs(r))) if r.size else 0:.3g}")
    if not ok:
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(close)), r.shape))
        line += (f"; {bad} of {r.size} elements out of tolerance, first at {list(first)}: "
                 f"expected {r[first]:.9g}, got {g[first]:.9g}")
    print(line)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kiln", default=os.environ.get("KILN_BIN"), help="kiln binary")
    ap.add_argument("--compiled", metavar="N", choices="0123", help="compile first at -ON")
    ap.add_argument("--threads", type=int, default=2, help="threads for a compiled run")
    ap.add_argument("model")
    ap.add_argument("inputs", nargs="+", metavar="NAME=FILE.npy")
    args = ap.parse_args()
    if not args.kiln:
        sys.exit("check_model: no kiln binary (--kiln or $KILN_BIN)")

    feeds = {}
    for spec in args.inputs:
        name, sep, path = spec.partition("=")
        if not sep:
            sys.exit(f"check_model: input '{spec}' is not NAME=FILE.npy")
        feeds[name] = np.load(path)

    t0 = time.perf_counter()
    names, refs = reference(args.model, feeds)
    t_ref = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="kiln-check-") as out_dir:
        target = args.model
        if args.compiled:
            os.makedirs(os.path.join(out_dir, "compiled"))
            target = os.path.join(out_dir, "compiled", "model.so")
            cmd = [args.kiln, "compile", args.model, "-o", target, f"-O{args.compiled}", "--stats"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            print(f"kiln compile -O{args.compiled}: {time.perf_counter() - t0:.2f} s")
            if proc.returncode != 0:
                print(f"FAIL: kiln compile exited with status {proc.returncode}: {' '.join(cmd)}")
                return 1
        cmd = [args.kiln, "run", target]
        if args.compiled:
            cmd += ["--threads", str(args.threads)]
        for spec in args.inputs:
            cmd += ["--input", spec]
        cmd += ["--output-dir", out_dir]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        t_kiln = time.perf_counter() - t0
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        print(f"{os.path.basename(args.model)}: onnxruntime {t_ref:.2f} s, kiln run {t_kiln:.2f} s")
        if proc.returncode != 0:
            print(f"FAIL: kiln run exited with status {proc.returncode}: {' '.join(cmd)}")
            return 1

        ok = True
        for name, ref in zip(names, refs):
            path = os.path.join(out_dir, sanitise(name) + ".npy")
            if not os.path.exists(path):
                print(f"  {name}: FAIL: kiln wrote no {os.path.basename(path)} "
                      f"(found: {', '.join(sorted(os.listdir(out_dir))) or 'nothing'})")
                ok = False
                continue
            ok &= compare(name, np.load(path), ref)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
