"""Deploy speed of the resampling compositions (Resize, Pad, Slice with steps, DepthToSpace) on OpenCV.

For each case one ONNX model with the single op is converted (no check), then both files are loaded into OpenCV's
dnn module with one thread: the Caffe form (cv2.dnn.readNetFromCaffe) and the ONNX model itself
(cv2.dnn.readNetFromONNX, OpenCV's own Resize/Pad/... layers). Prints the median time of one forward of each
(runs interleaved) and their ratio (Caffe / ONNX; the issue asks for <= 1.2 on the family nets). For the integer
Resize factors the older form is timed too: one depthwise Deconvolution with the bilinear (2f) or nearest (f)
kernel, stride f (the weights do not change the time), which the mapper no longer emits.
The machine this runs on may be shared: medians of interleaved runs, compare ratios within one run.

    python benchmarks/resample.py [--runs 20] [--only resize]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _model(node, shape, inits, opset=13):
    graph = helper.make_graph(
        [node],
        "bench",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)


def resize(shape, sizes, mode="linear", cmode="half_pixel"):
    node = helper.make_node(
        "Resize", ["x", "", "", "sizes"], ["y"], mode=mode, coordinate_transformation_mode=cmode
    )
    return _model(node, shape, {"sizes": np.array([*shape[:2], *sizes], np.int64)})


def pad(shape, pads, mode):
    node = helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)
    return _model(node, shape, {"pads": np.array(pads, np.int64)})


def slice_steps(shape, starts, steps):
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    inits = {
        "starts": np.array(starts, np.int64),
        "ends": np.array([2**62 if s > 0 else -(2**62) for s in steps], np.int64),
        "axes": np.array([2, 3][: len(starts)], np.int64),
        "steps": np.array(steps, np.int64),
    }
    return _model(node, shape, inits)


def depth_to_space(shape, r, mode):
    return _model(helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=r, mode=mode), shape, {})


CASES = {
    "resize": [
        ("bilinear x2 half_pixel 256ch 32->64", resize((1, 256, 32, 32), (64, 64))),
        ("bilinear x8 half_pixel 21ch 32->256", resize((1, 21, 32, 32), (256, 256))),
        ("bilinear x8 half_pixel 256ch 32->256", resize((1, 256, 32, 32), (256, 256))),
        ("bilinear align_corners 21ch 32->256", resize((1, 21, 32, 32), (256, 256), cmode="align_corners")),
        ("bilinear align_corners 256ch 32->256", resize((1, 256, 32, 32), (256, 256), cmode="align_corners")),
        ("bilinear align_corners 256ch 16->64", resize((1, 256, 16, 16), (64, 64), cmode="align_corners")),
        ("bilinear 1/8 map 64ch 28->224 (sizes)", resize((1, 64, 28, 28), (224, 224))),
        ("bilinear 21ch 33->257 (sizes)", resize((1, 21, 33, 33), (257, 257))),
        ("nearest x2 256ch 20->40", resize((1, 256, 20, 20), (40, 40), "nearest", "asymmetric")),
    ],
    "pad": [
        ("zero pad (0,1,0,1) 256ch 13x13", pad((1, 256, 13, 13), [0, 0, 0, 0, 0, 0, 1, 1], "constant")),
        ("reflect pad 1 64ch 128x128", pad((1, 64, 128, 128), [0, 0, 1, 1, 0, 0, 1, 1], "reflect")),
        ("reflect pad 3 32ch 256x256", pad((1, 32, 256, 256), [0, 0, 3, 3, 0, 0, 3, 3], "reflect")),
        ("edge pad 2 64ch 64x64", pad((1, 64, 64, 64), [0, 0, 2, 2, 0, 0, 2, 2], "edge")),
    ],
    "slice": [
        ("Focus x[..., 1::2, ::2] 3ch 640x640", slice_steps((1, 3, 640, 640), [1, 0], [2, 2])),
        ("flip W 3ch 224x224", slice_steps((1, 3, 224, 224), [-1], [-1])),
    ],
    "depth_to_space": [
        ("PixelShuffle CRD r=2 256ch 64x64", depth_to_space((1, 256, 64, 64), 2, "CRD")),
        ("PixelShuffle CRD r=3 27ch 128x128", depth_to_space((1, 27, 128, 128), 3, "CRD")),
        ("DepthToSpace DCR r=2 64ch 64x64", depth_to_space((1, 64, 64, 64), 2, "DCR")),
    ],
}


def _time(nets, x, runs):
    import cv2

    times = [[] for _ in nets]
    for net in nets:
        net.setInput(x)
        net.forward()  # warm up
    for _ in range(runs):
        for k, net in enumerate(nets):
            net.setInput(x)
            t0 = time.perf_counter()
            net.forward()
            times[k].append(time.perf_counter() - t0)
    del cv2
    return [1e3 * statistics.median(t) for t in times]


def _deconv_net(model, folder: Path, tag: str):
    """The older integer-factor form: one depthwise Deconvolution (None when the factor is not an integer)."""
    import cv2

    from onnx2caffe.caffe_net import CaffeNet, Layer

    node = model.graph.node[0]
    if node.op_type != "Resize":
        return None
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    sizes = [int(v) for v in numpy_helper.to_array(model.graph.initializer[0])]
    if sizes[2] % shape[2] or sizes[3] % shape[3]:
        return None
    f = sizes[2] // shape[2]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("coordinate_transformation_mode", b"half_pixel") == b"align_corners":
        return None  # no fixed kernel exists
    mode = attrs["mode"].decode()
    k = f if mode == "nearest" else 2 * f
    c = shape[1]
    net = CaffeNet("deconv")
    net.add_input("x", shape)
    param = {"num_output": c, "group": c, "bias_term": False, "kernel_size": [k], "stride": [f]}
    if k > f:
        param["pad"] = [f // 2]
    blobs = [np.full((c, 1, k, k), 1.0 / k, np.float32)]
    net.append(Layer("up", "Deconvolution", bottom=["x"], top=["y"], blobs=blobs, convolution_param=param))
    prototxt, caffemodel = net.save(folder / tag)
    return cv2.dnn.readNetFromCaffe(prototxt, caffemodel)


def _caffe_net(model, folder: Path, tag: str):
    import cv2

    from onnx2caffe.convert import convert

    result = convert(model, str(folder / tag), check=False)
    layers = len(result.net.layers) - 1
    return cv2.dnn.readNetFromCaffe(result.prototxt, result.caffemodel), layers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", choices=sorted(CASES), default=None)
    args = ap.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    print(f"OpenCV {cv2.__version__}, 1 thread, median of {args.runs} forwards (ms)")
    print(f"{'case':44s} {'onnx':>8s} {'caffe':>8s} {'ratio':>6s} {'layers':>6s}   alternative")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for group, cases in CASES.items():
            if args.only and group != args.only:
                continue
            for k, (name, model) in enumerate(cases):
                path = folder / f"{group}{k}.onnx"
                onnx.save(model, path)
                onnx_net = cv2.dnn.readNetFromONNX(str(path))
                caffe_net, layers = _caffe_net(model, folder, f"{group}{k}")
                nets = [onnx_net, caffe_net]
                alt = ""
                deconv = _deconv_net(model, folder, f"{group}{k}_deconv")
                if deconv is not None:
                    nets.append(deconv)
                shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
                x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
                try:
                    nets[0].setInput(x)
                    nets[0].forward()
                except cv2.error:  # OpenCV's own ONNX layer cannot run it (e.g. Slice with a negative step)
                    t = [float("nan")] + _time(nets[1:], x, args.runs)
                else:
                    t = _time(nets, x, args.runs)
                if deconv is not None:
                    alt = f"Deconvolution {t[2]:8.2f} ms ({t[2] / t[0]:.2f}x)"
                print(
                    f"{name:44s} {t[0]:8.2f} {t[1]:8.2f} {t[1] / t[0]:6.2f} {layers:6d}   {alt}", flush=True
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
