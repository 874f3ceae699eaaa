"""One progress line per step of a long run, on stderr; and per-step hooks (benchmarks/pipeline.py).

Library code marks its long steps (export, simplify, the checks, mapping, writing, each runtime) with
``with progress.step("export"):``. That prints nothing by itself: a command turns reporting on around its
work with ``with progress.reporting(mode):``

``auto`` (the commands' default)
    lines only when stderr is a terminal, and only once the run has taken DELAY seconds (a short run prints
    nothing; a step already running at that moment gets its line then);
``on`` (``--progress``)
    every step, also when stderr is a file or a pipe (CI logs);
``off`` (``--quiet``)
    nothing.

On a terminal a step's line shows while it runs (``onnx2caffe: export ...``) and is completed in place with
its time (``onnx2caffe: export 12.3 s``); elsewhere each step prints one line when it ends. Progress never
goes to stdout, so what a command prints there (its report, ``--json`` documents) stays clean.

There is no bar to draw (a step is one call into torch, onnx-simplifier or a runtime, with no count of work
done), so no progress library is used: a line per step is what tqdm or rich would show here too.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

MODES = ("auto", "on", "off")
DELAY = 2.0  # seconds into a run before `auto` shows anything

# listener(event, name, seconds): event "start" (seconds None) or "end" (the step's wall time)
Listener = Callable[[str, str, "float | None"], None]
_listeners: list[Listener] = []
_reporter: _Reporter | None = None


def add_listener(fn: Listener) -> None:
    """Call `fn` at the start and end of every step (benchmarks measure each step this way)."""
    _listeners.append(fn)


def remove_listener(fn: Listener) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Mark a step of the current run (a line on stderr when reporting is on, see the module docstring)."""
    rep = _reporter
    for fn in list(_listeners):
        fn("start", name, None)
    token = rep.start(name) if rep is not None else None
    t0 = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        dt = time.perf_counter() - t0
        if rep is not None:
            rep.end(token, dt, ok)
        for fn in list(_listeners):
            fn("end", name, dt)


@contextlib.contextmanager
def reporting(mode: str = "auto", stream: TextIO | None = None, delay: float = DELAY) -> Iterator[None]:
    """Report the steps run inside the block on `stream` (default sys.stderr) as `mode` says."""
    global _reporter
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}: choose one of {', '.join(MODES)}")
    stream = sys.stderr if stream is None else stream
    tty = _isatty(stream)
    enabled = mode == "on" or (mode == "auto" and tty)
    previous = _reporter
    _reporter = _Reporter(stream, tty, 0.0 if mode == "on" else delay) if enabled else None
    try:
        yield
    finally:
        if _reporter is not None:
            _reporter.close()
        _reporter = previous


def mode_from_args(args) -> str:
    """The mode the --quiet / --progress flags of a command ask for."""
    if getattr(args, "quiet", False):
        return "off"
    if getattr(args, "progress", False):
        return "on"
    return "auto"


def add_arguments(parser) -> None:
    """--quiet and --progress, for commands that report steps."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    group.add_argument(
        "--progress",
        action="store_true",
        help="a progress line per step on stderr even when it is not a terminal (default: on a terminal, "
        f"once a run has taken {DELAY:g} s)",
    )


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _Step:
    __slots__ = ("name", "shown", "done", "timer")

    def __init__(self, name: str) -> None:
        self.name = name
        self.shown = False  # its "name ..." line is on the terminal, not completed yet
        self.done = False
        self.timer: threading.Timer | None = None


class _Reporter:
    def __init__(self, stream: TextIO, tty: bool, delay: float) -> None:
        self.stream = stream
        self.tty = tty
        self.mark = time.perf_counter() + delay  # lines only from this moment on
        self.lock = threading.Lock()
        self.open: _Step | None = None  # the step whose line is waiting for its time (terminal only)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr never stops the work
            pass

    def _close_open_line(self) -> None:
        if self.open is not None:
            self._write("\n")
            self.open.shown = False
            self.open = None

    def _show(self, s: _Step) -> None:
        with self.lock:
            if s.done or not self.tty:
                return
            self._close_open_line()
            self._write(f"onnx2caffe: {s.name} ...")
            s.shown = True
            self.open = s

    def start(self, name: str) -> _Step:
        s = _Step(name)
        wait = self.mark - time.perf_counter()
        if wait <= 0:
            self._show(s)
        elif self.tty:
            s.timer = threading.Timer(wait, self._show, args=(s,))
            s.timer.daemon = True
            s.timer.start()
        return s

    def end(self, s: _Step | None, seconds: float, ok: bool) -> None:
        if s is None:
            return
        if s.timer is not None:
            s.timer.cancel()
        with self.lock:
            s.done = True
            if time.perf_counter() < self.mark and not s.shown:
                return  # a short run so far: nothing to say
            what = f"{seconds:.1f} s" if ok else f"failed after {seconds:.1f} s"
            if s.shown and self.open is s:
                self._write(f"\r\033[Konnx2caffe: {s.name} {what}\n")
                self.open = None
            else:
                self._close_open_line()
                self._write(f"onnx2caffe: {s.name} {what}\n")
            s.shown = False

    def close(self) -> None:
        with self.lock:
            self._close_open_line()
