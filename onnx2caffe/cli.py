"""`onnx2caffe` command line: only dispatches.

Each subcommand is a module `onnx2caffe/cli_<name>.py` defining HELP (one line), optionally DESCRIPTION,
`add_arguments(parser)` and `run(args) -> int`; it is found by its file name, so adding a subcommand needs no
edit here. Those modules must import only light things at top level (heavy imports go inside run()).
Every Onnx2CaffeError becomes one line `onnx2caffe: error: ...` on stderr and exit code `err.exit_code`; so
does a MemoryError (exit code 2). Progress lines (onnx2caffe/progress.py) are reported on stderr as the
command's --quiet / --progress say (default: on a terminal, for runs longer than a few seconds).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import pkgutil
import signal
import sys
import threading

from . import __version__, progress
from .errors import Onnx2CaffeError

# subcommands listed first in --help, in this order; others follow alphabetically
_ORDER = ("convert", "export", "verify", "calibrate", "ncnn", "ops")


def commands() -> dict[str, object]:
    """Subcommand name -> module (with add_arguments and run)."""
    import onnx2caffe

    found = {}
    for info in pkgutil.iter_modules(onnx2caffe.__path__):
        if info.name.startswith("cli_"):
            found[info.name[4:]] = f"onnx2caffe.{info.name}"
    names = [n for n in _ORDER if n in found] + sorted(n for n in found if n not in _ORDER)
    return {n: importlib.import_module(found[n]) for n in names}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): bad arguments are bad input like any other."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onnx2caffe",
        description="Convert PyTorch/ONNX models to Caffe, checked against onnxruntime on real Caffe runtimes.",
    )
    parser.add_argument("--version", action="version", version=f"onnx2caffe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, mod in commands().items():
        p = sub.add_parser(
            name,
            help=getattr(mod, "HELP", None),
            description=getattr(mod, "DESCRIPTION", None) or getattr(mod, "HELP", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so atomic writes remove their temp files (restored afterwards)
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler) if _main_thread() else None
    try:
        with progress.reporting(progress.mode_from_args(args)):
            return int(args._run(args) or 0)
    except Onnx2CaffeError as err:
        print(f"onnx2caffe: error: {err}", file=sys.stderr)
        return err.exit_code
    except MemoryError as err:  # what no estimate foresaw: still one line, never a traceback
        text = " ".join(str(err).split()) or "an allocation failed"
        print(f"onnx2caffe: error: out of memory ({text})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onnx2caffe: interrupted", file=sys.stderr)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def console_main() -> None:
    """The `onnx2caffe` command: main(), then fast_exit."""
    fast_exit(main())


def fast_exit(code: int) -> None:
    """End the process with `code` without the interpreter's teardown.

    After a run every file is written and closed; what is left is the interpreter freeing the modules and
    objects of torch, onnxruntime, OpenCV and the model one by one: 0.9 s after a VGG-16 export (about 1 s
    of the 10 s a bare torch.onnx.export process takes), for nothing. So the exit handlers run as at a
    normal exit (atexit: temporary folders of weakref.finalize, worker processes, logging), the standard
    streams are flushed, and os._exit ends the process. When another thread is still alive (it would be cut
    off) or a stream cannot be flushed, the normal exit runs instead."""
    if threading.active_count() > 1 or not _main_thread():
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):  # a closed pipe: let the normal exit report it as Python does
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    console_main()
