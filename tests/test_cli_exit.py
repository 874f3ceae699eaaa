"""The `onnx2caffe` command ends with cli.fast_exit: exit handlers run and the streams are flushed, then the
process ends without the interpreter's teardown; with another thread alive it exits normally."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from onnx2caffe.cli import main


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kw)


def test_exit_handlers_run_and_streams_are_flushed():
    code = (
        "import atexit, sys, tempfile\n"
        "from onnx2caffe.cli import fast_exit\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "d = tempfile.TemporaryDirectory()\n"  # never cleaned up by hand: its finalizer runs at exit
        "print(d.name)\n"
        "print('to stdout, unterminated', end='')\n"
        "print('to stderr', file=sys.stderr, end='')\n"
        "fast_exit(3)\n"
    )
    proc = _python(code)
    assert proc.returncode == 3
    folder, rest = proc.stdout.split("\n", 1)
    assert rest == "to stdout, unterminatedhandler ran\n"
    assert proc.stderr == "to stderr"
    assert folder and not os.path.exists(folder)


def test_a_live_thread_gets_the_normal_exit(tmp_path):
    """A thread still working is not cut off: the normal exit waits for it."""
    out = tmp_path / "done.txt"
    code = (
        "import threading, time\n"
        "from onnx2caffe.cli import fast_exit\n"
        "def work():\n"
        "    time.sleep(0.5)\n"
        f"    open({str(out)!r}, 'w').write('finished')\n"
        "threading.Thread(target=work).start()\n"
        "fast_exit(4)\n"
    )
    proc = _python(code)
    assert proc.returncode == 4
    assert out.read_text() == "finished"


def test_console_script_prints_everything_and_keeps_the_exit_code(tmp_path):
    script = Path(sys.executable).with_name("onnx2caffe")
    if not script.is_file():
        pytest.skip(f"no console script beside {sys.executable}")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["ops"]) == 0
    proc = subprocess.run([str(script), "ops"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == buf.getvalue() and len(proc.stdout) > 1000
    missing = tmp_path / "missing.onnx"
    proc = subprocess.run([str(script), "convert", str(missing), "-o", str(tmp_path / "x")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == f"onnx2caffe: error: {missing}: no such file\n"
