"""PyTorch -> Caffe -> ncnn float32 and int8, and how much int8 loses, per calibration method.

For each net: export and convert (`onnx2caffe convert`, checked against onnxruntime on the Caffe runtimes and
on ncnn float32), write the ncnn model (`onnx2caffe ncnn`), calibrate with every method from one set of
forward passes and evaluate int8 against float32 on ncnn with held-out images (`onnx2caffe calibrate
--method all --evaluate`), then write the int8 ncnn model of the best method (`onnx2caffe ncnn --table`).

Nets: MTCNN's P-Net, R-Net and O-Net with the real weights facenet-pytorch ships in its wheel, and torchvision
nets (random weights: nothing is downloaded). Images: scikit-image's bundled LFW face subset (faces for R-Net
and O-Net, plus crops of the bundled photos for P-Net) and the bundled photos (crops, for the torchvision
nets); first half for calibration, second half held out.

    python examples/ncnn_int8.py [-o OUT] [--nets pnet,rnet,onet,resnet18] [--images N] [--fast] [--json FILE]

R-Net and O-Net permute their feature map before the first dense layer; the converter folds that permute into
the dense layer's weights (no Permute layer, the same function).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

MTCNN = {"pnet": ("PNet", 48), "rnet": ("RNet", 24), "onet": ("ONet", 48)}
MTCNN_MEAN, MTCNN_NORM = 127.5, 0.0078125  # facenet-pytorch: (x - 127.5) / 128, RGB
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB
IMAGENET_NORM = (1 / 58.395, 1 / 57.12, 1 / 57.375)
TORCHVISION_SIZE = 112


def mtcnn_net(name: str):
    """facenet-pytorch's P/R/O-Net with the weights its wheel ships. R-Net and O-Net permute their feature map
    (N, C, H, W) -> (N, W, H, C) before the first dense layer: the converter folds that Transpose into the dense
    layer's weight columns (pass fold_transpose_into_gemm), so the net is exported as it is."""
    from facenet_pytorch.models import mtcnn

    return getattr(mtcnn, MTCNN[name][0])().eval()


def faces(n: int, size: int) -> list[np.ndarray]:
    """n faces of scikit-image's LFW subset (25x25 grey) as size x size BGR uint8 images."""
    import cv2
    from skimage import data

    lfw = data.lfw_subset()[:n]
    out = []
    for f in lfw:
        g = np.clip(f * 255.0, 0, 255).astype(np.uint8)
        out.append(
            cv2.cvtColor(cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)
        )
    return out


PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "colorwheel",
    "motorcycle_left",
)


def photo_crops(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """n random square crops (a quarter to all of the short side) of scikit-image's bundled photos, BGR."""
    import cv2
    from skimage import data

    photos = []
    for name in PHOTOS:
        try:
            img = getattr(data, name)()
        except Exception:  # a photo this scikit-image does not bundle
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        photos.append(cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        s = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        out.append(cv2.resize(img[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA))
    return out


def write_images(folder: str, images: list[np.ndarray]) -> str:
    import cv2

    os.makedirs(folder, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(os.path.join(folder, f"{i:04d}.png"), img)
    return folder


def cli(*argv: str) -> None:
    from onnx2caffe.cli import main

    print("$ onnx2caffe " + " ".join(argv), flush=True)
    rc = main(list(argv))
    if rc != 0:
        raise SystemExit(f"onnx2caffe {argv[0]} failed ({rc})")


def run_net(name: str, out: str, n_images: int, methods: str, limit: int | None) -> dict:
    import torch

    from onnx2caffe.calibrate.evaluate import evaluate, format_evaluation
    from onnx2caffe.cli_calibrate import table_paths
    from onnx2caffe.export import export

    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    if name in MTCNN:
        size = MTCNN[name][1]
        model = mtcnn_net(name)
        mean, norm = [MTCNN_MEAN] * 3, [MTCNN_NORM]
        half = n_images // 2
        imgs = (
            faces(n_images, size)
            if name != "pnet"
            else faces(half, size) + photo_crops(n_images - half, size)
        )
        if name == "pnet":  # interleave so that both halves hold faces and photos
            imgs = [imgs[i // 2] if i % 2 == 0 else imgs[half + i // 2] for i in range(n_images)]
    else:
        from onnx2caffe import zoo

        size = TORCHVISION_SIZE
        model = zoo.build_model(name).eval()
        mean, norm = list(IMAGENET_MEAN), list(IMAGENET_NORM)
        imgs = photo_crops(n_images, size)
    torch.manual_seed(0)
    cal = write_images(os.path.join(folder, "calibration"), imgs[0::2])
    held = write_images(os.path.join(folder, "held_out"), imgs[1::2])
    prefix = os.path.join(folder, name)
    export(model, prefix + ".onnx", [(1, 3, size, size)])
    cli("convert", prefix + ".onnx", "-o", prefix)
    cli("verify", prefix + ".onnx", prefix + ".prototxt", prefix + ".caffemodel", "--runtime", "ncnn")
    cli("ncnn", prefix + ".prototxt", prefix + ".caffemodel", "-o", prefix + "-fp32")
    table = prefix + ".table"
    args = ["calibrate", "--proto", prefix + ".prototxt", "--model", prefix + ".caffemodel", "--images", cal]
    args += ["--output", table, "--method", methods, "--pixel", "RGB", "--quiet", "--mean", *map(str, mean)]
    args += ["--norm", *map(str, norm)]
    cli(*args)  # the tables; the evaluation below is what `--evaluate held_out` prints
    outputs = table_paths(
        table, ["kl", "kl-legacy", "aciq", "minmax", "percentile"] if methods == "all" else [methods]
    )
    ev = evaluate(
        prefix + ".prototxt",
        prefix + ".caffemodel",
        outputs,
        held,
        mean=mean,
        norm=norm,
        pixel="RGB",
        limit=limit,
    )
    print(format_evaluation(ev))
    best = max(ev.methods, key=lambda me: min(o.cosine_mean for o in me.outputs))
    cli("ncnn", prefix + ".prototxt", prefix + ".caffemodel", "--table", best.table, "-o", prefix + "-int8")
    return {"net": name, "size": size, "seconds": time.perf_counter() - t0, "evaluation": ev.to_json()}


def summary_table(records: list[dict]) -> str:
    """Markdown: per net, output and method, the mean / worst cosine, mean max_rel and top-1 agreement."""
    lines = [
        "| net | output | method | cos mean | cos worst | max_rel mean | top-1 | most drift |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        for me in rec["evaluation"]["methods"]:
            drift = me["worst_layer"]["layer"] if me["worst_layer"] else "-"
            for o in me["outputs"]:
                top1 = "-" if o["top1_agreement"] is None else f"{100 * o['top1_agreement']:.1f}%"
                lines.append(
                    f"| {rec['net']} | {o['blob']} | {me['method']} | {o['cosine_mean']:.5f} | "
                    f"{o['cosine_worst']:.5f} | {o['max_rel_mean']:.4f} | {top1} | {drift} |"
                )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default=os.path.join("out", "ncnn_int8"))
    ap.add_argument("--nets", default="pnet,rnet,onet,resnet18,mobilenet_v2,squeezenet1_0")
    ap.add_argument(
        "--images", type=int, default=200, help="images per net (half calibration, half held out)"
    )
    ap.add_argument("--methods", default="all")
    ap.add_argument("--fast", action="store_true", help="MTCNN only, 40 images, kl")
    ap.add_argument("--json", default=None, help="also write every record to this JSON file")
    args = ap.parse_args(argv)
    nets = args.nets.split(",")
    if args.fast:
        nets, args.images, args.methods = [n for n in nets if n in MTCNN], 40, "kl"
    records = [run_net(n, args.out, args.images, args.methods, None) for n in nets]
    print()
    print(summary_table(records))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
