#!/usr/bin/env python3
"""gen_node_tests.py — writes the ONNX backend node tests to a directory.

Usage: gen_node_tests.py OUTDIR

The onnx wheel does not ship backend/test/data/node, but it ships the
generators that produce it. This script runs them and writes, per test,
the layout the ONNX repository uses:

    OUTDIR/<test>/model.onnx
    OUTDIR/<test>/test_data_set_<i>/input_<j>.pb   (serialized TensorProto)
    OUTDIR/<test>/test_data_set_<i>/output_<j>.pb

Tests with a non-tensor graph input or output (sequence, optional, map) get no
data files; instead OUTDIR/<test>/UNSUPPORTED holds a one-line reason, which
kiln-conformance reports as "unsupported".

Idempotent: OUTDIR/.onnx-version records the onnx version the data came from;
the data is regenerated only when that stamp is missing or different. The
directory is built beside OUTDIR and renamed into place, so an interrupted run
never leaves a half-written tree behind a valid stamp.
"""
import os
import shutil
import sys
import warnings

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node

STAMP = ".onnx-version"


NON_TENSOR_KINDS = {
    "sequence_type": "a sequence",
    "optional_type": "an optional",
    "map_type": "a map",
    "sparse_tensor_type": "a sparse tensor",
}


def non_tensor_kind(value_info):
    """Returns what a non-tensor graph input/output is ("a sequence"), or None."""
    for field, kind in NON_TENSOR_KINDS.items():
        if value_info.type.HasField(field):
            return kind
    return None


def tensor_bytes(value, name):
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), name).SerializeToString()


def write_case(case, case_dir):
    os.makedirs(case_dir)
    with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())
    graph = case.model.graph
    for vi in list(graph.input) + list(graph.output):
        kind = non_tensor_kind(vi)
        if kind:
            with open(os.path.join(case_dir, "UNSUPPORTED"), "w") as f:
                f.write(f"graph value '{vi.name}' is {kind}, not a tensor\n")
            return
    for i, (inputs, outputs) in enumerate(case.data_sets):
        set_dir = os.path.join(case_dir, f"test_data_set_{i}")
        os.makedirs(set_dir)
        for j, x in enumerate(inputs):
            with open(os.path.join(set_dir, f"input_{j}.pb"), "wb") as f:
                f.write(tensor_bytes(x, graph.input[j].name))
        for j, y in enumerate(outputs):
            with open(os.path.join(set_dir, f"output_{j}.pb"), "wb") as f:
                f.write(tensor_bytes(y, graph.output[j].name))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_node_tests.py OUTDIR")
    out = os.path.abspath(sys.argv[1])
    stamp = os.path.join(out, STAMP)
    try:
        with open(stamp) as f:
            if f.read().strip() == onnx.__version__:
                return
    except OSError:
        pass

    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    # The reference implementations overflow and divide by zero on purpose
    # (Cast saturation, ReduceMax of empty sets); their warnings are noise here.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = node.collect_testcases(None)
    n_unsupported = 0
    for case in cases:
        write_case(case, os.path.join(tmp, case.name))
        n_unsupported += os.path.exists(os.path.join(tmp, case.name, "UNSUPPORTED"))
    with open(os.path.join(tmp, STAMP), "w") as f:
        f.write(onnx.__version__ + "\n")

    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(f"gen_node_tests: {len(cases)} tests ({n_unsupported} with non-tensor values) "
          f"from onnx {onnx.__version__} in {out}")


if __name__ == "__main__":
    main()
