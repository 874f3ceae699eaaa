"""The page shell (inline CSS and the table-sorting script), the sortable table, number formats, writing."""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onnx2caffe.errors import OutputFileError, RuntimeUnavailableError

# Nothing may be fetched: the policy makes the browser refuse (and report) any request the page would make.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

CSS = """
:root { --ok: #1a7f37; --bad: #c0362c; --warn: #9a6700; --muted: #57606a; --line: #d0d7de; --head: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1f2328; background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 8px 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; overflow-wrap: anywhere; }
p, ul { margin: 6px 0; }
.sub { color: var(--muted); margin: 0 0 12px; overflow-wrap: anywhere; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em; }
.verdict { border-radius: 6px; padding: 10px 14px; margin: 12px 0; font-size: 16px; font-weight: 600;
  border: 1px solid; }
.verdict.ok { background: #dafbe1; border-color: #4ac26b; color: #116329; }
.verdict.bad { background: #ffebe9; border-color: #ff8182; color: #82071e; }
.verdict.warn { background: #fff8c5; border-color: #d4a72c; color: #7d4e00; }
.verdict .detail { display: block; font-weight: 400; font-size: 14px; margin-top: 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
table.wide { width: 100%; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
th.num { white-space: normal; min-width: 5.5em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
td.name { overflow-wrap: anywhere; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 0.92em; min-width: 8em; }
tbody tr:nth-child(even) { background: #fbfbfc; }
tr.bad td { background: #ffebe9; }
tr.first td { background: #ffcecb; font-weight: 600; }
tr.skip td { color: var(--muted); }
.okc { color: var(--ok); font-weight: 600; }
.badc { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #afb8c1; font-weight: 400; }
table.sortable th[aria-sort=ascending]::after { content: " \\2191"; color: #1f2328; }
table.sortable th[aria-sort=descending]::after { content: " \\2193"; color: #1f2328; }
figure { margin: 10px 0 16px; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 14px 22px; }
.grid h3 { font-size: 13px; margin: 0 0 2px; font-weight: 600; }
.grid figure { margin: 0; break-inside: avoid; }
.tag { display: inline-block; border: 1px solid var(--line); border-radius: 10px; padding: 0 7px;
  margin: 1px 2px 1px 0; font-size: 0.92em; background: var(--head); white-space: nowrap; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { font-size: 10.5px; }
  main { max-width: none; padding: 0; }
  .noprint { display: none; }
  .scroll { overflow: visible; }
  table { font-size: 9.5px; }
  thead { display: table-header-group; }
  tr, figure { break-inside: avoid; }
  .grid { grid-template-columns: repeat(3, 1fr); gap: 6px 10px; }
  figcaption, .grid h3 { font-size: 9px; }
  h2 { break-after: avoid; }
  table.sortable th::after { content: ""; }
  .verdict, tr.bad td, tr.first td { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""

# Click a header to sort by that column (again to reverse); empty cells stay last. Cells may carry the value
# to sort by in data-v (numbers, or text differing from what is shown).
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  var heads = t.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.tabIndex = 0;
    function sort() {
      var num = th.classList.contains("num"), asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(r) {
        var c = r.cells[i], v = c ? (c.hasAttribute("data-v") ? c.getAttribute("data-v") : c.textContent) : "";
        if (num) { v = parseFloat(v); return isNaN(v) ? null : v; }
        return v === "" ? null : v.toLowerCase();
      }
      var keyed = rows.map(function (r, n) { return [key(r), n, r]; });
      keyed.sort(function (a, b) {
        if (a[0] === null || b[0] === null) { return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1); }
        var d = a[0] < b[0] ? -1 : (a[0] > b[0] ? 1 : 0);
        return (asc ? d : -d) || a[1] - b[1];
      });
      keyed.forEach(function (k) { body.appendChild(k[2]); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
  });
});
"""


def esc(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


# ------------------------------------------------------------------------------------------- numbers


def fmt_num(v: float | None, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)


def fmt_cos(v: float | None) -> str:
    """Cosine with enough digits to see 0.99999 from 0.9999999."""
    return fmt_num(v, ".9f")


def fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ------------------------------------------------------------------------------------------- tables


@dataclass
class Cell:
    """A table cell: shown as `html` (already escaped/marked up), sorted by `sort` (None: the shown text)."""

    html: str
    sort: Any = None
    cls: str = ""
    title: str | None = None


def text(value: Any, cls: str = "", sort: Any = None) -> Cell:
    return Cell(esc(value), sort, cls)


def num(value: float | None, spec: str = ".3g", cls: str = "") -> Cell:
    """A number cell sorting by value (infinite: as the largest; missing: last)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell("-", None, ("num " + cls).strip())  # "-" is no number: sorted last
    v = float(value)
    key = "1e308" if v == math.inf else ("-1e308" if v == -math.inf else format(v, ".7g"))
    return Cell(esc(fmt_num(v, spec)), key, ("num " + cls).strip())


def name(value: Any) -> Cell:
    """A name (layer, blob, node), wrapping anywhere; sorted by its text, a missing one last."""
    if value is None:
        return Cell('<span class="muted">-</span>', "", "name")
    return Cell(esc(value), None, "name")


def table(
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Cell | str]],
    *,
    sortable: bool = True,
    row_classes: Sequence[str] | None = None,
    wide: bool = True,
    id: str | None = None,
) -> str:
    """columns: (label, kind) with kind "num" (right-aligned, numeric sort) or "text". rows: cells."""
    classes = " ".join(c for c in ("sortable" if sortable else "", "wide" if wide else "") if c)
    out = [f'<div class="scroll"><table class="{classes}"' + (f' id="{esc(id)}"' if id else "") + ">"]
    out.append("<thead><tr>")
    for label, kind in columns:
        out.append(f'<th scope="col"{" class=num" if kind == "num" else ""}>{esc(label)}</th>')
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        for c in row:
            if not isinstance(c, Cell):
                c = text(c)
            attrs = ""
            if c.cls:
                attrs += f' class="{c.cls}"'
            if c.sort is not None:
                attrs += f' data-v="{esc(c.sort)}"'
            if c.title:
                attrs += f' title="{esc(c.title)}"'
            out.append(f"<td{attrs}>{c.html}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def facts(items: Sequence[tuple[str, str]]) -> str:
    """A definition list; values are HTML."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def verdict(ok: bool | None, headline: str, detail: str = "") -> str:
    cls = "ok" if ok else ("warn" if ok is None else "bad")
    d = f'<span class="detail">{detail}</span>' if detail else ""
    return f'<div class="verdict {cls}" role="status">{esc(headline)}{d}</div>'


def figure(svg: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{svg}{cap}</figure>"


# ------------------------------------------------------------------------------------------- the page


def page(title: str, subtitle: str, body: str, data: dict | None = None) -> str:
    """The whole document. data: embedded as JSON (id "report-data") for scripts reading the page."""
    from onnx2caffe import __version__

    embedded = ""
    if data is not None:
        payload = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        payload = payload.replace("</", "<\\/")  # a name holding "</script>" cannot end the element
        embedded = f'<script type="application/json" id="report-data">{payload}</script>\n'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body><main>\n"
        f"<h1>{esc(title)}</h1>\n<p class=sub>{subtitle}</p>\n{body}\n"
        f"<footer>onnx2caffe {esc(__version__)}: a self-contained page (no network); click a column "
        "header to sort a table.</footer>\n"
        f"</main>\n{embedded}<script>{SORT_JS}</script>\n</body></html>\n"
    )


def check_destination(path: str) -> None:
    """Refuse a page destination that cannot be written, before the (long) work that fills the page: a
    folder, or a path under a file or an unwritable folder. A missing folder is created when the page is
    written (as convert does for its outputs)."""
    dest = os.fspath(path)
    if os.path.isdir(dest):
        raise OutputFileError(f"cannot write {dest}: it is a folder")
    folder = os.path.dirname(os.path.abspath(dest))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputFileError(f"cannot write {dest}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFileError(f"cannot write {dest}: permission denied (folder {existing})")
    require_matplotlib()


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeUnavailableError(
            "--html needs matplotlib for its charts: pip install 'onnx2caffe[report]' (or matplotlib)"
        ) from None


def write_page(path: str, document: str) -> None:
    """Write the page atomically (a temporary file beside it, renamed when complete), creating its folder."""
    from onnx2caffe.fileio import write_bytes_atomic

    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputFileError(
            f"cannot create folder {folder} for {os.fspath(path)}: {exc.strerror}"
        ) from None
    write_bytes_atomic(path, document.encode("utf-8"))
