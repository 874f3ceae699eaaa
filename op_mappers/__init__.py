"""Per-op mappers (ONNX node -> Caffe layers). Every module in this folder registers its mappers with
`onnx2caffe.registry.register` at import; `load_all()` imports them all (a new module is picked up without
editing this file)."""

from __future__ import annotations

import importlib
import pkgutil

_loaded = False


def load_all() -> None:
    """Import every mapper module of this package (once)."""
    global _loaded
    if _loaded:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True
