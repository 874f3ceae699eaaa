"""Outputs that cannot or must not be written: unwritable folders, outputs equal to inputs, prefixes without
a file name, and writes interrupted by signals (the destination is never left partial)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ._util import CONSOLE_SCRIPT, assert_clean_error, files_under, run_cli, save, tiny_model


@pytest.fixture
def model(tmp_path):
    return save(tiny_model(), tmp_path / "m.onnx")


def _convert(capsys, model, prefix, *extra):
    return run_cli(capsys, "convert", model, "-o", prefix, "--no-check", *extra)


# ------------------------------------------------------------------------------------------- unwritable

# Root ignores permission bits, so "not writable" is made from things no one can write to: a path through a
# regular file (ENOTDIR), /proc (no regular files can be created there), /sys (EACCES even for root).
UNWRITABLE = ["under_a_file/out/m", "under_a_file/m", "/proc/onnx2caffe-test/m", "/proc/m", "/sys/m"]


@pytest.mark.parametrize("prefix", UNWRITABLE)
def test_output_folder_not_writable(capsys, tmp_path, model, prefix):
    if prefix.startswith("/") and not os.path.isdir(os.path.dirname(prefix).split("/onnx2caffe")[0] or "/"):
        pytest.skip(f"{prefix}: no such file system here")
    (tmp_path / "under_a_file").write_text("a regular file\n")
    target = prefix if prefix.startswith("/") else str(tmp_path / prefix)
    before = files_under(tmp_path)
    rc, _, err = _convert(capsys, model, target)
    line = assert_clean_error(rc, err)
    assert "cannot" in line and os.path.dirname(target) in line, line
    assert files_under(tmp_path) == before
    assert not os.path.exists(target + ".prototxt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_output_folder_read_only_non_root(capsys, tmp_path, model):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, _, err = _convert(capsys, model, ro / "m")
        assert_clean_error(rc, err, str(ro))
        assert files_under(ro) == []
    finally:
        ro.chmod(0o700)


def test_unwritable_console_script(tmp_path, model):
    from ._util import run_script

    (tmp_path / "f").write_text("x")
    rc, _, err = run_script("convert", model, "-o", tmp_path / "f" / "sub" / "m", "--no-check")
    assert_clean_error(rc, err, "f")
    assert files_under(tmp_path) == ["f", "m.onnx"]


@pytest.mark.parametrize("suffix", [".prototxt", ".caffemodel"])
def test_destination_is_a_folder(capsys, tmp_path, model, suffix):
    """out/m.caffemodel exists as a folder: a clean error, and no other output of the set is left behind
    (a prototxt without its caffemodel would look like a finished conversion)."""
    out = tmp_path / "out"
    (out / ("m" + suffix)).mkdir(parents=True)
    rc, _, err = _convert(capsys, model, out / "m")
    assert_clean_error(rc, err, "m" + suffix, "folder")
    assert files_under(out) == [], files_under(out)


@pytest.mark.parametrize("prefix", ["out/", "", "."])
def test_prefix_without_file_name(capsys, tmp_path, model, monkeypatch, prefix):
    """`-o out/` would write the hidden files out/.prototxt, out/.caffemodel: refused before any work."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    before = files_under(tmp_path)
    rc, _, err = _convert(capsys, model, prefix)
    assert_clean_error(rc, err, "prefix")
    assert files_under(tmp_path) == before


# ------------------------------------------------------------------------------------------- output == input


@pytest.mark.parametrize("ext", [".prototxt", ".caffemodel", ".names.json", ".layers.json"])
def test_convert_output_equals_input(capsys, tmp_path, ext):
    """An ONNX file named like one of the outputs (m.caffemodel) converted with -o m: refused, input intact."""
    path = save(tiny_model(), tmp_path / ("m" + ext))
    data = open(path, "rb").read()
    rc, _, err = _convert(capsys, path, tmp_path / "m")
    assert_clean_error(rc, err, "m" + ext, "input")
    assert open(path, "rb").read() == data
    assert files_under(tmp_path) == ["m" + ext]


def test_convert_output_equals_input_through_symlink(capsys, tmp_path):
    """link.onnx -> m.caffemodel, convert link.onnx -o m: os.replace would swap m.caffemodel under the link
    and the ONNX model would be gone. Refused (the check resolves symlinks)."""
    path = save(tiny_model(), tmp_path / "m.caffemodel")
    data = open(path, "rb").read()
    os.symlink("m.caffemodel", tmp_path / "link.onnx")
    rc, _, err = _convert(capsys, tmp_path / "link.onnx", tmp_path / "m")
    assert_clean_error(rc, err, "m.caffemodel", "input")
    assert open(path, "rb").read() == data


def test_convert_output_prefix_through_symlinked_folder(capsys, tmp_path):
    (tmp_path / "real").mkdir()
    path = save(tiny_model(), tmp_path / "real" / "m.prototxt")
    data = open(path, "rb").read()
    os.symlink("real", tmp_path / "alias")
    rc, _, err = _convert(capsys, path, tmp_path / "alias" / "m")
    assert_clean_error(rc, err, "input")
    assert open(path, "rb").read() == data


@pytest.fixture(scope="module")
def torch_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch_inputs")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    torch.save(net.state_dict(), d / "ckpt.pt")
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 8, 8)), d / "ts.pt")
    (d / "netdef.py").write_text(
        "import torch\n\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())\n"
    )
    return d


@pytest.mark.parametrize(
    "case",
    ["torchscript", "checkpoint", "module_file", "checkpoint_symlink"],
)
def test_export_output_equals_input(capsys, torch_inputs, case, tmp_path):
    d = torch_inputs
    spec, extra, out = f"{d / 'netdef.py'}:build", [], None
    if case == "torchscript":
        spec, out = str(d / "ts.pt"), d / "ts.pt"
    elif case == "checkpoint":
        extra, out = ["--weights", str(d / "ckpt.pt")], d / "ckpt.pt"
    elif case == "module_file":
        out = d / "netdef.py"
    else:
        os.symlink(d / "ckpt.pt", tmp_path / "link.onnx")
        extra, out = ["--weights", str(d / "ckpt.pt")], tmp_path / "link.onnx"
    before = {p: p.read_bytes() for p in d.iterdir()}
    rc, _, err = run_cli(capsys, "export", spec, *extra, "--input-shape", "1,3,8,8", "-o", out)
    assert_clean_error(rc, err, "input")
    assert {p: p.read_bytes() for p in d.iterdir()} == before


def test_export_input_shape_the_model_cannot_take(capsys, torch_inputs, tmp_path):
    """A 3-D shape for a Conv2d net: a clean error naming the shape problem. Today: RuntimeError traceback
    from the model's forward in export_onnx (exporters/torch_export.py), which runs the model outside its
    error handling to count the outputs."""
    rc, _, err = run_cli(
        capsys,
        "export",
        f"{torch_inputs / 'netdef.py'}:build",
        "--input-shape",
        "1,3,8",
        "-o",
        tmp_path / "x.onnx",
    )
    assert_clean_error(rc, err)
    assert files_under(tmp_path) == []


# ------------------------------------------------------------------------------------------- interrupted writes

OLD = b"previous caffemodel\n" * 4096  # what the destination held before the run
BIG_LAYERS, BIG_N = 6, 3072  # 6 Gemm weights of 3072 x 3072 float32 = 226 MB of caffemodel


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """A ~226 MB ONNX model of Gemm layers (InnerProduct in Caffe), written directly (fast)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    d = tmp_path_factory.mktemp("big")
    nodes, inits, prev = [], [], "x"
    for i in range(BIG_LAYERS):
        w = np.full((BIG_N, BIG_N), 1e-3 * (i + 1), np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}"], [f"h{i}"], name=f"fc{i}", transB=1))
        prev = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, BIG_N])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, BIG_N])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = d / "big.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def _temp_files(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


def _interrupt_mid_write(big_model, out, sig) -> tuple[int, str, int]:
    """Start `onnx2caffe convert`, wait until the caffemodel's temp file holds >= 16 MB, send `sig`.
    Returns (exit code, stderr, bytes the temp file held when signalled)."""
    out.mkdir()
    (out / "big.caffemodel").write_bytes(OLD)
    cmd = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "onnx2caffe.cli"]
    p = subprocess.Popen(
        cmd + ["convert", str(big_model), "-o", str(out / "big"), "--no-check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT; give the
        # child the disposition it has in a terminal, whatever the way this test run was started
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and p.poll() is None:
            tmps = [n for n in _temp_files(out) if n.startswith(".big.caffemodel.")]
            if tmps:
                try:
                    seen = os.stat(out / tmps[0]).st_size
                except FileNotFoundError:
                    seen = 0
                if seen >= 16 * 2**20:
                    p.send_signal(sig)
                    break
            time.sleep(0.0005)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert seen >= 16 * 2**20, f"never saw the caffemodel being written (rc {p.returncode}): {err}"
    return p.returncode, err, seen


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_caffemodel_write(big_model, tmp_path, sig):
    """SIGINT / SIGTERM while the 226 MB caffemodel is being written: exit 130 with one line, the old
    destination byte-identical, no temp file left."""
    out = tmp_path / "out"
    rc, err, seen = _interrupt_mid_write(big_model, out, sig)
    total = BIG_LAYERS * BIG_N * BIG_N * 4
    assert seen < total, "the write had finished before the signal: nothing was tested"
    assert rc == 130, (rc, err)
    assert err.strip() == "onnx2caffe: interrupted", err
    assert (out / "big.caffemodel").read_bytes() == OLD
    assert _temp_files(out) == []


def test_sigkill_during_caffemodel_write(big_model, tmp_path):
    """SIGKILL cannot be caught: the temp file (.big.caffemodel.XXXX.tmp in the same folder) may remain, but
    the destination still holds the old file byte for byte, never a partial one."""
    out = tmp_path / "out"
    rc, _, _ = _interrupt_mid_write(big_model, out, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert (out / "big.caffemodel").read_bytes() == OLD
    leftovers = _temp_files(out)
    assert all(n.startswith(".big.caffemodel.") for n in leftovers), leftovers
