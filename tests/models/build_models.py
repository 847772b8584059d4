#!/usr/bin/env python3
"""build_models.py — writes the real-model test networks as ONNX (opset 17).

Usage: build_models.py OUTDIR

Writes, with numpy-seeded random weights (so every run gives the same bytes):

    mlp.onnx          1x512 -> 1024 -> 1024 -> 10, Gemm + Relu, Softmax
    resnet18.onnx     ResNet-18 at 1x3x224x224, BatchNormalization kept
    mobilenetv2.onnx  MobileNetV2 (width 1.0) at 1x3x224x224, ReLU6 as Clip
    bert.onnx         a 2-layer BERT-style encoder over 128 tokens

and each model's inputs as OUTDIR/<model>.<input>.npy. Weights use He
initialisation (std sqrt(2 / fan_in)) before ReLUs and 1/sqrt(fan_in) before
linear layers, and BatchNormalization gets random positive variances, so the
activations stay O(1) through the whole network (checked by onnxruntime in
--check mode: no NaN, not all zero).
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Builder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.counts = {}

    def name(self, base):
        n = self.counts.get(base, 0)
        self.counts[base] = n + 1
        return f"{base}_{n}"

    def const(self, base, array):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, base=None, n_out=1, **attrs):
        name = self.name(base or op.lower())
        outs = [name] if n_out == 1 else [f"{name}:{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def normal(self, shape, std):
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def model(self, name, inputs, outputs):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kiln-tests")
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def tensor_info(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


# ---- MLP ---------------------------------------------------------------

def build_mlp():
    b = Builder(1)
    x = "x"
    dims = [512, 1024, 1024, 10]
    for i in range(3):
        fan_in, fan_out = dims[i], dims[i + 1]
        std = np.sqrt(2.0 / fan_in) if i < 2 else 1.0 / np.sqrt(fan_in)
        w = b.const("fc_w", b.normal((fan_out, fan_in), std))
        bias = b.const("fc_b", b.normal((fan_out,), 0.1))
        x = b.node("Gemm", [x, w, bias], "fc", transB=1)
        if i < 2:
            x = b.node("Relu", [x])
    b.nodes.append(helper.make_node("Softmax", [x], ["probs"], name="softmax", axis=-1))
    m = b.model("mlp", [tensor_info("x", TensorProto.FLOAT, [1, 512])],
                [tensor_info("probs", TensorProto.FLOAT, [1, 10])])
    inputs = {"x": np.random.default_rng(101).standard_normal((1, 512)).astype(np.float32)}
    return m, inputs


# ---- convolutional helpers ----------------------------------------------

def conv_bn(b, x, cin, cout, k, stride, group=1, gamma=(0.5, 1.5)):
    """Conv (no bias, He init) followed by an unfolded BatchNormalization."""
    fan_in = (cin // group) * k * k
    w = b.const("conv_w", b.normal((cout, cin // group, k, k), np.sqrt(2.0 / fan_in)))
    y = b.node("Conv", [x, w], "conv", kernel_shape=[k, k], strides=[stride, stride],
               pads=[k // 2] * 4, group=group)
    scale = b.const("bn_scale", b.uniform((cout,), *gamma))
    bias = b.const("bn_bias", b.normal((cout,), 0.1))
    mean = b.const("bn_mean", b.normal((cout,), 0.1))
    var = b.const("bn_var", b.uniform((cout,), 0.5, 2.0))
    return b.node("BatchNormalization", [y, scale, bias, mean, var], "bn", epsilon=1e-5)


def classifier(b, x, channels, n_classes, flatten):
    x = b.node("GlobalAveragePool", [x], "gap")
    if flatten:
        x = b.node("Flatten", [x], "flatten", axis=1)
    else:
        shape = b.const("flat_shape", np.array([1, channels], dtype=np.int64))
        x = b.node("Reshape", [x, shape], "reshape")
    w = b.const("fc_w", b.normal((n_classes, channels), 1.0 / np.sqrt(channels)))
    bias = b.const("fc_b", b.normal((n_classes,), 0.1))
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="fc", transB=1))


def image_input(seed):
    return {"input": np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(np.float32)}


# ---- ResNet-18 -----------------------------------------------------------

def basic_block(b, x, cin, cout, stride):
    y = b.node("Relu", [conv_bn(b, x, cin, cout, 3, stride)])
    # A small gamma on the branch's last BN keeps the residual sum from
    # doubling its variance block after block.
    y = conv_bn(b, y, cout, cout, 3, 1, gamma=(0.2, 0.5))
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = conv_bn(b, x, cin, cout, 1, stride)
    return b.node("Relu", [b.node("Add", [y, shortcut])])


def build_resnet18():
    b = Builder(2)
    x = b.node("Relu", [conv_bn(b, "input", 3, 64, 7, 2)])
    x = b.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        x = basic_block(b, x, cin, cout, stride)
        x = basic_block(b, x, cout, cout, 1)
        cin = cout
    classifier(b, x, 512, 1000, flatten=True)
    m = b.model("resnet18", [tensor_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
                [tensor_info("logits", TensorProto.FLOAT, [1, 1000])])
    return m, image_input(102)


# ---- MobileNetV2 -----------------------------------------------------------

def relu6(b, x, bounds):
    return b.node("Clip", [x, bounds[0], bounds[1]], "relu6")


def build_mobilenetv2():
    b = Builder(3)
    bounds = (b.const("relu6_min", np.array(0.0, dtype=np.float32)),
              b.const("relu6_max", np.array(6.0, dtype=np.float32)))
    x = relu6(b, conv_bn(b, "input", 3, 32, 3, 2), bounds)
    cin = 32
    # (expansion t, output channels c, repeats n, first stride s)
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x
            if t != 1:
                y = relu6(b, conv_bn(b, y, cin, hidden, 1, 1), bounds)
            y = relu6(b, conv_bn(b, y, hidden, hidden, 3, stride, group=hidden), bounds)
            residual = stride == 1 and cin == c
            y = conv_bn(b, y, hidden, c, 1, 1, gamma=(0.2, 0.5) if residual else (0.5, 1.5))
            x = b.node("Add", [x, y]) if residual else y
            cin = c
    x = relu6(b, conv_bn(b, x, cin, 1280, 1, 1), bounds)
    classifier(b, x, 1280, 1000, flatten=False)
    m = b.model("mobilenetv2", [tensor_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
                [tensor_info("logits", TensorProto.FLOAT, [1, 1000])])
    return m, image_input(103)


# ---- BERT-style encoder ------------------------------------------------------

SEQ, HIDDEN, HEADS, FFN, VOCAB, LAYERS = 128, 256, 4, 1024, 1000, 2
HEAD_DIM = HIDDEN // HEADS


def layer_norm(b, x):
    gamma = b.const("ln_gamma", b.uniform((HIDDEN,), 0.8, 1.2))
    beta = b.const("ln_beta", b.normal((HIDDEN,), 0.1))
    return b.node("LayerNormalization", [x, gamma, beta], "ln", axis=-1, epsilon=1e-12)


def linear(b, x, fan_in, fan_out):
    w = b.const("w", b.normal((fan_in, fan_out), 1.0 / np.sqrt(fan_in)))
    bias = b.const("bias", b.normal((fan_out,), 0.1))
    return b.node("Add", [b.node("MatMul", [x, w]), bias])


def scalar(b, base, v):
    return b.const(base, np.array(v, dtype=np.float32))


def encoder_layer(b, x, mask):
    heads_shape = b.const("heads_shape", np.array([1, SEQ, HEADS, HEAD_DIM], dtype=np.int64))
    q = b.node("Transpose", [b.node("Reshape", [linear(b, x, HIDDEN, HIDDEN), heads_shape])],
               perm=[0, 2, 1, 3])
    k = b.node("Transpose", [b.node("Reshape", [linear(b, x, HIDDEN, HIDDEN), heads_shape])],
               perm=[0, 2, 3, 1])
    v = b.node("Transpose", [b.node("Reshape", [linear(b, x, HIDDEN, HIDDEN), heads_shape])],
               perm=[0, 2, 1, 3])
    scores = b.node("Div", [b.node("MatMul", [q, k]), scalar(b, "sqrt_head_dim", np.sqrt(HEAD_DIM))])
    probs = b.node("Softmax", [b.node("Add", [scores, mask])], axis=-1)
    ctx = b.node("Transpose", [b.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    hidden_shape = b.const("hidden_shape", np.array([1, SEQ, HIDDEN], dtype=np.int64))
    ctx = b.node("Reshape", [ctx, hidden_shape])
    x = layer_norm(b, b.node("Add", [linear(b, ctx, HIDDEN, HIDDEN), x]))

    h = linear(b, x, HIDDEN, FFN)
    # GELU as the PyTorch exporter writes it: x * 0.5 * (1 + erf(x / sqrt(2))).
    erf = b.node("Erf", [b.node("Div", [h, scalar(b, "sqrt2", np.sqrt(2.0))])])
    gelu = b.node("Mul", [b.node("Mul", [h, b.node("Add", [erf, scalar(b, "one", 1.0)])]),
                          scalar(b, "half", 0.5)])
    return layer_norm(b, b.node("Add", [linear(b, gelu, FFN, HIDDEN), x]))


def build_bert():
    b = Builder(4)
    word = b.const("word_embeddings", b.normal((VOCAB, HIDDEN), 1.0))
    pos_table = b.const("position_embeddings", b.normal((512, HIDDEN), 0.5))
    type_table = b.const("token_type_embeddings", b.normal((2, HIDDEN), 0.5))
    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    pos = b.node("Slice", [pos_table, b.const("starts", i64([0])), b.const("ends", i64([SEQ])),
                           b.const("axes", i64([0]))])
    x = b.node("Add", [b.node("Gather", [word, "input_ids"], axis=0), pos])
    x = b.node("Add", [x, b.node("Gather", [type_table, "token_type_ids"], axis=0)])
    x = layer_norm(b, x)

    # The extended attention mask: (1 - mask) * -10000 over [1, 1, 1, SEQ].
    m = b.node("Unsqueeze", ["attention_mask", b.const("mask_axes", i64([1, 2]))])
    m = b.node("Cast", [m], to=TensorProto.FLOAT)
    mask = b.node("Mul", [b.node("Sub", [scalar(b, "one", 1.0), m]), scalar(b, "neg_big", -10000.0)])

    for _ in range(LAYERS):
        x = encoder_layer(b, x, mask)
    b.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    ids = [tensor_info(n, TensorProto.INT64, [1, SEQ])
           for n in ("input_ids", "token_type_ids", "attention_mask")]
    model = b.model("bert", ids, [tensor_info("last_hidden_state", TensorProto.FLOAT, [1, SEQ, HIDDEN])])

    rng = np.random.default_rng(104)
    inputs = {
        "input_ids": rng.integers(0, VOCAB, (1, SEQ), dtype=np.int64),
        "token_type_ids": (np.arange(SEQ) >= SEQ // 2).astype(np.int64).reshape(1, SEQ),
        "attention_mask": (np.arange(SEQ) < 100).astype(np.int64).reshape(1, SEQ),
    }
    return model, inputs


MODELS = {
    "mlp": build_mlp,
    "resnet18": build_resnet18,
    "mobilenetv2": build_mobilenetv2,
    "bert": build_bert,
}


def write_atomic(path, data):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: build_models.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, build in MODELS.items():
        model, inputs = build()
        write_atomic(os.path.join(out, f"{name}.onnx"), model.SerializeToString())
        for input_name, value in inputs.items():
            path = os.path.join(out, f"{name}.{input_name}.npy")
            tmp = f"{path}.tmp-{os.getpid()}.npy"
            np.save(tmp, value)
            os.replace(tmp, path)
        print(f"build_models: {name}.onnx ({len(model.graph.node)} nodes, "
              f"inputs {', '.join(inputs)})")


if __name__ == "__main__":
    main()
