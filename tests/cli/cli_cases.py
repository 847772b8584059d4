#!/usr/bin/env python3
"""cli_cases.py — runs the built kiln binary and checks exit codes and messages.

Usage: cli_cases.py --kiln PATH --source DIR CASE

Each CASE is one CTest test (tests/cli/CMakeLists.txt lists them). Commands
run with the source tree as the working directory, so paths in messages are
the relative ones given (examples/mlp.onnx). Standard library only: the .npy
files a case needs are written by a tiny writer here.
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

KILN = None
SOURCE = None
MODEL = "examples/mlp.onnx"
INPUT = "examples/mlp_input.npy"

MLP_SUMMARY = """\
inputs:
  input  f32[1,784]
outputs:
  probs  f32[1,10]
ops: 6 nodes
  op         count            FLOPs
  Gemm           3          469,504
  Relu           2              384
  Softmax        1               10
  total          6          469,898
parameters: 235,146 in 6 constants (940,584 bytes)
total FLOPs: 469,898 (469.9 KFLOP)
"""


class Failure(Exception):
    pass


def kiln(*args, cwd=None):
    proc = subprocess.run([KILN, *args], capture_output=True, text=True,
                          cwd=cwd or SOURCE, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def check(cond, what, out="", err=""):
    if not cond:
        raise Failure(f"{what}\n--- stdout ---\n{out}--- stderr ---\n{err}")


def expect(args, code, stdout=None, stderr=None, cwd=None):
    """Runs kiln; checks the exit code and, when given, exact stdout/stderr."""
    rc, out, err = kiln(*args, cwd=cwd)
    check(rc == code, f"kiln {' '.join(args)}: exit {rc}, expected {code}", out, err)
    if stdout is not None:
        check(out == stdout, f"stdout differs; expected:\n{stdout}", out, err)
    if stderr is not None:
        check(err == stderr, f"stderr differs; expected:\n{stderr}", out, err)
    return out, err


def usage(cmd, msg):
    hint = f"Run 'kiln {cmd} --help' for usage." if cmd else "Run 'kiln --help' for usage."
    return f"kiln: {msg}\n{hint}\n"


def write_npy(path, descr, shape, payload):
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(payload)


def zeros_f32(n):
    return struct.pack(f"<{n}f", *([0.0] * n))


# ---- cases ---------------------------------------------------------------

def case_help():
    out, _ = expect(["--help"], 0, stderr="")
    check(out.startswith("usage: kiln [--help] [--version] COMMAND [ARGS]\n"), "usage line", out)
    for line in ["  bench     time a model compiled unfused and fused, per kernel and in total\n",
                 "  compile   compile a model to a shared object (or .o, asm, LLVM IR, C header)\n",
                 "  graph     draw the optimised graph, fusions as clusters (SVG, PNG or DOT)\n",
                 "  inspect   print a model's textual IR and a summary (ops, parameters, FLOPs)\n",
                 "  opt       run optimisation passes over a model and print the resulting IR\n",
                 "  run       run a model (interpreter, or a compiled .so) on .npy inputs\n"]:
        check(line in out, f"missing command line {line!r}", out)
    for absent in ["quantize"]:
        check(not re.search(rf"\b{absent}\b", out),
              f"help mentions {absent!r}, which does not exist yet", out)
    out2, _ = expect(["-h"], 0)
    out3, _ = expect(["help"], 0)
    check(out == out2 == out3, "--help, -h and 'help' differ", out2)


def case_version():
    expect(["--version"], 0, stdout="kiln 0.1.0\n", stderr="")


def case_help_commands():
    for cmd, flags in [("run", ["--input", "--output-dir", "--shape", "--threads", "--print",
                                "--check", "--rtol", "--atol", "--sum-tol", "--dump",
                                "--help"]),
                       ("compile", ["-o OUT", "--emit", "-O0", "--target", "--cpu", "--name",
                                    "--shape", "--stats", "--help"]),
                       ("inspect", ["--summary", "--full-constants", "--shape", "--help"]),
                       ("bench", ["--compare", "--threads", "--repeat", "--warmup", "--kernels",
                                  "--json", "--shape", "--help"]),
                       ("opt", ["-O0", "--passes", "--disable-pass", "--print-after",
                                "--verify-each", "--list-passes", "--shape", "--help"])]:
        out, _ = expect(["help", cmd], 0, stderr="")
        check(out.startswith(f"usage: kiln {cmd} MODEL"), f"'kiln help {cmd}' usage line", out)
        for flag in flags:
            check(flag in out, f"'kiln help {cmd}' does not document {flag}", out)
        check("Exit status:" in out, f"'kiln help {cmd}' does not give exit codes", out)
        expect([cmd, "--help"], 0, stdout=out)
        expect([cmd, MODEL, "-h"], 0, stdout=out)


def case_usage_global():
    expect([], 2, stdout="", stderr=usage(None, "no command given"))
    expect(["quantize", MODEL], 2, stdout="", stderr=usage(None, "unknown command 'quantize'"))
    expect(["--bogus"], 2, stdout="", stderr=usage(None, "unknown flag '--bogus'"))
    expect(["help", "bogus"], 2, stdout="", stderr=usage(None, "unknown command 'bogus'"))


def case_usage_flags():
    expect(["run", MODEL, "--bogus"], 2, stdout="", stderr=usage("run", "unknown flag '--bogus'"))
    expect(["inspect", "--sumary", MODEL], 2, stdout="",
           stderr=usage("inspect", "unknown flag '--sumary'"))
    expect(["inspect"], 2, stderr=usage("inspect", "no model given"))
    expect(["run"], 2, stderr=usage("run", "no model given"))
    expect(["inspect", MODEL, "x.onnx"], 2,
           stderr=usage("inspect", f"more than one model given ('{MODEL}' and 'x.onnx')"))
    expect(["run", MODEL, "--output-dir"], 2,
           stderr=usage("run", "--output-dir needs a directory"))
    expect(["run", MODEL, "--input", "input"], 2,
           stderr=usage("run", "--input 'input': expected NAME=FILE.npy"))


def case_usage_compile():
    expect(["compile", MODEL], 2, stdout="", stderr=usage("compile", "no output file given (-o OUT)"))
    expect(["compile", "-o", "x.so"], 2, stderr=usage("compile", "no model given"))
    expect(["compile", MODEL, "-o"], 2, stderr=usage("compile", "-o needs a file name"))
    expect(["compile", MODEL, "-o", "x.so", "--emit", "so,exe"], 2,
           stderr=usage("compile", "--emit: unknown kind 'exe' (so, obj, asm, llvm, header)"))
    expect(["compile", MODEL, "-o", "x.so", "-O4"], 2,
           stderr=usage("compile", "unknown flag '-O4'"))
    expect(["compile", MODEL, "x.onnx", "-o", "x.so"], 2,
           stderr=usage("compile", f"more than one model given ('{MODEL}' and 'x.onnx')"))
    expect(["run", MODEL, INPUT, "--threads", "0"], 2,
           stderr=usage("run", "--threads needs a count from 1 to 1024, got '0'"))
    expect(["run", MODEL, INPUT, "--threads", "2"], 2,
           stderr=usage("run", "--threads applies to compiled models (.so) and --check only"))


def case_usage_opt():
    """kiln opt and the pass flags of kiln compile: unknown passes are usage
    errors found before the model is read; --list-passes names every pass."""
    unknown = "kiln: --passes: unknown pass 'fold-bn' (kiln opt --list-passes lists them)\n"
    expect(["opt", "missing.onnx", "--passes=fold-bn"], 2, stdout="",
           stderr=unknown + "Run 'kiln opt --help' for usage.\n")
    expect(["compile", "missing.onnx", "-o", "x.so", "--passes=fold-bn"], 2, stdout="",
           stderr=unknown + "Run 'kiln compile --help' for usage.\n")
    expect(["opt", MODEL, "--disable-pass=dce,nope"], 2, stdout="",
           stderr="kiln: --disable-pass: unknown pass 'nope' (kiln opt --list-passes lists them)\n"
                  "Run 'kiln opt --help' for usage.\n")
    expect(["opt", MODEL, "--print-after=x"], 2,
           stderr="kiln: --print-after: unknown pass 'x' (kiln opt --list-passes lists them)\n"
                  "Run 'kiln opt --help' for usage.\n")
    expect(["opt"], 2, stderr=usage("opt", "no model given"))
    expect(["opt", MODEL, "-O5"], 2, stderr=usage("opt", "unknown flag '-O5'"))
    out, _ = expect(["opt", "--list-passes"], 0, stderr="")
    for line in ["  fold-batchnorm   ", "  fuse-output      ", "  dce              ",
                 "  fold-constants   ", "  simplify         ", "  cse              ",
                 "  fuse-patterns    ", "  -O0  (none)\n",
                 "  -O1  fold-constants,simplify,cse,fold-batchnorm,dce\n"]:
        check(line in out, f"--list-passes lacks {line!r}", out)
    # -O2: the cleanups first, then the fusions, dce last (in this order,
    # whatever other passes sit between them)
    o2 = [ln[len("  -O2  "):].split(",") for ln in out.splitlines() if ln.startswith("  -O2  ")]
    want = ["fold-constants", "simplify", "cse", "fuse-patterns", "fold-batchnorm",
            "fuse-output", "dce"]
    check(len(o2) == 1 and [p for p in o2[0] if p in want] == want and o2[0][-1] == "dce",
          f"--list-passes: -O2 should run {','.join(want)} in this order", out)
    # the bundled MLP has no BatchNormalization: -O2 fuses its two Gemm+Relu
    out, err = expect(["opt", MODEL, "--print-after=all"], 0)
    check(out.count("= fusion @") == 2 and out.count('{kind = "output"}') == 2,
          "kiln opt -O2 on the MLP: expected two output fusions", out, err)
    for p in ["fold-constants", "simplify", "cse", "fuse-patterns", "fold-batchnorm",
              "fuse-output", "dce"]:
        check(f"// ---- IR after pass {p} ----\n" in err, f"no IR printed after {p}", out, err)
    out, _ = expect(["opt", MODEL, "-O0"], 0)
    check("fusion" not in out and out.count("= Gemm @") == 3, "kiln opt -O0 changed the MLP", out)
    out, _ = expect(["opt", MODEL, "--disable-pass=fuse-output"], 0)
    check("fusion" not in out, "--disable-pass=fuse-output still fused", out)


def case_bench():
    """kiln bench: usage errors, then a short real run on the MLP whose JSON
    must be complete and consistent (the fused variant launches fewer
    kernels and moves fewer bytes, both give the same outputs)."""
    import json
    expect(["bench"], 2, stderr=usage("bench", "no model given"))
    expect(["bench", MODEL, "--compare", "unfused,magic"], 2,
           stderr=usage("bench",
                         "--compare: unknown variant 'magic' (unfused, fused, openblas)"))
    expect(["bench", MODEL, "--compare", "fused,fused"], 2,
           stderr=usage("bench", "--compare: 'fused' given twice"))
    expect(["bench", MODEL, "--threads", "0"], 2,
           stderr=usage("bench", "--threads needs a count from 1 to 1024, got '0'"))
    expect(["bench", MODEL, "--repeat", "x"], 2,
           stderr=usage("bench", "--repeat needs a count from 1 to 1000000, got 'x'"))
    rc, out, err = kiln("bench", "missing.onnx")
    check(rc == 1 and "missing.onnx" in err and out == "", "bench on a missing model", out, err)
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        js = os.path.join(tmp, "b.json")
        out, err = expect(["bench", MODEL, "--threads", "1", "--repeat", "5", "--warmup", "1",
                           "--json", js], 0)
        check("| unfused |" in out and "| fused |" in out and "speedup: fused over unfused" in out,
              "bench table", out, err)
        with open(js) as f:
            data = json.load(f)
        check(data["threads"] == 1 and data["repeat"] == 5, "bench JSON header", json.dumps(data))
        v = {x["name"]: x for x in data["variants"]}
        check(set(v) == {"unfused", "fused"}, "bench JSON variants", json.dumps(data))
        check(v["unfused"]["kernels"] == 6 and v["fused"]["kernels"] == 4,
              "MLP kernels: 6 unfused (3 Gemm, 2 Relu, Softmax), 4 fused", json.dumps(data))
        check(v["fused"]["bytes_moved"] < v["unfused"]["bytes_moved"], "fused moves fewer bytes",
              json.dumps(data))
        ops = [k["op"] for k in v["fused"]["kernel_times"]]
        check(ops == ["fusion:output(Gemm+Relu)", "fusion:output(Gemm+Relu)", "Gemm", "Softmax"],
              "fused kernel ops", json.dumps(data))
        check(all(k["median_ms"] > 0 for x in v.values() for k in x["kernel_times"]),
              "every kernel timed", json.dumps(data))
        check(0 <= data["max_output_diff"] < 1e-5, "variants agree", json.dumps(data))


def case_bench_openblas():
    """kiln bench's openblas variant: per-op kernels with every f32 Gemm on
    OpenBLAS; as many kernels as unfused, the same outputs."""
    import json
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        js = os.path.join(tmp, "b.json")
        out, err = expect(["bench", MODEL, "--compare", "unfused,openblas", "--repeat", "2",
                           "--threads", "1", "--warmup", "1", "--json", js], 0)
        check("| openblas |" in out and "speedup: openblas over unfused" in out,
              "bench table with openblas", out, err)
        with open(js) as f:
            data = json.load(f)
        v = {x["name"]: x for x in data["variants"]}
        check(list(v) == ["unfused", "openblas"], "bench JSON variants", json.dumps(data))
        check(not v["unfused"]["host_gemm"] and v["openblas"]["host_gemm"],
              "host_gemm flags", json.dumps(data))
        check(v["openblas"]["kernels"] == 6 and v["unfused"]["kernels"] == 6,
              "openblas runs one kernel per op", json.dumps(data))
        ops = [k["op"] for k in v["openblas"]["kernel_times"]]
        check(ops == ["Gemm", "Relu", "Gemm", "Relu", "Gemm", "Softmax"], "openblas kernel ops",
              json.dumps(data))
        check(0 <= v["openblas"]["max_output_diff"] < 1e-5
              and data["max_output_diff"] == v["openblas"]["max_output_diff"],
              "openblas agrees with unfused", json.dumps(data))
        # three variants: each compared with the first
        out, err = expect(["bench", MODEL, "--compare", "openblas,fused,unfused", "--repeat", "1",
                           "--warmup", "0", "--threads", "3"], 0)
        check("speedup: fused over openblas" in out and "speedup: unfused over openblas" in out
              and "3 threads" in out, "three variants", out, err)


def case_run_check():
    """kiln run --check: a clean pass, then a forced mismatch (zero
    tolerance) naming the first kernel, its members and ONNX nodes, with a
    reproducer that reruns cleanly; and its usage errors."""
    out, err = expect(["run", MODEL, INPUT, "--check"], 0)
    check(out.startswith(f"checking 4 kernels of {MODEL} at -O2 against the interpreter "
                         "(rtol 0.0001, atol 1e-05, sum-tol 4)\n")
          and "all 4 kernels within tolerance" in out, "--check on the MLP", out, err)
    out, _ = expect(["run", MODEL, INPUT, "--check", "-O0"], 0)
    check("checking 6 kernels" in out, "--check -O0 runs one kernel per op", out)
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        rep = os.path.join(tmp, "rep")
        out, err = expect(["run", MODEL, INPUT, "--check", "--rtol", "0", "--atol", "0",
                           "--sum-tol", "0", "--dump", rep], 1)
        check("FIRST MISMATCH: kernel 0 of 4, node 'fc1.fused' (fusion:output(Gemm+Relu)), "
              "from ONNX nodes fc1,relu1\n" in out and "  member: Gemm fc1\n" in out,
              "the first kernel, its members and sources", out, err)
        check(os.path.exists(os.path.join(rep, "repro.kir")) and
              os.path.exists(os.path.join(rep, "input0.npy")), "reproducer files", out, err)
        repro = os.path.join(rep, "repro.kir")
        out, err = expect(["run", repro, "--input", "input=" + os.path.join(rep, "input0.npy"),
                           "--check"], 0)
        check("all 1 kernels within tolerance" in out, "the reproducer reruns", out, err)
        expect(["run", MODEL, INPUT, "--dump", rep], 2,
               stderr=usage("run", "-O, --rtol, --atol, --sum-tol and --dump apply to --check only"))
        expect(["run", MODEL, INPUT, "--check", "--rtol", "-1"], 2,
               stderr=usage("run", "--rtol needs a number >= 0, got '-1'"))
        expect(["run", MODEL, INPUT, "--check", "--sum-tol", "x"], 2,
               stderr=usage("run", "--sum-tol needs a number >= 0, got 'x'"))
        so = os.path.join(tmp, "m.so")
        expect(["compile", MODEL, "-o", so], 0)
        expect(["run", so, INPUT, "--check"], 2,
               stderr=usage("run", "--check needs the model (.onnx or .kir), not a compiled .so: "
                                   "it compiles the model itself"))


def case_compile_errors():
    """Bad targets and CPUs, failed links and bad artefacts: one message,
    exit 1, nothing written."""
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        so = os.path.join(tmp, "m.so")
        expect(["compile", MODEL, "-o", so, "--cpu", "pentium9000"], 1, stdout="",
               stderr=f"{MODEL}: unknown --cpu 'pentium9000' for x86_64-pc-linux-gnu (known: "
                      "native,generic,x86-64,x86-64-v2,x86-64-v3,x86-64-v4)\n")
        expect(["compile", MODEL, "-o", so, "--target", "riscv64-linux-gnu"], 1, stdout="",
               stderr=f"{MODEL}: target 'riscv64-unknown-linux-gnu' is not supported "
                      "(x86_64-linux-gnu, aarch64-linux-gnu)\n")
        env_cc = os.environ.get("KILN_CC")
        os.environ["KILN_CC"] = "false"
        try:
            rc, out, err = kiln("compile", MODEL, "-o", so)
        finally:
            if env_cc is None:
                del os.environ["KILN_CC"]
            else:
                os.environ["KILN_CC"] = env_cc
        check(rc == 1 and err.startswith(f"{so}: linking {so} with 'false' failed"),
              "failed link", out, err)
        check(os.listdir(tmp) == [], f"files left after a failed link: {os.listdir(tmp)}")
        # A truncated and a foreign artefact.
        expect(["compile", MODEL, "-o", so], 0)
        with open(so, "rb") as f:
            data = f.read()
        bad = os.path.join(tmp, "cut.so")
        with open(bad, "wb") as f:
            f.write(data[: len(data) // 2])
        rc, out, err = kiln("run", bad, INPUT, "--output-dir", os.path.join(tmp, "o1"))
        check(rc == 1 and err.startswith(bad) and err.count("\n") == 1, "truncated .so", out, err)
        check(not os.path.exists(os.path.join(tmp, "o1")), "output written for a bad .so")
        libm = "/lib/x86_64-linux-gnu/libm.so.6"
        if os.path.exists(libm):
            rc, out, err = kiln("run", libm, INPUT)
            check(rc == 1 and "kiln_model" in err and err.count("\n") == 1, "foreign .so", out, err)
        # A wrong input shape for a compiled model.
        small = os.path.join(tmp, "small.npy")
        write_npy(small, "<f4", (1, 10), zeros_f32(10))
        expect(["run", so, small], 1, stdout="",
               stderr=f"{small}: input 'input' expects f32[1,784], the file holds f32[1,10]\n")
        expect(["run", so, INPUT, "--shape", "input=1x784"], 2,
               stderr=usage("run", "--shape does not apply to a compiled model: its shapes "
                                   "were fixed by `kiln compile`"))


def case_usage_shape():
    bad = ("expected NAME=DIMxDIM... with up to 8 non-negative integer dims "
           "(e.g. input=1x3x224x224)")
    for cmd in ["inspect", "run"]:
        for spec in ["input=1xx784", "input=", "=1x784", "input", "input=1x-784",
                     "input=1x784x", "input=1,784", "input=1x2x3x4x5x6x7x8x9"]:
            expect([cmd, MODEL, "--shape", spec], 2, stdout="",
                   stderr=usage(cmd, f"--shape '{spec}': {bad}"))
        expect([cmd, MODEL, "--shape"], 2,
               stderr=usage(cmd, "--shape needs a value NAME=DIMxDIM..."))
        expect([cmd, MODEL, "--shape=input=1x784", "--shape", "input=1x784"], 2,
               stderr=usage(cmd, "--shape 'input=1x784': input 'input' is pinned twice"))


def case_usage_inputs():
    expect(["run", MODEL], 2, stdout="", stderr=usage(
        "run", "missing input 'input' (f32[1,784]): pass it as --input NAME=FILE.npy "
               "or positionally in input order"))
    expect(["run", MODEL, INPUT, "extra.npy"], 2, stdout="", stderr=usage(
        "run", f"too many inputs: 'extra.npy' has no input left to feed "
               f"({MODEL} takes 1: 'input')"))
    expect(["run", MODEL, "--input", "foo=" + INPUT], 2, stdout="", stderr=usage(
        "run", f"--input foo={INPUT}: {MODEL} has no input 'foo' (its inputs: 'input')"))
    expect(["run", MODEL, "--input", "input=a.npy", "--input=input=b.npy"], 2, stdout="",
           stderr=usage("run", "input 'input' is given twice ('a.npy' and 'b.npy')"))
    # Named and positional inputs: the positional file has nothing left to feed.
    expect(["run", MODEL, "--input", "input=" + INPUT, INPUT], 2, stderr=usage(
        "run", f"too many inputs: '{INPUT}' has no input left to feed "
               f"({MODEL} takes 1: 'input')"))


def case_bad_input_files():
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        p = os.path.join(tmp, "in.npy")
        write_npy(p, "<f4", (784,), zeros_f32(784))
        expect(["run", MODEL, p, "--output-dir", tmp], 1, stdout="",
               stderr=f"{p}: input 'input' expects f32[1,784], the file holds f32[784]\n")
        write_npy(p, "<f8", (1, 784), b"\0" * 8 * 784)
        expect(["run", MODEL, "--input", "input=" + p, "--output-dir", tmp], 1, stdout="",
               stderr=f"{p}: input 'input' expects f32[1,784], the file holds f64[1,784] "
                      f"(convert it with numpy's astype)\n")
        write_npy(p, "<i8", (1, 784), b"\0" * 8 * 784)
        expect(["run", MODEL, p, "--output-dir", tmp], 1, stdout="",
               stderr=f"{p}: input 'input' expects f32[1,784], the file holds i64[1,784]\n")
        with open(p, "wb") as f:
            f.write(b"not a numpy file")
        expect(["run", MODEL, p, "--output-dir", tmp], 1, stdout="",
               stderr=f"{p}: not a .npy file (bad magic bytes)\n")
        missing = os.path.join(tmp, "missing.npy")
        expect(["run", MODEL, missing, "--output-dir", tmp], 1, stdout="",
               stderr=f"{missing}: cannot open: No such file or directory\n")
        check(sorted(os.listdir(tmp)) == ["in.npy"], "a failed run wrote files", str(os.listdir(tmp)))


def case_bad_model():
    for path in ["no/such/model.onnx", "no/such/model.kir"]:
        rc, out, err = kiln("inspect", path)
        check(rc == 1, f"inspect {path}: exit {rc}, expected 1", out, err)
        check(err.startswith(path + ": ") and err.count("\n") == 1,
              "expected one error line naming the file", out, err)
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        p = os.path.join(tmp, "garbage.onnx")
        with open(p, "wb") as f:
            f.write(b"\xff\xfe this is not protobuf \x00\x01")
        for cmd in ["inspect", "run"]:
            rc, out, err = kiln(cmd, p)
            check(rc == 1 and err.startswith(p + ": ") and err.count("\n") == 1,
                  f"kiln {cmd} on garbage: expected exit 1 and one line naming the file", out, err)
        expect(["inspect", p, "--shape", "x=1"], 1)
        kir = os.path.join(tmp, "m.kir")
        with open(kir, "w") as f:
            f.write("graph @g opset 17 {\n  input %x : f32[2]\n  %y : f32[2] = Frobnicate @n (%x)\n"
                    "  output %y\n}\n")
        rc, out, err = kiln("inspect", kir)
        check(rc == 1 and err.startswith(kir + ":3:") and err.count("\n") == 1,
              "a .kir parse error: exit 1 and one 'FILE:LINE:COL:' line", out, err)
        expect(["inspect", kir, "--shape", "x=2"], 2, stderr=usage(
            "inspect", f"--shape applies to ONNX models only; '{kir}' is textual IR, "
                       f"whose shapes are already static"))


def case_inspect_summary():
    expect(["inspect", "--summary", MODEL], 0, stderr="",
           stdout=f"model: {MODEL} (graph 'mlp', opset 17)\n" + MLP_SUMMARY)


def case_inspect_ir():
    out, _ = expect(["inspect", MODEL], 0, stderr="")
    check(out.startswith("graph @mlp opset 17 {\n  input %input : f32[1,784]\n"), "IR header", out)
    check("= Gemm @fc1 (%input, %fc1.weight, %fc1.bias)" in out, "Gemm node line", out)
    check("elided<" in out, "large constants elided by default", out)
    comment = "".join("// " + line + "\n" for line in
                      (f"model: {MODEL} (graph 'mlp', opset 17)\n" + MLP_SUMMARY).splitlines())
    check(out.endswith("}\n" + comment), "summary as '// ' lines after the IR", out)
    full, _ = expect(["inspect", "--full-constants", MODEL], 0, stderr="")
    check("elided<" not in full and len(full) > 10 * len(out),
          "--full-constants prints every element", full[:2000])
    # The whole output is a .kir file that inspects to the same summary.
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        kir = os.path.join(tmp, "mlp.kir")
        with open(kir, "w") as f:
            f.write(out)
        out2, _ = expect(["inspect", "--summary", kir], 0, stderr="")
        check(out2 == f"model: {kir} (graph 'mlp', opset 17)\n" + MLP_SUMMARY,
              "the printed IR inspects to the same summary", out2)


def case_run_outputs():
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        out_dir = os.path.join(tmp, "a", "b")
        expect(["run", MODEL, INPUT, "--output-dir", out_dir], 0, stderr="",
               stdout=f"probs: f32[1,10] -> {out_dir}/probs.npy\n")
        check(os.listdir(out_dir) == ["probs.npy"], "exactly probs.npy, no temp files",
              str(os.listdir(out_dir)))
        with open(os.path.join(out_dir, "probs.npy"), "rb") as f:
            data = f.read()
        check(data[:10] == b"\x93NUMPY\x01\x00\x76\x00" and len(data) == 128 + 40,
              ".npy v1.0, 128-byte header, 10 f32", repr(data[:16]))
        total = sum(struct.unpack("<10f", data[128:]))
        check(abs(total - 1.0) < 1e-5, f"softmax output sums to {total}, not 1")
        # Default output directory: ./kiln-out.
        expect(["run", os.path.join(SOURCE, MODEL), os.path.join(SOURCE, INPUT)], 0, cwd=tmp,
               stderr="", stdout="probs: f32[1,10] -> kiln-out/probs.npy\n")
        check(os.listdir(os.path.join(tmp, "kiln-out")) == ["probs.npy"], "./kiln-out/probs.npy")
        # --print: type, first elements, min/max/mean.
        out, _ = expect(["run", MODEL, INPUT, "--output-dir", out_dir, "--print"], 0, stderr="")
        lines = out.splitlines()
        check(len(lines) == 4 and lines[0] == "probs: f32[1,10]", "--print layout", out)
        check(lines[1].startswith("  [") and lines[1].endswith(", ...]  (first 8 of 10)"),
              "--print first elements", out)
        check(lines[2].startswith("  min ") and " max " in lines[2] and " mean 0.1" in lines[2],
              "--print min/max/mean (softmax of 10: mean 0.1)", out)
        check(lines[3] == f"  -> {out_dir}/probs.npy", "--print names the file", out)
        # An output directory that cannot be created.
        blocker = os.path.join(tmp, "file")
        open(blocker, "w").close()
        expect(["run", MODEL, INPUT, "--output-dir", os.path.join(blocker, "sub")], 1, stdout="",
               stderr=f"{blocker}: cannot create directory: Not a directory\n")


def graph_env(path_dirs):
    """The environment with PATH set to path_dirs (to hide or fake `dot`)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(path_dirs)
    return env


def kiln_env(args, env):
    proc = subprocess.run([KILN, *args], capture_output=True, text=True, cwd=SOURCE,
                          timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def clusters(dot_text):
    """{cluster body text} of each `subgraph cluster_*` in a DOT file."""
    return re.findall(r"subgraph cluster_\w+ \{\n(.*?)\n  \}", dot_text, re.S)


def case_graph_usage():
    """kiln graph: help, exit codes and exact usage messages."""
    out, _ = expect(["help", "graph"], 0, stderr="")
    check(out.startswith("usage: kiln graph MODEL"), "'kiln help graph' usage line", out)
    for flag in ["-o FILE", ".svg", ".png", ".dot", "-O0", "--passes", "--disable-pass",
                 "--shape", "--help", "install graphviz", "Exit status:"]:
        check(flag in out, f"'kiln help graph' does not document {flag}", out)
    expect(["graph", "--help"], 0, stdout=out)
    expect(["graph", MODEL, "-h"], 0, stdout=out)
    expect(["graph"], 2, stdout="", stderr=usage("graph", "no model given"))
    expect(["graph", "-o", "x.svg"], 2, stdout="", stderr=usage("graph", "no model given"))
    expect(["graph", MODEL], 2, stdout="",
           stderr=usage("graph", "no output file given (-o FILE.svg, .png or .dot)"))
    expect(["graph", MODEL, "-o"], 2, stderr=usage("graph", "-o needs a file name"))
    for name in ["x.txt", "x.svgz", "svg", ".svg"]:
        expect(["graph", MODEL, "-o", name], 2, stdout="", stderr=usage(
            "graph", f"-o '{name}': unknown picture format; name the file *.svg, *.png or *.dot"))
    expect(["graph", MODEL, "-o", "x.svg", "--bogus"], 2,
           stderr=usage("graph", "unknown flag '--bogus'"))
    expect(["graph", MODEL, "-o", "x.svg", "-O4"], 2, stderr=usage("graph", "unknown flag '-O4'"))
    expect(["graph", MODEL, "x.onnx", "-o", "x.svg"], 2,
           stderr=usage("graph", f"more than one model given ('{MODEL}' and 'x.onnx')"))
    expect(["graph", MODEL, "-o", "x.svg", "--shape", "input"], 2, stderr=usage(
        "graph", "--shape 'input': expected NAME=DIMxDIM... with up to 8 non-negative "
                 "integer dims (e.g. input=1x3x224x224)"))
    # unknown passes are usage errors found before the model is read
    expect(["graph", "missing.onnx", "-o", "x.svg", "--passes=fold-bn"], 2, stdout="",
           stderr="kiln: --passes: unknown pass 'fold-bn' (kiln opt --list-passes lists them)\n"
                  "Run 'kiln graph --help' for usage.\n")
    expect(["graph", MODEL, "-o", "x.dot", "--disable-pass=nope"], 2, stdout="",
           stderr="kiln: --disable-pass: unknown pass 'nope' (kiln opt --list-passes lists "
                  "them)\nRun 'kiln graph --help' for usage.\n")
    check(not any(os.path.exists(os.path.join(SOURCE, f)) for f in ["x.svg", "x.dot"]),
          "a usage error wrote a file")


def case_graph_draw():
    """kiln graph: fusion nodes as clusters in the DOT, an SVG and a PNG made
    by Graphviz, and errors (no `dot`, `dot` failing, bad model, unwritable
    folder) that leave no file behind and keep an existing one."""
    with tempfile.TemporaryDirectory(prefix="kiln-cli-") as tmp:
        dot_file = os.path.join(tmp, "mlp.dot")
        expect(["graph", MODEL, "-o", dot_file], 0, stdout="", stderr="")
        with open(dot_file) as f:
            text = f.read()
        check(text.startswith("digraph kiln {\n") and text.endswith("}\n"), "a DOT digraph", text)
        body = clusters(text)
        check(len(body) == 2 and text.count('fillcolor="#fde6cc"') == 2,
              "-O2 on the MLP: two output-fusion clusters, coloured by kind", text)
        for name, (gemm, relu) in zip(["fc1", "fc2"], [("fc1", "relu1"), ("fc2", "relu2")]):
            c = next((c for c in body if f"<BR/>{name}.fused>" in c), "")
            check("<B>output fusion</B>" in c and f"<B>Gemm</B><BR/>{gemm}<BR/>" in c
                  and f"<B>Relu</B><BR/>{relu}>" in c,
                  f"cluster {name}.fused: labelled 'output fusion', holding {gemm} and {relu}",
                  text)
            check(f"{name}.weight f32[" in c, f"{name}'s weight noted in its Gemm's box", text)
        for edge in ['label="f32[1,784]"', 'label="f32[1,256]"', 'label="f32[1,128]"',
                     'label="f32[1,10]"']:
            check(edge in text, f"no edge labelled {edge}", text)
        check(re.search(r'i\d+ \[shape=ellipse, fillcolor=[^\n]*<B>input</B><BR/>f32\[1,784\]>',
                        text) and "peripheries=2" in text and "<B>probs</B>" in text,
              "graph input and output drawn as ellipses", text)
        check("fc1.weight" not in text.replace("fc1.weight f32[256,784]", ""),
              "a weight drawn other than as a note", text)
        # The input feeds the body node that consumes the matching body input.
        fc1 = re.search(r"(f\d+_\d+) \[label=<<B>Gemm</B><BR/>fc1<BR/>", text)
        inp = re.search(r"(i\d+) \[shape=ellipse", text)
        check(fc1 and inp and f"{inp[1]} -> {fc1[1]} [" in text, "input -> fc1 inside a cluster",
              text)
        for flags in [["-O0"], ["--disable-pass=fuse-output"]]:
            expect(["graph", MODEL, *flags, "-o", dot_file], 0, stdout="", stderr="")
            with open(dot_file) as f:
                unfused = f.read()
            check("cluster" not in unfused and unfused.count("<B>Gemm</B>") == 3
                  and unfused.count("<B>Relu</B>") == 2, f"{flags}: no fusion", unfused)
        # A fused .kir (the text of kiln opt) draws the same clusters at -O0.
        kir = os.path.join(tmp, "fused.kir")
        out, _ = expect(["opt", MODEL], 0)
        with open(kir, "w") as f:
            f.write(out)
        expect(["graph", kir, "-O0", "-o", dot_file], 0, stdout="", stderr="")
        with open(dot_file) as f:
            check(len(clusters(f.read())) == 2, "the fused .kir: two clusters")
        check(sorted(os.listdir(tmp)) == ["fused.kir", "mlp.dot"], "temp files left",
              str(os.listdir(tmp)))

        # Names that need escaping in DOT and HTML-like labels.
        odd = 'x"<in>&\\N'
        weird = os.path.join(tmp, "odd.kir")
        with open(weird, "w") as f:
            f.write('graph @g opset 17 {\n  input %"x\\"<in>&\\\\N" : f32[2]\n'
                    '  const %"k\\x01\\xff" : f32[] = dense<[6.0]>\n'
                    '  %y : f32[2] = Mul @"m\\"\\\\l" (%"x\\"<in>&\\\\N", %"k\\x01\\xff")\n'
                    '  output %y\n}\n')
        odd_dot = os.path.join(tmp, "odd.dot")
        expect(["graph", weird, "-o", odd_dot], 0, stdout="", stderr="")
        with open(odd_dot) as f:
            text = f.read()
        check("<B>x&quot;&lt;in&gt;&amp;\\\\N</B>" in text and 'tooltip="x\\"<in>&\\\\N"' in text
              and "<B>Mul</B><BR/>m&quot;\\\\l<BR/>" in text
              and "k\\\\x01\\\\xff f32[] = 6" in text,
              "names escaped for HTML-like labels and quoted strings", text)

        # Errors: nothing written, an existing file kept.
        svg = os.path.join(tmp, "m.svg")
        with open(svg, "w") as f:
            f.write("old")
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        rc, out, err = kiln_env(["graph", MODEL, "-o", svg], graph_env([empty]))
        check(rc == 1 and out == "" and err == f"{svg}: cannot render SVG: Graphviz's 'dot' is "
              "not on PATH; install graphviz (apt-get install graphviz), or write a .dot file\n",
              "no dot: one message naming the fix", out, err)
        fake = os.path.join(tmp, "fake")
        os.mkdir(fake)
        with open(os.path.join(fake, "dot"), "w") as f:
            f.write("#!/bin/sh\necho '<svg half'\necho 'Error: dot broke' >&2\nexit 3\n")
        os.chmod(os.path.join(fake, "dot"), 0o755)
        rc, out, err = kiln_env(["graph", MODEL, "-o", svg], graph_env([empty, fake]))
        check(rc == 1 and out == "" and err == f"{svg}: {fake}/dot -Tsvg failed (exit 3): "
              "Error: dot broke\n", "a failing dot: exit 1, its first line", out, err)
        with open(svg) as f:
            check(f.read() == "old", "a failed kiln graph changed an existing output")
        with open(dot_file) as f:
            before = f.read()
        expect(["graph", "no/such.onnx", "-o", dot_file], 1, stdout="",
               stderr="no/such.onnx: cannot open: No such file or directory\n")
        with open(dot_file) as f:
            check(f.read() == before, "a failed kiln graph changed an existing output")
        missing_dir = os.path.join(tmp, "no", "g.dot")
        expect(["graph", MODEL, "-o", missing_dir], 1, stdout="",
               stderr=f"{missing_dir}: cannot create: No such file or directory\n")
        os.remove(svg)
        check(sorted(os.listdir(tmp)) == ["empty", "fake", "fused.kir", "mlp.dot", "odd.dot",
                                          "odd.kir"],
              "files left behind by failed runs", str(os.listdir(tmp)))

        if not shutil.which("dot"):
            print("skip: the SVG and PNG checks need Graphviz's dot "
                  "(install graphviz: scripts/setup.sh)")
            return
        expect(["graph", MODEL, "-o", svg], 0, stdout="", stderr="")
        with open(svg) as f:
            text = f.read()
        root = ET.fromstring(text)
        check(root.tag.endswith("svg") and "<svg" in text, "valid XML with an <svg> root",
              text[:500])
        titles = [t.text for t in root.iter() if t.tag.endswith("text")]
        check(titles.count("output fusion") == 2 and "fc1.fused" in titles,
              "the SVG shows the two fusion clusters", str(titles))
        png = os.path.join(tmp, "m.png")
        expect(["graph", MODEL, "-O0", "-o", png], 0, stdout="", stderr="")
        with open(png, "rb") as f:
            check(f.read(8) == b"\x89PNG\r\n\x1a\n", "a PNG file")
        odd_svg = os.path.join(tmp, "odd.svg")
        expect(["graph", weird, "-o", odd_svg], 0, stdout="", stderr="")
        texts = [t.text for t in ET.parse(odd_svg).getroot().iter() if t.tag.endswith("text")]
        check(odd in texts and 'm"\\l' in texts and "k\\x01\\xff f32[] = 6" in texts,
              "escaped names render as they are", str(texts))
        check(sorted(os.listdir(tmp)) == ["empty", "fake", "fused.kir", "m.png", "m.svg",
                                          "mlp.dot", "odd.dot", "odd.kir", "odd.svg"],
              "temp files left", str(os.listdir(tmp)))


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    global KILN, SOURCE
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("case", choices=sorted(CASES))
    args = ap.parse_args()
    KILN, SOURCE = os.path.abspath(args.kiln), os.path.abspath(args.source)
    try:
        CASES[args.case]()
    except Failure as e:
        print(f"FAIL {args.case}: {e}")
        return 1
    print(f"PASS {args.case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
