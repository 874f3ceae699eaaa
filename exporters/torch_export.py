"""PyTorch -> ONNX: load a model, export it with a fixed input shape, simplify it, check it against PyTorch.

Two exporters are offered, both through ``torch.onnx.export``:

``torchscript`` (the default here; ``dynamo=False``)
    The legacy tracer. It writes the opset you ask for (7 to 20; 13 by default), and its graphs map onto
    fewer Caffe layers: global average pooling comes out as ``GlobalAveragePool`` + ``Flatten`` (one
    Pooling layer with ``global_pooling`` + one Flatten) where the dynamo exporter writes ``ReduceMean``
    with its axes as an input + ``Reshape``. It is also the exporter the legacy Caffe converters and
    the torchvision zoo notes were built on. PyTorch marks it deprecated (a DeprecationWarning, silenced
    here); TorchScript files (``torch.jit.load``) can only be exported with it.
``dynamo`` (PyTorch's own default since 2.9; ``dynamo=True``)
    The ``torch.export`` based exporter, the supported path going forward. It writes opset 18 or newer
    only: asked for a lower opset it logs a failed down-conversion and writes 18 anyway, so a request
    for opset < 18 is refused up front with an error that says what to use instead, and the opset
    actually written is checked after export. Its weights are kept inside the one ``.onnx`` file
    (``external_data=False``).

Input shapes are always static. After export the graph goes through onnx-simplifier and the simplified
graph is run with onnxruntime on a seeded random input and compared with PyTorch's output.

Cost. PyTorch runs the model once: the TorchScript exporter traces an nn.Module by running it on the check's
input, and a forward hook keeps that run's outputs as the check's reference (the dynamo exporter does not
run the model, and TorchScript files are not traced: those are run once before export). The exported model
(kept in memory for the TorchScript exporter; the dynamo exporter writes a temporary file) becomes a
SplitModel (onnx2caffe/onnx_io.py) with its weights copied into numpy arrays once, onnx-simplifier
sees the graph without the layer weights it cannot use (onnx2caffe/simplify.py), and onnxruntime gets the
weights as inputs instead of a serialized copy: the weights are held by PyTorch and once more as arrays.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import io
import logging
import os
import pickle
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from onnx2caffe import progress
from onnx2caffe.errors import InputFileError, Onnx2CaffeError, ToleranceError
from onnx2caffe.native_output import captured_fd
from onnx2caffe.onnx_io import CapturedBytes, SplitModel

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
# The opset each exporter writes when none is asked for.
DEFAULT_OPSET = {"torchscript": 13, "dynamo": 18}
DYNAMO_MIN_OPSET = 18


def _torch_opset_limits() -> tuple[int, int, int]:
    """(lowest opset, highest TorchScript-exporter opset, highest dynamo opset) of the installed torch."""
    try:
        from torch.onnx import _constants as c

        return (
            int(getattr(c, "ONNX_MIN_OPSET", 7)),
            int(getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)),
            int(getattr(c, "ONNX_MAX_OPSET", 23)),
        )
    except ImportError:  # private module moved: the limits of torch 2.9 - 2.14
        return 7, 20, 23


# The check of the simplified ONNX graph against PyTorch: the largest absolute difference divided by the
# largest |PyTorch output| must not exceed this. float32 kernels of onnxruntime and PyTorch differ in
# summation order; for the nets here that gives 1e-6 - 1e-5 relative, so 1e-4 leaves a margin while
# still catching any real semantic difference (a wrong op is off by far more than 1e-4 of the range).
CHECK_MAX_REL = 1e-4


class ExportError(Onnx2CaffeError):
    """A PyTorch model cannot be loaded or exported as asked (unknown model, bad shape, exporter failure)."""


@dataclass
class OutputCheck:
    """Agreement of one ONNX output with PyTorch's."""

    output: str
    max_abs: float
    max_rel: float  # max |onnx - torch| / max |torch|
    cosine: float
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "cosine": self.cosine,
            "ok": self.ok,
        }


@dataclass
class TorchExport:
    """The result of :func:`torch_to_onnx`."""

    split: SplitModel  # the ONNX model (weights as arrays, see onnx2caffe/onnx_io.py), simplified and checked
    exporter: str
    opset: int
    input_shapes: list[tuple[int, ...]]
    checks: list[OutputCheck] = field(default_factory=list)
    simplified: bool = False
    warnings: list[str] = field(default_factory=list)
    # the check's seeded inputs (by ONNX input name) and onnxruntime's outputs on them (None unchecked):
    # `convert` re-uses them as its reference instead of running onnxruntime again
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    onnx_outputs: dict[str, np.ndarray] | None = None

    @property
    def model(self) -> onnx.ModelProto:
        """The whole ModelProto (built on first use: a copy of the weights)."""
        proto = self.__dict__.get("_model")
        if proto is None:
            proto = self.__dict__["_model"] = self.split.to_proto()
        return proto

    @property
    def report(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.checks]


# --------------------------------------------------------------------------------------------------------
# Arguments


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' (or '1x3x224x224') -> (1, 3, 224, 224); every dimension a positive integer."""
    parts = [p.strip() for p in re.split(r"[,xX]", str(text).strip())]
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts) or any(int(p) <= 0 for p in parts):
        raise ExportError(
            f"bad input shape {text!r}: expected positive integers separated by commas, e.g. 1,3,224,224"
        )
    return tuple(int(p) for p in parts)


def _normalise_shapes(input_shapes: Any) -> list[tuple[int, ...]]:
    """One shape (a string or a sequence of ints) or a list of them -> a list of int tuples."""
    if isinstance(input_shapes, str):
        return [parse_shape(input_shapes)]
    shapes = list(input_shapes)
    if not shapes:
        raise ExportError("no input shape given: pass one shape per model input, e.g. 1,3,224,224")
    if all(isinstance(d, (int, np.integer)) for d in shapes):
        shapes = [shapes]
    out = []
    for s in shapes:
        if isinstance(s, str):
            out.append(parse_shape(s))
        else:
            dims = tuple(s)
            if not dims or not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
                raise ExportError(f"bad input shape {dims!r}: expected positive integers")
            out.append(tuple(int(d) for d in dims))
    return out


def resolve_exporter_and_opset(exporter: str | None, opset: int | None) -> tuple[str, int]:
    """Pick the defaults and refuse combinations an exporter cannot produce, with a message saying why."""
    exporter = DEFAULT_EXPORTER if exporter is None else str(exporter).lower()
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    if opset is None:
        return exporter, DEFAULT_OPSET[exporter]
    opset = int(opset)
    low, ts_max, dynamo_max = _torch_opset_limits()
    if exporter == "dynamo":
        if opset < DYNAMO_MIN_OPSET:
            raise ExportError(
                f"the dynamo exporter cannot write opset {opset}: it emits opset {DYNAMO_MIN_OPSET} or newer "
                f"(asked for less it writes {DYNAMO_MIN_OPSET} anyway); use --exporter torchscript for opsets "
                f"{low}-{ts_max}, or --opset {DYNAMO_MIN_OPSET}"
            )
        if opset > dynamo_max:
            raise ExportError(
                f"the dynamo exporter of this torch writes opsets {DYNAMO_MIN_OPSET}-{dynamo_max}"
            )
    elif not low <= opset <= ts_max:
        hint = f"; use --exporter dynamo for opsets {DYNAMO_MIN_OPSET}-{dynamo_max}" if opset > ts_max else ""
        raise ExportError(f"the torchscript exporter writes opsets {low}-{ts_max}, not {opset}{hint}")
    return exporter, opset


# --------------------------------------------------------------------------------------------------------
# Loading models


def _one_line(err: BaseException, limit: int = 400) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def _import_module(name: str) -> Any:
    if name.endswith(".py"):
        if not os.path.isfile(name):
            raise InputFileError(f"cannot import {name}: no such file")
        mod_name = "_onnx2caffe_user_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(name))[0])
        spec = importlib.util.spec_from_file_location(mod_name, name)
        if spec is None or spec.loader is None:
            raise InputFileError(f"cannot import {name}: not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            sys.modules.pop(mod_name, None)
            raise ExportError(f"importing {name} failed: {type(err).__name__}: {_one_line(err)}") from None
        return module
    with _cwd_on_path():
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as err:
            raise ExportError(f"cannot import module {name!r}: {_one_line(err)}") from None
        except Exception as err:
            raise ExportError(
                f"importing module {name!r} failed: {type(err).__name__}: {_one_line(err)}"
            ) from None


def _torchvision_model(name: str, kwargs: Mapping[str, Any]) -> Any:
    try:
        import torchvision
    except ImportError:
        raise ExportError(
            "torchvision is not installed: pip install 'onnx2caffe[vision]' to export torchvision models"
        ) from None
    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see torchvision.models.list_models())"
        raise ExportError(f"unknown torchvision model {name!r}{hint}")
    kwargs = dict(kwargs)
    builder = torchvision.models.get_model_builder(name)
    if "weights_backbone" in inspect.signature(builder).parameters:
        # segmentation/detection builders would otherwise download ImageNet weights for their backbone
        kwargs.setdefault("weights_backbone", None)
    try:
        return builder(weights=None, **kwargs)
    except Exception as err:
        raise ExportError(f"building torchvision model {name!r} failed: {_one_line(err)}") from None


def _timm_model(name: str, kwargs: Mapping[str, Any]) -> Any:
    """``timm.create_model(name, pretrained=False, **kwargs)``: always randomly initialised, so nothing is
    downloaded (real weights go in with --weights). ``name`` may carry a pretrained tag (resnet50.a1_in1k); the
    tag then only picks the architecture's default configuration."""
    try:
        import timm
    except ImportError:
        raise ExportError("timm is not installed: pip install timm to export timm models") from None
    if not name or not timm.is_model(name):
        base = name.split(".", 1)[0]
        close = difflib.get_close_matches(base, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see timm.list_models())"
        raise ExportError(f"unknown timm model {name!r}{hint}")
    kwargs = dict(kwargs)
    if kwargs.pop("pretrained", False):
        raise ExportError(
            "timm models are exported with random weights (pretrained=False, nothing is downloaded): "
            "load real weights with --weights CKPT"
        )
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as err:
        raise ExportError(
            f"building timm model {name!r} failed: {type(err).__name__}: {_one_line(err)}"
        ) from None


def _callable_model(spec: str, kwargs: Mapping[str, Any]) -> Any:
    import torch

    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise ExportError(f"bad model {spec!r}: expected module.path:callable")
    obj = _import_module(mod_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ExportError(f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, torch.nn.Module):
        if kwargs:
            raise ExportError(f"{spec} is a module instance, not a callable: it takes no model arguments")
        return obj
    if not callable(obj):
        raise ExportError(f"{spec} is neither an nn.Module nor a callable returning one")
    try:
        model = obj(**dict(kwargs))
    except Exception as err:
        raise ExportError(f"calling {spec} failed: {type(err).__name__}: {_one_line(err)}") from None
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _torchscript_file(path: str) -> Any:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(path, map_location="cpu")
    except Exception as err:
        raise InputFileError(
            f"cannot load {path} as a TorchScript model ({_one_line(err, 160)}); a checkpoint (state dict) "
            "goes with --weights next to a model given as torchvision:NAME, timm:NAME or module.path:callable"
        ) from None


def model_source_files(spec: str) -> list[str]:
    """Files a model spec reads (a TorchScript file, a .py module file): outputs must never replace them."""
    if spec.startswith(("torchvision:", "timm:")):
        return []
    if os.path.exists(spec):
        return [spec]
    mod_name = spec.rpartition(":")[0]
    return [mod_name] if mod_name.endswith(".py") and os.path.isfile(mod_name) else []


def load_model(
    spec: Any,
    weights: str | os.PathLike[str] | None = None,
    unsafe_load: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """An nn.Module in eval mode from ``spec``, with a checkpoint loaded into it when ``weights`` is given.

    ``spec`` is an nn.Module, ``torchvision:NAME`` (randomly initialised: ``weights=None``), ``timm:NAME``
    (``timm.create_model(NAME, pretrained=False)``),
    ``module.path:callable`` (the module importable from the current folder too, or ``path/to/file.py:callable``)
    returning an nn.Module, or the path of a TorchScript file (``torch.jit.load``).
    """
    import torch

    kwargs = dict(model_kwargs or {})
    if isinstance(spec, torch.nn.Module):
        model = spec
    elif not isinstance(spec, (str, os.PathLike)):
        raise ExportError(f"bad model {spec!r}: expected an nn.Module or a model string")
    else:
        spec = os.fspath(spec)
        if spec.startswith("torchvision:"):
            model = _torchvision_model(spec.split(":", 1)[1], kwargs)
        elif spec.startswith("timm:"):
            model = _timm_model(spec.split(":", 1)[1], kwargs)
        elif spec.lower().endswith(".onnx"):
            raise ExportError(f"{spec} is an ONNX model already: convert it with `onnx2caffe convert {spec}`")
        elif os.path.isfile(spec) and not spec.endswith(".py"):
            if kwargs:
                raise ExportError(f"{spec} is a TorchScript file: it takes no model arguments")
            model = _torchscript_file(spec)
        elif ":" in spec:
            model = _callable_model(spec, kwargs)
        elif spec.endswith(".py"):
            raise ExportError(
                f"bad model {spec!r}: name the function that builds the model, e.g. {spec}:build"
            )
        else:
            raise ExportError(
                f"unknown model {spec!r}: expected torchvision:NAME, module.path:callable, timm:NAME or a "
                "TorchScript file" + (" (no such file)" if os.sep in spec or "." in spec else "")
            )
    if weights is not None:
        load_checkpoint(model, weights, unsafe_load=unsafe_load)
    return model.eval()


def _state_dict_from(obj: Any, path: str) -> dict[str, Any]:
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], (Mapping, torch.nn.Module)):
                return _state_dict_from(obj[key], path)
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise InputFileError(
                f"{path} is not a state dict: entries {', '.join(map(str, bad[:5]))} are not tensors "
                "(expected a state dict, or a dict with a 'state_dict' or 'model' entry)"
            )
        return dict(obj)
    raise InputFileError(f"{path} holds a {type(obj).__name__}, not a state dict")


def load_checkpoint(model: Any, path: str | os.PathLike[str], unsafe_load: bool = False) -> None:
    """Load a state dict into ``model`` (strict). ``torch.load(weights_only=True)`` unless ``unsafe_load``.

    Accepted: a state dict, a dict with a ``state_dict`` or ``model`` entry (a state dict or, with
    ``unsafe_load``, a pickled module), or a pickled module (``unsafe_load`` only). A ``module.`` prefix on
    every key (DataParallel) is removed when the model's own keys lack it.
    """
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileError(f"cannot read checkpoint {path}: no such file")
    try:
        with warnings.catch_warnings():
            # a TorchScript archive given as --weights: torch.load dispatches to torch.jit.load (its state dict
            # is used) with a UserWarning saying so, and torch.jit.load adds a deprecation warning
            warnings.filterwarnings("ignore", message=r".*TorchScript archive", category=UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = torch.load(path, map_location="cpu", weights_only=not unsafe_load)
    except pickle.UnpicklingError as err:
        if unsafe_load:
            raise InputFileError(f"cannot read checkpoint {path}: {_one_line(err, 200)}") from None
        raise InputFileError(
            f"cannot read checkpoint {path} with weights_only=True: it holds pickled Python objects beyond "
            "tensors; loading it runs code from the file, so only if you trust it pass --unsafe-load"
        ) from None
    except Exception as err:
        if not unsafe_load and "TorchScript" in str(err):
            raise InputFileError(
                f"{path} is a TorchScript archive, not a checkpoint: export it as the model "
                f"(`onnx2caffe export {path} --input-shape ...`), or take its weights with --unsafe-load "
                "(loading it runs TorchScript code from the file)"
            ) from None
        raise InputFileError(f"cannot read checkpoint {path}: {_one_line(err, 200)}") from None
    state = _state_dict_from(obj, path)
    own = model.state_dict()
    if (
        state
        and all(k.startswith("module.") for k in state)
        and not any(k.startswith("module.") for k in own)
    ):
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [
            k
            for k in own
            if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{label}: {', '.join(keys[:3])}{more}")
        detail = "; ".join(parts) or _one_line(err, 200)
        raise InputFileError(f"checkpoint {path} does not fit the model: {detail}") from None


def randomize_batchnorm(model: Any, seed: int = 0) -> Any:
    """Give every BatchNorm layer random running statistics and affine parameters (seeded); returns model.

    Randomly initialised nets have identity BatchNorms (mean 0, var 1, weight 1, bias 0), which hide
    mistakes in how BatchNorm is converted and make the TorchScript exporter share identical tensors
    (and add Identity nodes). Ranges keep every layer well conditioned: var in [0.5, 1.5] and weight in
    [0.5, 1.5] (no division blow-up, no vanishing channels), mean and bias ~ N(0, 0.2^2).
    """
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                continue
            n = module.num_features
            if module.running_mean is not None:
                module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            if module.weight is not None:
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.2 * torch.randn(n, generator=gen))
    return model


# --------------------------------------------------------------------------------------------------------
# Export


def _flatten_outputs(out: Any) -> list[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        items = list(out.values())
    elif isinstance(out, (list, tuple)):
        items = list(out)
    else:
        raise ExportError(
            f"the model returns a {type(out).__name__}: only tensors (or tuples/lists/dicts of them)"
        )
    flat: list[Any] = []
    for item in items:
        flat.extend(_flatten_outputs(item))
    return flat


def _default_names(prefix: str, n: int) -> list[str]:
    return [prefix] if n == 1 else [f"{prefix}{i}" for i in range(n)]


def random_inputs(input_shapes: Sequence[tuple[int, ...]], seed: int = 0) -> list[np.ndarray]:
    """Standard-normal float32 inputs, one per shape, from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in input_shapes]


@contextlib.contextmanager
def _quiet_exporter(log: io.StringIO) -> Iterator[list[warnings.WarningMessage]]:
    """Capture the exporters' progress prints and torch.onnx log records; keep other warnings for the caller."""
    handler = logging.StreamHandler(log)
    logger = logging.getLogger("torch.onnx")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    old_propagate = logger.propagate
    logger.propagate = False
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            warnings.simplefilter("always")
            yield caught
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _model_label(model: Any) -> str:
    return getattr(model, "original_name", None) or type(model).__name__


def _run_model(model: Any, args: tuple, shapes: Sequence[tuple[int, ...]]) -> Any:
    """The model's forward on ``args``; ExportError (naming the model and the input shapes) when it fails,
    e.g. on a shape the model cannot take."""
    import torch

    try:
        with torch.no_grad():
            return model(*args)
    except Onnx2CaffeError:
        raise
    except Exception as err:
        given = ", ".join("x".join(str(d) for d in s) for s in shapes)
        raise ExportError(
            f"{_model_label(model)} cannot run on input shape {given}: {type(err).__name__}: {_one_line(err)}"
        ) from None


def export_onnx(
    model: Any,
    input_shapes: Any,
    exporter: str | None = None,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    example_inputs: Sequence[np.ndarray] | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """Export ``model`` (eval mode) with static ``input_shapes``; returns (ModelProto with inlined weights, warnings).

    Raises ExportError when the exporter fails or writes another opset than asked.
    """
    exported = export_split(model, input_shapes, exporter, opset, input_names, output_names, example_inputs)
    return exported.split.to_proto(), exported.warnings


@dataclass
class Exported:
    """What :func:`export_split` returns."""

    split: SplitModel
    warnings: list[str]
    torch_outputs: list[np.ndarray]  # PyTorch's outputs on the example inputs, flattened


_NEEDS_OPSET = re.compile(r"added in (?:opset )?version (\d+)")


def _needed_opset(err: ExportError) -> int | None:
    """The opset a failed TorchScript export names as the one its operator needs, if it names one."""
    found = _NEEDS_OPSET.search(str(err))
    return int(found.group(1)) if found and "exporter failed" in str(err) else None


def export_split(
    model: Any,
    input_shapes: Any,
    exporter: str | None = None,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    example_inputs: Sequence[np.ndarray] | None = None,
    folder: str | None = None,
) -> Exported:
    """Export ``model`` (eval mode) with static ``input_shapes`` as a SplitModel, with PyTorch's outputs on
    ``example_inputs`` (for the check). The TorchScript exporter's output is kept in memory; ``folder``: where
    the dynamo exporter's temporary file goes (default: the system's temporary folder).

    PyTorch runs the model once: the TorchScript exporter traces an nn.Module by running it, and a forward
    hook keeps the outputs of that run (the outputs are named once their number is known); the dynamo
    exporter and TorchScript models are run once before export. Raises ExportError when the exporter fails
    or writes another opset than asked.

    With no opset asked for, a TorchScript export that fails because an operator needs a newer opset than
    the default 13 (torch says "Support for this operator was added in version N": scaled_dot_product_attention
    in torchvision's ViT needs 14) is done again at opset N, with a warning saying so.
    """
    import torch

    asked = opset
    exporter, opset = resolve_exporter_and_opset(exporter, opset)
    shapes = _normalise_shapes(input_shapes)
    model.eval()
    if example_inputs is None:
        example_inputs = random_inputs(shapes)
    args = tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in example_inputs)
    if input_names is None:
        input_names = _default_names("input", len(shapes))
    is_script = isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction))
    if exporter == "dynamo" and is_script:
        raise ExportError("a TorchScript model can only be exported with --exporter torchscript")
    traced = exporter == "torchscript" and isinstance(model, torch.nn.Module) and not is_script
    torch_outputs = None
    if not traced:
        torch_outputs = _to_numpy(_run_model(model, args, shapes))
        if output_names is None:
            output_names = _default_names("output", len(torch_outputs))

    names = list(output_names) if output_names is not None else None
    if exporter == "torchscript":  # it writes the serialized model with one write(): kept in memory
        out = CapturedBytes()
        try:
            captured, kept, log = _run_exporter(model, args, out, exporter, opset, input_names, names, traced)
        except ExportError as err:
            needed = _needed_opset(err) if asked is None else None
            if needed is None or not opset < needed <= _torch_opset_limits()[1]:
                raise
            note = (
                f"opset {opset} cannot express an operator of this model ({_one_line(err, 160)}): exported at "
                f"opset {needed} (--opset chooses)"
            )
            opset, out = needed, CapturedBytes()
            captured, kept, log = _run_exporter(model, args, out, exporter, opset, input_names, names, traced)
            kept.insert(0, note)
        if traced:
            if len(captured) != 1:  # the hook did not see one whole forward: run the model ourselves
                torch_outputs = _to_numpy(_run_model(model, args, shapes))
            else:
                torch_outputs = _to_numpy(captured[0])
            captured.clear()
        split = _split_export(out, exporter)
        if names is None and not _name_outputs(split.skeleton, _default_names("output", len(torch_outputs))):
            # an output the exporter must name itself (an input or a repeated tensor): export again, named
            names = _default_names("output", len(torch_outputs))
            out = CapturedBytes()
            _, kept, log = _run_exporter(model, args, out, exporter, opset, input_names, names, False)
            split = _split_export(out, exporter)
    else:  # the dynamo exporter writes a file
        with tempfile.TemporaryDirectory(prefix=".onnx2caffe-export-", dir=folder) as tmp:
            path = os.path.join(tmp, "model.onnx")
            _, kept, log = _run_exporter(model, args, path, exporter, opset, input_names, names, False)
            split = _read_export(path, tmp, exporter)
    written = onnx_opset(split.skeleton)
    if written != opset:
        failure = [line for line in log.splitlines() if "fail" in line.lower() or "error" in line.lower()]
        detail = f": {_one_line(failure[-1], 200)}" if failure else ""
        raise ExportError(
            f"the {exporter} exporter wrote opset {written} instead of the requested {opset}{detail}"
        )
    return Exported(split, kept, torch_outputs)


def _to_numpy(out: Any) -> list[np.ndarray]:
    return [t.detach().cpu().numpy() for t in _flatten_outputs(out)]


def _run_exporter(model, args, path, exporter, opset, input_names, output_names, capture):
    """torch.onnx.export into `path` (a file name or a file object); (outputs captured from the traced
    forward, warnings to show, log)."""
    import torch

    log = io.StringIO()
    captured: list[Any] = []
    handle = None
    if capture:
        handle = model.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        # no_grad only for dynamo: under no_grad nn.MultiheadAttention takes its fused fast path,
        # which the TorchScript exporter cannot export (aten::_native_multi_head_attention)
        grad_ctx = torch.no_grad() if exporter == "dynamo" else contextlib.nullcontext()
        native: list[
            str
        ] = []  # the TorchScript exporter's C++ prints the whole IR graph to stdout on failure
        with _quiet_exporter(log) as caught, grad_ctx, captured_fd(1, native):
            if exporter == "dynamo":
                torch.onnx.export(
                    model,
                    args,
                    path,
                    dynamo=True,
                    opset_version=opset,
                    external_data=False,
                    input_names=list(input_names),
                    output_names=output_names,
                    verbose=False,
                )
            else:
                torch.onnx.export(
                    model,
                    args,
                    path,
                    dynamo=False,
                    opset_version=opset,
                    input_names=list(input_names),
                    output_names=output_names,
                    do_constant_folding=True,
                )
    except Onnx2CaffeError:
        raise
    except Exception as err:
        if capture and not captured:  # the forward itself failed: say so as a run of the model would
            shapes = ", ".join("x".join(str(d) for d in a.shape) for a in args)
            raise ExportError(
                f"{_model_label(model)} cannot run on input shape {shapes}: {type(err).__name__}: {_one_line(err)}"
            ) from None
        raise ExportError(f"the {exporter} exporter failed: {type(err).__name__}: {_one_line(err)}") from None
    finally:
        if handle is not None:
            handle.remove()
    counts: dict[str, int] = {}  # one line per distinct warning (the tracer repeats its own per traced call)
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning)):
            continue
        if "legacy TorchScript-based ONNX export" in str(w.message):
            continue
        text = f"{w.category.__name__}: {_one_line(w.message, 200)}"
        counts[text] = counts.get(text, 0) + 1
    kept = [text if n == 1 else f"{text} (x{n})" for text, n in counts.items()]
    return captured, kept, log.getvalue() + "".join(line + "\n" for line in native)


def _split_export(out: CapturedBytes, exporter: str) -> SplitModel:
    """The model the exporter wrote into `out` as a SplitModel (its weights copied into arrays once)."""
    from onnx2caffe.onnx_io import split_bytes

    data = out.getvalue()
    out.parts.clear()
    if not data:
        raise ExportError(f"the {exporter} exporter wrote nothing")
    try:
        split = split_bytes(data)
        if split is None:
            split = SplitModel.from_proto(onnx.load_from_string(data))
    except Exception as err:
        raise ExportError(f"the {exporter} exporter wrote an unreadable model: {_one_line(err)}") from None
    del data
    _refuse_external(split, exporter)
    return split


def _refuse_external(split: SplitModel, exporter: str) -> None:
    if any(
        t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL
        for t in split.skeleton.graph.initializer
    ):
        raise ExportError(f"the {exporter} exporter left weights outside the model file")


def _read_export(path: str, folder: str, exporter: str) -> SplitModel:
    """The exporter's file as a SplitModel (its weights read straight into arrays)."""
    from onnx2caffe.onnx_io import read_split

    side_files = sorted(set(os.listdir(folder)) - {"model.onnx"})
    if side_files:
        raise ExportError(
            f"the {exporter} exporter wrote side files ({', '.join(side_files)}) next to the model"
        )
    try:
        split = read_split(path)
        if split is None:
            split = SplitModel.from_proto(onnx.load(path, load_external_data=False))
    except Exception as err:
        raise ExportError(f"the {exporter} exporter wrote an unreadable model: {_one_line(err)}") from None
    _refuse_external(split, exporter)
    return split


def _name_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bool:
    """Rename the graph outputs of an export made without output names to `names` (in place), as the
    exporter would have named them; False (nothing changed) where the exporter does more than rename: an
    output that is a graph input or an initializer, a tensor returned twice, or a name already in use."""
    g = model.graph
    current = [o.name for o in g.output]
    if len(current) != len(names) or len(set(current)) != len(current):
        return len(current) == len(names) and current == list(names)
    mapping = {old: new for old, new in zip(current, names, strict=True) if old != new}
    if not mapping:
        return True
    used = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    if used & set(mapping):
        return False
    for n in g.node:
        used.update(n.input)
        used.update(n.output)
    if (used - set(mapping)) & set(mapping.values()):
        return False
    for n in g.node:
        for k, t in enumerate(n.output):
            if t in mapping:
                n.output[k] = mapping[t]
        for k, t in enumerate(n.input):
            if t in mapping:
                n.input[k] = mapping[t]
    for vi in list(g.output) + list(g.value_info):
        if vi.name in mapping:
            vi.name = mapping[vi.name]
    return True


def onnx_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset of ``model``."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ExportError("the exported model imports no default-domain opset")


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run onnx-simplifier; ExportError if it fails or reports its own check failed."""
    return simplify_split(SplitModel.from_proto(model)).to_proto()


def simplify_split(model: SplitModel) -> SplitModel:
    """Run onnx-simplifier on a SplitModel with its layer weights kept out of it (onnx2caffe/simplify.py);
    ExportError if it fails or reports its own check failed."""
    from onnx2caffe.simplify import SimplifyError
    from onnx2caffe.simplify import simplify_split as run

    try:
        return run(model)
    except SimplifyError as err:
        raise ExportError(str(err)) from None


def _metrics(name: str, ref: np.ndarray, got: np.ndarray, max_rel: float) -> OutputCheck:
    ref64 = np.asarray(ref, dtype=np.float64).ravel()
    got64 = np.asarray(got, dtype=np.float64).ravel()
    if ref64.shape != got64.shape or not (np.all(np.isfinite(ref64)) and np.all(np.isfinite(got64))):
        return OutputCheck(name, float("inf"), float("inf"), 0.0, False)
    max_abs = float(np.max(np.abs(ref64 - got64))) if ref64.size else 0.0
    scale = float(np.max(np.abs(ref64))) if ref64.size else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    norms = float(np.linalg.norm(ref64) * np.linalg.norm(got64))
    if norms > 0:
        cosine = float(np.dot(ref64, got64) / norms)
    else:
        cosine = 1.0 if max_abs == 0 else 0.0
    return OutputCheck(name, max_abs, rel, cosine, rel <= max_rel)


def check_against_torch(
    torch_model: Any,
    onnx_model: onnx.ModelProto | SplitModel,
    inputs: Sequence[np.ndarray],
    max_rel: float = CHECK_MAX_REL,
) -> list[OutputCheck]:
    """Run ``onnx_model`` with onnxruntime and ``torch_model`` on ``inputs``; per-output agreement.

    Raises ToleranceError naming the worst output when any disagrees beyond ``max_rel``.
    """
    import torch

    shapes = [tuple(x.shape) for x in inputs]
    ref = _to_numpy(_run_model(torch_model, tuple(torch.from_numpy(x) for x in inputs), shapes))
    split = onnx_model if isinstance(onnx_model, SplitModel) else SplitModel.from_proto(onnx_model)
    return check_outputs(ref, split, inputs, max_rel)[0]


def check_outputs(
    ref: Sequence[np.ndarray],
    model: SplitModel,
    inputs: Sequence[np.ndarray],
    max_rel: float = CHECK_MAX_REL,
) -> tuple[list[OutputCheck], dict[str, np.ndarray]]:
    """Run ``model`` with onnxruntime on ``inputs`` and compare each output with PyTorch's (``ref``, in
    order). Returns (per-output agreement, onnxruntime's outputs by name); raises ToleranceError naming the
    worst output when any disagrees beyond ``max_rel``."""
    from onnx2caffe.onnx_io import graph_inputs, run_onnxruntime

    names_in = graph_inputs(model.skeleton)
    if len(names_in) != len(inputs):
        raise ExportError(
            f"the exported model has {len(names_in)} inputs but {len(inputs)} input shapes were given "
            "(an input the model does not use is dropped by the exporter)"
        )
    try:
        names, outs = run_onnxruntime(model, dict(zip(names_in, inputs, strict=True)))
    except Exception as err:
        raise ExportError(f"onnxruntime cannot run the exported model: {_one_line(err)}") from None
    if len(outs) != len(ref):
        raise ExportError(f"the exported model has {len(outs)} outputs, PyTorch's model {len(ref)}")
    checks = []
    for name, r, o in zip(names, ref, outs, strict=True):
        if tuple(r.shape) != tuple(o.shape):
            raise ToleranceError(
                f"output {name}: ONNX shape {tuple(o.shape)} differs from PyTorch's {tuple(r.shape)}"
            )
        checks.append(_metrics(name, r, o, max_rel))
    bad = [c for c in checks if not c.ok]
    if bad:
        worst = max(bad, key=lambda c: c.max_rel)
        raise ToleranceError(
            f"the exported ONNX model disagrees with PyTorch on output {worst.output}: max_rel {worst.max_rel:.3g} "
            f"> {max_rel:g} (max_abs {worst.max_abs:.3g}, cosine {worst.cosine:.8f})"
        )
    return checks, dict(zip(names, outs, strict=True))


def torch_to_onnx(
    model: Any,
    input_shapes: Any,
    exporter: str | None = None,
    opset: int | None = None,
    do_simplify: bool = True,
    check: bool = True,
    seed: int = 0,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    max_rel: float = CHECK_MAX_REL,
    folder: str | None = None,
) -> TorchExport:
    """Export, simplify and check an nn.Module (see the module docstring). Nothing is written to disk but
    the dynamo exporter's temporary file (in ``folder``, default the system's temporary folder)."""
    asked = opset  # None: export_split may take a newer opset than the default (see there)
    exporter, opset = resolve_exporter_and_opset(exporter, opset)
    shapes = _normalise_shapes(input_shapes)
    model.eval()
    inputs = random_inputs(shapes, seed)
    with progress.step(f"export ({exporter})"):
        exported = export_split(
            model, shapes, exporter, asked, input_names, output_names, example_inputs=inputs, folder=folder
        )
    split = exported.split
    opset = onnx_opset(split.skeleton)
    if do_simplify:
        with progress.step("simplify"):
            split = simplify_split(split)
    checks: list[OutputCheck] = []
    onnx_outputs = None
    if check:
        with progress.step("check against PyTorch"):
            checks, onnx_outputs = check_outputs(exported.torch_outputs, split, inputs, max_rel)
    from onnx2caffe.onnx_io import graph_inputs

    feeds = dict(zip(graph_inputs(split.skeleton), inputs, strict=False))
    return TorchExport(
        split, exporter, opset, shapes, checks, simplified=do_simplify, warnings=exported.warnings,
        inputs=feeds, onnx_outputs=onnx_outputs,
    )  # fmt: skip
