"""The README's op table is generated from the registry (`make docs`); it must not go stale."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _update_module():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_ops_table_is_current():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _update_module().render(text) == text, "README op table is stale: run `make docs`"


def test_readme_lists_every_registered_op():
    from onnx2caffe.registry import support_table

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for op, *_ in support_table():
        assert f"| {op} |" in text
