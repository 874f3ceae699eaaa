"""Shared helpers of the bad-input tests: run the CLI (in-process or as the installed console script) and
assert the clean-failure contract: the expected exit code, exactly one stderr line naming the problem, no
traceback, and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "onnx2caffe"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`onnx2caffe ARGS` in this process (fast); returns (exit code, stdout, stderr)."""
    from onnx2caffe.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


MEMORY_CAP = 8 * 2**30  # address space of the CLI in the size-limit tests: what does not fit must be refused


def _cap_address_space(nbytes: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))

    return apply


def run_script(
    *args: str,
    cwd: str | os.PathLike | None = None,
    timeout: float = 120,
    memory_cap: int | None = None,
) -> tuple[int, str, str]:
    """The installed console script in a subprocess; returns (exit code, stdout, stderr). memory_cap: an
    RLIMIT_AS in bytes for the subprocess (and the Caffe worker it starts), e.g. MEMORY_CAP."""
    exe = str(CONSOLE_SCRIPT) if CONSOLE_SCRIPT.exists() else None
    cmd = [exe] if exe else [sys.executable, "-m", "onnx2caffe.cli"]
    env = dict(os.environ, GLOG_minloglevel="2", PYTHONWARNINGS="ignore")
    p = subprocess.run(
        cmd + [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=_cap_address_space(memory_cap) if memory_cap else None,
    )
    return p.returncode, p.stdout, p.stderr


def assert_clean_error(rc: int, err: str, *needles: str, code: int = 2) -> str:
    """Exit code `code`, one stderr line `onnx2caffe: error: ...` containing every needle, no traceback.
    Lines `onnx2caffe: warning: ...` before it (e.g. calibrate's skipped images) are allowed."""
    assert "Traceback" not in err, err
    lines = [x for x in err.strip().splitlines() if not x.startswith("onnx2caffe: warning: ")]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("onnx2caffe: error: "), line
    for n in needles:
        assert n in line, f"{n!r} not in {line!r}"
    assert rc == code, f"exit code {rc}, expected {code}: {line}"
    return line


def files_under(folder: str | os.PathLike) -> list[str]:
    """Every file (hidden temp files included) under `folder`, relative, sorted."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def tiny_model(opset: int = 13, input_name: str = "x", output_name: str = "y") -> onnx.ModelProto:
    """Conv(3->4, 3x3) + Relu on a 1x3x8x8 input: a model the converter supports."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", [input_name, "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], [output_name], name="relu"),
        ],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: str | os.PathLike) -> str:
    onnx.save(model, str(path))
    return str(path)
