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


@HEAVY
@pytest.mark.parametrize("script", ["vgg.py", "inception_v3.py"])
def test_heavy_examples(script, tmp_path):
    _run_example(script, tmp_path)
