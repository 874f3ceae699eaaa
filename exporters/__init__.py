"""Model exporters feeding the converter (installed as ``onnx2caffe.exporters``).

``torch_export``: PyTorch -> ONNX (torchscript or dynamo exporter, onnx-simplifier, a check against PyTorch).
torch itself is imported only when a model is loaded or exported.
"""

from onnx2caffe.exporters.torch_export import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    EXPORTERS,
    ExportError,
    TorchExport,
    load_checkpoint,
    load_model,
    parse_shape,
    randomize_batchnorm,
    torch_to_onnx,
)

__all__ = [
    "DEFAULT_EXPORTER",
    "DEFAULT_OPSET",
    "EXPORTERS",
    "ExportError",
    "TorchExport",
    "load_checkpoint",
    "load_model",
    "parse_shape",
    "randomize_batchnorm",
    "torch_to_onnx",
]
