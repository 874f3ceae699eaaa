"""The `verify --html` page: the verdict and graph outputs on top, the input used, then (with --per-layer) the
error along the Caffe layer order as a chart and the sortable layer table, each layer with the ONNX node(s)
it came from and the composition it belongs to (from PREFIX.layers.json, which convert writes; without it,
from the names map: the producer of the ONNX tensor a layer's blob was compared with)."""

from __future__ import annotations

import os

from . import html as H
from .collect import verify_data


def _nodes_html(nodes: list) -> tuple[str, str]:
    """Up to three node names, the rest counted; the full list as the cell's title."""
    if not nodes:
        return '<span class="muted">-</span>', ""
    shown = "<br>".join(H.esc(n) for n, _ in nodes[:3])
    if len(nodes) > 3:
        shown += f'<br><span class="muted">+{len(nodes) - 3} more</span>'
    return shown, ("\n".join(f"{n} ({op})" for n, op in nodes) if len(nodes) > 1 else "")


def _composition_html(row: dict) -> tuple[str, str]:
    if not row["op"]:
        return '<span class="muted">-</span>', ""
    size = row["composition_size"]
    extra = f' <span class="muted">{size} layers</span>' if size > 1 else ""
    return f'<span class="tag">{H.esc(row["op"])}</span>{extra}', ""


def _verdict(data: dict) -> str:
    tol = f"max_rel ≤ {data['tolerance']['max_rel']:g}, cosine ≥ {data['tolerance']['min_cosine']}"
    outs = data["outputs"]
    bad = [r for r in outs if not r["ok"]]
    if bad:
        head = f"FAILED: {len(bad)} of {len(outs)} output comparison(s) outside tolerance ({tol})"
    else:
        head = f"OK: {len(outs)} output comparison(s) within tolerance ({tol})"
    detail = []
    for rt, pos in (data.get("first_position") or {}).items():
        if data["layers"] is None:
            break
        if pos is None:
            n = sum(1 for r in data["layers"] if (r["results"].get(rt) or {}).get("ok") is not None)
            detail.append(f"{H.esc(rt)}: all {n} compared layers within tolerance")
        else:
            row = data["layers"][pos - 1]
            origin = f" from ONNX node {H.esc(row['node'])} ({H.esc(row['op'])})" if row["node"] else ""
            detail.append(
                f"{H.esc(rt)}: first layer outside tolerance #{pos} <code>{H.esc(row['layer'])}</code> "
                f"({H.esc(row['type'])}){origin}"
            )
    return H.verdict(not bad, head, "<br>".join(detail))


def _inputs_html(data: dict) -> str:
    pre = data.get("preprocess") or {}
    rows = []
    for inp in data["inputs"]:
        src = inp.get("source") or "?"
        how = ""
        if src.startswith("image "):
            shape = inp.get("shape") or []
            size = f"resized to {shape[-2]}x{shape[-1]} (bilinear), " if len(shape) >= 2 else ""
            how = (
                f"{size}(pixel - mean) * scale with mean {pre.get('mean') or '0'} (B,G,R), "
                f"scale {pre.get('scale') or '1'}, channels {pre.get('pixel') or 'BGR'}"
            )
        elif src.startswith("random"):
            how = "standard normal, the same as `convert --seed`"
        elif src.startswith("file "):
            how = "float32 array as stored"
        shape = "x".join(map(str, inp.get("shape") or [])) or "-"
        rows.append([H.name(inp["onnx"]), H.name(inp["blob"]), H.text(shape), H.text(src), H.text(how)])
    cols = [("ONNX input", "text"), ("Caffe blob", "text"), ("shape", "text"), ("source", "text")]
    cols.append(("preprocessing", "text"))
    return H.table(cols, rows, sortable=False)


def _outputs_html(data: dict) -> str:
    cols = [
        ("runtime", "text"),
        ("ONNX output", "text"),
        ("Caffe blob", "text"),
        ("paired by", "text"),
        ("shape", "text"),
        ("max_abs", "num"),
        ("max_rel", "num"),
        ("cosine", "num"),
        ("ok", "text"),
    ]
    rows, classes = [], []
    match = {m["onnx"]: m["method"] for m in data["output_match"]}
    for r in data["outputs"]:
        ok = r["ok"]
        rows.append(
            [
                H.text(r["runtime"]),
                H.name(r["output"]),
                H.name(r["blob"]),
                H.text(match.get(r["output"], "")),
                H.text("x".join(map(str, r.get("shape") or [])) or "-"),
                H.num(r["max_abs"]),
                H.num(r["max_rel"] if r["max_rel"] is not None else float("inf")),
                H.Cell(H.esc(H.fmt_cos(r["cosine"])), r["cosine"], "num"),
                H.Cell(
                    ('<span class="okc">yes</span>' if ok else '<span class="badc">NO</span>')
                    + (f' <span class="muted">{H.esc(r["note"])}</span>' if r.get("note") else ""),
                    int(bool(ok)),
                ),
            ]
        )
        classes.append("" if ok else "bad")
    return H.table(cols, rows, row_classes=classes)


def _chart_html(data: dict) -> str:
    from .charts import error_chart

    layers = [r for r in data["layers"] if any(v.get("ok") is not None for v in r["results"].values())]
    if not layers:
        return "<p>No Caffe blob has an ONNX counterpart to compare (see the notes in the table).</p>"
    positions = [r["pos"] for r in layers]
    series = {}
    for rt in data["runtimes"]:
        rel, cos = [], []
        for r in layers:
            v = r["results"].get(rt) or {}
            compared = v.get("ok") is not None
            rel.append((float("inf") if v.get("max_rel") is None else v["max_rel"]) if compared else None)
            cos.append((0.0 if v.get("cosine") is None else v["cosine"]) if compared else None)
        series[rt] = (rel, cos)
    first = {}
    for rt, pos in data["first_position"].items():
        first[rt] = (pos, data["layers"][pos - 1]["layer"]) if pos else None
    tol = data["tolerance"]
    svg = error_chart(positions, series, tol["max_rel"], tol["min_cosine"], first, salt="verify-layers")
    return H.figure(
        svg,
        f"{len(layers)} compared blobs of {len(data['layers'])} (the lines join the compared ones: a "
        "composition's inner blobs have no ONNX counterpart); a dotted vertical line marks a runtime's first "
        "layer outside tolerance. Only the graph outputs decide the verdict: an intermediate blob paired by "
        "name alone may legitimately differ.",
    )


def _layer_table(data: dict) -> str:
    rts = data["runtimes"]
    cols = [("#", "num"), ("layer", "text"), ("type", "text"), ("blob / ONNX tensor", "text")]
    cols += [("ONNX node(s)", "text"), ("composition", "text")]
    for rt in rts:
        cols += [(f"max_rel {rt}", "num"), (f"cosine {rt}", "num")]
    cols += [("ok", "text"), ("note", "text")]
    firsts = {p for p in data["first_position"].values() if p}
    rows, classes = [], []
    for r in data["layers"]:
        blob = H.esc(r["blob"])
        if r["tensor"] and r["tensor"] != r["blob"]:
            blob += f'<br><span class="muted">&larr; {H.esc(r["tensor"])}</span>'
        nodes, nodes_title = _nodes_html(r["onnx_nodes"])
        comp, comp_title = _composition_html(r)
        cells = [
            H.Cell(str(r["pos"]), None, "num"),
            H.name(r["layer"]),
            H.text(r["type"]),
            H.Cell(blob, None, "name"),
            H.Cell(
                nodes,
                None if len(r["onnx_nodes"]) == 1 else (r["onnx_nodes"][0][0] if r["onnx_nodes"] else ""),
                "name",
                nodes_title or None,
            ),
            H.Cell(comp, None if r["op"] else "", "", comp_title or None),
        ]
        oks, notes = [], []
        for rt in rts:
            v = r["results"].get(rt) or {}
            if v.get("ok") is None:
                cells += [H.num(None), H.num(None)]
            else:
                rel = v.get("max_rel")
                cells.append(H.num(float("inf") if rel is None else rel))
                cos = v.get("cosine")
                cells.append(H.Cell(H.esc(H.fmt_cos(cos)), "" if cos is None else cos, "num"))
                oks.append(v["ok"])
            if v.get("note") and v["note"] not in notes:
                notes.append(v["note"])
        if not oks:
            ok_cell, cls = H.Cell('<span class="muted">-</span>', ""), "skip"
        elif all(oks):
            ok_cell, cls = H.Cell('<span class="okc">yes</span>', 1), ""
        else:
            bad_rts = [rt for rt in rts if (r["results"].get(rt) or {}).get("ok") is False]
            ok_cell = H.Cell(
                f'<span class="badc">NO</span> <span class="muted">{H.esc(", ".join(bad_rts))}</span>', 0
            )
            cls = "first" if r["pos"] in firsts else "bad"
        cells += [ok_cell, H.text("; ".join(notes))]
        rows.append(cells)
        classes.append(cls)
    return H.table(cols, rows, row_classes=classes, id="layers")


def render(data: dict) -> str:
    parts = [_verdict(data)]
    files = [
        ("ONNX model (reference)", f"<code>{H.esc(data['model'])}</code>"),
        ("Caffe net", f"<code>{H.esc(data['prototxt'])}</code>"),
        ("Caffe weights", f"<code>{H.esc(data['caffemodel'])}</code>"),
        (
            "names map",
            f"<code>{H.esc(data['names_file'])}</code>" if data["names_file"] else "none (paired by name)",
        ),
    ]
    if data["layers"] is not None:
        files.append(
            (
                "layer origins",
                f"<code>{H.esc(data['layers_file'])}</code>"
                if data["layers_file"]
                else "no layers.json: each compared layer's node is the producer of its ONNX tensor",
            )
        )
    files.append(("runtimes", H.esc(", ".join(data["runtimes"])) + " (reference: onnxruntime)"))
    parts.append(H.facts(files))
    parts.append("<h2>Input</h2>")
    parts.append(_inputs_html(data))
    parts.append("<h2>Graph outputs</h2>")
    parts.append(_outputs_html(data))
    if data["notes"]:
        parts.append("<ul>" + "".join(f"<li>{H.esc(n)}</li>" for n in data["notes"]) + "</ul>")
    if data["layers"] is None:
        parts.append(
            "<h2>Per layer</h2><p>Not compared: run <code>onnx2caffe verify ... --per-layer --html FILE</code> "
            "for the error along the layers and the layer table.</p>"
        )
    else:
        parts.append("<h2>Error along the layers</h2>")
        parts.append(_chart_html(data))
        parts.append("<h2>Layers</h2>")
        parts.append(
            '<p class="noprint muted">One row per Caffe blob in layer order; click a column header to sort '
            "(e.g. by max_rel to see the worst layers first). Red: outside tolerance; darker: the first such "
            "layer of a runtime.</p>"
        )
        parts.append(_layer_table(data))
    title = f"onnx2caffe verify: {os.path.basename(str(data['model']))}"
    subtitle = H.esc(f"{data['model']} against {data['prototxt']} + {data['caffemodel']}")
    return H.page(title, subtitle, "\n".join(parts), data)


def write(path: str, result, preprocess: dict | None = None) -> int:
    """Collect, render and write the page atomically; returns its size in bytes."""
    document = render(verify_data(result, preprocess))
    H.write_page(path, document)
    return len(document.encode("utf-8"))
