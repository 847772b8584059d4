#!/usr/bin/env python3
"""make_examples.py — builds the bundled example model and its input.

Writes, deterministically (fixed seeds, fixed metadata):
  examples/mlp.onnx       an MLP 784-256-128-10: Gemm+Relu, Gemm+Relu, Gemm,
                          Softmax; opset 17; input "input" f32[1,784],
                          output "probs" f32[1,10]
  examples/mlp_input.npy  a seeded random input, f32[1,784] in [0, 1)

Run with the project's venv: build/venv/bin/python examples/make_examples.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [784, 256, 128, 10]


def build_model(rng):
    nodes, inits = [], []
    x = "input"
    for i, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:]), start=1):
        # He-style scale keeps activations O(1); weights stored [out, in] (transB=1),
        # as PyTorch exports nn.Linear.
        w = (rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32)
        b = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"),
                  numpy_helper.from_array(b, f"fc{i}.bias")]
        y = f"fc{i}" if i < len(SIZES) - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [y],
                                      name=f"fc{i}", alpha=1.0, beta=1.0, transB=1))
        x = y
        if i < len(SIZES) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"relu{i}"], name=f"relu{i}"))
            x = f"relu{i}"
    nodes.append(helper.make_node("Softmax", [x], ["probs"], name="softmax", axis=-1))
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, SIZES[0]])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, SIZES[-1]])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="kiln examples/make_examples.py",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # the IR version that goes with opset 17
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    model = build_model(np.random.default_rng(20240601))
    with open(os.path.join(HERE, "mlp.onnx"), "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    x = np.random.default_rng(7).random((1, SIZES[0]), dtype=np.float32)
    np.save(os.path.join(HERE, "mlp_input.npy"), x)
    print("wrote examples/mlp.onnx and examples/mlp_input.npy")


if __name__ == "__main__":
    main()
