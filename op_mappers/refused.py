"""Element-wise ops with no exact standard-Caffe form: each gets a mapper that refuses it with the reason, so
the one error listing every unsupported node of a model says WHY (not just "no mapper"). Nothing is written.

BVLC Caffe's element-wise layers compute only ReLU/PReLU/ELU, sigmoid, tanh, |x|, BNLL (softplus), exp, log,
powers of an affine function and sums/products/maxima; OpenCV adds nothing standard. A function outside their
closure under exact glue (and not within a few roundings of such a composition) cannot be converted without
an approximation whose error exceeds float32 noise.
"""

from __future__ import annotations

from onnx2caffe.registry import register

_NO_LAYER = "no BVLC Caffe layer computes {what}"
_ROUNDING = (
    "; the float32 trick (x + 1.5 * 2^23) - 1.5 * 2^23 rounds only |x| <= 2^22, and an exact form for every "
    "input would take ~30 layers"
)

REASONS = {
    "Sin": "Sin (e.g. in rotated-box decodes) has no exact Caffe form: " + _NO_LAYER.format(what="sine"),
    "Cos": "Cos (e.g. in rotated-box decodes) has no exact Caffe form: " + _NO_LAYER.format(what="cosine"),
    "Tan": "Tan has no exact Caffe form: " + _NO_LAYER.format(what="a trigonometric function"),
    "Asin": "Asin has no exact Caffe form: " + _NO_LAYER.format(what="an inverse trigonometric function"),
    "Acos": "Acos has no exact Caffe form: " + _NO_LAYER.format(what="an inverse trigonometric function"),
    "Atan": "Atan has no exact Caffe form: " + _NO_LAYER.format(what="an inverse trigonometric function"),
    "Sinh": "Sinh has no exact Caffe form: (exp(x) - exp(-x)) / 2 from Exp layers cancels for |x| < 1 "
    "(relative error up to 2^-24 / |x|)",
    "Asinh": "Asinh has no exact Caffe form: log(x + sqrt(x^2 + 1)) cancels for x < 0",
    "Acosh": "Acosh has no exact Caffe form: log(x + sqrt(x^2 - 1)) cancels near x = 1",
    "Atanh": "Atanh has no exact Caffe form: 0.5 * log((1 + x) / (1 - x)) cancels near x = 0 and needs a division",
    "Floor": "Floor has no Caffe form: " + _NO_LAYER.format(what="an integer rounding") + _ROUNDING,
    "Ceil": "Ceil has no Caffe form: " + _NO_LAYER.format(what="an integer rounding") + _ROUNDING,
    "Round": "Round has no Caffe form: " + _NO_LAYER.format(what="an integer rounding") + _ROUNDING,
    "IsNaN": "IsNaN has no Caffe form: its output is boolean and Caffe blobs are float32",
    "IsInf": "IsInf has no Caffe form: its output is boolean and Caffe blobs are float32",
}


def _refuse(node, ctx):
    node.reject(REASONS[node.op_type])


for _op, _reason in REASONS.items():
    register(_op, since=1, layers=(), notes="refused: " + _reason)(_refuse)
