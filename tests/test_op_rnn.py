"""LSTM / GRU / RNN unrolled over time, on real Caffe and OpenCV vs onnxruntime; torch's exports of nn.LSTM / nn.GRU
with both exporters; the refusals."""

from __future__ import annotations

import copy
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx_testing import check_conversion, make_model, runtimes_here

from onnx2caffe.compare import metrics
from onnx2caffe.convert import convert
from onnx2caffe.errors import ConversionError

# Each step sums I + H products and a bias in another order than onnxruntime (a few ulp of the gate
# pre-activations) and Sigmoid/TanH differ between libraries by a few ulp; the state carries that forward damped
# by the gates. Measured max_rel: <= 4.3e-7 here (T <= 128, H <= 8); 1e-5 / 2e-5 leave room for other seeds and
# BLAS builds, while a wrong gate order, bias or direction gives errors of order 0.1 - 1.
TOL = 1e-5
TOL_LONG = 2e-5
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
OUTPUTS = {"LSTM": ("Y", "Y_h", "Y_c"), "GRU": ("Y", "Y_h"), "RNN": ("Y", "Y_h")}


def rnn_model(
    op,
    T=5,
    N=1,
    I=4,  # noqa: E741
    H=3,
    direction="forward",
    outputs=None,
    init=None,
    layout=0,
    seed=0,
    extra_inputs=(),
    bias=True,
    **attrs,
):
    """A one-node model. init: None (omitted states), "zero", "const" (per-entry constants) or "input" (graph
    inputs); outputs: the outputs used (default all)."""
    rng = np.random.default_rng(seed)
    G, D = GATES[op], 2 if direction == "bidirectional" else 1
    inits = {
        "W": rng.uniform(-0.6, 0.6, (D, G * H, I)).astype(np.float32),
        "R": rng.uniform(-0.6, 0.6, (D, G * H, H)).astype(np.float32),
        "B": rng.uniform(-0.5, 0.5, (D, 2 * G * H)).astype(np.float32),
    }
    inputs = {"x": (T, N, I) if layout == 0 else (N, T, I)}
    node_inputs = ["x", "W", "R", "B", "", ""]
    if not bias:  # B omitted: zero biases
        del inits["B"]
        node_inputs[3] = ""
    state_shape = (D, N, H) if layout == 0 else (N, D, H)
    states = ["h0", "c0"] if op == "LSTM" else ["h0"]
    if init is not None:
        node_inputs = node_inputs[:5] + states
        for s in states:
            if init == "input":
                inputs[s] = state_shape
            else:
                value = rng.uniform(-1, 1, state_shape) if init == "const" else np.zeros(state_shape)
                inits[s] = value.astype(np.float32)
    nodes = []
    for index, name, value in extra_inputs:
        while len(node_inputs) <= index:
            node_inputs.append("")
        node_inputs[index] = name
        if value is not None:
            inits[name] = value
        else:  # computed at run time from a graph input
            inputs[name + "_f"] = (N,)
            nodes.append(helper.make_node("Cast", [name + "_f"], [name], to=6))
    used = OUTPUTS[op] if outputs is None else outputs
    node_outputs = [o if o in used else "" for o in OUTPUTS[op]]
    while node_outputs and not node_outputs[-1]:
        node_outputs.pop()
    if layout:
        attrs["layout"] = layout
    node = helper.make_node(
        op, node_inputs, node_outputs, name="rnn", hidden_size=H, direction=direction, **attrs
    )
    return make_model([*nodes, node], inputs, dict.fromkeys(used), inits, opset=14)


def _steps(net, kind):
    return sum(1 for layer in net.layers if layer.type == kind)


@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("init", [None, "const", "input"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lstm(tmp_path, direction, init, N):
    check_conversion(rnn_model("LSTM", T=6, N=N, direction=direction, init=init), tmp_path, max_rel=TOL)


@pytest.mark.parametrize(("index", "name"), [(5, "h0"), (6, "c0")])
def test_lstm_one_initial_state(tmp_path, index, name):
    # only one of initial_h / initial_c given: the other starts at zero
    value = np.random.default_rng(1).uniform(-1, 1, (2, 2, 3)).astype(np.float32)
    model = rnn_model("LSTM", T=4, N=2, direction="bidirectional", extra_inputs=[(index, name, value)])
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("init", [None, "const", "input"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_gru(tmp_path, direction, init, lbr):
    model = rnn_model("GRU", T=5, N=2, direction=direction, init=init, linear_before_reset=lbr)
    check_conversion(model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize("acts", [None, ["Relu"], ["Sigmoid"]])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_rnn(tmp_path, direction, acts):
    attrs = {} if acts is None else {"activations": acts * (2 if direction == "bidirectional" else 1)}
    check_conversion(
        rnn_model("RNN", T=7, N=2, direction=direction, init="const", **attrs), tmp_path, max_rel=TOL
    )


@pytest.mark.parametrize(
    ("op", "outputs"),
    [
        ("LSTM", ("Y_h",)),
        ("LSTM", ("Y_c",)),
        ("LSTM", ("Y", "Y_c")),
        ("LSTM", ("Y_h", "Y_c")),
        ("GRU", ("Y_h",)),
        ("RNN", ("Y",)),
    ],
)
@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
def test_output_subsets(tmp_path, op, outputs, direction):
    net = check_conversion(
        rnn_model(op, T=4, N=2, direction=direction, outputs=outputs), tmp_path, max_rel=TOL
    )
    # nothing else leaks out as a net output (an output that a later step reads is not a Caffe net output)
    assert set(net.outputs) <= set(outputs)


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_short_sequences(tmp_path, op, T):
    check_conversion(rnn_model(op, T=T, N=2, direction="bidirectional", init="const"), tmp_path, max_rel=TOL)


@pytest.mark.parametrize(
    ("op", "attrs"), [("LSTM", {}), ("GRU", {"linear_before_reset": 1}), ("GRU", {"linear_before_reset": 0})]
)
def test_sequence_length_128(tmp_path, op, attrs):
    # the length a CRNN head sees at most; weights scaled so that the gates do not all saturate
    model = rnn_model(op, T=128, N=1, I=8, H=8, direction="bidirectional", init="const", **attrs)
    check_conversion(model, tmp_path, max_rel=TOL_LONG)


def test_zero_initial_state_and_full_sequence_lens(tmp_path):
    # explicit zero states are the omitted ones; sequence_lens equal to T everywhere is the full sequence
    lens = (4, "lens", np.full(3, 5, np.int32))
    model = rnn_model("LSTM", T=5, N=3, direction="bidirectional", init="zero", extra_inputs=[lens])
    net = check_conversion(model, tmp_path, max_rel=TOL)
    plain = convert(rnn_model("LSTM", T=5, N=3, direction="bidirectional"), None, check=False).net
    assert len(net.layers) == len(plain.layers)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_no_bias(tmp_path, op):
    # as torch exports bias=False (GRU with linear_before_reset 1: no Rbh term inside the reset product)
    attrs = {"linear_before_reset": 1} if op == "GRU" else {}
    model = rnn_model(op, T=4, N=2, direction="bidirectional", bias=False, **attrs)
    check_conversion(model, tmp_path, max_rel=TOL)


def test_zero_peepholes(tmp_path):
    peep = (7, "P", np.zeros((1, 9), np.float32))
    check_conversion(rnn_model("LSTM", T=4, N=1, init="const", extra_inputs=[peep]), tmp_path, max_rel=TOL)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_cost_per_step(op):
    # the documented cost: LSTM 11, GRU 11, RNN 3 layers per step and direction after the first step
    counts = {}
    for T in (4, 5):
        net = convert(rnn_model(op, T=T, direction="bidirectional", init="const"), None, check=False).net
        counts[T] = len(net.layers)
    assert counts[5] - counts[4] == 2 * {"LSTM": 11, "GRU": 11, "RNN": 3}[op]
    # per direction: the input projection(s), one zero-weight InnerProduct per constant state, the recurrent ones
    net = convert(rnn_model(op, T=4, direction="bidirectional", init="const"), None, check=False).net
    assert (
        _steps(net, "InnerProduct")
        == {"LSTM": 2 * (1 + 2 + 4), "GRU": 2 * (2 + 1 + 8), "RNN": 2 * (1 + 1 + 4)}[op]
    )


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_layout_1(tmp_path, op):
    # onnxruntime refuses layout 1, so the reference is the same node with layout 0 on the transposed input
    direction = "bidirectional"
    time_major = rnn_model(op, T=5, N=2, direction=direction, init="const")
    batch_major = copy.deepcopy(time_major)
    node = batch_major.graph.node[0]
    node.attribute.append(helper.make_attribute("layout", 1))
    for t in batch_major.graph.initializer:
        if t.name in ("h0", "c0"):  # (D, N, H) -> (N, D, H), the same states
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).transpose(1, 0, 2), t.name))
    batch_major.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", 1, [2, 5, 4]))
    del batch_major.graph.output[:]
    batch_major = onnx.shape_inference.infer_shapes(batch_major, strict_mode=True)
    inferred = {v.name: v for v in batch_major.graph.value_info}
    batch_major.graph.output.extend(inferred[o.name] for o in time_major.graph.output)
    res = convert(batch_major, str(tmp_path / "m"), check=False)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    sess = ort.InferenceSession(time_major.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in time_major.graph.output]
    refs = dict(zip(names, sess.run(names, {"x": x.transpose(1, 0, 2)}), strict=True))
    refs["Y"] = refs["Y"].transpose(2, 0, 1, 3)  # (T, D, N, H) -> (N, T, D, H)
    for k in names[1:]:
        refs[k] = refs[k].transpose(1, 0, 2)  # (D, N, H) -> (N, D, H)
    for rt in runtimes_here():
        with rt.load(res.prototxt, res.caffemodel) as loaded:
            outs = loaded.run({"x": x}, outputs=[res.name_map[n] for n in names])
        for n in names:
            got = outs[res.name_map[n]]
            assert got.shape == refs[n].shape, (rt.name, n)
            m = metrics(refs[n], got)
            assert m["max_rel"] <= TOL and m["cosine"] >= 0.99999, (rt.name, n, m)


@pytest.mark.parametrize(
    ("op", "kwargs", "match"),
    [
        ("LSTM", {"clip": 3.0}, "attribute clip=3.0"),
        ("LSTM", {"input_forget": 1}, "attribute input_forget=1"),
        ("GRU", {"activations": ["HardSigmoid", "Tanh"]}, "HardSigmoid has no exact"),
        ("RNN", {"activations": ["Tanh"], "activation_alpha": [1.0]}, "attribute activation_alpha"),
        ("LSTM", {"extra_inputs": [(4, "lens", np.array([5, 3], np.int32))]}, r"sequence_lens \[5, 3\]"),
        ("LSTM", {"extra_inputs": [(7, "P", np.ones((1, 9), np.float32))]}, "peephole"),
        ("GRU", {"extra_inputs": [(4, "lens", None)]}, "sequence_lens is computed"),
    ],
)
def test_refused(tmp_path, op, kwargs, match):
    extra = kwargs.pop("extra_inputs", ())
    model = rnn_model(op, T=5, N=2, extra_inputs=extra, **kwargs)
    prefix = tmp_path / "m"
    with pytest.raises(ConversionError, match=rf"node 'rnn' \({op}, opset 14\): .*{match}"):
        convert(model, str(prefix), check=False)
    assert not os.listdir(tmp_path)


def test_unrolled_weights_over_2gb_refused(tmp_path):
    # R is stored once per step: 128 steps of a (4 * 1024, 1024) float32 R are 2 GiB
    W = np.zeros((1, 4096, 8), np.float32)
    R = np.broadcast_to(np.float32(0), (1, 4096, 1024))
    node = helper.make_node("LSTM", ["x", "W", "R"], ["Y"], name="rnn", hidden_size=1024)
    model = make_model(
        [node], {"x": (128, 1, 8)}, {"Y": None}, {"W": W, "R": np.ascontiguousarray(R)}, opset=14
    )
    with pytest.raises(ConversionError, match="stores the recurrent weights 128 times"):
        convert(model, str(tmp_path / "m"), check=False)
    assert not os.listdir(tmp_path)


# ------------------------------------------------------------------------------------------ torch's exports


def _torch_net(kind, batch_first, layers, bidirectional, use_state):
    """nn.LSTM / nn.GRU, with the last hidden state used too when use_state (as sequence classifiers do)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            cls = getattr(torch.nn, kind)
            self.rnn = cls(6, 5, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)

        def forward(self, x):
            y, state = self.rnn(x)
            if not use_state:
                return y
            return y, state[0] if isinstance(state, tuple) else state

    return Net().eval()


TORCH_CASES = [
    # kind, batch_first, layers, bidirectional, use_state, exporter, batch
    ("LSTM", True, 2, True, False, "torchscript", 1),  # the CRNN head
    ("LSTM", True, 2, True, False, "dynamo", 1),
    ("GRU", False, 1, False, True, "torchscript", 2),
    ("LSTM", True, 1, True, True, "torchscript", 3),  # batch > 1: the Transposes around it move data
    ("GRU", False, 2, True, True, "dynamo", 1),
]
TORCH_SLOW = [
    (kind, bf, layers, bi, state, exporter, 1)
    for kind in ("LSTM", "GRU")
    for bf in (True, False)
    for layers in (1, 2)
    for bi in (True, False)
    for state in (False, True)
    for exporter in ("torchscript", "dynamo")
]


def _torch_case(tmp_path, kind, batch_first, layers, bidirectional, use_state, exporter, batch):
    from onnx2caffe.exporters.torch_export import torch_to_onnx

    net = _torch_net(kind, batch_first, layers, bidirectional, use_state)
    shape = (batch, 7, 6) if batch_first else (7, batch, 6)
    exported = torch_to_onnx(net, [shape], exporter=exporter)
    assert kind in [n.op_type for n in exported.model.graph.node]
    check_conversion(exported.model, tmp_path, max_rel=TOL)


@pytest.mark.parametrize(("kind", "bf", "layers", "bi", "state", "exporter", "batch"), TORCH_CASES)
def test_torch_export(tmp_path, kind, bf, layers, bi, state, exporter, batch):
    _torch_case(tmp_path, kind, bf, layers, bi, state, exporter, batch)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("ONNX2CAFFE_FULL_EXPORTS") != "1",
    reason="64 exports (2.5 min): set ONNX2CAFFE_FULL_EXPORTS=1",
)
@pytest.mark.parametrize(("kind", "bf", "layers", "bi", "state", "exporter", "batch"), TORCH_SLOW)
def test_torch_export_all(tmp_path, kind, bf, layers, bi, state, exporter, batch):
    # every combination with both exporters: 64 exports, about 2.5 minutes on 2 cores
    _torch_case(tmp_path, kind, bf, layers, bi, state, exporter, batch)


@pytest.mark.parametrize("forget_bias", [0.0, 4.0])
def test_long_memory_is_float32_noise(tmp_path, forget_bias):
    # A state that is kept for long (forget gate ~0.98) amplifies every rounding, onnxruntime's too: the converted
    # model must stay as close to a float64 evaluation of the ONNX equations as onnxruntime is (a factor 5 of
    # room for the other summation order). Measured: onnxruntime 8.5e-6 from float64 with forget_bias 4, pycaffe
    # 2.9e-5, OpenCV 1.3e-5. About 2 s each.
    T, I, H = 128, 32, 64  # noqa: E741
    model = rnn_model("LSTM", T=T, I=I, H=H, direction="forward", init="const")
    init = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    init["B"][:, 2 * H : 3 * H] += forget_bias  # ONNX gate order i, o, f, c
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(init[t.name], t.name))
    x = np.random.default_rng(0).standard_normal((T, 1, I)).astype(np.float32)

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    W, R, B = (init[k][0].astype(np.float64) for k in ("W", "R", "B"))
    h, c, ys = init["h0"][0].astype(np.float64), init["c0"][0].astype(np.float64), []
    for t in range(T):
        g = x[t] @ W.T + h @ R.T + B[: 4 * H] + B[4 * H :]
        i, o, f = sigmoid(g[:, :H]), sigmoid(g[:, H : 2 * H]), sigmoid(g[:, 2 * H : 3 * H])
        c = f * c + i * np.tanh(g[:, 3 * H :])
        h = o * np.tanh(c)
        ys.append(h)
    exact = np.stack(ys)[:, None]
    y_ort = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["Y"], {"x": x}
    )[0]
    ort_err = metrics(exact, y_ort)["max_rel"]
    res = convert(model, str(tmp_path / "m"), check=False)
    for rt in runtimes_here():
        with rt.load(res.prototxt, res.caffemodel) as loaded:
            y = loaded.run({"x": x}, outputs=[res.name_map["Y"]])[res.name_map["Y"]]
        assert metrics(exact, y)["max_rel"] <= 5 * max(ort_err, 1e-7), (rt.name, ort_err)
