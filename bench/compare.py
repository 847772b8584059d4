#!/usr/bin/env python3
"""compare.py — kiln against onnxruntime on the benchmark models, plus the GEMM table.

Usage: compare.py --kiln BIN --bench-model BIN --bench-gemm BIN --models-dir DIR
                  --out-dir DIR [--models a,b] [--threads 1,2] [--repeat N]
                  [--warmup N] [--rounds N] [--quick] [--no-gemm]

1. Compiles each DIR/<model>.onnx with `kiln compile -O2` into OUT/so/, timing
   each compile (wall clock of the command).
2. For each model and thread count, alternates kiln-bench-model and
   bench_ort.py (each a fresh process: --warmup untimed runs and at least
   100 ms of them, then its share of --repeat timed runs) for --rounds rounds, swapping which goes first each
   round, so machine noise lands on both; the medians are over all samples.
3. Runs kiln-bench-gemm over the square sizes and the models' GEMM shapes.
Prints the tables (Markdown) on stdout, progress on stderr, and writes every
number to OUT/results.json. A model that fails to compile or run is reported
in its row and the rest go on.
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

# Import the sibling bench_ort.py without leaving a __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ort  # noqa: E402

MODELS = ["resnet18", "mobilenetv2", "bert", "mlp"]
# kiln / onnxruntime at -O2, per model and thread count: the CPU backend's
# target, then the optimisation passes' (fusion, layout) stricter one
TARGET_RATIOS = (1.2, 0.9)
TARGET_PEAK_PCT = 70.0  # kiln GEMM, single-threaded, square sizes >= 512
TARGET_COMPILE_S = 3.0  # ResNet-18


def progress(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def last_lines(text, n=3):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-n:])


def compile_models(args, models):
    so_dir = os.path.join(args.out_dir, "so")
    os.makedirs(so_dir, exist_ok=True)
    results = {}
    for m in models:
        onnx_path = os.path.join(args.models_dir, f"{m}.onnx")
        so = os.path.join(so_dir, f"{m}.so")
        if os.path.exists(so):
            os.remove(so)
        progress(f"compiling {m} (kiln compile -O2)")
        t0 = time.perf_counter()
        p = subprocess.run([args.kiln, "compile", onnx_path, "-o", so, "-O2"],
                           capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        ok = p.returncode == 0 and os.path.exists(so)
        results[m] = {"ok": ok, "seconds": seconds, "so": so,
                      "so_bytes": os.path.getsize(so) if ok else None,
                      "error": None if ok else last_lines(p.stderr or p.stdout)}
        progress(f"  {m}: {seconds:.2f} s" if ok else f"  {m}: failed: {results[m]['error']}")
    return results


def run_json(cmd):
    """Runs a timing tool with --json; returns (result dict, None) or (None, error)."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, last_lines(p.stderr or p.stdout) or f"exit status {p.returncode}"
    try:
        return json.loads(p.stdout), None
    except json.JSONDecodeError:
        return None, f"unreadable output: {p.stdout[:200]!r}"


def bench_models(args, models, compiled):
    rows = []
    per_round = max(1, math.ceil(args.repeat / args.rounds))
    for m in models:
        onnx_path = os.path.join(args.models_dir, f"{m}.onnx")
        for threads in args.threads:
            common = ["--threads", str(threads), "--warmup", str(args.warmup),
                      "--repeat", str(per_round), "--json"]
            tools = {
                "kiln": [args.bench_model, compiled[m]["so"]] + common,
                "onnxruntime": [sys.executable, os.path.join(os.path.dirname(__file__),
                                "bench_ort.py"), onnx_path] + common,
            }
            samples = {"kiln": [], "onnxruntime": []}
            errors = {"kiln": None if compiled[m]["ok"] else "compile failed",
                      "onnxruntime": None}
            for r in range(args.rounds):
                progress(f"{m}, {threads} thread(s): round {r + 1}/{args.rounds}")
                order = ["kiln", "onnxruntime"] if r % 2 == 0 else ["onnxruntime", "kiln"]
                for name in order:
                    if errors[name]:
                        continue
                    res, err = run_json(tools[name])
                    if err:
                        errors[name] = err
                        progress(f"  {name} failed: {err}")
                    else:
                        samples[name].extend(res["samples_ms"])
            row = {"model": m, "threads": threads, "warmup": args.warmup,
                   "rounds": args.rounds, "runs_per_round": per_round}
            for name in samples:
                stats = bench_ort.summary(samples[name]) if samples[name] else None
                row[name] = stats
                row[f"{name}_error"] = errors[name]
            if row["kiln"] and row["onnxruntime"]:
                row["ratio"] = row["kiln"]["median_ms"] / row["onnxruntime"]["median_ms"]
            else:
                row["ratio"] = None
            rows.append(row)
    return rows


def bench_gemm(args, models):
    out = os.path.join(args.out_dir, "gemm.json")
    if os.path.exists(out):
        os.remove(out)
    cmd = [args.bench_gemm, "--json", out]
    if args.quick:
        cmd += ["--quick", "--model", os.path.join(args.models_dir, "resnet18.onnx")]
    else:
        for m in models:
            cmd += ["--model", os.path.join(args.models_dir, f"{m}.onnx")]
    progress("GEMM benchmark: " + " ".join(cmd))
    # Its own table goes to our stderr with its progress: ours is on stdout.
    p = subprocess.run(cmd, stdout=sys.stderr)
    if not os.path.exists(out):
        return {"error": f"kiln-bench-gemm exited with status {p.returncode}, no results"}
    with open(out) as f:
        return json.load(f)


# ---- tables ------------------------------------------------------------

def table(header, rows):
    """A Markdown table with columns padded to line up in a terminal too."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def model_table(rows):
    out = []
    for r in rows:
        k, o = r["kiln"], r["onnxruntime"]
        out.append([r["model"], r["threads"], fmt(k and k["median_ms"], ".3f"),
                    fmt(o and o["median_ms"], ".3f"), fmt(r["ratio"], ".2f")])
    return table(["model", "threads", "kiln ms", "onnxruntime ms", "kiln/ort"], out)


def compile_table(compiled):
    out = [[m, fmt(c["seconds"], ".2f") if c["ok"] else "failed",
            fmt(c["so_bytes"] and c["so_bytes"] / 1e6, ".1f")] for m, c in compiled.items()]
    return table(["model", "compile s (-O2)", ".so MB"], out)


def gemm_table(g):
    out = []
    for r in g.get("rows", []):
        label = r["label"] + (f" x{r['count']}" if r["count"] > 1 else "")
        out.append([label, r["batch"], r["m"], r["n"], r["k"], fmt(r["kiln_1t_gflops"], ".1f"),
                    fmt(r["kiln_2t_gflops"], ".1f"), fmt(r["openblas_1t_gflops"], ".1f"),
                    fmt(r["kiln_pct_peak"], ".1f")])
    return table(["shape", "batch", "M", "N", "K", "kiln 1T", "kiln 2T", "OpenBLAS 1T",
                  "kiln % peak"], out)


def verdict(ok):
    return "PASS" if ok else "FAIL"


def acceptance(compiled, rows, gemm):
    lines = []
    squares = [r for r in gemm.get("rows", []) if r["label"].startswith("square ") and r["m"] >= 512]
    if squares:
        pcts = [r["kiln_pct_peak"] or 0.0 for r in squares]
        lines.append(f"- GEMM >= {TARGET_PEAK_PCT:.0f}% of peak, 1 thread, sizes >= 512: "
                     f"{verdict(min(pcts) >= TARGET_PEAK_PCT)} (lowest {min(pcts):.1f}%)")
    ratios = [r["ratio"] for r in rows]
    known = [x for x in ratios if x is not None]
    for target in TARGET_RATIOS if ratios else ():
        ok = len(known) == len(ratios) and max(known) <= target
        worst = f"worst {max(known):.2f}" if known else "no kiln timings"
        over = [f"{r['model']} {r['threads']}T {r['ratio']:.2f}" for r in rows
                if r["ratio"] is not None and r["ratio"] > target]
        lines.append(f"- kiln/onnxruntime <= {target} for every model and thread count: "
                     f"{verdict(ok)} ({worst}" + (f"; above: {', '.join(over)}" if over and not ok
                                                   else "") + ")")
    rn = compiled.get("resnet18")
    if rn:
        ok = rn["ok"] and rn["seconds"] < TARGET_COMPILE_S
        lines.append(f"- ResNet-18 compile < {TARGET_COMPILE_S:.0f} s: {verdict(ok)} "
                     f"({fmt(rn['seconds'], '.2f') + ' s' if rn['ok'] else 'compile failed'})")
    return "\n".join(lines)


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(),
            "system": platform.platform(), "onnxruntime": bench_ort.ort.__version__,
            "python": platform.python_version()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--bench-model", required=True)
    ap.add_argument("--bench-gemm", required=True)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per model, thread count and runtime (default 50, quick 10)")
    ap.add_argument("--warmup", type=int, default=None, help="default 5, quick 2")
    ap.add_argument("--rounds", type=int, default=None, help="default 5, quick 2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-gemm", action="store_true")
    args = ap.parse_args()
    quick = args.quick
    args.repeat = args.repeat or (10 if quick else 50)
    args.warmup = args.warmup if args.warmup is not None else (2 if quick else 5)
    args.rounds = args.rounds or (2 if quick else 5)
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        ap.error(f"bad --threads '{args.threads}'")
    if min(args.threads) < 1 or args.repeat < 1 or args.rounds < 1 or args.warmup < 0:
        ap.error("--threads, --repeat and --rounds must be >= 1, --warmup >= 0")
    models = [m for m in args.models.split(",") if m]
    for tool in (args.kiln, args.bench_model, args.bench_gemm):
        if not os.access(tool, os.X_OK):
            ap.error(f"{tool}: not an executable (build it first)")
    for m in models:
        if not os.path.exists(os.path.join(args.models_dir, f"{m}.onnx")):
            ap.error(f"{args.models_dir}/{m}.onnx: no such model (tests/models/build_models.py)")
    os.makedirs(args.out_dir, exist_ok=True)

    compiled = compile_models(args, models)
    rows = bench_models(args, models, compiled)
    gemm = {} if args.no_gemm else bench_gemm(args, models)

    results = {"machine": machine(),
               "settings": {"threads": args.threads, "repeat": args.repeat,
                            "warmup": args.warmup, "rounds": args.rounds, "quick": quick,
                            "opt_level": 2},
               "compile": compiled, "models": rows, "gemm": gemm}
    path = os.path.join(args.out_dir, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)

    print(f"## Models: median ms at batch 1 ({args.rounds} rounds, {args.repeat} runs "
          f"per cell, {args.warmup} warmup per round)\n")
    print(model_table(rows))
    print("\n## Compile time\n")
    print(compile_table(compiled))
    if gemm.get("rows"):
        avx2 = gemm.get("avx2_peak_gflops")
        print(f"\n## GEMM (GFLOP/s; single-core FMA peak {gemm['peak_gflops']:.1f} "
              f"GFLOP/s, {gemm['isa']}" + (f"; AVX2 {avx2:.1f}" if avx2 else "") +
              f"; OpenBLAS core {gemm.get('openblas_core')})\n")
        print(gemm_table(gemm))
    elif gemm.get("error"):
        print(f"\nGEMM benchmark: {gemm['error']}")
    print("\n## Acceptance targets\n")
    print(acceptance(compiled, rows, gemm))
    errors = [(r["model"], r["threads"], n, r[f"{n}_error"]) for r in rows
              for n in ("kiln", "onnxruntime") if r[f"{n}_error"]]
    if errors:
        print("\n## Errors\n")
        for m, t, n, e in errors:
            print(f"- {m}, {t} thread(s), {n}: {e}")
    print(f"\n(all numbers: {path})")


if __name__ == "__main__":
    main()
