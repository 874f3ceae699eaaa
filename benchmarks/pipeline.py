"""Benchmark: the whole pipeline, step by step, for ResNet-50 and VGG-16 (torchvision, random weights, 224x224).

Steps, each timed on its own (wall clock, one run; --repeat N keeps the best of N for the convert steps):
  * export:   torch.onnx.export (TorchScript exporter, opset 13) into memory
  * simplify: onnx-simplifier
  * check:    the exported model against PyTorch (onnxruntime)
  * load:     OnnxGraph.load (checker + shape inference) and the passes
  * map:      every node to Caffe layers (build_net)
  * write:    prototxt + caffemodel (CaffeNet.save)
  * verify:   onnxruntime reference, then load + run + compare on each Caffe runtime
and, as the yardstick for convert (map + write): ndarray.tofile of the same weight bytes into the same folder.

    .venv/bin/python benchmarks/pipeline.py [--models resnet50,vgg16] [--dir DIR] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def _best(fn, repeat: int):
    best, value = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, value


def bench(name: str, folder: str, repeat: int, runtimes: list[str]) -> dict:
    import torchvision
    from onnx2caffe.exporters.torch_export import (
        check_against_torch,
        export_onnx,
        random_inputs,
        randomize_batchnorm,
        simplify,
    )

    from onnx2caffe.compare import compare_outputs
    from onnx2caffe.convert import build_net, reference_outputs
    from onnx2caffe.onnx_graph import OnnxGraph
    from onnx2caffe.passes import run_passes
    from onnx2caffe.runtimes import get_runtime

    t = {}
    model = randomize_batchnorm(torchvision.models.get_model(name, weights=None)).eval()
    shape = (1, 3, 224, 224)
    inputs = random_inputs([shape], 0)
    t0 = time.perf_counter()
    proto, _ = export_onnx(model, [shape], example_inputs=inputs)
    t["export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    proto = simplify(proto)
    t["simplify"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    check_against_torch(model, proto, inputs)
    t["check"] = time.perf_counter() - t0
    del model

    def load():
        g = OnnxGraph.load(proto)
        run_passes(g)
        return g

    t["load"], graph = _best(load, repeat)
    t["map"], (net, name_map) = _best(lambda: build_net(graph, name), repeat)
    prefix = os.path.join(folder, name)
    t["write"], _ = _best(lambda: net.save(prefix), repeat)
    blobs = [b for layer in net.layers for b in layer.blobs]
    nbytes = sum(int(b.nbytes) for b in blobs)

    def tofile():
        with open(os.path.join(folder, name + ".raw"), "wb") as f:
            for b in blobs:
                np.ascontiguousarray(b, dtype=np.float32).tofile(f)

    t["tofile"], _ = _best(tofile, repeat)

    feeds = {graph.inputs[0]: inputs[0]}
    t0 = time.perf_counter()
    refs = reference_outputs(proto.SerializeToString(), feeds, graph.outputs)
    t["reference"] = time.perf_counter() - t0
    agreement = {}
    for rt_name in runtimes:
        t0 = time.perf_counter()
        with get_runtime(rt_name) as rt, rt.load(prefix + ".prototxt", prefix + ".caffemodel") as loaded:
            outs = loaded.run(
                {name_map[graph.inputs[0]]: inputs[0]}, outputs=[name_map[o] for o in graph.outputs]
            )
        rows = compare_outputs(refs, {o: outs[name_map[o]] for o in graph.outputs}, rt_name)
        t[f"verify_{rt_name}"] = time.perf_counter() - t0
        agreement[rt_name] = max(r["max_rel"] for r in rows)
    return {
        "name": name,
        "times": t,
        "weight_bytes": nbytes,
        "layers": len(net.layers),
        "agreement": agreement,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet50,vgg16")
    p.add_argument("--dir", default=None, help="folder for the written files (default: a temporary folder)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--runtimes", default="pycaffe,opencv")
    args = p.parse_args(argv)
    folder = args.dir or tempfile.mkdtemp(prefix="onnx2caffe-bench-")
    os.makedirs(folder, exist_ok=True)
    try:
        for name in args.models.split(","):
            r = bench(name, folder, args.repeat, [x for x in args.runtimes.split(",") if x])
            t = r["times"]
            convert = t["map"] + t["write"]
            print(f"{name}: {r['layers']} Caffe layers, {r['weight_bytes'] / 1e6:.1f} MB of weights")
            for k, v in t.items():
                print(f"  {k:<16} {v:8.2f} s")
            print(
                f"  convert (map + write) {convert:.2f} s = {convert / t['tofile']:.2f} x tofile ({t['tofile']:.2f} s)"
            )
            print(f"  write alone = {t['write'] / t['tofile']:.2f} x tofile")
            print("  agreement (max_rel): " + ", ".join(f"{k} {v:.2e}" for k, v in r["agreement"].items()))
            sys.stdout.flush()
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
