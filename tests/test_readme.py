"""The README's op table is generated from the registry (`make docs`); it must not go stale."""

import importlib.util
from pathlib import Path

import numpy as np

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


def _python_blocks(text: str) -> list[str]:
    blocks, rest = [], text
    while "```python\n" in rest:
        rest = rest.split("```python\n", 1)[1]
        code, rest = rest.split("```", 1)
        blocks.append(code)
    return blocks


def test_readme_python_examples_run_as_printed(tmp_path, monkeypatch):
    """The README's Python blocks run unchanged against a small net converted to out/resnet50.* (the README
    makes that file with `onnx2caffe export torchvision:resnet50`; any net with an input named `input` will do)."""
    import onnx
    from onnx import TensorProto, helper

    from onnx2caffe.runtimes import available_runtimes

    if "pycaffe" not in available_runtimes():
        import pytest

        pytest.skip("the README's runtime example uses real Caffe (make caffe)")
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, (4, 3, 3, 3), rng.standard_normal(108).astype(np.float32))
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["output"]),
        ],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, (1, 3, 8, 8))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, (1, 4, 8, 8))],
        [w],
    )
    (tmp_path / "out").mkdir()
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
        tmp_path / "out" / "resnet50.onnx",
    )
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "out" / "resnet50.caffemodel").stat().st_size > 0
