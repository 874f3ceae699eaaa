"""HTML report pages for `verify --html`, `convert --html` and `calibrate --html`.

Each page is one self-contained file: inline CSS, a few lines of inline JavaScript (table sorting), charts
drawn by matplotlib as inline SVG; no network, no external script, font or style (the page's Content
Security Policy forbids fetching anything), readable in a 1280-px-wide window and when printed.

Data collection is kept apart from rendering: collect.py turns what a command computed into plain JSON-able
data (also embedded in the page, for scripts); one module per page renders it (`render(data) -> str`) and
writes it atomically (`write(path, ...)`: collect, render, write); html.py holds the page shell and the
table helper, charts.py the matplotlib charts. onnx2caffe.origins (PREFIX.layers.json) says where each Caffe
layer came from.
"""
