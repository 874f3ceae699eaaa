"""Charts for the report pages, drawn by matplotlib and embedded as inline SVG.

matplotlib's object API only (Figure, no pyplot): no GUI backend is chosen and no global figure state is
touched, so importing onnx2caffe in a notebook changes nothing there. Text stays text in the SVG
(svg.fonttype none: smaller, selectable, drawn in the page's sans-serif font) and each chart gets its own
hash salt, so the ids matplotlib writes are stable from run to run and distinct between the charts of a page.

Log axes cannot show 0 (an exact match) or infinity (a missing blob); such values are drawn at the bottom or
the top edge of the axis with their own marker, and the legend says so.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence

# colour-blind-safe (Okabe-Ito), one per runtime / method
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def _rc(salt: str) -> dict:
    return {
        "svg.fonttype": "none",
        "svg.hashsalt": salt,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.grid": True,
        "grid.color": "#e1e4e8",
        "grid.linewidth": 0.6,
        "axes.axisbelow": True,
        "legend.fontsize": 8,
        "legend.framealpha": 0.9,
    }


def svg_of(fig, label: str) -> str:
    """The figure as an inline <svg> element scaling to its container (no XML prolog, no fixed size)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    # smaller, and valid with several charts in one page: path coordinates to a tenth of a point (1/720
    # inch, a seventh of a pixel on screen; the paths halve), no indentation, no metadata, no ids on groups (matplotlib names
    # them figure_1, axes_1, ... in every chart and nothing refers to them; the ids that are referred to,
    # of markers and clip paths, are salted per chart)
    text = re.sub(r' d="[^"]*"', lambda m: _DECIMALS.sub(r"\1", m.group(0)).replace(" \n", " "), text)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'<g id="[^"]*"', "<g", text)
    text = re.sub(r">\s+<", "><", text)
    start = text.index("<svg")
    text = text[start:]
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    safe = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    head += f' role="img" aria-label="{safe}" preserveAspectRatio="xMidYMid meet"'
    return head + text[head_end:].rstrip()


_DECIMALS = re.compile(r"(\.\d)\d+")


def _power_of_ten(value: float, _pos=None) -> str:
    """Log-axis tick labels as plain text (1e-06, 100): matplotlib's default, $10^{-6}$, goes through its
    mathtext parser, which takes most of a chart's drawing time."""
    if value <= 0 or not math.isfinite(value):
        return ""
    e = round(math.log10(value))
    if abs(value / 10.0**e - 1) > 1e-9:
        return ""
    return f"{10**e:g}" if -2 <= e <= 4 else f"1e{e}"


def _finite_floor(values: Sequence[float | None], default: float) -> float:
    pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return 10 ** math.floor(math.log10(min(pos)) - 1) if pos else default


def error_chart(
    positions: Sequence[int],
    series: Mapping[str, tuple[Sequence[float | None], Sequence[float | None]]],
    max_rel: float,
    min_cosine: float,
    first_bad: Mapping[str, tuple[int, str] | None],
    salt: str = "verify",
) -> str:
    """Two panels along the Caffe layer order: max_rel (log) and 1 - cosine (log), one line per runtime,
    the tolerance drawn, the first layer outside tolerance per runtime marked. series: runtime ->
    (max_rel per position, cosine per position), None where the blob was not compared. first_bad:
    runtime -> (position, layer name) or None."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    with matplotlib.rc_context(_rc(salt)):
        fig = Figure(figsize=(12.4, 6.2), layout="constrained")
        ax_rel, ax_cos = fig.subplots(2, 1, sharex=True)
        all_rel = [v for rel, _ in series.values() for v in rel]
        all_gap = [None if c is None else 1.0 - c for _, cos in series.values() for c in cos]
        rel_floor = min(_finite_floor(all_rel, 1e-9), max_rel / 100)
        gap_floor = min(_finite_floor(all_gap, 1e-12), (1.0 - min_cosine) / 100)
        panels = (
            (ax_rel, 0, rel_floor, max_rel, "max_rel  (max |error| / max |reference|)", "max_rel"),
            (ax_cos, 1, gap_floor, 1.0 - min_cosine, "1 - cosine", "cosine"),
        )
        edge_notes = set()
        for ax, which, floor, tol, ylabel, tol_name in panels:
            top = floor
            for k, (rt, vals) in enumerate(series.items()):
                color = COLORS[k % len(COLORS)]
                ys, zeros, infs = [], [], []
                for x, v in zip(positions, vals[which], strict=True):
                    if v is None:
                        ys.append(math.nan)
                        continue
                    y = v if which == 0 else 1.0 - v
                    if not math.isfinite(y):
                        infs.append(x)
                        ys.append(math.nan)
                    elif y <= floor:
                        zeros.append(x)
                        ys.append(floor)
                    else:
                        ys.append(y)
                        top = max(top, y)
                marker = "o" if len(positions) <= 150 else None  # markers of hundreds of points: only bytes
                ax.plot(positions, ys, "-", color=color, lw=1.1, marker=marker, ms=2.4, label=rt, alpha=0.9)
                if zeros:
                    edge_notes.add("zero")
                if infs:
                    edge_notes.add("inf")
                    ax.plot(infs, [math.inf] * len(infs), "x", color=color, ms=6, mew=1.6, clip_on=False)
            ceiling = max(top, tol) * 30
            ax.set_yscale("log")
            ax.set_ylim(floor / 2, ceiling)
            ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))
            ax.axhline(tol, color="#c0362c", ls="--", lw=1.2, label=f"tolerance {tol_name}")
            ax.set_ylabel(ylabel)
            for k, (rt, bad) in enumerate(first_bad.items()):
                if bad is None:
                    continue
                pos, layer = bad
                color = COLORS[list(series).index(rt) % len(COLORS)] if rt in series else COLORS[k]
                ax.axvline(pos, color=color, ls=":", lw=1.4)
                if which == 0:
                    short = layer if len(layer) <= 40 else layer[:37] + "..."
                    right = bool(positions) and pos > (min(positions) + max(positions)) / 2
                    note = ax.annotate(
                        f"{rt}: first outside tolerance\n#{pos} {short}",
                        xy=(pos, tol),
                        xytext=(-8 if right else 8, 18 + 24 * k),
                        textcoords="offset points",
                        ha="right" if right else "left",
                        color=color,
                        fontsize=8,
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 0.8},
                    )
                    note.set_in_layout(False)  # inside the axes: the layout must not shrink them for it
        ax_rel.set_title("Error per Caffe layer against onnxruntime (lower is better; dashed: tolerance)")
        ax_rel.legend(loc="upper left", ncols=min(4, len(series) + 1))
        ax_cos.set_xlabel("Caffe layer # (order in the prototxt; see the layer table)")
        if positions:
            ax_cos.set_xlim(min(positions) - 0.5, max(positions) + 0.5)
        note = []
        if "zero" in edge_notes:
            note.append("exact (0) drawn on the bottom edge")
        if "inf" in edge_notes:
            note.append("x on the top edge: blob missing or infinite error")
        if note:
            fig.text(0.995, 0.005, "; ".join(note), ha="right", va="bottom", fontsize=7.5, color="#57606a")
        return svg_of(fig, "max_rel and 1 - cosine per Caffe layer, one line per runtime")


def histogram_chart(
    edges_max: float,
    counts: Sequence[int],
    thresholds: Mapping[str, float],
    chosen: str,
    label: str,
    salt: str,
    display_bins: int = 256,
) -> str:
    """|x| histogram (log counts) of one blob over [0, edges_max], bins merged to display_bins, with a
    vertical line per method's threshold (the chosen one solid, the others dashed)."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    c = np.asarray(counts, dtype=np.float64)
    if display_bins and c.size > display_bins and c.size % display_bins == 0:
        c = c.reshape(display_bins, -1).sum(axis=1)
    edges = np.linspace(0.0, edges_max, c.size + 1)
    with matplotlib.rc_context(_rc(salt)):
        # fixed margins, not a layout engine: each engine pass draws the figure again (a page has dozens)
        fig = Figure(figsize=(6.4, 2.7))
        fig.subplots_adjust(left=0.1, right=0.985, bottom=0.17, top=0.84)
        ax = fig.subplots()
        ax.stairs(c, edges, fill=True, facecolor="#c4c9cf", edgecolor="#57606a", lw=0.6)
        if np.any(c > 0):
            ax.set_yscale("log")
            ax.set_ylim(0.7, float(c.max()) * 3)
            ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))
        order = [chosen] + [m for m in thresholds if m != chosen]
        for m in order:
            if m not in thresholds or thresholds[m] is None:
                continue
            k = list(thresholds).index(m)
            color = COLORS[k % len(COLORS)]
            ax.axvline(
                min(thresholds[m], edges_max),
                color=color,
                lw=1.8 if m == chosen else 1.0,
                ls="-" if m == chosen else "--",
                label=f"{m} {thresholds[m]:.4g}" + (" (chosen)" if m == chosen else ""),
            )
        ax.set_xlim(0, edges_max)
        ax.set_xlabel("|x|")
        ax.set_ylabel("count")
        ax.minorticks_off()
        fig.legend(loc="upper center", ncols=5, fontsize=7.5, frameon=False, bbox_to_anchor=(0.5, 1.01))
        return svg_of(fig, f"histogram of |x| with thresholds: {label}")


def int8_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    worst: Mapping[str, int | None],
    salt: str = "int8",
) -> str:
    """int8 against float32 along the net: 1 - cosine (log) of every ncnn layer's output, one line per
    method; each method's layer of largest drift marked. series: method -> cosine per position (None: not
    measured); worst: method -> position of its largest drift. labels: the layer names (for the marks)."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    positions = list(range(1, len(labels) + 1))
    gaps = [1.0 - c for vals in series.values() for c in vals if c is not None]
    floor = _finite_floor(gaps, 1e-9)
    with matplotlib.rc_context(_rc(salt)):
        fig = Figure(figsize=(12.4, 3.6), layout="constrained")
        ax = fig.subplots()
        top = floor
        for k, (m, vals) in enumerate(series.items()):
            color = COLORS[k % len(COLORS)]
            ys = []
            for c in vals:
                if c is None:
                    ys.append(math.nan)
                    continue
                y = max(1.0 - c, floor)
                top = max(top, y)
                ys.append(y)
            marker = "o" if len(positions) <= 150 else None
            ax.plot(positions, ys, "-", color=color, lw=1.1, marker=marker, ms=2.2, label=m, alpha=0.9)
            pos = worst.get(m)
            if pos:
                ax.plot([pos], [ys[pos - 1]], "o", ms=8, mfc="none", mec=color, mew=1.6)
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, top * 5)
        ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))
        ax.set_ylabel("1 - cosine, int8 vs float32")
        ax.set_xlabel("ncnn layer # (net order); circled: each method's layer of largest drift")
        ax.set_xlim(0.5, len(positions) + 0.5)
        ax.legend(loc="upper left", ncols=min(5, len(series)))
        ax.set_title("What int8 costs along the net (lower is better)")
        return svg_of(fig, "1 - cosine of int8 against float32 per layer, one line per method")
