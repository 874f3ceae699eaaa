"""The example scripts in examples/ run end to end (export, convert, verify on every installed runtime) and print
an agreement within the converter's tolerance (max_rel <= 1e-4; float32 summation order differs between runtimes,
1e-7 - 1e-5 relative here). Every example runs in --fast mode on every test run (smaller inputs; VGG-11 for VGG-16); the
full-size VGG-16 and Inception v3 at 299 take minutes and run only with ONNX2CAFFE_HEAVY_EXAMPLES=1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from onnx2caffe.runtimes import available_runtimes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_REL = 1e-4
HEAVY = pytest.mark.skipif(
    os.environ.get("ONNX2CAFFE_HEAVY_EXAMPLES") != "1", reason="slow example: set ONNX2CAFFE_HEAVY_EXAMPLES=1"
)


def _run_example(script: str, tmp_path, *args: str) -> str:
    if not available_runtimes():
        pytest.skip("no Caffe runtime installed")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), "-o", str(tmp_path), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )
    print(f"\n{script} {' '.join(args)}: {time.perf_counter() - t0:.1f}s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"agreement: worst max_rel (\S+) over (\d+) runtime", proc.stdout)
    assert m, proc.stdout[-2000:]
    assert float(m.group(1)) <= MAX_REL
    assert int(m.group(2)) == len(available_runtimes())
    return proc.stdout


@pytest.mark.parametrize(
    "script, name",
    [
        ("alexnet.py", "alexnet"),
        ("resnet.py", "resnet18"),
        ("se_net.py", "se_net"),
        ("vgg.py", "vgg11_bn"),
        ("inception_v3.py", "inception_v3"),
    ],
)
def test_fast_examples(script, name, tmp_path):
    _run_example(script, tmp_path, "--fast")
    for ext in (".onnx", ".prototxt", ".caffemodel"):
        assert (tmp_path / f"{name}{ext}").is_file()


# The family examples (one per family of the family zoo, see onnx2caffe/families.py), each in --fast mode.
FAMILY_EXAMPLES = [
    ("yolo.py", ["yolov8n"]),
    ("smp_segmentation.py", ["smp_unet_resnet18"]),
    ("detection_heads.py", ["ssdlite320_mobilenet_v3_large"]),
    ("mtcnn.py", ["mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"]),
    ("crnn.py", ["crnn"]),
    ("super_resolution.py", ["espcn", "reflect_sr"]),
    ("attention_blocks.py", ["cbam_net", "sk_net", "bisenet_lite"]),
    ("timm_backbone.py", ["mobilenetv3_large_100"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("script, names", FAMILY_EXAMPLES, ids=[s for s, _ in FAMILY_EXAMPLES])
def test_family_examples(script, names, tmp_path):
    """Export + convert + verify in --fast mode; the packages' settings and caches stay in the output folder.
    About 10-30 s each on 2 cores (mostly imports and the export check)."""
    if not available_runtimes():
        pytest.skip("no Caffe runtime installed")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), "-o", str(tmp_path), "--fast"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.findall(r"agreement: worst max_rel (\S+) over (\d+) runtime", proc.stdout)
    assert len(found) == len(names), proc.stdout[-2000:]
    for rel, n in found:
        assert float(rel) <= MAX_REL and int(n) == len(available_runtimes())
    for name in names:
        for ext in (".onnx", ".prototxt", ".caffemodel"):
            assert (tmp_path / f"{name}{ext}").is_file()
    assert "$ onnx2caffe export " in proc.stdout and "$ onnx2caffe convert " in proc.stdout
    if script == "yolo.py":  # ultralytics' settings file went to the output folder, not the user's home
        assert (tmp_path / "package-files" / "ultralytics" / "Ultralytics" / "settings.json").is_file()


@HEAVY
@pytest.mark.parametrize("script", ["vgg.py", "inception_v3.py"])
def test_heavy_examples(script, tmp_path):
    _run_example(script, tmp_path)
