"""Atomic file output.

Every file the converter writes goes through :func:`atomic_write`: the content is written to a temporary
file in the destination folder and moved over the destination with ``os.replace`` only once it is
complete. On any exception (KeyboardInterrupt included) the temporary file is removed and an existing
destination is left as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from onnx2caffe.errors import OutputFileError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _short(name: str, limit: int = 100) -> str:
    """``name`` cut to at most ``limit`` bytes, so the temp file name stays within NAME_MAX."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def _describe(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[BinaryIO]:
    """Open a binary file object whose content replaces ``path`` when the ``with`` block ends normally.

    OSErrors (folder missing or not writable, disk full, destination is a folder, ...) become
    OutputFileError naming ``path``. Other exceptions propagate unchanged. In every failing case the
    temporary file is gone afterwards and ``path`` is untouched. ``fsync=True`` flushes the data to disk
    before the rename (durability across a power loss, at the cost of waiting for the disk).
    """
    dest = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(dest))
    if os.path.isdir(dest):
        raise OutputFileError(f"cannot write {dest}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(
            dir=folder, prefix="." + _short(os.path.basename(dest)) + ".", suffix=".tmp"
        )
    except OSError as err:
        raise OutputFileError(f"cannot write {dest}: {_describe(err)} (folder {folder})") from None
    done = False
    try:
        try:
            # mkstemp creates the file 0600: give it the mode of the file it replaces, else the mode an
            # ordinary open() would give it.
            try:
                mode = os.stat(dest).st_mode & 0o7777
            except OSError:
                mode = 0o666 & ~_umask()
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                fd = -1
                yield f
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, dest)
        except OSError as err:
            raise OutputFileError(f"cannot write {dest}: {_describe(err)}") from None
        done = True
    finally:
        if fd >= 0:
            os.close(fd)
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


_FALLOC_FL_KEEP_SIZE = 1
_fallocate: Any = None


def preallocate(f: BinaryIO, size: int) -> None:
    """Reserve ``size`` bytes of disk for ``f`` (Linux fallocate, keeping the file size) if possible.

    Writing into reserved space avoids allocating blocks piecemeal during large writes (numpy's tofile
    does the same). Best effort: does nothing where unsupported.
    """
    global _fallocate
    if size <= 0 or not sys.platform.startswith("linux"):
        return
    if _fallocate is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.fallocate
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fn.restype = ctypes.c_int
            _fallocate = fn
        except (OSError, AttributeError):
            _fallocate = False
    if _fallocate:
        f.flush()
        _fallocate(f.fileno(), _FALLOC_FL_KEEP_SIZE, 0, size)  # failures are harmless: plain writes follow


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, fsync=fsync) as f:
        f.write(data)


def _new_file_mode(dest: str) -> int:
    """The mode a rewritten `dest` keeps, else the mode open() would give a new file (mkstemp makes 0600)."""
    try:
        return os.stat(dest).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def write_files(items) -> None:
    """Write a set of files that belong together: [(path, write(f))] in order. Every destination is checked,
    each file goes to a temporary file beside its destination (hidden, ending in .tmp, as atomic_write's),
    and only when all are complete are they moved into place; any failure (a folder in the way, a full
    disk, Ctrl-C) leaves none of them behind. OSErrors become OutputFileError naming the file."""
    for dest, _ in items:
        if os.path.isdir(dest):
            raise OutputFileError(f"cannot write {dest}: it is a folder")
    temps: list[str] = []
    moved: list[str] = []
    try:
        for dest, write in items:
            folder = os.path.dirname(os.path.abspath(dest))
            try:
                fd, tmp = tempfile.mkstemp(
                    dir=folder, prefix="." + os.path.basename(dest)[:100] + ".", suffix=".tmp"
                )
            except OSError as exc:
                raise OutputFileError(
                    f"cannot write {dest}: {exc.strerror or exc} (folder {folder})"
                ) from None
            temps.append(tmp)
            try:
                with os.fdopen(fd, "wb") as f:
                    os.fchmod(f.fileno(), _new_file_mode(dest))
                    write(f)
            except OSError as exc:
                raise OutputFileError(f"cannot write {dest}: {exc.strerror or exc}") from None
        for tmp, (dest, _) in zip(temps, items, strict=True):
            try:
                os.replace(tmp, dest)
            except OSError as exc:
                raise OutputFileError(f"cannot write {dest}: {exc.strerror or exc}") from None
            moved.append(dest)
    except BaseException:
        for tmp in temps[len(moved) :]:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for dest in moved:
            with contextlib.suppress(OSError):
                os.unlink(dest)
        raise
