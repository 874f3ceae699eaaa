"""onnx2caffe: PyTorch/ONNX to Caffe, verified against onnxruntime on real Caffe."""

__version__ = "0.1.0"

__all__ = ["convert"]


def __getattr__(name: str):
    # lazy, so `import onnx2caffe` stays light (no onnx / onnxruntime import)
    if name == "convert":
        from .convert import convert

        return convert
    raise AttributeError(f"module 'onnx2caffe' has no attribute {name!r}")
