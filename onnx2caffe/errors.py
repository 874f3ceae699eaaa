"""Typed errors. Every error the CLI can report is an Onnx2CaffeError: it prints one line, no traceback."""

from __future__ import annotations


class Onnx2CaffeError(Exception):
    """Base class. str(err) is the one-line message shown to users."""

    exit_code = 2


class InputFileError(Onnx2CaffeError):
    """A file given by the user is missing, unreadable, malformed or inconsistent."""


class OutputFileError(Onnx2CaffeError):
    """An output cannot be written (folder not writable, would overwrite an input, ...)."""


class InvalidNameError(Onnx2CaffeError):
    """A layer or blob name that cannot be written safely."""


class RuntimeUnavailableError(Onnx2CaffeError):
    """A Caffe runtime is not installed or cannot start; the message says how to get it."""


class RuntimeExecutionError(Onnx2CaffeError):
    """A Caffe runtime failed while loading or running a model."""


class ResourceError(Onnx2CaffeError):
    """The work would need more memory than this machine (or process) can give; the message names the size,
    the limit and the ways out (e.g. --no-check, a smaller input shape)."""


class ConversionError(Onnx2CaffeError):
    """The ONNX model cannot be converted (one or more nodes unsupported)."""


class ToleranceError(Onnx2CaffeError):
    """Outputs disagree with the reference beyond tolerance."""

    exit_code = 1
