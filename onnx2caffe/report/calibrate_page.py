"""The `calibrate --html` page: per quantised layer, the histogram of |x| of the blob it reads with the
threshold of the chosen method and those of the other methods, the share of values each clips, the scale
and the KL value, and the weight scales. Thresholds of methods that were not run come from the same
statistics through calibrate's own functions (methods.py), except kl-legacy, whose histogram is only
gathered when it runs. When the int8 evaluation on ncnn ran, its figures lead the page and the layers are
sorted by what int8 costs them."""

from __future__ import annotations

import os

from . import html as H
from .collect import DISPLAY_BINS, calibrate_data


def _fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.4g}%"


def _drift_by_layer(data: dict, method: str) -> dict[str, dict]:
    ev = data.get("evaluation")
    if not ev:
        return {}
    for m in ev.get("methods", []):
        if m.get("method") == method:
            return {d["layer"]: d for d in m.get("layers", [])}
    return {}


def _evaluation_html(data: dict) -> str:
    ev = data["evaluation"]
    parts = [
        f"<p>Float32 and int8 ncnn on {ev.get('n_images')} held-out image(s) from "
        f"<code>{H.esc(ev.get('images'))}</code>: int8 against float32, per net output and per layer.</p>"
    ]
    cols = [
        ("method", "text"),
        ("output", "text"),
        ("cosine mean", "num"),
        ("cosine worst", "num"),
        ("max_rel mean", "num"),
        ("max_rel worst", "num"),
        ("top-1 agreement", "num"),
        ("layer drifting most", "text"),
    ]
    rows = []
    for m in ev.get("methods", []):
        worst = m.get("worst_layer") or {}
        w = (
            f"<code>{H.esc(worst.get('layer'))}</code> "
            f'<span class="muted">({H.esc(worst.get("type"))}, drift {H.fmt_num(worst.get("drift"))})</span>'
            if worst
            else "-"
        )
        for o in m.get("outputs", []):
            top1 = o.get("top1_agreement")
            rows.append(
                [
                    H.text(m["method"]),
                    H.name(o.get("blob")),
                    H.Cell(H.esc(H.fmt_num(o.get("cosine_mean"), ".6f")), o.get("cosine_mean"), "num"),
                    H.Cell(H.esc(H.fmt_num(o.get("cosine_worst"), ".6f")), o.get("cosine_worst"), "num"),
                    H.num(o.get("max_rel_mean")),
                    H.num(o.get("max_rel_worst")),
                    H.Cell(_fmt_pct(top1), "" if top1 is None else top1, "num"),
                    H.Cell(w, worst.get("layer", "")),
                ]
            )
    parts.append(H.table(cols, rows))
    parts.append(_int8_chart_html(ev))
    return "\n".join(parts)


def _int8_chart_html(ev: dict) -> str:
    """1 - cosine of int8 against float32 along the ncnn layers, one line per method."""
    from .charts import int8_chart

    methods = [m for m in ev.get("methods", []) if m.get("layers")]
    if not methods:
        return ""
    labels = [d["layer"] for d in methods[0]["layers"]]
    index = {name: i for i, name in enumerate(labels)}
    series, worst = {}, {}
    for m in methods:
        vals: list = [None] * len(labels)
        for d in m["layers"]:
            if d["layer"] in index:
                vals[index[d["layer"]]] = d.get("cosine_mean")
        series[m["method"]] = vals
        w = (m.get("worst_layer") or {}).get("layer")
        worst[m["method"]] = index[w] + 1 if w in index else None
    svg = int8_chart(labels, series, worst)
    return H.figure(
        svg,
        "Each ncnn layer's int8 output against its float32 output (mean over the held-out images). The "
        "drift of a layer is how much lower its cosine is than its input's: where int8 loses, not where "
        "the loss has piled up.",
    )


def _drifts(data: dict) -> dict[str, dict[str, dict]]:
    """method -> Caffe layer -> its int8 drift record, for the methods the evaluation measured."""
    return {m: d for m in data["methods"] if (d := _drift_by_layer(data, m))}


def _cost(drifts: dict, layer: str) -> float:
    """What int8 costs a layer: its largest drift over the methods measured."""
    return max(((d.get(layer) or {}).get("drift") or 0.0) for d in drifts.values()) if drifts else 0.0


def _layer_table(data: dict) -> str:
    """One row per quantised layer: the threshold (and below it the share clipped) of every method, the run
    methods first; the scale and KL of the first method; the weight scales; the int8 drift per measured
    method. Sorted by the largest drift when measured, else in net order."""
    methods = data["methods"]
    first = methods[0]
    shown = methods + [m for b in data["blobs"].values() for m in b["thresholds"] if m not in methods]
    shown = list(dict.fromkeys(shown))
    drifts = _drifts(data)
    one = len(methods) == 1  # several methods: only thresholds and drifts, to fit 1280 px
    cols = [("#", "num"), ("layer", "text"), ("type", "text")]
    cols += [("reads blob", "text"), ("max |x|", "num")] if one else [("max |x|", "num")]
    for m in shown:
        mark = " (chosen)" if one and m == first else ""
        cols.append((f"{m}{mark}: threshold, clipped", "num"))
    if one:
        cols += [("scale", "num"), ("KL", "num"), ("weight scales: count, range", "text")]
    for m in drifts:
        cols.append((f"int8 drift {m}" if not one else "int8 drift", "num"))
    if len(drifts) == 1 and one:
        cols.append(("int8 cosine", "num"))
    order = list(data["layers"])
    if drifts:
        order.sort(key=lambda r: -_cost(drifts, r["layer"]))
    rows = []
    for r in order:
        blob = data["blobs"][r["run_blob"]]
        cells = [
            H.Cell(str(r["pos"]), None, "num"),
            H.Cell(f'<a href="#h-{r["pos"]}">{H.esc(r["layer"])}</a>', r["layer"], "name"),
            H.text(r["type"]),
        ]
        cells += [H.name(r["blob"]), H.num(r["absmax"], ".4g")] if one else [H.num(r["absmax"], ".4g")]
        for m in shown:
            run = r["by_method"].get(m)
            t = run["threshold"] if run else blob["thresholds"].get(m)
            clip = run["clipped"] if run else blob["clipped"].get(m)
            if t is None:
                cells.append(H.num(None))
                continue
            below = f'<br><span class="muted">{_fmt_pct(clip)}</span>' if clip is not None else ""
            cells.append(H.Cell(H.esc(H.fmt_num(t, ".4g")) + below, format(t, ".7g"), "num"))
        if one:
            v = r["by_method"][first]
            cells += [H.num(v["scale"], ".4g"), H.num(v["kl"], ".3g")]
            ws = r["weight_scales"]
            wtext = (
                f"{ws['count']}, {H.fmt_num(ws['min'], '.4g')} to {H.fmt_num(ws['max'], '.4g')}"
                if ws["count"]
                else "-"
            )
            cells.append(H.Cell(H.esc(wtext), ws["min"] if ws["min"] is not None else ""))
        for d in drifts.values():
            cells.append(H.num((d.get(r["layer"]) or {}).get("drift"), ".3g"))
        if len(drifts) == 1 and one:
            c = (next(iter(drifts.values())).get(r["layer"]) or {}).get("cosine_mean")
            cells.append(H.Cell(H.esc(H.fmt_num(c, ".6f")), "" if c is None else c, "num"))
        rows.append(cells)
    return H.table(cols, rows, id="layers")


def _charts_html(data: dict) -> str:
    from .charts import histogram_chart

    chosen = data["methods"][0]
    drifts = _drifts(data)
    pos_of = {}
    for r in data["layers"]:
        pos_of.setdefault(r["run_blob"], r["pos"])
    items = list(data["blobs"].items())
    if drifts:
        items.sort(key=lambda kv: -max(_cost(drifts, n) for n in kv[1]["layers"]))
    figs = []
    for run_blob, b in items:
        layers = ", ".join(b["layers"])
        title = f"{b['blob']} to {layers}"
        anchors = "".join(
            f'<span id="h-{r["pos"]}"></span>' for r in data["layers"] if r["run_blob"] == run_blob
        )
        head = f"<h3>{anchors}<code>{H.esc(b['blob'])}</code> &rarr; {H.esc(layers)}</h3>"
        if b["hist"] is None:
            figs.append(f"<figure>{head}<p>No histogram: the blob is 0 on every image.</p></figure>")
            continue
        svg = histogram_chart(
            b["absmax"], b["hist"], b["thresholds"], chosen, title, salt=f"calib-{pos_of[run_blob]}"
        )
        clip = ", ".join(f"{m} {_fmt_pct(v)}" for m, v in b["clipped"].items())
        figs.append(
            f"<figure>{head}{svg}<figcaption>max |x| {b['absmax']:.4g}; zeros (not counted): "
            f"{b.get('zeros', 0):,}; clipped: {H.esc(clip)}</figcaption></figure>"
        )
    return '<div class="grid">' + "".join(figs) + "</div>"


def render(data: dict) -> str:
    methods = data["methods"]
    tables = "<br>".join(
        f"<code>{H.esc(p)}</code>" + (f" <span class=muted>({H.esc(m)})</span>" if len(methods) > 1 else "")
        for m, p in data["tables"].items()
    )
    skipped = f", {data['images_skipped']} skipped (unreadable)" if data["images_skipped"] else ""
    headline = (
        f"int8 calibration table written: {len(data['layers'])} quantised layers, "
        f"{data['images_used']} images, method {', '.join(methods)}"
    )
    pre = data["preprocess"]
    size = "x".join(map(str, pre["size"])) if pre["size"] else "the net's input size"
    parts = [H.verdict(True, headline)]
    parts.append(
        H.facts(
            [
                ("Caffe net", f"<code>{H.esc(data['prototxt'])}</code>"),
                ("Caffe weights", f"<code>{H.esc(data['caffemodel'])}</code>"),
                ("table", tables),
                (
                    "images",
                    f"<code>{H.esc(data['images'])}</code>: {data['images_used']} used{H.esc(skipped)}",
                ),
                (
                    "preprocessing",
                    H.esc(
                        f"resized to {size}, (x - mean) * norm with mean {pre['mean']} and norm {pre['norm']}, "
                        f"channels {pre['pixel']}"
                    ),
                ),
                (
                    "weight scales",
                    "per output channel (per group for grouped convolutions)"
                    if data["group"]
                    else "one per layer",
                ),
                ("runtime", H.esc(f"{data['runtime']} ({data['seconds']:.1f} s)")),
            ]
        )
    )
    if data["evaluation"]:
        parts.append("<h2>What int8 costs on ncnn</h2>")
        parts.append(_evaluation_html(data))
    parts.append("<h2>Quantised layers</h2>")
    sorted_by = (
        "sorted by what int8 costs them (int8 drift: how much lower the layer's int8 cosine is than its input's)"
        if _drifts(data)
        else "in net order"
    )
    parts.append(
        f"<p>One row per Convolution / InnerProduct layer, {sorted_by}. The threshold bounds |x| of the blob "
        "the layer reads (scale = 127 / threshold); clipped: the share of its non-zero values above the "
        "threshold. Other methods' thresholds come from the same statistics.</p>"
    )
    parts.append(_layer_table(data))
    parts.append("<h2>Histograms of |x|</h2>")
    parts.append(
        f"<p>One chart per blob read by a quantised layer: counts of |x| over [0, max |x|] on a log scale "
        f"({DISPLAY_BINS} bins: calibrate's 2048, merged 8 by 8), the chosen threshold solid, the other "
        "methods dashed.</p>"
    )
    parts.append(_charts_html(data))
    title = f"onnx2caffe calibrate: {os.path.basename(data['prototxt'])}"
    subtitle = H.esc(f"{data['prototxt']} + {data['caffemodel']}, images {data['images']}")
    return H.page(title, subtitle, "\n".join(parts), data)


def write(path: str, results: dict, cfg, tables: dict[str, str], evaluation=None) -> int:
    """Collect, render and write the page atomically; returns its size in bytes."""
    document = render(calibrate_data(results, cfg, tables, evaluation))
    H.write_page(path, document)
    return len(document.encode("utf-8"))
