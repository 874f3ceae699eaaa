"""The error bound of the GELU (erf form) and Erf compositions (op_mappers/_erf.py), measured on the real runtimes.

Every float32 x with |x| <= --limit (default 10: 2.2e9 inputs, both signs) goes through the converted one-node
model on pycaffe and OpenCV in chunks; the result is compared with the exact function computed in float64
(scipy.special.erfc when installed, else math.erfc element by element: much slower). The tails beyond the limit
are swept with a stride (--tail-stride floats apart, up to the largest float32). Prints, per runtime and range:
the worst relative error (|x| >= 2^-120 and the exact result a normal float32), the worst |error| / |x|, the worst error in float32
ulps of the exact result, and where each occurs. --fit re-derives the rational and polynomial coefficients of
_erf.py (Lawson's iteratively reweighted least squares for the minimax relative error).

    .venv/bin/python benchmarks/gelu_bound.py [--op gelu|erf|both] [--limit 10] [--chunk 22] [--quick] [--fit]

--quick: every 64th float32 instead of every one (a few seconds per runtime).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np

TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
# relative errors are measured where the input and every intermediate are normal floats (OpenCV flushes
# subnormals to 0, so below this both compositions are only bounded absolutely, by |x|)
REL_FROM = 2.0**-120


def _special(name: str, z: np.ndarray) -> np.ndarray:
    """scipy.special.erf / erfc in float64 (math's element by element without scipy)."""
    try:
        import scipy.special

        return getattr(scipy.special, name)(z)
    except ImportError:
        return np.frompyfunc(getattr(math, name), 1, 1)(z).astype(np.float64)


def exact(op: str, x: np.ndarray) -> np.ndarray:
    """GELU(x) = x Phi(x) (from erfc of the tail: no cancellation) or erf(x), in float64."""
    x = x.astype(np.float64)
    if op == "gelu":
        q = 0.5 * _special("erfc", np.abs(x) / math.sqrt(2.0))
        return np.where(x < 0, x * q, x - x * q)
    return _special("erf", x)


def _model(op: str, shape):
    import onnx
    from onnx import helper

    node = helper.make_node("Gelu" if op == "gelu" else "Erf", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


class Stats:
    """Worst errors of one runtime over one range of inputs."""

    def __init__(self):
        self.rel = (0.0, None)
        self.abs_x = (0.0, None)
        self.ulp = (0.0, None)
        self.tiny_abs = 0.0  # worst |error| where |x| < REL_FROM
        self.count = 0
        self.nonfinite = 0

    def add(self, x: np.ndarray, got: np.ndarray, ref: np.ndarray) -> None:
        self.count += x.size
        finite = np.isfinite(got)
        self.nonfinite += int((~finite).sum())
        got = np.where(finite, got, np.inf)
        err = np.abs(got - ref)
        normal = (np.abs(ref) >= TINY) & (np.abs(x) >= REL_FROM)
        if normal.any():
            rel = err[normal] / np.abs(ref[normal])
            i = int(np.argmax(rel))
            if rel[i] > self.rel[0]:
                self.rel = (float(rel[i]), float(x[normal][i]))
            with np.errstate(over="ignore"):
                spacing = np.spacing(np.abs(ref[normal]).astype(np.float32)).astype(np.float64)
            ulp = err[normal] / spacing
            i = int(np.argmax(ulp))
            if ulp[i] > self.ulp[0]:
                self.ulp = (float(ulp[i]), float(x[normal][i]))
        tiny = np.abs(x) < REL_FROM
        if tiny.any():
            self.tiny_abs = max(self.tiny_abs, float(err[tiny].max()))
        nz = ~tiny
        if nz.any():
            ax = err[nz] / np.abs(x[nz].astype(np.float64))
            i = int(np.argmax(ax))
            if ax[i] > self.abs_x[0]:
                self.abs_x = (float(ax[i]), float(x[nz][i]))

    def row(self) -> str:
        def f(v):
            return f"{v[0]:.3g} (x={v[1]:.7g})" if v[1] is not None else "0"

        return (
            f"{self.count:>11d} inputs | max rel {f(self.rel)} | max ulp {f(self.ulp)} | "
            f"max |err|/|x| {f(self.abs_x)} | max |err| for |x| < 2^-120 {self.tiny_abs:.3g} | "
            f"non-finite {self.nonfinite}"
        )


def _runtimes(names, prototxt, caffemodel):
    from onnx2caffe.runtimes import get_runtime

    loaded = {}
    for name in names:
        rt = get_runtime(name)
        loaded[name] = (rt, rt.load(prototxt, caffemodel).__enter__())
    return loaded


def sweep(op: str, limit: float, chunk_log2: int, stride: int, tail_stride: int, names) -> dict:
    from onnx2caffe.convert import convert

    half = 1 << (chunk_log2 - 1)
    shape = (1, 1, (2 * half) // 64, 64)
    folder = tempfile.mkdtemp(prefix="gelu-bound-")
    result = convert(_model(op, shape), os.path.join(folder, op), check=False)
    print(
        f"{op}: {len(result.net.layers) - 1} Caffe layers: {[layer.type for layer in result.net.layers[1:]]}"
    )
    loaded = _runtimes(names, result.prototxt, result.caffemodel)
    xin, yout = result.name_map["x"], result.name_map["y"]
    ranges = {"|x| <= 3": 3.0, f"|x| <= {limit:g}": limit, "tails": math.inf}
    stats = {(rt, r): Stats() for rt in names for r in ranges}
    last = int(np.float32(limit).view(np.uint32))
    top = int(np.float32(np.finfo(np.float32).max).view(np.uint32))
    bits = [np.arange(0, last + 1, stride, dtype=np.uint32)]
    bits.append(np.arange(last + 1, top + 1, tail_stride, dtype=np.uint32))
    bits.append(np.array([top], np.uint32))
    bits = np.concatenate(bits)
    t0 = time.perf_counter()
    for start in range(0, bits.size, half):
        pos = bits[start : start + half].view(np.float32)
        x = np.concatenate([pos, -pos, np.zeros(2 * half - 2 * pos.size, np.float32)])
        ref = exact(op, x)
        for rt in names:
            got = (
                loaded[rt][1]
                .run({xin: x.reshape(shape)}, outputs=[yout])[yout]
                .reshape(-1)
                .astype(np.float64)
            )
            ax = np.abs(x)
            for r, hi in ranges.items():
                lo = limit if hi == math.inf else 0.0
                sel = (ax <= hi) & ((ax > lo) if hi == math.inf else True)
                if sel.any():
                    stats[(rt, r)].add(x[sel], got[sel], ref[sel])
        done = min(start + half, bits.size)
        if (start // half) % 32 == 0:
            print(f"  {done}/{bits.size} magnitudes, {time.perf_counter() - t0:.0f}s", flush=True)
    for runtime, model in loaded.values():
        model.__exit__(None, None, None)
        runtime.close()
    for (rt, r), s in stats.items():
        print(f"{op} {rt:8s} {r:10s} {s.row()}")
    return stats


# ------------------------------------------------------------------------------------------ coefficient fits


def _lawson_rational(fun, n: int, a_max: float, iters: int = 300):
    """Minimax-relative (Lawson) fit of fun(a) ~ sum_{1..n} p_k v^k / (1 + sum_{1..n} q_k v^k), v = 1/(1+a)."""
    P = np.polynomial.polynomial
    v = (np.cos(np.linspace(0, np.pi, 30000)) + 1) / 2
    v = v[v > 0]
    a = 1 / v - 1
    a = a[a <= a_max]
    v = 1 / (1 + a)
    F = fun(a)
    w = np.ones_like(v)
    D = np.ones_like(v)
    best = None
    for _ in range(iters):
        M = np.stack([v**k for k in range(1, n + 1)] + [-F * v**k for k in range(1, n + 1)], 1)
        wt = w / (F * np.abs(D))
        c, *_ = np.linalg.lstsq(M * wt[:, None], F * wt, rcond=None)
        p, q = np.r_[0, c[:n]], np.r_[1, c[n:]]
        D = P.polyval(v, q)
        e = np.abs(P.polyval(v, p) / D / F - 1)
        if best is None or e.max() < best[0]:
            best = (e.max(), p[1:], q[1:])
        w = w * (1 + e / e.max())
    return best


def _lawson_poly(fun, m: int, s_max: float, iters: int = 400):
    """Minimax-relative (Lawson) fit of fun(s) ~ sum_{0..m} c_k s^k on [0, s_max]."""
    s = (np.cos(np.linspace(0, np.pi, 20000)) + 1) / 2 * s_max
    F = fun(s)
    V = np.stack([s**k for k in range(m + 1)], 1)
    w = np.ones_like(s)
    best = None
    for _ in range(iters):
        c, *_ = np.linalg.lstsq(V * (w / F)[:, None], F * (w / F), rcond=None)
        e = np.abs(V @ c / F - 1)
        if best is None or e.max() < best[0]:
            best = (e.max(), c)
        w = w * (1 + e / e.max())
    return best


def print_fit() -> None:
    erfc = np.frompyfunc(math.erfc, 1, 1)
    erf = np.frompyfunc(math.erf, 1, 1)

    def tail(a):  # F(a) = 0.5 erfcx(a / sqrt(2)), a <= 14.2: exp(a^2 / 2) <= e^101 in float64
        return 0.5 * np.exp(a * a / 2) * erfc(a / math.sqrt(2)).astype(np.float64)

    def small(s):  # erf(x) / x at s = x^2
        x = np.sqrt(s)
        return np.where(x > 0, erf(x).astype(np.float64) / np.maximum(x, 1e-300), 2 / math.sqrt(math.pi))

    e, p, q = _lawson_rational(tail, 5, 14.2)
    print(f"F(a) rational (5, 5) in v = 1/(1+a), a <= 14.2: max relative error {e:.3g}")
    print("GELU_P =", tuple(float(v) for v in p))
    print("GELU_Q =", tuple(float(v) for v in q))
    e, c = _lawson_poly(small, 5, 0.75**2)
    print(f"erf(x)/x polynomial of degree 5 in x^2, |x| <= 0.75: max relative error {e:.3g}")
    print("ERF_SMALL =", tuple(float(v) for v in c))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op", choices=("gelu", "erf", "both"), default="both")
    ap.add_argument("--limit", type=float, default=10.0)
    ap.add_argument("--chunk", type=int, default=22, help="log2 of the inputs per forward (default 22: 4M)")
    ap.add_argument("--quick", action="store_true", help="every 64th float32 instead of every one")
    ap.add_argument("--tail-stride", type=int, default=256)
    ap.add_argument("--runtimes", default="pycaffe,opencv")
    ap.add_argument("--fit", action="store_true", help="re-derive the coefficients of op_mappers/_erf.py")
    args = ap.parse_args(argv)
    if args.fit:
        print_fit()
        return 0
    names = [r for r in args.runtimes.split(",") if r]
    for op in ("gelu", "erf") if args.op == "both" else (args.op,):
        sweep(op, args.limit, args.chunk, 64 if args.quick else 1, args.tail_stride, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
