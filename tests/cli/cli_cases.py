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
import struct
import subprocess
import sys
import tempfile

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
    for line in ["  compile   compile a model to a shared object (or .o, asm, LLVM IR, C header)\n",
                 "  inspect   print a model's textual IR and a summary (ops, parameters, FLOPs)\n",
                 "  run       run a model (interpreter, or a compiled .so) on .npy inputs\n"]:
        check(line in out, f"missing command line {line!r}", out)
    for absent in ["bench", "quantize", "opt", "graph"]:
        check(not re.search(rf"\b{absent}\b", out),
              f"help mentions {absent!r}, which does not exist yet", out)
    out2, _ = expect(["-h"], 0)
    out3, _ = expect(["help"], 0)
    check(out == out2 == out3, "--help, -h and 'help' differ", out2)


def case_version():
    expect(["--version"], 0, stdout="kiln 0.1.0\n", stderr="")


def case_help_commands():
    for cmd, flags in [("run", ["--input", "--output-dir", "--shape", "--threads", "--print",
                                "--help"]),
                       ("compile", ["-o OUT", "--emit", "-O0", "--target", "--cpu", "--name",
                                    "--shape", "--stats", "--help"]),
                       ("inspect", ["--summary", "--full-constants", "--shape", "--help"])]:
        out, _ = expect(["help", cmd], 0, stderr="")
        check(out.startswith(f"usage: kiln {cmd} MODEL"), f"'kiln help {cmd}' usage line", out)
        for flag in flags:
            check(flag in out, f"'kiln help {cmd}' does not document {flag}", out)
        check("Exit status:" in out, f"'kiln help {cmd}' does not give exit codes", out)
        expect([cmd, "--help"], 0, stdout=out)
        expect([cmd, MODEL, "-h"], 0, stdout=out)


def case_usage_global():
    expect([], 2, stdout="", stderr=usage(None, "no command given"))
    expect(["bench", MODEL], 2, stdout="", stderr=usage(None, "unknown command 'bench'"))
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
           stderr=usage("run", "--threads applies to compiled models (.so) only"))


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
