"""Agreement metrics between a reference output and a converted model's output (float64 math)."""

from __future__ import annotations

import math

import numpy as np

DEFAULT_MAX_REL = 1e-4
DEFAULT_MIN_COSINE = 0.99999


_CHUNK = 1 << 20  # elements compared at a time: the float64 work arrays stay a few MiB for any output size


def metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    """max_abs, max_rel (= max_abs / max|ref|) and cosine similarity of two same-shaped arrays.

    Positions where both are equal non-finite values (same-sign inf, both NaN) count as agreeing; any other
    non-finite position makes max_abs and max_rel inf and cosine nan-free 0.0 (a failure). Computed over
    chunks of the flattened arrays in float64 (the norms and the dot product as sums of per-chunk dot
    products), so a check of a large output needs no float64 copy of it.
    """
    ref_flat = np.asarray(ref).reshape(-1)
    out_flat = np.asarray(out).reshape(-1)
    if ref_flat.shape != out_flat.shape:
        raise ValueError(f"size mismatch: {ref_flat.size} vs {out_flat.size}")
    max_abs = scale = rr = oo = ro = 0.0
    count = 0
    for start in range(0, ref_flat.size, _CHUNK):
        r = np.asarray(ref_flat[start : start + _CHUNK], dtype=np.float64)
        o = np.asarray(out_flat[start : start + _CHUNK], dtype=np.float64)
        finite = np.isfinite(r) & np.isfinite(o)
        if not finite.all():
            same_nonfinite = ~finite & ((r == o) | (np.isnan(r) & np.isnan(o)))
            if not np.all(finite | same_nonfinite):
                return {"max_abs": math.inf, "max_rel": math.inf, "cosine": 0.0}
            r, o = r[finite], o[finite]
        if r.size == 0:
            continue
        count += r.size
        max_abs = max(max_abs, float(np.max(np.abs(r - o))))
        scale = max(scale, float(np.max(np.abs(r))))
        rr += float(np.dot(r, r))
        oo += float(np.dot(o, o))
        ro += float(np.dot(r, o))
    if count == 0:
        return {"max_abs": 0.0, "max_rel": 0.0, "cosine": 1.0}
    if scale > 0:
        max_rel = max_abs / scale
    else:
        max_rel = 0.0 if max_abs == 0 else math.inf
    nr, no = math.sqrt(rr), math.sqrt(oo)
    if nr == 0 and no == 0:
        cosine = 1.0
    elif nr == 0 or no == 0:
        cosine = 0.0
    else:
        cosine = float(ro / (nr * no))
    return {"max_abs": max_abs, "max_rel": max_rel, "cosine": cosine}


def within(m: dict, max_rel: float = DEFAULT_MAX_REL, min_cosine: float = DEFAULT_MIN_COSINE) -> bool:
    return m["max_rel"] <= max_rel and m["cosine"] >= min_cosine


def compare_outputs(
    refs: dict[str, np.ndarray],
    outs: dict[str, np.ndarray],
    runtime: str,
    max_rel: float = DEFAULT_MAX_REL,
    min_cosine: float = DEFAULT_MIN_COSINE,
) -> list[dict]:
    """One report row per reference output: runtime, output, shapes, max_abs, max_rel, cosine, ok (and note)."""
    rows = []
    for name, ref in refs.items():
        row = {"runtime": runtime, "output": name}
        out = outs.get(name)
        if out is not None and np.ndim(ref) == 1 and tuple(np.shape(out)) == (np.size(ref), 1):
            out = np.reshape(out, np.shape(ref))  # OpenCV's Mat reports a 1-D blob as (n, 1)
        if out is None:
            row.update(max_abs=math.inf, max_rel=math.inf, cosine=0.0, ok=False, note="output missing")
        elif tuple(np.shape(out)) != tuple(np.shape(ref)):
            row.update(
                max_abs=math.inf,
                max_rel=math.inf,
                cosine=0.0,
                ok=False,
                note=f"shape {tuple(np.shape(out))} != reference {tuple(np.shape(ref))}",
            )
        else:
            m = metrics(ref, out)
            row.update(m, ok=within(m, max_rel, min_cosine))
        rows.append(row)
    return rows
