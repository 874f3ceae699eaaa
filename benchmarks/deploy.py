"""Benchmark: one forward on OpenCV's dnn module, the converted Caffe files vs the ONNX file they came from.

For each family net (onnx2caffe/families_models.py; default every one that converts): export and convert it as
`make families` does (files kept under --work/models/NAME/, reused when present), then load both with OpenCV
(cv2.dnn.readNetFromCaffe and cv2.dnn.readNetFromONNX, default backend and target, cv2.setNumThreads(1)) and
time one forward of each on the same seeded input, alternating Caffe and ONNX runs so drifts in machine load hit
both alike. Prints the median of each and their ratio (Caffe / ONNX), measured in this one run; the goal is
<= 1.2x for every net. A net the converter refuses, or whose ONNX file OpenCV cannot load, is listed with why.

    .venv/bin/python benchmarks/deploy.py [--nets yolov8n,smp-unet-resnet18] [--repeat 20] [--work DIR] [--ci]

--zoo MODELS times torchvision zoo models instead (onnx2caffe/zoo.py: exported, converted and verified on OpenCV
as `make zoo` does, files under --work/zoo/; zoo.deploy_speed, alternating, median of --repeat): a comma list, or
`transformers` for the five transformer families' smallest members (convnext_tiny, swin_t, swin_v2_t, vit_b_16,
maxvit_t). `make zoo` records the same measurement (median of 5) for every model in docs/zoo.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

GOAL = 1.2


def _time_forward(net, feeds: dict, outputs: list[str]) -> float:
    for name, x in feeds.items():
        net.setInput(x, name)
    t0 = time.perf_counter()
    net.forward(outputs)
    return time.perf_counter() - t0


def _files(name: str, shape, work: str) -> tuple[str, str, str, str]:
    """(onnx, prototxt, caffemodel, outcome) of `name`: kept files when present, else made now."""
    from onnx2caffe import families

    folder = os.path.join(work, "models", name)
    paths = tuple(os.path.join(folder, name + ext) for ext in (".onnx", ".prototxt", ".caffemodel"))
    stamp = os.path.join(folder, "shape.txt")
    wanted = "x".join(map(str, shape))
    if all(os.path.isfile(p) for p in paths) and os.path.isfile(stamp) and open(stamp).read() == wanted:
        return (*paths, "verified")
    rec = families.run_net(
        name,
        shape=shape,
        runtimes=(),
        keep_dir=os.path.join(work, "models"),
        work_dir=os.path.abspath(work),
    )
    if rec["outcome"] != "verified":
        return (*paths, rec["outcome"] + ": " + rec.get("message", "")[:200])
    with open(stamp, "w") as f:
        f.write(wanted)
    return (*paths, "verified")


def bench(name: str, shape, work: str, repeat: int, warmup: int) -> dict:
    import cv2

    onnx_path, prototxt, caffemodel, outcome = _files(name, shape, work)
    row = {"net": name, "input": "x".join(map(str, shape))}
    if outcome != "verified":
        row["note"] = outcome
        return row
    caffe = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    try:
        ref = cv2.dnn.readNetFromONNX(onnx_path)
    except cv2.error as err:
        row["note"] = "OpenCV cannot load the ONNX file: " + " ".join(str(err).split())[-160:]
        return row
    row["layers"] = len(caffe.getLayerNames())
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    import onnx

    model = onnx.load(onnx_path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    onnx_in = [i.name for i in model.graph.input if i.name not in inits][0]
    import json

    names = json.load(open(prototxt[: -len(".prototxt")] + ".names.json"))
    caffe_feeds = {names.get(onnx_in, onnx_in): x}
    onnx_feeds = {onnx_in: x}
    caffe_out = list(caffe.getUnconnectedOutLayersNames())
    onnx_out = list(ref.getUnconnectedOutLayersNames())
    t_caffe, t_onnx = [], []
    try:
        for i in range(warmup + repeat):
            a = _time_forward(caffe, caffe_feeds, caffe_out)
            b = _time_forward(ref, onnx_feeds, onnx_out)
            if i >= warmup:
                t_caffe.append(a)
                t_onnx.append(b)
    except cv2.error as err:
        row["note"] = "OpenCV cannot run the ONNX file: " + " ".join(str(err).split())[-160:]
        return row
    row["caffe_ms"] = 1e3 * statistics.median(t_caffe)
    row["onnx_ms"] = 1e3 * statistics.median(t_onnx)
    row["ratio"] = row["caffe_ms"] / row["onnx_ms"]
    return row


ZOO_TRANSFORMERS = ("convnext_tiny", "swin_t", "swin_v2_t", "vit_b_16", "maxvit_t")


def bench_zoo(name: str, work: str, repeat: int) -> dict:
    """One torchvision zoo model at the zoo's input size: layers, Caffe / ONNX medians on OpenCV, ratio."""
    from onnx2caffe import zoo

    rec = zoo.run_model(name, runtimes=["opencv"], keep_dir=os.path.join(work, "zoo"), deploy_repeat=repeat)
    row = {"net": name, "input": "x".join(map(str, rec["input_shape"]))}
    d = rec.get("deploy") or {}
    if rec["outcome"] != "verified" or "error" in d:
        row["note"] = rec.get("message") or d.get("error") or rec["outcome"]
        return row
    row.update(layers=rec["caffe_layers"], caffe_ms=d["caffe_ms"], onnx_ms=d["onnx_ms"], ratio=d["ratio"])
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default=None, help="comma-separated family nets (default: all)")
    p.add_argument("--repeat", type=int, default=20, help="timed forwards of each model (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--work", default=os.path.join("out", "families-work"), help="kept models, package caches")
    p.add_argument("--ci", action="store_true", help="the CI subset's nets and input shapes (quick)")
    p.add_argument(
        "--zoo", default=None, help="torchvision zoo models (comma list, or 'transformers') instead"
    )
    args = p.parse_args(argv)
    if args.zoo:
        return _main_zoo(args)

    os.makedirs(args.work, exist_ok=True)
    from onnx2caffe.families_models import family_nets, get_net, isolate_package_files

    isolate_package_files(os.path.abspath(args.work))
    import cv2

    from onnx2caffe import families

    cv2.setNumThreads(1)
    if args.nets:
        names = [n for n in args.nets.split(",") if n]
    else:
        names = list(families.CI_NETS) if args.ci else [n.name for n in family_nets()]
    print(f"OpenCV {cv2.__version__}, cv2.setNumThreads(1), default backend/target; median of {args.repeat}")
    print(f"{'net':36s} {'input':>14s} {'layers':>6s} {'caffe ms':>9s} {'onnx ms':>9s} {'ratio':>6s}")
    rows = []
    for name in names:
        net = get_net(name)
        shape = net.ci_shape if args.ci and net.ci_shape else net.shape
        row = bench(name, shape, args.work, args.repeat, args.warmup)
        rows.append(row)
        if "ratio" in row:
            flag = "" if row["ratio"] <= GOAL else f"  > {GOAL}x"
            print(
                f"{name:36s} {row['input']:>14s} {row['layers']:6d} {row['caffe_ms']:9.2f} {row['onnx_ms']:9.2f} "
                f"{row['ratio']:6.2f}{flag}"
            )
        else:
            print(f"{name:36s} {row['input']:>14s}  -- {row['note']}")
        sys.stdout.flush()
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    if ratios:
        worst = max((r for r in rows if "ratio" in r), key=lambda r: r["ratio"])
        over = [r["net"] for r in rows if r.get("ratio", 0) > GOAL]
        print(
            f"{len(ratios)} nets timed: ratio median {statistics.median(ratios):.2f}, worst {worst['ratio']:.2f} "
            f"({worst['net']}); over {GOAL}x: {', '.join(over) if over else 'none'}"
        )
    return 0


def _main_zoo(args) -> int:
    import cv2

    names = ZOO_TRANSFORMERS if args.zoo == "transformers" else [n for n in args.zoo.split(",") if n]
    print(f"OpenCV {cv2.__version__}, cv2.setNumThreads(1), default backend/target; median of {args.repeat}")
    print(f"{'model':20s} {'input':>14s} {'layers':>6s} {'caffe ms':>9s} {'onnx ms':>9s} {'ratio':>6s}")
    for name in names:
        row = bench_zoo(name, args.work, args.repeat)
        if "ratio" in row:
            print(
                f"{name:20s} {row['input']:>14s} {row['layers']:6d} {row['caffe_ms']:9.1f} {row['onnx_ms']:9.1f} "
                f"{row['ratio']:6.2f}"
            )
        else:
            print(f"{name:20s} {row['input']:>14s}  -- {row['note']}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
