"""Test helper: run a converted model on CHOSEN inputs (value ranges where a composition may break: large
magnitudes, zeros, the overflow edge of exp, the range where log1p matters) on every installed Caffe runtime
and compare each output with onnxruntime element by element.

check_conversion (onnx_testing.py) feeds one seeded standard-normal input; the element-wise ops need their
edge ranges too, and a global max_rel (error / largest output) hides a wrong small output next to a large
one. check_on_inputs asserts, for every element,

    |caffe - onnxruntime| <= rtol * |onnxruntime| + atol

and returns the measured worst max_rel (global, the project's metric) and worst element-wise relative error
per runtime, so a test can state what it measured.
"""

from __future__ import annotations

import numpy as np
from onnx_testing import runtimes_here

from onnx2caffe.compare import metrics
from onnx2caffe.convert import convert, reference_outputs


def edge_values(low: float, high: float, n: int = 4096, seed: int = 0) -> np.ndarray:
    """float32 values in [low, high]: an even grid, random values spread over every decade of magnitude
    inside the range, and the endpoints and zero (when inside)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(low, high, n // 2)
    top = max(abs(low), abs(high))
    mags = top * 10.0 ** rng.uniform(-6, 0, n // 2)
    signs = rng.choice([-1.0, 1.0], n // 2)
    rand = np.clip(mags * signs, low, high)
    special = [v for v in (0.0, low, high) if low <= v <= high]
    return np.concatenate([grid, rand, special]).astype(np.float32)


def check_on_inputs(model, tmp_path, feeds: dict, rtol: float, atol: float = 0.0, runtimes=None) -> dict:
    """Convert `model`, run onnxruntime and every installed runtime on `feeds` (input name -> array of the
    input's shape), assert the element-wise bound for every output, return {runtime: (max_rel, max_elem_rel)}.
    Non-finite values must agree exactly (same infinity, or NaN on both)."""
    rts = runtimes_here() if runtimes is None else runtimes
    result = convert(model, str(tmp_path / "model"), check=False)
    outputs = [o.name for o in model.graph.output]
    feeds = {k: np.ascontiguousarray(v, np.float32) for k, v in feeds.items()}
    refs = reference_outputs(model.SerializeToString(), feeds, outputs)
    measured = {}
    for rt in rts:
        with rt.load(result.prototxt, result.caffemodel) as loaded:
            got = loaded.run(
                {result.name_map[k]: v for k, v in feeds.items()},
                outputs=[result.name_map[o] for o in outputs],
            )
        worst = (0.0, 0.0)
        for o in outputs:
            ref = np.asarray(refs[o], np.float64)
            out = np.asarray(got[result.name_map[o]], np.float64).reshape(ref.shape)
            finite = np.isfinite(ref)
            bad_nonfinite = ~finite & ~((ref == out) | (np.isnan(ref) & np.isnan(out)))
            assert not bad_nonfinite.any(), (
                f"{rt.name} {o}: non-finite mismatch at inputs "
                f"{[v.reshape(-1)[bad_nonfinite.reshape(-1)][:4] for v in feeds.values()]}: "
                f"onnxruntime {ref[bad_nonfinite][:4]}, caffe {out[bad_nonfinite][:4]}"
            )
            r, c = ref[finite], out[finite]
            err = np.abs(r - c)
            limit = rtol * np.abs(r) + atol
            if err.size and (err > limit).any():
                i = int(np.argmax(err - limit))
                x = [v.reshape(-1)[finite.reshape(-1)][i] for v in feeds.values() if v.size == ref.size]
                raise AssertionError(
                    f"{rt.name} {o}: |error| {err[i]:.3g} > {rtol:g} * |{r[i]:.9g}| + {atol:g} (caffe {c[i]:.9g}, "
                    f"input {x})"
                )
            m = metrics(r, c) if r.size else {"max_rel": 0.0}
            with np.errstate(divide="ignore", invalid="ignore"):
                elem = np.where(r != 0, err / np.abs(r), np.where(err == 0, 0.0, np.inf))
            worst = (max(worst[0], m["max_rel"]), max(worst[1], float(elem.max()) if elem.size else 0.0))
        measured[rt.name] = worst
    return measured
