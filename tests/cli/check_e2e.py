#!/usr/bin/env python3
"""check_e2e.py — end-to-end checks of `kiln run` against NumPy.

Usage: check_e2e.py --kiln PATH --source DIR CASE

  mlp    runs examples/mlp.onnx on examples/mlp_input.npy and compares kiln's
         probs.npy with the same MLP computed in NumPy from the model's own
         weights (onnx.numpy_helper): allclose(rtol=1e-4, atol=1e-5).
  kir    the same model printed with --full-constants to .kir and run from
         there gives the same output, bit for bit.
  names  a model whose outputs are named "out/relu:0" and "out_relu_0"
         writes out_relu_0.npy and, for the collision, out_relu_0_1.npy.
  mixed  a two-input model fed by --input and positionally gives the right
         values.
  flops  kiln inspect --summary of a Conv/ConvTranspose/MaxPool/Reshape/MatMul
         model gives the documented FLOPs per op.
  pin    a model with a symbolic batch dim runs with --shape x=2x3 (output
         f32[2,3]) and fails, naming the model, without it.

Needs numpy and onnx (the project venv); exits 77 (CTest: skipped) without.
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e} (run scripts/setup.sh for the venv)")
    sys.exit(77)

RTOL, ATOL = 1e-4, 1e-5


def run(kiln, *args, cwd=None):
    proc = subprocess.run([kiln, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    if proc.returncode != 0:
        sys.exit(f"FAIL: kiln {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def reference_mlp(model_path, x):
    """The MLP of make_examples.py, computed from the weights in the model."""
    model = onnx.load(model_path)
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    h = x.astype(np.float64)
    for node in model.graph.node:
        if node.op_type == "Gemm":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            b = w[node.input[1]]
            h = h @ (b.T if attrs.get("transB", 0) else b) + w[node.input[2]]
        elif node.op_type == "Relu":
            h = np.maximum(h, 0)
        elif node.op_type == "Softmax":
            e = np.exp(h - h.max(axis=-1, keepdims=True))
            h = e / e.sum(axis=-1, keepdims=True)
        else:
            sys.exit(f"FAIL: unexpected op {node.op_type} in {model_path}")
    return h


def compare(got, ref, what):
    if got.dtype != np.float32 or got.shape != ref.shape:
        sys.exit(f"FAIL {what}: got {got.dtype}{list(got.shape)}, expected float32{list(ref.shape)}")
    err = np.abs(got.astype(np.float64) - ref)
    if not np.all(err <= ATOL + RTOL * np.abs(ref)):
        i = int(np.argmax(err - RTOL * np.abs(ref)))
        sys.exit(f"FAIL {what}: element {i}: got {got.flat[i]!r}, expected {ref.flat[i]!r} "
                 f"(rtol {RTOL}, atol {ATOL})")
    print(f"PASS {what}: max abs err {err.max():.3g}")


def case_mlp(kiln, src, tmp):
    model = os.path.join(src, "examples", "mlp.onnx")
    x = np.load(os.path.join(src, "examples", "mlp_input.npy"))
    run(kiln, "run", model, os.path.join(src, "examples", "mlp_input.npy"), "--output-dir", tmp)
    compare(np.load(os.path.join(tmp, "probs.npy")), reference_mlp(model, x), "mlp vs numpy")


def case_kir(kiln, src, tmp):
    model = os.path.join(src, "examples", "mlp.onnx")
    inp = os.path.join(src, "examples", "mlp_input.npy")
    kir = os.path.join(tmp, "mlp.kir")
    with open(kir, "w") as f:
        f.write(run(kiln, "inspect", "--full-constants", model))
    run(kiln, "run", model, inp, "--output-dir", os.path.join(tmp, "onnx"))
    run(kiln, "run", kir, inp, "--output-dir", os.path.join(tmp, "kir"))
    a = np.load(os.path.join(tmp, "onnx", "probs.npy"))
    b = np.load(os.path.join(tmp, "kir", "probs.npy"))
    if not np.array_equal(a, b):
        sys.exit(f"FAIL: .kir run differs from the .onnx run:\n{a}\n{b}")
    print("PASS kir: the --full-constants .kir runs to identical output")


def save_model(path, nodes, inputs, outputs):
    graph = helper.make_graph(nodes, "t", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def case_names(kiln, src, tmp):
    model = os.path.join(tmp, "names.onnx")
    f32 = TensorProto.FLOAT
    save_model(model,
               [helper.make_node("Relu", ["x"], ["out/relu:0"], name="r"),
                helper.make_node("Neg", ["x"], ["out_relu_0"], name="n")],
               [helper.make_tensor_value_info("x", f32, [3])],
               [helper.make_tensor_value_info("out/relu:0", f32, [3]),
                helper.make_tensor_value_info("out_relu_0", f32, [3])])
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    np.save(os.path.join(tmp, "x.npy"), x)
    out_dir = os.path.join(tmp, "out")
    run(kiln, "run", model, os.path.join(tmp, "x.npy"), "--output-dir", out_dir)
    files = sorted(os.listdir(out_dir))
    if files != ["out_relu_0.npy", "out_relu_0_1.npy"]:
        sys.exit(f"FAIL names: wrote {files}")
    if not (np.array_equal(np.load(os.path.join(out_dir, "out_relu_0.npy")), np.maximum(x, 0))
            and np.array_equal(np.load(os.path.join(out_dir, "out_relu_0_1.npy")), -x)):
        sys.exit("FAIL names: wrong contents")
    print("PASS names")


def case_mixed(kiln, src, tmp):
    model = os.path.join(tmp, "sub.onnx")
    f32 = TensorProto.FLOAT
    save_model(model, [helper.make_node("Sub", ["a", "b"], ["d"], name="s")],
               [helper.make_tensor_value_info("a", f32, [2, 2]),
                helper.make_tensor_value_info("b", f32, [2, 2])],
               [helper.make_tensor_value_info("d", f32, [2, 2])])
    a = np.arange(4, dtype=np.float32).reshape(2, 2)
    b = np.full((2, 2), 10, np.float32)
    np.save(os.path.join(tmp, "a.npy"), a)
    np.save(os.path.join(tmp, "b.npy"), b)
    # b named, a positional: the positional file feeds the first input not named.
    run(kiln, "run", model, "--input", "b=" + os.path.join(tmp, "b.npy"),
        os.path.join(tmp, "a.npy"), "--output-dir", tmp)
    d = np.load(os.path.join(tmp, "d.npy"))
    if not np.array_equal(d, a - b):
        sys.exit(f"FAIL mixed: got {d}, expected {a - b}")
    print("PASS mixed")


def case_pin(kiln, src, tmp):
    model = os.path.join(tmp, "dyn.onnx")
    f32 = TensorProto.FLOAT
    save_model(model, [helper.make_node("Relu", ["x"], ["y"], name="r")],
               [helper.make_tensor_value_info("x", f32, ["batch", 3])],
               [helper.make_tensor_value_info("y", f32, ["batch", 3])])
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.save(os.path.join(tmp, "x.npy"), x)
    out = run(kiln, "run", model, os.path.join(tmp, "x.npy"), "--shape", "x=2x3",
              "--output-dir", tmp)
    if out != f"y: f32[2,3] -> {tmp}/y.npy\n":
        sys.exit(f"FAIL pin: stdout {out!r}")
    if not np.array_equal(np.load(os.path.join(tmp, "y.npy")), np.maximum(x, 0)):
        sys.exit("FAIL pin: wrong values")
    proc = subprocess.run([kiln, "run", model, os.path.join(tmp, "x.npy"), "--output-dir", tmp],
                          capture_output=True, text=True)
    if proc.returncode != 1 or not proc.stderr.startswith(model + ": ") \
            or proc.stderr.count("\n") != 1:
        sys.exit(f"FAIL pin: without --shape: exit {proc.returncode}, stderr {proc.stderr!r}")
    print("PASS pin")


def case_flops(kiln, src, tmp):
    model = os.path.join(tmp, "conv.onnx")
    f32 = TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "wt"),
             numpy_helper.from_array(np.array([1, 2, -1], np.int64), "shp"),
             numpy_helper.from_array(np.ones((64, 5), np.float32), "m")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["c", "wt"], ["ct"], name="ct", strides=[2, 2]),
             helper.make_node("MaxPool", ["ct"], ["p"], name="mp", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Reshape", ["p", "shp"], ["r"], name="rs"),
             helper.make_node("MatMul", ["r", "m"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "c", [helper.make_tensor_value_info("x", f32, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", f32, [1, 2, 5])],
                              initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, model)
    out = run(kiln, "inspect", "--summary", model)
    # Conv: 2*N*M*prod(out)*C/group*prod(k) = 2*1*4*64*3*9; ConvTranspose (input
    # 1x4x8x8, W 4x2x3x3): 2*256*2*9; MaxPool: 128 outputs * 4; MatMul: 2*10*64.
    want = """\
ops: 5 nodes
  op               count            FLOPs
  Conv                 1           13,824
  ConvTranspose        1            9,216
  MatMul               1            1,280
  MaxPool              1              512
  Reshape              1                0
  total                5           24,832
parameters: 503 in 4 constants (2,024 bytes)
total FLOPs: 24,832 (24.8 KFLOP)
"""
    if not out.endswith(want):
        sys.exit(f"FAIL flops: got\n{out}\nexpected the summary to end with\n{want}")
    print("PASS flops")


CASES = {"mlp": case_mlp, "flops": case_flops, "kir": case_kir, "names": case_names, "mixed": case_mixed,
         "pin": case_pin}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("case", choices=sorted(CASES))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-e2e-") as tmp:
        CASES[args.case](os.path.abspath(args.kiln), os.path.abspath(args.source), tmp)


if __name__ == "__main__":
    main()
