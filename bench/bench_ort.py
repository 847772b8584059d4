#!/usr/bin/env python3
"""bench_ort.py — times an ONNX model in onnxruntime the way users run it.

Usage: bench_ort.py MODEL.onnx [--threads N] [--warmup N] [--warmup-ms T]
                    [--repeat N] [--seed N] [--json]

One InferenceSession on the CPU execution provider with
intra_op_num_threads=N, inter_op_num_threads=1, ORT_SEQUENTIAL execution and
the default graph optimisation level (ORT_ENABLE_ALL). Inputs are seeded
random data like kiln-bench-model's: floats uniform in [-1, 1), integers
0 or 1. --warmup untimed runs, going on until --warmup-ms (default 100) have
passed, as kiln-bench-model does; then --repeat runs each timed around
session.run with time.perf_counter_ns; prints median, min and p90 in ms, or
one JSON object with every sample, sorted (--json), for bench/compare.py.
"""
import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def make_session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def random_inputs(session, seed):
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        if inp.type not in ORT_TYPES:
            sys.exit(f"bench_ort: input '{inp.name}' has unsupported type {inp.type}")
        if not all(isinstance(d, int) and d >= 0 for d in inp.shape):
            sys.exit(f"bench_ort: input '{inp.name}' has a non-static shape {inp.shape}")
        dtype = ORT_TYPES[inp.type]
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.uniform(-1, 1, inp.shape).astype(dtype)
        else:
            feeds[inp.name] = rng.integers(0, 2, inp.shape).astype(dtype)
    return feeds


def summary(samples_ms):
    """Median, min and p90 (nearest rank) of a list of times, as kiln-bench-model computes them."""
    s = sorted(samples_ms)
    n = len(s)
    median = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    p90 = s[max(0, -(-9 * n // 10) - 1)]
    return {"median_ms": median, "min_ms": s[0], "p90_ms": p90, "mean_ms": sum(s) / n,
            "samples_ms": s}


def time_runs(session, feeds, warmup, repeat, warmup_ms):
    w0 = time.perf_counter_ns()
    i = 0
    while i < warmup or (time.perf_counter_ns() - w0) * 1e-6 < warmup_ms:
        session.run(None, feeds)
        i += 1
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        session.run(None, feeds)
        samples.append((time.perf_counter_ns() - t0) * 1e-6)
    return samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--warmup-ms", type=float, default=100.0,
                    help="keep warming up until this many ms have passed (default 100)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads < 1 or args.warmup < 0 or args.repeat < 1 or args.warmup_ms < 0:
        ap.error("--threads and --repeat must be >= 1, --warmup and --warmup-ms >= 0")

    session = make_session(args.model, args.threads)
    feeds = random_inputs(session, args.seed)
    result = summary(time_runs(session, feeds, args.warmup, args.repeat, args.warmup_ms))
    result.update(model=args.model, threads=args.threads, warmup=args.warmup,
                  repeat=args.repeat, onnxruntime=ort.__version__)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model}: {args.threads} thread{'s' if args.threads > 1 else ''}, "
              f"{args.repeat} runs after {args.warmup} warmup: median {result['median_ms']:.3f} ms, "
              f"min {result['min_ms']:.3f} ms, p90 {result['p90_ms']:.3f} ms")


if __name__ == "__main__":
    main()
