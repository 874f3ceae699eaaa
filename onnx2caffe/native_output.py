"""Output that native code (C++ inside onnx-simplifier and torch) writes straight to a file descriptor.

Python's contextlib.redirect_stdout/redirect_stderr only move sys.stdout/sys.stderr; C++ writes to the
descriptors 1 and 2 underneath. `captured_fd` points a descriptor at a temporary file for the duration of a
block and hands back what was written, line by line, so a library's diagnostics can be kept for an error
message instead of burying the command's own output.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def captured_fd(fd: int, lines: list[str]) -> Iterator[None]:
    """Collect what is written to descriptor `fd` (1 or 2) inside the block into `lines`.

    Python's own buffered streams are flushed on both sides of the switch, so nothing written before the
    block lands in the capture and nothing written inside it reaches the terminal later. Without a
    descriptor to duplicate (a closed stdio), the block runs uncaptured."""
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    streams = [s for s in {sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__} if s is not None]
    with tempfile.TemporaryFile() as sink:
        for s in streams:
            with contextlib.suppress(OSError, ValueError):
                s.flush()
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for s in streams:
                with contextlib.suppress(OSError, ValueError):
                    s.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())
