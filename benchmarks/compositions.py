"""Benchmark: deploy speed on OpenCV of the data-movement and broadcasting compositions (Transpose, MatMul between
activations, reductions, broadcast element-wise ops) against the ONNX model they come from.

For each case a one-node ONNX model (Transposes feeding a MatMul are kept, as exporters write them) is converted
with onnx2caffe; both are timed on OpenCV's dnn module with default settings and one thread
(cv2.dnn.readNetFromCaffe vs cv2.dnn.readNetFromONNX, median of --repeat forwards after a warm-up). Prints the
per-case times, their ratio and the number of Caffe layers. The shapes are those of the family nets (YOLO11 at
320 and 640, RetinaNet / SSD heads, MTCNN, MAnet, CBAM, FPN, BiSeNet).

    .venv/bin/python benchmarks/compositions.py [--repeat 20] [--only transpose,matmul,reduce,eltwise]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import helper

CASES = {
    "transpose": [
        ("attention map (0,1,3,2) 1x2x100x100", "Transpose", [(1, 2, 100, 100)], {"perm": [0, 1, 3, 2]}),
        ("attention map (0,1,3,2) 1x2x400x400", "Transpose", [(1, 2, 400, 400)], {"perm": [0, 1, 3, 2]}),
        (
            "RetinaNet head (0,3,4,1,2) 1x9x91x40x40",
            "Transpose",
            [(1, 9, 91, 40, 40)],
            {"perm": [0, 3, 4, 1, 2]},
        ),
        ("SSD head (0,3,4,1,2) 1x4x91x38x38", "Transpose", [(1, 4, 91, 38, 38)], {"perm": [0, 3, 4, 1, 2]}),
        ("YOLO head (0,1,3,4,2) 1x3x85x40x40", "Transpose", [(1, 3, 85, 40, 40)], {"perm": [0, 1, 3, 4, 2]}),
        ("NCHW->NHWC 1x64x80x80", "Transpose", [(1, 64, 80, 80)], {"perm": [0, 2, 3, 1]}),
        ("MTCNN ONet (0,3,2,1) 1x128x3x3", "Transpose", [(1, 128, 3, 3)], {"perm": [0, 3, 2, 1]}),
        (
            "pixel shuffle 6-D 1x16x2x2x80x80",
            "Transpose",
            [(1, 16, 2, 2, 80, 80)],
            {"perm": [0, 1, 4, 2, 5, 3]},
        ),
    ],
    "matmul": [
        ("YOLO11 320 q^T k 2x(32x100)", "MatMulT", [(1, 2, 32, 100), (1, 2, 32, 100)], {"t": (1, 0)}),
        ("YOLO11 320 v attn^T", "MatMulT", [(1, 2, 64, 100), (1, 2, 100, 100)], {"t": (0, 1)}),
        ("YOLO11 640 q^T k 2x(32x400)", "MatMulT", [(1, 2, 32, 400), (1, 2, 32, 400)], {"t": (1, 0)}),
        ("YOLO11 640 v attn^T", "MatMulT", [(1, 2, 64, 400), (1, 2, 400, 400)], {"t": (0, 1)}),
        ("MAnet 256 center^T top", "MatMulT", [(1, 64, 64), (1, 64, 64)], {"t": (1, 0)}),
        ("MAnet 256 map bottom^T", "MatMulT", [(1, 64, 64), (1, 512, 64)], {"t": (0, 1)}),
    ],
    "reduce": [
        ("CBAM ReduceMean axis 1 1x64x80x80", "ReduceMean", [(1, 64, 80, 80)], {"axes": [1]}),
        ("CBAM ReduceMax axis 1 1x64x80x80", "ReduceMax", [(1, 64, 80, 80)], {"axes": [1]}),
        (
            "FPN ReduceSum axis 0 4x1x128x64x64",
            "ReduceSum",
            [(4, 1, 128, 64, 64)],
            {"axes": [0], "keepdims": 0},
        ),
        ("SK ReduceSum axis 1 1x2x64x32x32", "ReduceSum", [(1, 2, 64, 32, 32)], {"axes": [1], "keepdims": 0}),
        ("LayerNorm mean last axis 1x400x128", "ReduceMean", [(1, 400, 128)], {"axes": [-1]}),
    ],
    "eltwise": [
        ("BiSeNet Add 1x64x80x80 + 1x64x1x1", "Add", [(1, 64, 80, 80), (1, 64, 1, 1)], {}),
        ("CBAM Mul 1x64x80x80 * 1x1x80x80", "Mul", [(1, 64, 80, 80), (1, 1, 80, 80)], {}),
        ("Div 1x64x80x80 / 1x64x80x80", "Div", [(1, 64, 80, 80), (1, 64, 80, 80)], {}),
        ("Sub 2x64x40x40 - 2x1x40x40", "Sub", [(2, 64, 40, 40), (2, 1, 40, 40)], {}),
    ],
}


def _model(op: str, shapes, attrs) -> onnx.ModelProto:
    names = [f"x{i}" for i in range(len(shapes))]
    nodes = []
    if op == "MatMulT":
        ins = list(names)
        for i, flag in enumerate(attrs["t"]):
            if flag:
                r = len(shapes[i])
                nodes.append(
                    helper.make_node("Transpose", [names[i]], [f"t{i}"], perm=[*range(r - 2), r - 1, r - 2])
                )
                ins[i] = f"t{i}"
        nodes.append(helper.make_node("MatMul", ins, ["y"]))
    elif op.startswith("Reduce") and op != "ReduceSum":
        nodes.append(helper.make_node(op, names, ["y"], **attrs))
    elif op == "ReduceSum":
        axes = helper.make_tensor("axes", onnx.TensorProto.INT64, [len(attrs["axes"])], attrs["axes"])
        nodes.append(helper.make_node("Constant", [], ["axes"], value=axes))
        nodes.append(helper.make_node(op, names + ["axes"], ["y"], keepdims=attrs.get("keepdims", 1)))
    else:
        nodes.append(helper.make_node(op, names, ["y"], **attrs))
    graph = helper.make_graph(
        nodes,
        "bench",
        [
            helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(s))
            for n, s in zip(names, shapes, strict=True)
        ],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _time(net, feeds: dict, repeat: int) -> float:
    import cv2

    for name, value in feeds.items():
        net.setInput(value, name)
    net.forward()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for name, value in feeds.items():
            net.setInput(value, name)
        net.forward()
        times.append(time.perf_counter() - t0)
    del cv2
    return float(np.median(times))


def run(groups, repeat: int) -> None:
    import cv2

    from onnx2caffe.convert import convert

    cv2.setNumThreads(1)
    print(f"OpenCV {cv2.__version__}, one thread, median of {repeat}")
    print(f"{'case':<44} {'onnx ms':>9} {'caffe ms':>9} {'ratio':>7} {'layers':>7}")
    with tempfile.TemporaryDirectory(prefix="onnx2caffe-bench-") as tmp:
        for group in groups:
            for label, op, shapes, attrs in CASES[group]:
                model = _model(op, shapes, attrs)
                path = os.path.join(tmp, "m.onnx")
                onnx.save(model, path)
                result = convert(path, os.path.join(tmp, "m"), check=False)
                rng = np.random.default_rng(0)
                feeds = {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
                t_onnx = _time(cv2.dnn.readNetFromONNX(path), feeds, repeat)
                caffe_feeds = {result.name_map[k]: v for k, v in feeds.items()}
                t_caffe = _time(
                    cv2.dnn.readNetFromCaffe(result.prototxt, result.caffemodel), caffe_feeds, repeat
                )
                layers = sum(1 for layer in result.net.layers if layer.type != "Input")
                print(
                    f"{label:<44} {t_onnx * 1e3:9.3f} {t_caffe * 1e3:9.3f} {t_caffe / t_onnx:7.2f} {layers:7d}"
                )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated groups: " + ", ".join(CASES))
    args = ap.parse_args(argv)
    groups = [g for g in args.only.split(",") if g]
    unknown = set(groups) - set(CASES)
    if unknown:
        print(f"unknown group(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    run(groups, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
