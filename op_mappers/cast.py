"""Cast and CastLike: a float32 -> float32 cast is a copy; every other cast of an activation is refused with what
it would change (Caffe blobs are float32 and no layer rounds to another type).

A float32 -> float64 -> (float64 arithmetic) -> float32 chain is rewritten to float32 by the demote_float64 pass
before mapping (its notes state the bound); the casts it leaves are float32 -> float32 copies.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnx2caffe.registry import register

from ._compose import identity

_FLOAT = onnx.TensorProto.FLOAT


def _type_name(elem: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return str(elem)


def _cast(node, ctx, to: int):
    x, y = node.input(0), node.output(0)
    src = ctx.dtype(x)
    if to != _FLOAT:
        name = _type_name(to)
        if to == onnx.TensorProto.DOUBLE:
            why = (
                "float64 arithmetic after it cannot run in Caffe (float32 blobs); a float64 chain that ends in a "
                "Cast back to FLOAT is demoted to float32 by the demote_float64 pass, this one is not (it reaches "
                "a graph output or an op the pass does not demote)"
            )
        elif (
            to in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
            or "FLOAT8" in name
            or "FLOAT4" in name
        ):
            why = f"rounding to {name} changes values and no Caffe layer rounds to a narrower float"
        elif to == onnx.TensorProto.BOOL:
            why = "a boolean result has no Caffe form (blobs are float32)"
        else:
            why = (
                f"converting to the integer type {name} rounds or truncates values, which no Caffe layer does"
            )
        node.reject_attr("to", name, why)
    if src is not None and src != np.float32:
        node.reject(f"its input is {src} (computed at run time; Caffe computes in float32 only)")
    return [identity(ctx, node.name, ctx.blob(x), ctx.blob(y))]


@register(
    "Cast",
    since=1,
    layers=("Power",),
    notes="Cast float32 -> float32 -> a copy; float32 -> float64 -> float32 islands are computed in float32 by "
    "the demote_float64 pass (2^-24 relative per op and per float64 constant); other targets are refused",
)
def cast(node, ctx):
    """Cast float32 -> float32 -> a copy (Power with default parameters); other casts are refused with the reason."""
    to = node.attr("to")
    if node.opset >= 19:
        node.ignore_attr("saturate", "only applies to float8 targets, which are refused")
    if isinstance(to, str):  # opset 1-5 wrote the type name
        to = onnx.TensorProto.DataType.Value(to.upper())
    return _cast(node, ctx, int(to))


@register("CastLike", since=15, layers=("Power",))
def cast_like(node, ctx):
    """CastLike to a float32 tensor -> a copy; other target types are refused with the reason."""
    node.ignore_attr("saturate", "only applies to float8 targets, which are refused")
    target = ctx.dtype(node.input(1))
    if target is None:
        node.reject("the target type (input 2) is unknown")
    return _cast(node, ctx, int(onnx.helper.np_dtype_to_tensor_dtype(np.dtype(target))))
