"""Whole-model tests of the converter: PyTorch -> ONNX (both exporters) -> Caffe, checked on real Caffe and OpenCV.

Every net has random weights (seeded) and randomised BatchNorm statistics and affine parameters, so no
BatchNorm is an identity. The exported, simplified ONNX model is first checked against PyTorch (the exporter's
own check, 1e-4 relative), then converted and run on every installed Caffe runtime against onnxruntime.

Tolerances: cosine >= 0.99999 and max |caffe - onnxruntime| <= 1e-4 * max |onnxruntime output|. Caffe
(im2col + BLAS), OpenCV and onnxruntime (MLAS) sum float32 products in different orders; over the up to ~100
layers here that gives relative differences of 1e-6 to 1e-5, so 1e-4 has a margin of 10x while a wrong layer
(a pooling off by one pixel, a missing BatchNorm term) is off by 1e-2 or more.

Batch 1 keeps the run short on a 2-core CI machine; the runtimes are the session-wide shared instances
(one pycaffe worker for the whole test run). Each test prints its timings and worst agreement per runtime
(run with -s to see them).
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("onnx_testing")

from onnx2caffe.exporters.torch_export import randomize_batchnorm, torch_to_onnx  # noqa: E402

from onnx2caffe.convert import convert  # noqa: E402
from onnx2caffe.errors import ToleranceError  # noqa: E402

pytestmark = pytest.mark.slow

MAX_REL = 1e-4  # see the module docstring
MIN_COSINE = 0.99999
SEED = 0


class SEBlock(torch.nn.Module):
    """conv-bn-relu followed by a squeeze-and-excitation gate (1x1 convs or Linear layers)."""

    def __init__(self, cin: int, cout: int, stride: int, linear_gate: bool):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(inplace=True),
        )
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.linear_gate = linear_gate
        hidden = cout // 4
        if linear_gate:
            self.fc1, self.fc2 = torch.nn.Linear(cout, hidden), torch.nn.Linear(hidden, cout)
        else:
            self.fc1, self.fc2 = torch.nn.Conv2d(cout, hidden, 1), torch.nn.Conv2d(hidden, cout, 1)

    def forward(self, x):
        x = self.body(x)
        s = self.pool(x)
        if self.linear_gate:
            s = torch.flatten(s, 1)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        if self.linear_gate:
            s = s.view(s.shape[0], s.shape[1], 1, 1)
        return x * s


class SENet(torch.nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU(inplace=True)
        )
        self.block1 = SEBlock(16, 32, 1, linear_gate=False)
        self.block2 = SEBlock(32, 32, 2, linear_gate=True)
        self.head = torch.nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        # The gated feature map is an output too: the logits of a random net are dominated by the
        # input-independent mean of its features, the feature map is not.
        return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)), x


def _torchvision(name: str, **kwargs):
    return lambda: torchvision.models.get_model(name, weights=None, **kwargs)


NETS = {
    "alexnet": (_torchvision("alexnet"), (1, 3, 224, 224)),
    "vgg11": (_torchvision("vgg11"), (1, 3, 224, 224)),
    "resnet18": (_torchvision("resnet18"), (1, 3, 224, 224)),
    "inception_v3": (_torchvision("inception_v3", aux_logits=False, init_weights=False), (1, 3, 299, 299)),
    "se_net": (SENet, (1, 3, 64, 64)),
}


def _worst(report: list[dict]) -> dict[str, tuple[float, float]]:
    """runtime -> (largest max_rel, smallest cosine) over its outputs."""
    worst: dict[str, tuple[float, float]] = {}
    for r in report:
        rel, cos = worst.get(r["runtime"], (0.0, 1.0))
        worst[r["runtime"]] = (max(rel, r["max_rel"]), min(cos, r["cosine"]))
    return worst


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("net", list(NETS))
def test_model(net, exporter, tmp_path, caffe_runtimes):
    build, shape = NETS[net]
    torch.manual_seed(SEED)
    model = randomize_batchnorm(build(), seed=SEED).eval()

    t0 = time.perf_counter()
    exported = torch_to_onnx(model, [shape], exporter=exporter, seed=SEED)
    t1 = time.perf_counter()
    assert all(r["ok"] for r in exported.report)
    try:
        result = convert(
            exported.model,
            str(tmp_path / net),
            runtimes=caffe_runtimes,
            check=True,
            seed=SEED,
            max_rel=MAX_REL,
            min_cosine=MIN_COSINE,
        )
    except ToleranceError as err:
        rows = getattr(err, "result", None)
        detail = (
            ""
            if rows is None
            else "; ".join(
                f"{r['runtime']}/{r['output']}: max_rel {r['max_rel']:.3g} cos {r['cosine']:.7f}"
                for r in rows.report
            )
        )
        pytest.fail(f"{net} ({exporter}): {err} [{detail}]")
    t2 = time.perf_counter()

    # Every runtime reported every output, and each agrees within tolerance.
    onnx_outputs = [o.name for o in exported.model.graph.output]
    assert {(r["runtime"], r["output"]) for r in result.report} == {
        (rt.name, o) for rt in caffe_runtimes for o in onnx_outputs
    }
    for r in result.report:
        assert r["max_rel"] <= MAX_REL and r["cosine"] >= MIN_COSINE, r
    worst = ", ".join(
        f"{rt} max_rel {rel:.2e} cos {cos:.8f}" for rt, (rel, cos) in sorted(_worst(result.report).items())
    )
    print(
        f"\n[model] {net:<13} {exporter:<11} export {t1 - t0:5.1f}s  convert+check {t2 - t1:5.1f}s  "
        f"layers {len(result.net.layers):4d}  {worst}"
    )
