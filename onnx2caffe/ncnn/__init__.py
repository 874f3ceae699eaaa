"""Caffe model -> ncnn (.param + .bin), and ncnn int8 quantisation from a calibration table.

What Tencent's tools/caffe/caffe2ncnn and tools/quantize/ncnn2int8 do, written here for any Caffe model
(the ncnn wheel on PyPI holds only the runtime):

    model = caffe_to_ncnn("net.prototxt", "net.caffemodel")              # NcnnModel (fp32)
    model = caffe_to_ncnn("net.prototxt", "net.caffemodel", table="net.table")   # int8 where the table says
    model.write("net.param", "net.bin")

reader.py (Caffe files, fork layers), shapes.py (Caffe blob shapes), builder.py (names, Split layers,
layouts), layers.py (one translator per Caffe type), model.py (the .param/.bin formats), quantize.py (the
table and int8 weights). Nothing here imports ONNX or needs the ncnn runtime.
"""

from __future__ import annotations

import os

from onnx2caffe.ncnn.builder import Builder, NcnnUnsupportedError
from onnx2caffe.ncnn.layers import REFUSED, SUPPORTED_TYPES
from onnx2caffe.ncnn.model import BlobInfo, NcnnLayer, NcnnModel, Weight
from onnx2caffe.ncnn.reader import CaffeModel, load_caffe_model

__all__ = [
    "REFUSED",
    "SUPPORTED_TYPES",
    "BlobInfo",
    "CaffeModel",
    "NcnnLayer",
    "NcnnModel",
    "NcnnUnsupportedError",
    "Weight",
    "caffe_to_ncnn",
    "convert_model",
    "load_caffe_model",
]


def convert_model(model: CaffeModel, table=None, fp16_rest: bool = True) -> NcnnModel:
    """An already loaded CaffeModel -> NcnnModel; `table` (a path or a parsed Table) quantises it."""
    ncnn_model = Builder(model).build()
    if table is not None:
        from onnx2caffe.ncnn.quantize import quantize, read_table

        if isinstance(table, (str, os.PathLike)):
            table = read_table(table)
        quantize(ncnn_model, table, fp16_rest=fp16_rest)
    return ncnn_model


def caffe_to_ncnn(
    prototxt: str | os.PathLike,
    caffemodel: str | os.PathLike | None,
    table: str | os.PathLike | None = None,
    fp16_rest: bool = True,
) -> NcnnModel:
    """Read a Caffe model and convert it (see the module docstring). NcnnUnsupportedError lists every
    layer ncnn cannot express; InputFileError for bad files or tables. fp16_rest (with a table): store
    the weights of the layers left in float as float16, as ncnn2int8 does."""
    return convert_model(load_caffe_model(prototxt, caffemodel), table, fp16_rest)
