"""The data of the report pages, collected from what the commands computed (no rendering here).

Each function returns plain JSON-able data (embedded in the page as JSON for scripts, and what the page
modules render): verify_data (VerifyResult + where each layer came from), convert_data (ConversionResult or
the refusal), calibrate_data (every method's calibration Result, the statistics behind them, the int8
evaluation on ncnn when it ran).
"""

from __future__ import annotations

import os
from collections import Counter

from onnx2caffe import origins as O

# ------------------------------------------------------------------------------------------- verify


def _origins(result) -> tuple[dict[str, O.LayerOrigin], str]:
    """Caffe layer -> origin, and where that came from (for the page)."""
    path = O.default_layers_file(result.prototxt, result.names_file)
    if path is not None:
        return O.by_layer(O.load(path)), path
    if result.per_layer is None or not isinstance(result.model, str) or not os.path.isfile(result.model):
        return {}, ""
    import onnx

    model = onnx.load(result.model, load_external_data=False)
    layer_tensor = {r["layer"]: r["output"] for r in result.per_layer if r.get("output") and r.get("layer")}
    return O.from_tensors(model.graph.node, layer_tensor), ""


def verify_data(result, preprocess: dict | None = None) -> dict:
    """The page's data (JSON-able): VerifyResult.to_json() plus the layer rows merged over the runtimes
    (`layers`), each with its origin, and the Caffe input shapes. preprocess: --mean/--scale/--pixel as
    given (shown when an input is an image)."""
    from onnx2caffe.caffe_net import CaffeNet

    data = result.to_json()
    shapes = {}
    try:
        shapes = {b: list(s) for b, s in CaffeNet.load(result.prototxt).inputs.items()}
    except Exception:  # the prototxt was read by verify already; shapes are only shown
        shapes = {}
    for inp in data["inputs"]:
        inp["shape"] = shapes.get(inp["blob"])
    data["preprocess"] = preprocess or {}
    origin_of, layers_file = _origins(result)
    data["layers_file"] = layers_file or None
    rows: list[dict] = []
    index: dict[tuple, dict] = {}
    for r in data["per_layer"] or []:
        key = (r["layer"], r["blob"])
        row = index.get(key)
        if row is None:
            o = origin_of.get(r["layer"])
            row = {
                "pos": len(rows) + 1,
                "layer": r["layer"],
                "type": r["type"],
                "blob": r["blob"],
                "tensor": r.get("output"),
                "shape": r.get("shape"),
                "node": o.node if o else None,
                "op": o.op if o else None,
                "onnx_nodes": [list(p) for p in o.onnx_nodes] if o else [],
                "composition_size": o.size if o else 0,
                "results": {},
            }
            index[key] = row
            rows.append(row)
        row["tensor"] = row["tensor"] or r.get("output")
        row["shape"] = row["shape"] or r.get("shape")
        if r.get("ok") is None:  # not compared: only why (thousand-layer nets have many such rows)
            row["results"][r["runtime"]] = {"ok": None, "note": r.get("note")}
        else:
            row["results"][r["runtime"]] = {
                "max_abs": _short_float(r.get("max_abs")),
                "max_rel": _short_float(r.get("max_rel")),
                "cosine": r.get("cosine"),  # kept whole: 0.99999 and 0.9999999 must stay apart
                "ok": r["ok"],
                "note": r.get("note"),
            }
    data["layers"] = rows if data["per_layer"] is not None else None
    first = {}
    for rt, bad in (data.get("first_disagreement") or {}).items():
        first[rt] = index[(bad["layer"], bad["blob"])]["pos"] if bad else None
    data["first_position"] = first
    data["per_layer"] = None  # merged into "layers"
    return data


def _short_float(v):
    """7 significant digits (the page's data stays a fraction of the page)."""
    return None if v is None else float(f"{v:.7g}")


# ------------------------------------------------------------------------------------------- convert


def _mapper_notes(op: str) -> str:
    from onnx2caffe.registry import mappers_for

    domain, _, op_type = op.rpartition("::")
    notes = []
    for e in mappers_for(op_type, domain):
        if e.notes and e.notes not in notes:
            notes.append(e.notes)
    return " / ".join(notes)


def _passes(applied: list[str]) -> list[dict]:
    from onnx2caffe.passes import PASSES

    return [
        {"name": p.NAME, "description": " ".join(str(p.DESCRIPTION).split()), "applied": p.NAME in applied}
        for p in PASSES
    ]


def _input_ops(model) -> dict[str, int]:
    """Op type counts of the input model (nodes only; weights are not read), {} when it cannot be read."""
    import onnx

    from onnx2caffe.origins import op_label

    try:
        proto = (
            model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
        )
    except Exception:  # the refusal itself is the page's content; the model summary is optional
        return {}
    return dict(Counter(op_label(n) for n in proto.graph.node))


def convert_data(model, prefix: str, result=None, error=None, seed: int = 0, checked: bool = True) -> dict:
    """The page's data. result: the ConversionResult (also when the check failed: ToleranceError.result);
    error: the ConversionError of a refused model (its `.errors` list the nodes), or the ToleranceError."""
    data: dict = {
        "model": str(model) if not hasattr(model, "SerializeToString") else "<ModelProto>",
        "prefix": str(prefix),
        "seed": seed,
        "checked": checked,
        "error": str(error) if error is not None else None,
    }
    refused = getattr(error, "errors", None) if result is None else None
    if result is None:
        data["status"] = "refused"
        data["refusals"] = [
            {
                "node": e.node_name,
                "op": f"{e.domain}::{e.op_type}" if e.domain else e.op_type,
                "opset": e.opset,
                "attribute": e.attribute,
                "value": None if e.attribute is None else _short(e.value),
                "reason": e.reason,
            }
            for e in (refused or [])
        ]
        data["input_ops"] = _input_ops(model)
        return data
    net = result.net
    types = {ly.name: ly.type for ly in net.layers}
    data["status"] = "converted" if result.ok or not checked else "outside tolerance"
    files = [p for p in (result.prototxt, result.caffemodel, result.names_json, result.layers_json) if p]
    data["files"] = [{"path": p, "bytes": os.path.getsize(p) if os.path.isfile(p) else None} for p in files]
    data["inputs"] = [{"blob": b, "shape": list(s)} for b, s in result.inputs.items()]
    data["outputs"] = list(result.outputs)
    data["caffe_layers"] = len([ly for ly in net.layers if ly.type != "Input"])
    data["caffe_types"] = dict(Counter(ly.type for ly in net.layers if ly.type != "Input").most_common())
    data["weights"] = int(sum(int(b.size) for ly in net.layers for b in ly.blobs))
    record = result.layers or {"compositions": [], "removed": []}
    ops: dict[str, dict] = {}
    for c in record["compositions"]:
        row = ops.setdefault(
            c["op"], {"op": c["op"], "nodes": 0, "layers": Counter(), "from": Counter(), "examples": []}
        )
        row["nodes"] += 1
        row["layers"].update(types.get(name, "?") for name in c["layers"])
        row["from"].update(op for _, op in c["onnx_nodes"])
        if len(row["examples"]) < 3:
            row["examples"].append(c["node"])
    data["ops"] = [
        {
            "op": r["op"],
            "nodes": r["nodes"],
            "caffe_layers": dict(r["layers"].most_common()),
            "from_ops": dict(r["from"].most_common()),
            "examples": r["examples"],
            "notes": _mapper_notes(r["op"]),
        }
        for r in sorted(ops.values(), key=lambda r: (-r["nodes"], r["op"]))
    ]
    data["removed"] = dict(Counter(op for _, op in record.get("removed", [])).most_common())
    data["input_nodes"] = sum(len(c["onnx_nodes"]) for c in record["compositions"]) + len(
        record.get("removed", [])
    )
    data["passes"] = _passes(result.passes_applied)
    data["agreement"] = result.report
    data["skipped"] = result.skipped
    return data


def _short(value, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------- calibrate

DISPLAY_BINS = 256  # the 2048 histogram bins merged 8 by 8 for the charts and the embedded data


def _other_thresholds(st, percentile: float) -> dict[str, float]:
    """Thresholds of the methods computable from these statistics."""
    from onnx2caffe.calibrate import methods as M

    if st.absmax <= 0:
        return {}
    out = {}
    if st.hist is not None:
        out["kl"] = M.kl_ncnn(st.hist, st.absmax).threshold
    if st.legacy_hist is not None:
        out["kl-legacy"] = M.kl_legacy(st.legacy_hist, st.absmax).threshold
    if st.numel:
        out["aciq"] = M.aciq(st.absmax, st.numel).threshold
    out["minmax"] = M.minmax(st.absmax).threshold
    if st.hist is not None:
        out["percentile"] = M.percentile(st.hist, st.zeros, st.absmax, percentile).threshold
    return out


def calibrate_data(results: dict, cfg, tables: dict[str, str], evaluation=None) -> dict:
    """The page's data. results: method -> calibrate Result (one, or one per method with --method all);
    cfg: the calibrate Config; tables: method -> table path; evaluation: the int8 evaluation (or None)."""
    import numpy as np

    from onnx2caffe.calibrate import methods as M
    from onnx2caffe.calibrate.job import METHODS

    methods = list(results)
    first = results[methods[0]]
    data: dict = {
        "prototxt": cfg.proto,
        "caffemodel": cfg.model,
        "images": cfg.images,
        "images_used": first.images_used,
        "images_skipped": first.images_skipped,
        "runtime": first.runtime,
        "seconds": round(float(first.seconds.get("total", 0.0)), 3),
        "methods": methods,
        "tables": tables,
        "preprocess": {
            "mean": list(cfg.mean),
            "norm": list(cfg.norm),
            "pixel": cfg.pixel,
            "size": list(cfg.size) if cfg.size else None,
        },
        "group": cfg.group,
        "percentile": cfg.percentile,
    }
    stats = first.stats or {}
    blobs: dict[str, dict] = {}
    for r in first.layers:
        q = r.layer
        if q.run_blob in blobs:
            blobs[q.run_blob]["layers"].append(q.name)
            continue
        st = stats.get(q.run_blob)
        th = {m: _threshold_of(results[m], q.name) for m in methods}
        if st is not None:
            for m, t in _other_thresholds(st, cfg.percentile).items():
                th.setdefault(m, t)
        th = {m: th[m] for m in METHODS if m in th}
        entry = {
            "blob": q.blob,
            "layers": [q.name],
            "absmax": float(r.absmax),
            "thresholds": th,
            "clipped": {},
            "hist": None,
        }
        if st is not None and st.hist is not None and st.absmax > 0:
            for m, t in th.items():
                entry["clipped"][m] = float(M.clipped_share(st.hist, st.zeros, st.absmax, t))
            h = np.asarray(st.hist, dtype=np.int64)
            entry["hist"] = h.reshape(DISPLAY_BINS, -1).sum(axis=1).tolist()
            entry["zeros"] = int(st.zeros)
        blobs[q.run_blob] = entry
    blob_of = {r.layer.name: r.layer.run_blob for r in first.layers}
    layers = []
    for i, r in enumerate(first.layers):
        ws = [float(w) for w in r.layer.weight_scales]
        row = {
            "pos": i + 1,
            "layer": r.layer.name,
            "type": r.layer.type,
            "blob": r.layer.blob,
            "run_blob": blob_of[r.layer.name],
            "absmax": float(r.absmax),
            "weight_scales": {
                "count": len(ws),
                "min": min(ws) if ws else None,
                "max": max(ws) if ws else None,
            },
            "by_method": {},
        }
        for m in methods:
            lr = next(x for x in results[m].layers if x.layer.name == r.layer.name)
            row["by_method"][m] = {
                "threshold": float(lr.threshold),
                "scale": float(lr.scale),
                "kl": None if lr.kl is None else float(lr.kl),
                "clipped": None if lr.clipped is None else float(lr.clipped),
            }
        layers.append(row)
    data["blobs"] = blobs
    data["layers"] = layers
    data["evaluation"] = _evaluation(evaluation)
    return data


def _threshold_of(result, layer: str) -> float:
    return float(next(x.threshold for x in result.layers if x.layer.name == layer))


def _evaluation(evaluation) -> dict | None:
    if evaluation is None:
        return None
    return evaluation.to_json() if hasattr(evaluation, "to_json") else dict(evaluation)
