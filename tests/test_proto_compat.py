"""onnx2caffe/proto/caffe.proto must be wire- and text-compatible with real Caffe.

The upstream side is the caffe_pb2 that the real Caffe build generated, imported as
`caffe.proto.caffe_pb2` inside Caffe's own venv (numpy 1.x, protobuf 4.21): it never shares a
process with our venv's protobuf, so every check that needs it runs in a subprocess that answers
in JSON. Caffe is found the way the runtime finds it: $ONNX2CAFFE_CAFFE_ROOT, else the checkout's
.caffe folder. Without a built Caffe only the self-contained checks run; the others skip.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, text_format

from onnx2caffe.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[1]

# Every standard BVLC layer type -> (its parameter message, the LayerParameter field that holds it).
BVLC_LAYER_PARAMS = {
    "Accuracy": ("AccuracyParameter", "accuracy_param"),
    "ArgMax": ("ArgMaxParameter", "argmax_param"),
    "BatchNorm": ("BatchNormParameter", "batch_norm_param"),
    "Bias": ("BiasParameter", "bias_param"),
    "Clip": ("ClipParameter", "clip_param"),
    "Concat": ("ConcatParameter", "concat_param"),
    "ContrastiveLoss": ("ContrastiveLossParameter", "contrastive_loss_param"),
    "Convolution": ("ConvolutionParameter", "convolution_param"),
    "Crop": ("CropParameter", "crop_param"),
    "Data": ("DataParameter", "data_param"),
    "Dropout": ("DropoutParameter", "dropout_param"),
    "DummyData": ("DummyDataParameter", "dummy_data_param"),
    "Eltwise": ("EltwiseParameter", "eltwise_param"),
    "ELU": ("ELUParameter", "elu_param"),
    "Embed": ("EmbedParameter", "embed_param"),
    "Exp": ("ExpParameter", "exp_param"),
    "Flatten": ("FlattenParameter", "flatten_param"),
    "HDF5Data": ("HDF5DataParameter", "hdf5_data_param"),
    "HDF5Output": ("HDF5OutputParameter", "hdf5_output_param"),
    "HingeLoss": ("HingeLossParameter", "hinge_loss_param"),
    "ImageData": ("ImageDataParameter", "image_data_param"),
    "InfogainLoss": ("InfogainLossParameter", "infogain_loss_param"),
    "InnerProduct": ("InnerProductParameter", "inner_product_param"),
    "Input": ("InputParameter", "input_param"),
    "Log": ("LogParameter", "log_param"),
    "LRN": ("LRNParameter", "lrn_param"),
    "MemoryData": ("MemoryDataParameter", "memory_data_param"),
    "MVN": ("MVNParameter", "mvn_param"),
    "Parameter": ("ParameterParameter", "parameter_param"),
    "Pooling": ("PoolingParameter", "pooling_param"),
    "Power": ("PowerParameter", "power_param"),
    "PReLU": ("PReLUParameter", "prelu_param"),
    "Python": ("PythonParameter", "python_param"),
    "Recurrent": ("RecurrentParameter", "recurrent_param"),
    "Reduction": ("ReductionParameter", "reduction_param"),
    "ReLU": ("ReLUParameter", "relu_param"),
    "Reshape": ("ReshapeParameter", "reshape_param"),
    "Scale": ("ScaleParameter", "scale_param"),
    "Sigmoid": ("SigmoidParameter", "sigmoid_param"),
    "Softmax": ("SoftmaxParameter", "softmax_param"),
    "SPP": ("SPPParameter", "spp_param"),
    "Slice": ("SliceParameter", "slice_param"),
    "Swish": ("SwishParameter", "swish_param"),
    "TanH": ("TanHParameter", "tanh_param"),
    "Threshold": ("ThresholdParameter", "threshold_param"),
    "Tile": ("TileParameter", "tile_param"),
    "WindowData": ("WindowDataParameter", "window_data_param"),
}

CORE_MESSAGES = {
    "NetParameter", "LayerParameter", "BlobProto", "BlobShape", "FillerParameter", "ParamSpec",
    "NetState", "NetStateRule", "TransformationParameter", "LossParameter", "V1LayerParameter",
    "V0LayerParameter",
}  # fmt: skip

# Fork-only messages that must stay out: we emit portable BVLC only.
FORK_MESSAGES = {
    "PermuteParameter", "NormalizeParameter", "PriorBoxParameter", "UpsampleParameter",
    "DetectionOutputParameter", "MultiBoxLossParameter", "AnnotatedDataParameter", "BNParameter",
    "InterpParameter", "ReLU6Parameter", "ShuffleChannelParameter", "VideoDataParameter",
}  # fmt: skip

# Parts of late BVLC master that an older Caffe build (such as the SSD-based tree in .caffe) does
# not have. They are compared whenever the build has them; when it lacks them they are allowed to
# be missing, and nothing else is.
NEWER_THAN_SOME_BUILDS_MESSAGES = {"caffe.ClipParameter", "caffe.SwishParameter"}
NEWER_THAN_SOME_BUILDS_FIELDS = {
    ("caffe.LayerParameter", "clip_param"),
    ("caffe.LayerParameter", "swish_param"),
    ("caffe.PoolingParameter", "round_mode"),
    ("caffe.InfogainLossParameter", "axis"),
}
NEWER_THAN_SOME_BUILDS_ENUMS = {"caffe.PoolingParameter.RoundMode"}
# A field number of ours that such a build uses for a field of another name. SSD-derived trees put
# a bool `ceil_mode` at PoolingParameter 13, where BVLC master has the enum `round_mode`.
KNOWN_NUMBER_CLASHES = {("caffe.PoolingParameter", 13): "ceil_mode"}
# Defaults that such a tree changed (ours = BVLC's, theirs). A default never goes on the wire and
# we always write stride_h/stride_w together with kernel_h/kernel_w, so neither side misreads.
KNOWN_DEFAULT_DIFFERENCES = {
    ("caffe.ConvolutionParameter", "stride_h"): (None, "1"),
    ("caffe.ConvolutionParameter", "stride_w"): (None, "1"),
}


# Runs on both sides (our venv in-process, Caffe's venv in a subprocess): flattens a compiled
# FileDescriptor into {message: {field: facts}} and {enum: {value: number}}. It reads the
# FileDescriptorProto, which every protobuf runtime from 4.x to 7.x can produce.
DUMP_SRC = textwrap.dedent(
    """
    def dump_descriptor(file_descriptor):
        from google.protobuf import descriptor_pb2
        fdp = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(fdp)
        prefix = "." + fdp.package + "." if fdp.package else "."
        messages, enums = {}, {}

        def walk_enum(enum, scope):
            enums[(scope + enum.name)[1:]] = {v.name: v.number for v in enum.value}

        def walk_message(msg, scope):
            full = scope + msg.name
            fields = {}
            for f in msg.field:
                fields[f.name] = {
                    "number": f.number,
                    "label": f.label,
                    "type": f.type,
                    "type_name": f.type_name,
                    "default": f.default_value if f.HasField("default_value") else None,
                    "packed": f.options.packed if f.options.HasField("packed") else None,
                }
            messages[full[1:]] = fields
            for e in msg.enum_type:
                walk_enum(e, full + ".")
            for m in msg.nested_type:
                walk_message(m, full + ".")

        for e in fdp.enum_type:
            walk_enum(e, prefix)
        for m in fdp.message_type:
            walk_message(m, prefix)
        return {"package": fdp.package, "syntax": fdp.syntax, "messages": messages, "enums": enums}
    """
)


def _dump_ours() -> dict:
    namespace: dict = {}
    exec(DUMP_SRC, namespace)  # the same code the upstream subprocess runs
    return namespace["dump_descriptor"](caffe_pb2.DESCRIPTOR)


# ---------------------------------------------------------------------------------------------
# Talking to real Caffe
# ---------------------------------------------------------------------------------------------


def _caffe_root() -> Path:
    env = os.environ.get("ONNX2CAFFE_CAFFE_ROOT")
    return Path(env) if env else REPO / ".caffe"


def _run_upstream(code: str, request: dict | None = None, timeout: float = 180) -> dict:
    """Runs `code` in Caffe's venv with `caffe.proto.caffe_pb2` imported as `up`.

    The code reads the JSON `request` dict and sets `reply`, a JSON-able dict.
    """
    root = _caffe_root()
    python = root / "venv" / "bin" / "python"
    pycaffe = root / "src" / "python"
    needed = [python, pycaffe / "caffe" / "_caffe.so"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        pytest.skip(f"real Caffe is not built under {root} (missing {', '.join(missing)}); `make caffe`")
    script = "\n".join(
        [
            "import json, sys",
            "import caffe.proto.caffe_pb2 as up",
            DUMP_SRC,
            "request = json.loads(sys.stdin.read())",
            "reply = None",
            textwrap.dedent(code),
            "sys.stdout.write('\\n@@REPLY@@' + json.dumps(reply))",
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PROTOCOL_BUFFERS"))}
    env.update(PYTHONPATH=str(pycaffe), GLOG_minloglevel="2", PYTHONNOUSERSITE="1")
    proc = subprocess.run(
        [str(python), "-c", script],
        input=json.dumps(request or {}),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"upstream subprocess failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    marker = proc.stdout.rfind("@@REPLY@@")
    assert marker >= 0, f"no reply from upstream subprocess; stdout:\n{proc.stdout[-2000:]}"
    return json.loads(proc.stdout[marker + len("@@REPLY@@") :])


@pytest.fixture(scope="module")
def upstream_dump() -> dict:
    return _run_upstream("reply = dump_descriptor(up.DESCRIPTOR)")


# ---------------------------------------------------------------------------------------------
# Self-contained checks (no Caffe needed)
# ---------------------------------------------------------------------------------------------


def test_schema_covers_bvlc_and_nothing_from_forks():
    ours = _dump_ours()
    assert ours["package"] == "caffe"
    assert ours["syntax"] in ("", "proto2")  # proto2 files may leave the syntax field empty
    names = {name.split(".", 1)[1] for name in ours["messages"]}
    assert CORE_MESSAGES <= names, sorted(CORE_MESSAGES - names)
    layer_fields = ours["messages"]["caffe.LayerParameter"]
    for layer_type, (message, field) in BVLC_LAYER_PARAMS.items():
        assert message in names, f"{layer_type}: no message {message}"
        assert field in layer_fields, f"{layer_type}: LayerParameter has no field {field}"
        assert layer_fields[field]["type_name"] == f".caffe.{message}", (layer_type, layer_fields[field])
    assert not names & FORK_MESSAGES, sorted(names & FORK_MESSAGES)
    # Fork parameters live at LayerParameter numbers >= 149 (SSD: 200-207, others higher).
    assert max(f["number"] for f in layer_fields.values()) == 148
    assert ours["messages"]["caffe.NetParameter"]["layers"]["type_name"] == ".caffe.V1LayerParameter"
    assert ours["messages"]["caffe.NetParameter"]["layers"]["number"] == 2


def test_text_format_round_trip_and_defaults():
    net = caffe_pb2.NetParameter()
    text_format.Parse(
        """
        name: "t"
        layer { name: "p" type: "Pooling" bottom: "x" top: "y"
                pooling_param { pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR } }
        layer { name: "c" type: "Clip" bottom: "y" top: "z" clip_param { min: -1 max: 6 } }
        """,
        net,
    )
    assert net.layer[0].pooling_param.round_mode == caffe_pb2.PoolingParameter.FLOOR
    assert net.layer[1].clip_param.max == 6.0
    # Defaults are BVLC's (spot checks of values a converter relies on).
    assert caffe_pb2.BatchNormParameter().eps == pytest.approx(1e-5, rel=1e-6)  # float32 storage
    assert caffe_pb2.ConvolutionParameter().bias_term is True
    assert caffe_pb2.PoolingParameter().stride == 1
    assert caffe_pb2.FlattenParameter().end_axis == -1
    assert caffe_pb2.NetState().phase == caffe_pb2.TEST
    again = caffe_pb2.NetParameter.FromString(net.SerializeToString())
    assert text_format.MessageToString(again) == text_format.MessageToString(net)


# ---------------------------------------------------------------------------------------------
# Checks against real Caffe
# ---------------------------------------------------------------------------------------------


def _same_default(ours: dict, theirs: dict) -> bool:
    a, b = ours["default"], theirs["default"]
    if a is None or b is None:
        return a is b
    if ours["type"] == descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT:
        # Compare as the float32 both sides store, so "1e-05" and "1e-5" agree.
        return struct.pack("<f", float(a)) == struct.pack("<f", float(b))
    if ours["type"] == descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE:
        return float(a) == float(b)
    return a == b


def test_descriptors_match_upstream(upstream_dump):
    ours = _dump_ours()
    theirs = upstream_dump
    assert theirs["package"] == ours["package"] == "caffe"

    problems: list[str] = []
    compared_messages = compared_fields = compared_enums = compared_values = 0
    absent_upstream: list[str] = []
    for msg, fields in sorted(ours["messages"].items()):
        if msg not in theirs["messages"]:
            if msg in NEWER_THAN_SOME_BUILDS_MESSAGES:
                absent_upstream.append(msg)
            else:
                problems.append(f"{msg}: no such message upstream")
            continue
        compared_messages += 1
        up_fields = theirs["messages"][msg]
        up_by_number = {f["number"]: name for name, f in up_fields.items()}
        for name, facts in sorted(fields.items()):
            if name not in up_fields:
                if (msg, name) not in NEWER_THAN_SOME_BUILDS_FIELDS:
                    problems.append(f"{msg}.{name}: no such field upstream")
                    continue
                absent_upstream.append(f"{msg}.{name}")
                other = up_by_number.get(facts["number"])
                if other is not None and KNOWN_NUMBER_CLASHES.get((msg, facts["number"])) != other:
                    problems.append(f"{msg}.{name}: number {facts['number']} is upstream's {other!r}")
                continue
            compared_fields += 1
            up = up_fields[name]
            for key in ("number", "label", "type", "type_name", "packed"):
                if facts[key] != up[key]:
                    problems.append(f"{msg}.{name}: {key} ours={facts[key]!r} upstream={up[key]!r}")
            known = KNOWN_DEFAULT_DIFFERENCES.get((msg, name))
            if not _same_default(facts, up) and known != (facts["default"], up["default"]):
                problems.append(f"{msg}.{name}: default ours={facts['default']!r} upstream={up['default']!r}")
    for enum, values in sorted(ours["enums"].items()):
        if enum not in theirs["enums"]:
            if enum in NEWER_THAN_SOME_BUILDS_ENUMS:
                absent_upstream.append(enum)
            else:
                problems.append(f"{enum}: no such enum upstream")
            continue
        compared_enums += 1
        compared_values += len(values)
        if values != theirs["enums"][enum]:
            problems.append(f"{enum}: values ours={values} upstream={theirs['enums'][enum]}")

    print(
        f"compared {compared_messages} messages / {compared_fields} fields, "
        f"{compared_enums} enums / {compared_values} values; absent upstream: {absent_upstream}"
    )
    assert not problems, "\n".join(problems)
    # Everything of ours was compared except the listed late-BVLC additions.
    n_fields = sum(len(f) for f in ours["messages"].values())
    assert compared_messages + len(NEWER_THAN_SOME_BUILDS_MESSAGES & set(absent_upstream)) == len(
        ours["messages"]
    )
    assert compared_fields >= n_fields - len(NEWER_THAN_SOME_BUILDS_FIELDS) - sum(
        len(ours["messages"][m]) for m in NEWER_THAN_SOME_BUILDS_MESSAGES if m in ours["messages"]
    )


def _sample_net() -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter(name="compat")
    data = net.layer.add(name="data", type="Input", top=["data"])
    data.input_param.shape.add(dim=[1, 2, 5, 5])
    conv = net.layer.add(name="conv1", type="Convolution", bottom=["data"], top=["conv1"])
    p = conv.convolution_param
    p.num_output = 3
    p.kernel_size.append(3)
    p.pad.append(1)
    p.stride.append(2)
    p.dilation.append(1)
    p.group = 1
    p.weight_filler.type = "xavier"
    p.bias_filler.value = 0.25
    conv.param.add(lr_mult=1.0, decay_mult=0.5)
    weight = conv.blobs.add()
    weight.shape.dim.extend([3, 2, 3, 3])
    # Values exactly representable in float32, plus a few that are not (0.1), negative and tiny.
    weight.data.extend([(i - 27) * 0.125 for i in range(54)])
    weight.data[0] = 0.1
    weight.data[1] = -3.5e-8
    bias = conv.blobs.add()
    bias.shape.dim.append(3)
    bias.data.extend([0.5, -1.25, 2.0])
    relu = net.layer.add(name="relu1", type="ReLU", bottom=["conv1"], top=["conv1"])
    relu.relu_param.negative_slope = 0.125
    pool = net.layer.add(name="pool1", type="Pooling", bottom=["conv1"], top=["pool1"])
    pool.pooling_param.pool = caffe_pb2.PoolingParameter.AVE
    pool.pooling_param.global_pooling = True
    net.layer.add(name="bn", type="BatchNorm", bottom=["pool1"], top=["pool1"]).batch_norm_param.eps = 1e-3
    return net


def test_binary_and_text_identical_on_upstream():
    net = _sample_net()
    blob = net.SerializeToString()
    reply = _run_upstream(
        """
        from google.protobuf import text_format
        net = up.NetParameter.FromString(bytes.fromhex(request["binary"]))
        other = up.NetParameter()
        text_format.Parse(request["text"], other)
        reply = {
            "text": text_format.MessageToString(net),
            "reserialized": net.SerializeToString().hex(),
            "from_text": other.SerializeToString().hex(),
        }
        """,
        {"binary": blob.hex(), "text": text_format.MessageToString(net)},
    )
    # Upstream's text printer leaves out fields it does not know, so equal text also means that
    # upstream recognised every field we wrote.
    assert reply["text"] == text_format.MessageToString(net)
    # Same bytes back: both sides serialize fields in number order, packed the same way.
    assert bytes.fromhex(reply["reserialized"]) == blob
    # And upstream's text parser reads our text into the same message.
    assert bytes.fromhex(reply["from_text"]) == blob


def test_caffe_runtime_loads_our_files(tmp_path):
    """Caffe's C++ reader loads a prototxt + caffemodel written with our caffe_pb2."""
    net = _sample_net()
    deploy = caffe_pb2.NetParameter()
    deploy.CopyFrom(net)
    for layer in deploy.layer:
        del layer.blobs[:]
    # BatchNorm needs its three statistics blobs in the caffemodel: mean, variance, scale factor 1.
    bn = net.layer[4]
    for values in ([0.5, -0.25, 1.0], [2.0, 0.5, 4.0], [1.0]):
        bn.blobs.add(data=values).shape.dim.append(len(values))
    (tmp_path / "net.prototxt").write_text(text_format.MessageToString(deploy))
    (tmp_path / "net.caffemodel").write_bytes(net.SerializeToString())
    reply = _run_upstream(
        """
        import caffe
        caffe.set_mode_cpu()
        net = caffe.Net(request["prototxt"], request["caffemodel"], caffe.TEST)
        reply = {name: [b.data.ravel().tolist() for b in blobs] for name, blobs in net.params.items()}
        reply["@shapes"] = {name: list(b.data.shape) for name, b in net.blobs.items()}
        """,
        {"prototxt": str(tmp_path / "net.prototxt"), "caffemodel": str(tmp_path / "net.caffemodel")},
    )
    # Exact equality: float32 values go through the files bit for bit.
    assert reply["conv1"] == [list(b.data) for b in net.layer[1].blobs]
    assert reply["bn"] == [list(b.data) for b in bn.blobs]
    # 5x5 input, k3 p1 s2 -> 3x3; global AVE pooling -> 1x1.
    assert reply["@shapes"]["conv1"] == [1, 3, 3, 3]
    assert reply["@shapes"]["pool1"] == [1, 3, 1, 1]
