"""The `convert --html` page: what was converted (per ONNX op type: how many nodes and which Caffe layers they
became, with the mapper's note on the composition), the input-model nodes the passes absorbed or removed, the
passes applied, the agreement with onnxruntime, and, when the model is refused, every refused node with its
reason (the page is then the only file written)."""

from __future__ import annotations

import os
from collections import Counter

from . import html as H
from .collect import convert_data


def _counts(counter: dict) -> str:
    return " ".join(
        f'<span class="tag">{H.esc(k)}{" &times;" + str(v) if v > 1 else ""}</span>'
        for k, v in counter.items()
    )


def _refused(data: dict) -> str:
    n = len(data["refusals"])
    parts = [
        H.verdict(
            False,
            f"REFUSED: {n} node(s) have no exact Caffe form; nothing else was written",
            H.esc(data["error"] or ""),
        )
    ]
    parts.append(H.facts([("ONNX model", f"<code>{H.esc(data['model'])}</code>")]))
    parts.append("<h2>Refused nodes</h2>")
    cols = [("node", "text"), ("op", "text"), ("opset", "num"), ("attribute", "text"), ("reason", "text")]
    rows = []
    for r in data["refusals"]:
        attr = "" if r["attribute"] is None else f"{r['attribute']} = {r['value']}"
        rows.append(
            [
                H.name(r["node"]),
                H.text(r["op"]),
                H.Cell(H.esc(r["opset"]) if r["opset"] is not None else "-", r["opset"], "num"),
                H.Cell(H.esc(attr), attr, "name"),
                H.text(r["reason"]),
            ]
        )
    parts.append(H.table(cols, rows, row_classes=["bad"] * len(rows)))
    if data["input_ops"]:
        refused_ops = Counter(r["op"] for r in data["refusals"])
        parts.append("<h2>Op types of the model</h2>")
        cols = [("ONNX op", "text"), ("nodes", "num"), ("refused", "num")]
        rows = [
            [
                H.text(op),
                H.Cell(str(k), k, "num"),
                H.Cell(str(refused_ops.get(op, 0)), refused_ops.get(op, 0), "num"),
            ]
            for op, k in sorted(data["input_ops"].items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        classes = ["bad" if refused_ops.get(r[0].html) else "" for r in rows]
        parts.append(H.table(cols, rows, row_classes=classes, wide=False))
    return "\n".join(parts)


def _agreement(data: dict) -> str:
    if not data["checked"]:
        return "<p>Not checked (--no-check): verify it with <code>onnx2caffe verify</code>.</p>"
    cols = [
        ("runtime", "text"),
        ("ONNX output", "text"),
        ("Caffe blob", "text"),
        ("max_abs", "num"),
        ("max_rel", "num"),
        ("cosine", "num"),
        ("ok", "text"),
    ]
    rows, classes = [], []
    for r in data["agreement"]:
        rows.append(
            [
                H.text(r["runtime"]),
                H.name(r["output"]),
                H.name(r.get("blob")),
                H.num(r["max_abs"]),
                H.num(r["max_rel"]),
                H.Cell(H.esc(H.fmt_cos(r["cosine"])), r["cosine"], "num"),
                H.Cell(
                    ('<span class="okc">yes</span>' if r["ok"] else '<span class="badc">NO</span>')
                    + (f' <span class="muted">{H.esc(r["note"])}</span>' if r.get("note") else ""),
                    int(bool(r["ok"])),
                ),
            ]
        )
        classes.append("" if r["ok"] else "bad")
    out = f"<p>A seeded random input (seed {data['seed']}) through onnxruntime and each Caffe runtime.</p>"
    out += H.table(cols, rows, row_classes=classes)
    for rt, why in (data.get("skipped") or {}).items():
        out += f"<p class=muted>{H.esc(rt)} not used: {H.esc(why)}</p>"
    return out


def _converted(data: dict) -> str:
    checked = data["checked"]
    status = data["status"]
    n_out = len(data["agreement"])
    if not checked:
        head, ok = "WRITTEN, NOT CHECKED (--no-check)", None
    elif status == "converted":
        head, ok = f"CONVERTED AND VERIFIED: {n_out} output comparison(s) within tolerance", True
    else:
        bad = sum(1 for r in data["agreement"] if not r["ok"])
        head, ok = (
            f"OUTSIDE TOLERANCE: {bad} of {n_out} output comparison(s); the files are UNVERIFIED",
            False,
        )
    detail = (
        f"{data['input_nodes']} ONNX nodes &rarr; {data['caffe_layers']} Caffe layers, "
        f"{data['weights']:,} weights"
    )
    parts = [H.verdict(ok, head, detail)]
    files = "<br>".join(
        f"<code>{H.esc(f['path'])}</code> <span class=muted>({H.fmt_bytes(f['bytes'])})</span>"
        for f in data["files"]
        if f["bytes"] is not None
    )
    shapes = ", ".join(f"{i['blob']} {'x'.join(map(str, i['shape']))}" for i in data["inputs"])
    parts.append(
        H.facts(
            [
                ("ONNX model", f"<code>{H.esc(data['model'])}</code>"),
                ("written", files or "nothing"),
                ("inputs", H.esc(shapes)),
                ("Caffe layer types", _counts(data["caffe_types"])),
            ]
        )
    )
    parts.append("<h2>Agreement with onnxruntime</h2>")
    parts.append(_agreement(data))
    parts.append("<h2>What each ONNX op became</h2>")
    parts.append(
        "<p>Per op type of the nodes mapped (after the passes): how many nodes, the Caffe layers they became "
        "and the input-model nodes behind them (a pass may fuse several into one node, or fold one into "
        "another). The note is the mapper's: how the composition works and why it is exact.</p>"
    )
    cols = [
        ("ONNX op", "text"),
        ("nodes", "num"),
        ("Caffe layers", "text"),
        ("layers / node", "num"),
        ("input-model nodes", "text"),
        ("how", "text"),
    ]
    rows = []
    for r in data["ops"]:
        total = sum(r["caffe_layers"].values())
        per = total / r["nodes"] if r["nodes"] else 0
        same = r["from_ops"] == {r["op"]: r["nodes"]}
        behind = '<span class="muted">the same</span>' if same else _counts(r["from_ops"])
        ex = ", ".join(r["examples"])
        rows.append(
            [
                H.Cell(f"<b>{H.esc(r['op'])}</b>", r["op"], "", f"e.g. {ex}"),
                H.Cell(str(r["nodes"]), r["nodes"], "num"),
                H.Cell(
                    _counts(r["caffe_layers"]) or '<span class="muted">none (renames a blob)</span>', total
                ),
                H.Cell(f"{per:.3g}", per, "num"),
                H.Cell(behind, "" if same else " ".join(r["from_ops"])),
                H.Cell(f'<span class="muted">{H.esc(r["notes"])}</span>', r["notes"]),
            ]
        )
    parts.append(H.table(cols, rows))
    if data["removed"]:
        parts.append(
            "<p>Input-model nodes that became no layer (constant subgraphs folded into weights, dead code, "
            f"copies): {_counts(data['removed'])}</p>"
        )
    parts.append("<h2>Passes</h2>")
    cols = [("pass", "text"), ("changed the graph", "text"), ("what it does", "text")]
    rows, classes = [], []
    for p in data["passes"]:
        rows.append(
            [
                H.Cell(f"<code>{H.esc(p['name'])}</code>", p["name"]),
                H.Cell(
                    '<span class="okc">yes</span>' if p["applied"] else '<span class="muted">no</span>',
                    int(p["applied"]),
                ),
                H.text(p["description"]),
            ]
        )
        classes.append("" if p["applied"] else "skip")
    parts.append(H.table(cols, rows, row_classes=classes))
    return "\n".join(parts)


def render(data: dict) -> str:
    body = _refused(data) if data["status"] == "refused" else _converted(data)
    title = f"onnx2caffe convert: {os.path.basename(data['model'])}"
    subtitle = H.esc(f"{data['model']} -> {data['prefix']}.prototxt + .caffemodel")
    return H.page(title, subtitle, body, data)


def write(path: str, model, prefix: str, result=None, error=None, seed: int = 0, checked: bool = True) -> int:
    """Collect, render and write the page atomically; returns its size in bytes."""
    document = render(convert_data(model, prefix, result, error, seed, checked))
    H.write_page(path, document)
    return len(document.encode("utf-8"))
