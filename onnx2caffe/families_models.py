"""The family zoo's nets: what each one is, where it comes from and how it is built (no export, no conversion).

Every net is built by a ``module:callable`` of this module, the same spec a user gives to ``onnx2caffe export``
(e.g. ``onnx2caffe export onnx2caffe.families_models:ultralytics_yolo --model-arg cfg=yolo11n.yaml ...``), so the
family zoo runs the exact path users take. Weights are random (seeded, with random BatchNorm statistics: see
exporters/torch_export.randomize_batchnorm) except where the package ships real ones (facenet-pytorch's MTCNN).
Nothing is downloaded: ultralytics builds from its yaml files, smp gets ``encoder_weights=None``, torchvision
``weights=None, weights_backbone=None``.

Packages that write files when imported or used (ultralytics' settings file, torch hub / Hugging Face caches) are
pointed into a folder of the caller's choosing by :func:`isolate_package_files` before they are imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SPEC = "onnx2caffe.families_models"


@dataclass(frozen=True)
class FamilyNet:
    """One net of the family zoo.

    name: the record name (``make families-NAME``); family: the table section; package: the distribution it
    comes from (its version goes into the record); builder and kwargs: ``SPEC:builder`` with these model
    arguments; shape: the input shape (N, C, H, W); exporter: "torchscript" (onnx2caffe export, opset 13),
    "dynamo" (opset 18) or "ultralytics" (ultralytics' own ONNX exporter, its default opset, unsimplified);
    weights: "random" or where the real weights come from; ci_shape: a smaller input for the CI subset; module:
    where the builder is (this module unless a test brings its own)."""

    name: str
    family: str
    package: str
    builder: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] = (1, 3, 224, 224)
    exporter: str = "torchscript"
    weights: str = "random"
    ci_shape: tuple[int, ...] | None = None
    module: str = SPEC  # where builder lives (a module path or a path/to/file.py)

    @property
    def spec(self) -> str:
        return f"{self.module}:{self.builder}"


def isolate_package_files(folder: str) -> dict[str, str]:
    """Point the settings and cache folders of ultralytics, torch hub and Hugging Face into `folder` (only
    variables not already set), and keep them offline. Call before those packages are imported; returns what
    was set."""
    values = {
        "YOLO_CONFIG_DIR": os.path.join(folder, "ultralytics"),
        "YOLO_OFFLINE": "1",
        "TORCH_HOME": os.path.join(folder, "torch"),
        "HF_HOME": os.path.join(folder, "huggingface"),
        "HF_HUB_OFFLINE": "1",
        "MPLCONFIGDIR": os.path.join(folder, "matplotlib"),
    }
    set_now = {}
    for key, value in values.items():
        if key not in os.environ:
            os.environ[key] = value
            set_now[key] = value
    for key in ("YOLO_CONFIG_DIR", "TORCH_HOME", "HF_HOME", "MPLCONFIGDIR"):
        os.makedirs(os.environ[key], exist_ok=True)
    return set_now


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _random_bn(model, seed: int):
    from onnx2caffe.exporters.torch_export import randomize_batchnorm

    return randomize_batchnorm(model, seed=seed).eval()


# ------------------------------------------------------------------------------------------------ ultralytics


def _quiet_ultralytics() -> None:
    import logging

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    logging.getLogger("ultralytics").setLevel(logging.ERROR)


def ultralytics_yolo_object(cfg: str, seed: int = 0):
    """``ultralytics.YOLO(cfg)`` built from the package's yaml (random weights), with random BatchNorm
    statistics; what ultralytics' own exporter is given."""
    _quiet_ultralytics()
    from ultralytics import YOLO

    _seeded(seed)
    yolo = YOLO(cfg)
    _random_bn(yolo.model, seed)
    return yolo


def ultralytics_yolo(cfg: str = "yolov8n.yaml", seed: int = 0, imgsz: int = 640):
    """An ultralytics model built from its yaml, prepared as ultralytics' ONNX exporter prepares it: the NMS-free
    one-to-one branch off (its default ``nms=None`` for ONNX), Conv + BatchNorm fused, the heads in export mode
    for the "onnx" format (decoded boxes and scores, no NMS) and C2f blocks on ``forward_split``."""
    yolo = ultralytics_yolo_object(cfg, seed)
    from ultralytics.nn.modules import C2f, Classify, Detect

    model = yolo.model
    for p in model.parameters():
        p.requires_grad = False
    model.eval()
    if hasattr(model, "end2end"):
        model.end2end = False
    model = model.fuse(verbose=False, imgsz=imgsz)
    for m in model.modules():
        if isinstance(m, Classify):
            m.export = True
            m.format = "onnx"
        if isinstance(m, Detect):  # Segment, Pose, OBB, v10Detect too
            m.dynamic = False
            m.export = True
            m.format = "onnx"
            m.shape = None
            if hasattr(m, "xyxy"):
                m.xyxy = False
        elif isinstance(m, C2f):
            m.forward = m.forward_split
    return model


# ------------------------------------------------------------------------------------------------ smp


def smp_model(arch: str = "Unet", encoder: str = "resnet18", classes: int = 1, seed: int = 0):
    """A segmentation_models_pytorch model, random weights (``encoder_weights=None``)."""
    import segmentation_models_pytorch as smp

    _seeded(seed)
    model = getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=classes)
    return _random_bn(model, seed)


# ------------------------------------------------------------------------------------------------ torchvision


def _head_outputs(model):
    import torch

    class RawHeads(torch.nn.Module):
        """The detector's backbone (with FPN) and head, returning the head's raw tensors in the head's order
        (no anchor decoding, no NMS, no image transform: those are the detector's post-processing)."""

        def __init__(self, det):
            super().__init__()
            self.backbone = det.backbone
            self.head = det.head

        def forward(self, x):
            feats = self.backbone(x)
            feats = list(feats.values()) if isinstance(feats, dict) else list(feats)
            out = self.head(feats)
            return tuple(out.values()) if isinstance(out, dict) else out

    return RawHeads(model)


def torchvision_detection(name: str = "retinanet_resnet50_fpn", seed: int = 0):
    """A torchvision detector's backbone + head up to the raw head outputs, random weights
    (``weights=None, weights_backbone=None``)."""
    import torchvision

    _seeded(seed)
    det = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    return _random_bn(_head_outputs(det), seed)


# ------------------------------------------------------------------------------------------------ facenet-pytorch


def mtcnn(net: str = "pnet", seed: int = 0):
    """facenet-pytorch's MTCNN stage ("pnet", "rnet" or "onet") with the weights its wheel ships (seed unused)."""
    from facenet_pytorch.models import mtcnn as m

    cls = {"pnet": m.PNet, "rnet": m.RNet, "onet": m.ONet}[net]
    return cls(pretrained=True).eval()


def inception_resnet_v1(seed: int = 0):
    """facenet-pytorch's InceptionResnetV1 (face embeddings, L2-normalised). Its VGGFace2 / CASIA weights are not
    in the wheel (they are downloaded on request), so the weights are random."""
    from facenet_pytorch import InceptionResnetV1

    _seeded(seed)
    return _random_bn(InceptionResnetV1(pretrained=None, classify=False), seed)


# ------------------------------------------------------------------------------------------------ nets written here


def local_net(name: str = "crnn", seed: int = 0, size: int = 128):
    """A net of onnx2caffe.family_nets by its family-zoo name, random weights (size: the input size of nets whose
    decode holds constant grids)."""
    from onnx2caffe import family_nets as fn

    builders = {
        "crnn": lambda: fn.CRNN(rnn="lstm"),
        "crnn-gru": lambda: fn.CRNN(rnn="gru"),
        "espcn": lambda: fn.ESPCN(),
        "reflect-sr": lambda: fn.ReflectSR(),
        "bisenet-lite": lambda: fn.BiSeNetLite(),
        "cbam-net": lambda: fn.CBAMNet(),
        "sk-net": lambda: fn.SKNet(),
        "yolov5-focus": lambda: fn.FocusYOLOv5(size=size),
    }
    _seeded(seed)
    return _random_bn(builders[name](), seed)


# ------------------------------------------------------------------------------------------------ the list

_YOLO = [
    ("yolov5nu", "yolov5nu.yaml"),
    ("yolov8n", "yolov8n.yaml"),
    ("yolov8n-seg", "yolov8n-seg.yaml"),
    ("yolov8n-pose", "yolov8n-pose.yaml"),
    ("yolov8n-cls", "yolov8n-cls.yaml"),
    ("yolo11n", "yolo11n.yaml"),
    ("yolo11n-seg", "yolo11n-seg.yaml"),
    ("yolo11n-pose", "yolo11n-pose.yaml"),
    ("yolo11n-cls", "yolo11n-cls.yaml"),
    ("yolov10n", "yolov10n.yaml"),
    ("yolov3-tinyu", "yolov3-tinyu.yaml"),
]
_SMP = ["Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus", "Linknet", "PAN", "MAnet"]
_TV_DET = [
    ("retinanet_resnet50_fpn", 320),
    ("fcos_resnet50_fpn", 320),
    ("ssd300_vgg16", 300),
    ("ssdlite320_mobilenet_v3_large", 320),
]


def _yolo_nets() -> Iterator[FamilyNet]:
    for name, cfg in _YOLO:
        size = 224 if name.endswith("-cls") else 320
        ci = 64 if name.endswith("-cls") else 128
        for exporter in ("torchscript", "ultralytics"):
            yield FamilyNet(
                name=name if exporter == "torchscript" else f"{name}.ultralytics",
                family="ultralytics",
                package="ultralytics",
                builder="ultralytics_yolo",
                kwargs={"cfg": cfg, "imgsz": size},
                shape=(1, 3, size, size),
                exporter=exporter,
                ci_shape=(1, 3, ci, ci),
            )


def _smp_nets() -> Iterator[FamilyNet]:
    for arch in _SMP:
        for encoder in ("resnet18", "mobilenet_v2"):
            # PSPNet pools to bins 1, 2, 3 and 6 of its 1/8 feature map: the TorchScript exporter needs a map size
            # divisible by each bin (adaptive pooling with equal windows), so 384 (48x48) instead of 256 (32x32).
            size = 384 if arch == "PSPNet" else 256
            yield FamilyNet(
                name=f"smp-{arch.lower()}-{encoder}",
                family="segmentation_models_pytorch",
                package="segmentation-models-pytorch",
                builder="smp_model",
                kwargs={"arch": arch, "encoder": encoder},
                shape=(1, 3, size, size),
                ci_shape=(1, 3, 192 if arch == "PSPNet" else 64, 192 if arch == "PSPNet" else 64),
            )


def family_nets() -> list[FamilyNet]:
    """Every net of the family zoo, in table order (family by family)."""
    nets = list(_yolo_nets()) + list(_smp_nets())
    nets += [
        FamilyNet(
            name=name,
            family="torchvision detection",
            package="torchvision",
            builder="torchvision_detection",
            kwargs={"name": name},
            shape=(1, 3, size, size),
            # SSDlite at 128 would give its last depthwise convolutions 1x1 inputs, which OpenCV 4.14 gets wrong
            ci_shape=(1, 3, 192, 192) if name.startswith("ssdlite") else (1, 3, 128, 128),
        )
        for name, size in _TV_DET
    ]
    nets += [
        FamilyNet(
            "mtcnn-pnet",
            "facenet-pytorch",
            "facenet-pytorch",
            "mtcnn",
            {"net": "pnet"},
            (1, 3, 48, 48),
            weights="facenet-pytorch wheel",
            ci_shape=(1, 3, 24, 24),
        ),
        FamilyNet(
            "mtcnn-rnet",
            "facenet-pytorch",
            "facenet-pytorch",
            "mtcnn",
            {"net": "rnet"},
            (1, 3, 24, 24),
            weights="facenet-pytorch wheel",
        ),
        FamilyNet(
            "mtcnn-onet",
            "facenet-pytorch",
            "facenet-pytorch",
            "mtcnn",
            {"net": "onet"},
            (1, 3, 48, 48),
            weights="facenet-pytorch wheel",
        ),
        FamilyNet(
            "inception_resnet_v1",
            "facenet-pytorch",
            "facenet-pytorch",
            "inception_resnet_v1",
            {},
            (1, 3, 160, 160),
            ci_shape=(1, 3, 80, 80),
        ),
    ]
    local = [
        ("crnn", "text recognition", (1, 1, 32, 128), (1, 1, 32, 64)),
        ("crnn-gru", "text recognition", (1, 1, 32, 128), (1, 1, 32, 64)),
        ("espcn", "super-resolution", (1, 1, 96, 96), (1, 1, 32, 32)),
        ("reflect-sr", "super-resolution", (1, 3, 96, 96), (1, 3, 32, 32)),
        ("bisenet-lite", "attention and segmentation blocks", (1, 3, 256, 256), (1, 3, 64, 64)),
        ("cbam-net", "attention and segmentation blocks", (1, 3, 128, 128), (1, 3, 64, 64)),
        ("sk-net", "attention and segmentation blocks", (1, 3, 128, 128), (1, 3, 64, 64)),
    ]
    nets += [
        FamilyNet(name, family, "onnx2caffe", "local_net", {"name": name}, shape, ci_shape=ci)
        for name, family, shape, ci in local
    ]
    # the grids of its decode are built for one input size: no smaller CI shape
    nets.append(
        FamilyNet(
            "yolov5-focus",
            "detection heads written here",
            "onnx2caffe",
            "local_net",
            {"name": "yolov5-focus", "size": 128},
            (1, 3, 128, 128),
        )
    )
    return nets


def get_net(name: str) -> FamilyNet:
    for net in family_nets():
        if net.name == name:
            return net
    import difflib

    names = [n.name for n in family_nets()]
    close = difflib.get_close_matches(name, names, n=3)
    raise KeyError(f"unknown family net {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))


# distributions a package may be installed as (ultralytics also comes as its opencv-headless build)
_DISTRIBUTIONS = {"ultralytics": ("ultralytics", "ultralytics-opencv-headless")}


def package_version(package: str) -> str:
    """'package version' of the installed distribution (the source column of docs/families.md)."""
    if package == "onnx2caffe":
        return "onnx2caffe.family_nets"
    from importlib import metadata

    for dist in _DISTRIBUTIONS.get(package, (package,)):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return f"{dist} {metadata.version(dist)}"
    return package
