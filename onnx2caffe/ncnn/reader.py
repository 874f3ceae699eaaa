"""Reading any Caffe model for ncnn: BVLC prototxts and the common fork layers of hand-written models.

Our caffe.proto is BVLC's, so a prototxt that uses a fork layer's parameters (SSD's ``permute_param``,
PSPNet's ``interp_param``, ...) does not parse with it. Here the prototxt is parsed with a superset built
at import time: a copy of caffe.proto's descriptor (same package, in a private descriptor pool) with the
fork messages added and their fields added to LayerParameter. Only the text names matter for a prototxt,
so the field numbers of the added fields are ours (forks disagree on them anyway; the caffemodel is read
for its blobs only, by layer name, as Caffe does).

Added, by fork (field names and defaults as those forks declare them):

* SSD: ``permute_param`` (order), ``norm_param`` (across_spatial, channel_shared, eps), ``prior_box_param``,
  ``detection_output_param`` (with ``nms_param``, ``save_output_param``).
* PSPNet / DeepLab: ``interp_param`` (height, width, zoom_factor, shrink_factor, pad_beg, pad_end).
* YOLO / SegNet / brocolli forks: ``upsample_param`` (scale, scale_h, scale_w, upsample_h, upsample_w,
  dims_num, ...; the forks disagree on scale's default, so it must be given).
* ShuffleNet forks: ``shuffle_channel_param`` (group).
* SSD-era pooling: ``pooling_param { ceil_mode: false }`` (a bool where late BVLC has ``round_mode``).
* BVLC master's ``dropout_param { scale_train: false }`` (test-time scaling by 1 - ratio).

The result is a :class:`CaffeModel`: the :class:`~onnx2caffe.caffe_net.CaffeNet` (TEST-phase layers only,
blobs attached by layer name) and, per layer, the parameters as the superset message (``params(layer)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from onnx2caffe.caffe_net import CaffeNet, Layer, blob_problem, parse_prototxt_file, read_caffemodel
from onnx2caffe.errors import InputFileError, InvalidNameError
from onnx2caffe.proto import caffe_pb2

_TEST = 1  # caffe_pb2.Phase.TEST

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TYPES = {
    "bool": _F.TYPE_BOOL,
    "float": _F.TYPE_FLOAT,
    "int32": _F.TYPE_INT32,
    "uint32": _F.TYPE_UINT32,
    "string": _F.TYPE_STRING,
}

# message name -> [(field, number, label, type or ".caffe.Message" / enum, default or None)]
_FORK_MESSAGES: dict[str, list[tuple[str, int, int, str, str | None]]] = {
    "PermuteParameter": [("order", 1, _REP, "uint32", None)],
    "NormalizeParameter": [
        ("across_spatial", 1, _OPT, "bool", "true"),
        ("scale_filler", 2, _OPT, ".caffe.FillerParameter", None),
        ("channel_shared", 3, _OPT, "bool", "true"),
        ("eps", 4, _OPT, "float", "1e-10"),
    ],
    "PriorBoxParameter": [
        ("min_size", 1, _REP, "float", None),
        ("max_size", 2, _REP, "float", None),
        ("aspect_ratio", 3, _REP, "float", None),
        ("flip", 4, _OPT, "bool", "true"),
        ("clip", 5, _OPT, "bool", "false"),
        ("variance", 6, _REP, "float", None),
        ("img_size", 7, _OPT, "uint32", None),
        ("img_h", 8, _OPT, "uint32", None),
        ("img_w", 9, _OPT, "uint32", None),
        ("step", 10, _OPT, "float", None),
        ("step_h", 11, _OPT, "float", None),
        ("step_w", 12, _OPT, "float", None),
        ("offset", 13, _OPT, "float", "0.5"),
    ],
    "NonMaximumSuppressionParameter": [
        ("nms_threshold", 1, _OPT, "float", "0.3"),
        ("top_k", 2, _OPT, "int32", None),
        ("eta", 3, _OPT, "float", "1.0"),
    ],
    "SaveOutputParameter": [
        ("output_directory", 1, _OPT, "string", None),
        ("output_name_prefix", 2, _OPT, "string", None),
        ("output_format", 3, _OPT, "string", None),
        ("label_map_file", 4, _OPT, "string", None),
        ("name_size_file", 5, _OPT, "string", None),
        ("num_test_image", 6, _OPT, "uint32", None),
    ],
    "DetectionOutputParameter": [
        ("num_classes", 1, _OPT, "uint32", None),
        ("share_location", 2, _OPT, "bool", "true"),
        ("background_label_id", 3, _OPT, "int32", "0"),
        ("nms_param", 4, _OPT, ".caffe.NonMaximumSuppressionParameter", None),
        ("save_output_param", 5, _OPT, ".caffe.SaveOutputParameter", None),
        ("code_type", 6, _OPT, "enum:.caffe.PriorBoxParameter.CodeType", "CORNER"),
        ("keep_top_k", 7, _OPT, "int32", "-1"),
        ("variance_encoded_in_target", 8, _OPT, "bool", "false"),
        ("confidence_threshold", 9, _OPT, "float", None),
        ("visualize", 10, _OPT, "bool", "false"),
        ("visualize_threshold", 11, _OPT, "float", None),
        ("save_file", 12, _OPT, "string", None),
    ],
    "InterpParameter": [
        ("height", 1, _OPT, "int32", "0"),
        ("width", 2, _OPT, "int32", "0"),
        ("zoom_factor", 3, _OPT, "int32", "1"),
        ("shrink_factor", 4, _OPT, "int32", "1"),
        ("pad_beg", 5, _OPT, "int32", "0"),
        ("pad_end", 6, _OPT, "int32", "0"),
    ],
    "UpsampleParameter": [
        ("scale", 1, _OPT, "uint32", None),
        ("scale_h", 2, _OPT, "uint32", None),
        ("scale_w", 3, _OPT, "uint32", None),
        ("pad_out_h", 4, _OPT, "bool", "false"),
        ("pad_out_w", 5, _OPT, "bool", "false"),
        ("upsample_h", 6, _OPT, "uint32", None),
        ("upsample_w", 7, _OPT, "uint32", None),
        ("dims_num", 8, _OPT, "int32", "4"),
    ],
    "ShuffleChannelParameter": [("group", 1, _OPT, "uint32", "1")],
}
_CODE_TYPES = (("CORNER", 1), ("CENTER_SIZE", 2), ("CORNER_SIZE", 3))

# fields added to existing messages: (message, field, number, type, default)
_FORK_FIELDS = [
    ("LayerParameter", "permute_param", 202, ".caffe.PermuteParameter", None),
    ("LayerParameter", "prior_box_param", 203, ".caffe.PriorBoxParameter", None),
    ("LayerParameter", "detection_output_param", 204, ".caffe.DetectionOutputParameter", None),
    ("LayerParameter", "norm_param", 206, ".caffe.NormalizeParameter", None),
    ("LayerParameter", "interp_param", 10001, ".caffe.InterpParameter", None),
    ("LayerParameter", "upsample_param", 10002, ".caffe.UpsampleParameter", None),
    ("LayerParameter", "shuffle_channel_param", 10003, ".caffe.ShuffleChannelParameter", None),
    ("PoolingParameter", "ceil_mode", 10013, "bool", "true"),
    ("DropoutParameter", "scale_train", 10014, "bool", "true"),
]


def _add_field(msg, name: str, number: int, label: int, ftype: str, default: str | None) -> None:
    f = msg.field.add()
    f.name, f.number, f.label = name, number, label
    if ftype.startswith("enum:"):
        f.type, f.type_name = _F.TYPE_ENUM, ftype[5:]
    elif ftype.startswith("."):
        f.type, f.type_name = _F.TYPE_MESSAGE, ftype
    else:
        f.type = _TYPES[ftype]
    if default is not None:
        f.default_value = default


def _superset_classes():
    fdp = descriptor_pb2.FileDescriptorProto()
    caffe_pb2.DESCRIPTOR.CopyToProto(fdp)
    fdp.name = "onnx2caffe/ncnn/caffe_forks.proto"
    for name, fields in _FORK_MESSAGES.items():
        msg = fdp.message_type.add()
        msg.name = name
        if name == "PriorBoxParameter":
            enum = msg.enum_type.add()
            enum.name = "CodeType"
            for ename, number in _CODE_TYPES:
                v = enum.value.add()
                v.name, v.number = ename, number
        for fname, number, label, ftype, default in fields:
            _add_field(msg, fname, number, label, ftype, default)
    by_name = {m.name: m for m in fdp.message_type}
    for mname, fname, number, ftype, default in _FORK_FIELDS:
        _add_field(by_name[mname], fname, number, _OPT, ftype, default)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    net_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))
    layer_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.LayerParameter"))
    return net_cls, layer_cls


ForkNetParameter, ForkLayerParameter = _superset_classes()


def in_test_phase(lp) -> bool:
    """Whether Caffe builds this layer in the TEST phase (include/exclude rules; stages are not used)."""
    if len(lp.include):
        return any((not r.HasField("phase")) or r.phase == _TEST for r in lp.include)
    return not any(r.HasField("phase") and r.phase == _TEST for r in lp.exclude)


@dataclass
class CaffeModel:
    """A Caffe model as ncnn's converter sees it: the TEST-phase layers with their blobs, and each
    layer's parameters parsed with the fork superset (``params``)."""

    net: CaffeNet
    prototxt: str
    caffemodel: str | None
    _params: dict[int, object] = field(default_factory=dict)

    @property
    def layers(self) -> list[Layer]:
        return self.net.layers

    def params(self, layer: Layer):
        """The layer's LayerParameter as the superset message (fork fields readable)."""
        key = id(layer)
        if key not in self._params:
            self._params[key] = ForkLayerParameter.FromString(layer.proto.SerializeToString())
        return self._params[key]


def _parse_text(path: str):
    return parse_prototxt_file(path, ForkNetParameter())


def load_caffe_model(prototxt: str | os.PathLike, caffemodel: str | os.PathLike | None) -> CaffeModel:
    """Read a prototxt (BVLC or with the fork layers above) and attach the caffemodel's blobs by layer
    name. Layers that Caffe leaves out of the TEST phase are dropped. InputFileError naming the file on
    any problem."""
    from onnx2caffe.caffe_net import _fix_legacy_shape  # the caffemodel reader's legacy-shape rule

    prototxt = os.fspath(prototxt)
    fork_net = _parse_text(prototxt)
    base = caffe_pb2.NetParameter.FromString(fork_net.SerializeToString())  # fork fields kept as unknown
    try:
        full = CaffeNet.from_proto(base)
    except InvalidNameError as err:
        raise InvalidNameError(f"{prototxt}: {err}") from None
    net = CaffeNet(full.name)
    for layer in full.layers:
        if in_test_phase(layer.proto):
            net.layers.append(layer)
    model_path = None
    if caffemodel is not None:
        model_path = os.fspath(caffemodel)
        stored = read_caffemodel(model_path)
        by_name: dict[str, list[Layer]] = {}
        for layer in net.layers:
            by_name.setdefault(layer.name, []).append(layer)
        for ml in stored.layers:
            for target in by_name.get(ml.name, ()):
                target.blobs = [
                    _fix_legacy_shape(target.type, i, np.asarray(b)) if legacy else b
                    for i, (b, legacy) in enumerate(zip(ml.blobs, ml.legacy_shape, strict=True))
                ]
                why = blob_problem(target.proto, target.blobs) if target.blobs else None
                if why:
                    raise InputFileError(f"{model_path}: layer {target.name!r} ({target.type}): {why}")
    return CaffeModel(net, prototxt, model_path)


def with_input_shapes(model: CaffeModel, shapes: dict[str, tuple[int, ...]]) -> CaffeModel:
    """A copy of `model` whose Input / MemoryData layers declare the given shapes (blob name -> shape);
    the other layers are shared. InputFileError for a name that is not an input."""
    known = set()
    net = CaffeNet(model.net.name)
    for layer in model.layers:
        if layer.type not in ("Input", "MemoryData"):
            net.layers.append(layer)
            continue
        lp = caffe_pb2.LayerParameter()
        lp.CopyFrom(layer.proto)
        tops = list(lp.top)
        known.update(tops)
        if layer.type == "Input":
            old = [list(s.dim) for s in lp.input_param.shape]
            new = []
            for i, t in enumerate(tops):
                base = old[0] if len(old) == 1 else old[i]
                new.append(list(shapes.get(t, base)))
            del lp.input_param.shape[:]
            for dims in new:
                lp.input_param.shape.add().dim.extend(int(d) for d in dims)
        elif tops[0] in shapes:
            s = shapes[tops[0]]
            if len(s) != 4:
                raise InputFileError(f"input {tops[0]!r} of a MemoryData layer needs 4 dims, got {s}")
            p = lp.memory_data_param
            p.batch_size, p.channels, p.height, p.width = (int(d) for d in s)
        copy = Layer.from_proto(lp)
        copy.blobs = layer.blobs
        net.layers.append(copy)
    unknown = sorted(set(shapes) - known)
    if unknown:
        raise InputFileError(f"{model.prototxt}: no input named {', '.join(map(repr, unknown))}")
    return CaffeModel(net, model.prototxt, model.caffemodel)
