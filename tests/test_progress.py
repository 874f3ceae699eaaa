"""onnx2caffe/progress.py and the commands' --quiet / --progress: a line per step on stderr, never on stdout."""

from __future__ import annotations

import io
import json
import time

import pytest

from onnx2caffe import cli, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_steps(stream, mode, delay=0.0, names=("export", "simplify"), sleep=0.0):
    with progress.reporting(mode, stream=stream, delay=delay):
        for name in names:
            with progress.step(name):
                time.sleep(sleep)


def test_on_prints_one_line_per_step_when_not_a_terminal():
    out = io.StringIO()
    run_steps(out, "on")
    lines = out.getvalue().splitlines()
    assert [line.rsplit(" ", 2)[0] for line in lines] == ["onnx2caffe: export", "onnx2caffe: simplify"]
    assert all(line.endswith(" s") for line in lines) and "\r" not in out.getvalue()


def test_auto_is_silent_when_not_a_terminal_and_off_is_silent_everywhere():
    out = io.StringIO()
    run_steps(out, "auto")
    assert out.getvalue() == ""
    term = Terminal()
    run_steps(term, "off")
    assert term.getvalue() == ""


def test_terminal_line_shows_while_the_step_runs_then_gets_its_time():
    term = Terminal()
    with progress.reporting("auto", stream=term, delay=0.0):
        with progress.step("export"):
            assert term.getvalue() == "onnx2caffe: export ..."
    assert term.getvalue().startswith("onnx2caffe: export ...\r\033[Konnx2caffe: export ")
    assert term.getvalue().endswith(" s\n")


def test_a_short_run_prints_nothing_a_long_step_shows_after_the_delay():
    term = Terminal()
    run_steps(term, "auto", delay=5.0)
    assert term.getvalue() == ""
    term = Terminal()
    with progress.reporting("auto", stream=term, delay=0.2):
        with progress.step("quick"):
            pass
        with progress.step("long"):
            time.sleep(0.6)  # the delay passes while it runs: its line appears then
            assert term.getvalue() == "onnx2caffe: long ..."
    assert term.getvalue().endswith(" s\n") and "quick" not in term.getvalue()


def test_a_failed_step_says_so_and_listeners_see_every_step():
    seen = []

    def listener(event, name, seconds):
        seen.append((event, name))

    progress.add_listener(listener)
    try:
        out = io.StringIO()
        with pytest.raises(RuntimeError), progress.reporting("on", stream=out):
            with progress.step("map"):
                raise RuntimeError("boom")
    finally:
        progress.remove_listener(listener)
    assert out.getvalue().startswith("onnx2caffe: map failed after ")
    assert seen == [("start", "map"), ("end", "map")]


# ------------------------------------------------------------------------------------------------ commands

torch = pytest.importorskip("torch")


def _write_net(folder) -> str:
    (folder / "tinynet.py").write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Dropout(0.5),\n"
        "                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 5))\n"
    )
    return f"{folder / 'tinynet.py'}:build"


def test_export_progress_goes_to_stderr_only(tmp_path, capsys):
    model = _write_net(tmp_path)
    rc = cli.main(["export", model, "--input-shape", "1,3,8,8", "-o", str(tmp_path / "t.onnx"), "--progress"])
    assert rc == 0
    out, err = capsys.readouterr()
    steps = [line.split("onnx2caffe: ", 1)[1].rsplit(" ", 2)[0] for line in err.splitlines()]
    assert steps == ["import torch", "build model", "export (torchscript)", "simplify", "check against PyTorch",
                     "write .onnx"]  # fmt: skip
    assert "onnx2caffe:" not in out and out.startswith("exported ")


def test_quiet_and_default_print_no_progress_when_not_a_terminal(tmp_path, capsys):
    model = _write_net(tmp_path)
    for extra in (["--quiet"], []):
        rc = cli.main(["export", model, "--input-shape", "1,3,8,8", "-o", str(tmp_path / "t.onnx"), *extra])
        assert rc == 0
        assert capsys.readouterr().err == ""


def test_quiet_and_progress_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(
            [
                "export",
                "x:y",
                "--input-shape",
                "1,3,8,8",
                "-o",
                str(tmp_path / "t.onnx"),
                "--quiet",
                "--progress",
            ]
        )
    assert "not allowed with" in capsys.readouterr().err


def test_verify_json_stays_clean_with_progress(tmp_path, capsys):
    """Progress lines never enter what a command prints on stdout (verify --json is one JSON document)."""
    model = _write_net(tmp_path)
    prefix = tmp_path / "t"
    assert (
        cli.main(["convert", model, "--input-shape", "1,3,8,8", "-o", str(prefix), "--no-check", "--quiet"])
        == 0
    )
    capsys.readouterr()
    rc = cli.main(
        ["verify", f"{prefix}.onnx", f"{prefix}.prototxt", f"{prefix}.caffemodel", "--json", "--progress",
         "--runtime", "opencv"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0
    doc = json.loads(out)
    assert doc["ok"] is True
    assert "onnx2caffe: check on opencv" in err
