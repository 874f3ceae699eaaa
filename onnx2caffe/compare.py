"""Agreement metrics between a reference output and a converted model's output (float64 math)."""

from __future__ import annotations

import math

import numpy as np

DEFAULT_MAX_REL = 1e-4
DEFAULT_MIN_COSINE = 0.99999


def metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    """max_abs, max_rel (= max_abs / max|ref|) and cosine similarity of two same-shaped arrays.

    Positions where both are equal non-finite values (same-sign inf, both NaN) count as agreeing; any other
    non-finite position makes max_abs and max_rel inf and cosine nan-free 0.0 (a failure).
    """
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    o = np.asarray(out, dtype=np.float64).reshape(-1)
    if r.shape != o.shape:
        raise ValueError(f"size mismatch: {r.size} vs {o.size}")
    finite = np.isfinite(r) & np.isfinite(o)
    same_nonfinite = ~finite & ((r == o) | (np.isnan(r) & np.isnan(o)))
    if not np.all(finite | same_nonfinite):
        return {"max_abs": math.inf, "max_rel": math.inf, "cosine": 0.0}
    r, o = r[finite], o[finite]
    if r.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0, "cosine": 1.0}
    max_abs = float(np.max(np.abs(r - o)))
    scale = float(np.max(np.abs(r)))
    if scale > 0:
        max_rel = max_abs / scale
    else:
        max_rel = 0.0 if max_abs == 0 else math.inf
    nr, no = float(np.linalg.norm(r)), float(np.linalg.norm(o))
    if nr == 0 and no == 0:
        cosine = 1.0
    elif nr == 0 or no == 0:
        cosine = 0.0
    else:
        cosine = float(np.dot(r, o) / (nr * no))
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
