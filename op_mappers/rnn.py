"""LSTM, GRU and RNN -> unrolled over time into InnerProduct, Slice, Eltwise, Sigmoid / TanH, Concat, Reshape.

BVLC Caffe's own LSTM layer is not used: OpenCV's Caffe importer reads its blobs in another layout (it asserts
Wh.rows == 4 * Wh.cols on BVLC's W_xc) and it has no reverse direction, GRU or initial state input. The unrolled
form (see _rnn.py for the plumbing) computes exactly the ONNX equations with one float32 operation per term:
- each step's gate pre-activation is (X_t W^T + b) + H_{t-1} R^T where onnxruntime computes (X_t W^T + H_{t-1}
  R^T) + b: the same products summed in another order (the bias b = Wb + Rb is added as float32 first, as
  onnxruntime does). Per step this differs by at most about (I + H + 2) * 2^-24 of the sum of |terms| (in
  practice a few ulp), and Sigmoid / TanH differ between libraries by a few ulp;
- the state carries the difference forward through the gates and the recurrent weights, exactly as it carries
  onnxruntime's own float32 rounding: measured max_rel vs onnxruntime <= 4.3e-7 in the tests (T <= 128, H <= 8),
  8.5e-7 / 2.4e-6 for LSTM / GRU at T = 128, H = 64, 3.2e-6 at T = 64, I = 256, H = 128. A net that keeps its
  state for long (forget gate ~ 0.98) amplifies every rounding: there Caffe is 3.7e-5 from onnxruntime, whose
  own distance to a float64 evaluation is 8.5e-6 (Caffe's 2.9e-5, OpenCV's 1.3e-5): the same float32 noise.
Cost per step and direction: LSTM 11 layers (one recurrent InnerProduct, 5 Eltwise, 2 Slice, Sigmoid, 2 TanH;
the first step 6 with zero initial states), GRU 11 (lbr 0 or 1), RNN 3; per direction once: one input projection
InnerProduct + Slice per gate group (W and the folded biases stored once). The recurrent weights R (G*H x H) are
stored once per step, since OpenCV's Caffe importer reads every layer's blobs by its name and shares none: the
caffemodel holds T * D * G * H^2 floats for R (nodes over 2 GB are refused), and on OpenCV every step streams
its copy from memory where OpenCV's own LSTM keeps one in cache (benchmarks/recurrent.py measures the cost).
The bidirectional output (T, 2, N, H) is one Concat + Reshape.
Refused: clip, activation_alpha / beta, activations other than Sigmoid / Tanh / Relu, LSTM input_forget = 1
and non-zero peepholes, sequence_lens shorter than the sequence for any batch entry.
"""

from __future__ import annotations

import numpy as np

from onnx2caffe.registry import register

from ._rnn import LAYERS, Unroller, parse, step_order


def _unroll(node, ctx, spec, groups, cell, state_outputs):
    """Run `cell` over every step of every direction. groups: (tag, row slice of W, bias per direction);
    cell(u, d, t, xs, states, last) -> new states (a tuple, the output state first)."""
    unrolled = spec.T * spec.R.nbytes  # one copy of R per step (Caffe layers in OpenCV share no blobs)
    if unrolled > 2**31 - 1:
        node.reject(
            f"unrolling {spec.T} steps stores the recurrent weights {spec.T} times ({unrolled} bytes), over the "
            "2 GB caffemodel limit"
        )
    u = Unroller(ctx, node, spec)
    all_states = []
    finals: dict[int, list[str]] = {i: [] for i in state_outputs}
    for d in range(len(spec.directions)):
        projected = [u.project(d, rows, bias[d], tag) for tag, rows, bias in groups]
        order = step_order(spec, d)
        width = groups[0][1].stop - groups[0][1].start
        states = tuple(u.initial(i, d, projected[0][order[0]], width) for i in spec.initial)
        per_t = [None] * spec.T
        for k, t in enumerate(order):
            last = k == len(order) - 1
            states = cell(u, d, t, [p[t] for p in projected], states, last)
            per_t[t] = states[0]
        for i, blob in zip(state_outputs, states, strict=True):
            finals[i].append(blob)
        all_states.append(per_t)
    return u.finish(all_states, finals)


def _tops(u, d: int, last: bool, indices) -> list[str | None]:
    """The names the last step writes its states to (output blobs when there is one direction)."""
    return [u.last_top(d, i) if last else None for i in indices]


@register(
    "LSTM",
    since=7,
    layers=LAYERS,
    notes="unrolled over T: 11 layers per step and direction, R stored per step; all directions, layout 0/1, "
    "constant or computed initial states; float32 noise carried by the state (see rnn.py): measured <= 3.2e-6; "
    "refused: clip, input_forget, peepholes, activation params, short sequence_lens",
)
def lstm(node, ctx):
    """LSTM (forward / reverse / bidirectional, layout 0/1, constant or computed initial states) unrolled: 11
    layers per step and direction (InnerProduct, Eltwise, Slice, Sigmoid, TanH); float32 noise (see module)."""
    spec = parse(node, ctx, 4, ["Sigmoid", "Tanh", "Tanh"], (5, 6))
    H = spec.H
    input_forget = int(node.attr("input_forget", 0))
    if input_forget:
        node.reject_attr("input_forget", input_forget, "coupled input and forget gates are not mapped")
    peep = ctx.const_input(node, 7, "P")
    if peep is not None and np.any(peep):
        node.reject("non-zero peephole weights P are not mapped")
    # ONNX gate order i, o, f, c: the three gates with activation f come first, the cell input c last
    bias = spec.B[:, : 4 * H] + spec.B[:, 4 * H :]

    def cell(u, d, t, xs, states, last):
        h, c = states
        f_act, g_act, h_act = spec.activations[d]
        tag = f"d{d}_t{t}_"
        h_top, c_top = _tops(u, d, last, (1, 2))
        gates = xs[0]
        if h is not None:
            rec = u.ip(h, spec.R[d], None, tag + "rec")
            gates = u.sum(gates, rec, tag + "gates")
        sig, cand = u.split(gates, 2, [3 * H, H], tag + "split")
        sig = u.act(f_act, sig, tag + "ifo")
        cand = u.act(g_act, cand, tag + "cand")
        i_g, o_g, f_g = u.split(sig, 2, [H, H, H], tag + "gate")
        new_in = u.prod(i_g, cand, tag + "in", None if c is not None else c_top)
        if c is None:
            u.unused.append(f_g)
            c_new = new_in
        else:
            kept = u.prod(f_g, c, tag + "keep")
            c_new = u.sum(kept, new_in, tag + "c", c_top)
        if last and not (u.output_blob(0) or u.output_blob(1)):
            u.unused.append(o_g)  # only Y_c is read: the last output gate is not needed
            return None, c_new
        out = u.act(h_act, c_new, tag + "cact")
        h_new = u.prod(o_g, out, tag + "h", h_top)
        return h_new, c_new

    groups = [("iofc", slice(0, 4 * H), bias)]
    return _unroll(node, ctx, spec, groups, cell, (1, 2))


@register(
    "GRU",
    since=7,
    layers=LAYERS,
    notes="unrolled over T: 11 layers per step and direction, R stored per step; linear_before_reset 0/1, all "
    "directions, layout 0/1, initial state; float32 noise carried by the state (see rnn.py): measured <= 2.4e-6; "
    "refused: clip, activation params, short sequence_lens",
)
def gru(node, ctx):
    """GRU (linear_before_reset 0 and 1, all directions, layout 0/1, initial state) unrolled: 11 layers per
    step and direction (InnerProduct, Eltwise, Slice, Sigmoid, TanH); float32 noise (see module)."""
    spec = parse(node, ctx, 3, ["Sigmoid", "Tanh"], (5,))
    H = spec.H
    lbr = int(node.attr("linear_before_reset", 0))
    Wb, Rb = spec.B[:, : 3 * H], spec.B[:, 3 * H :]
    zr_bias = Wb[:, : 2 * H] + Rb[:, : 2 * H]
    # linear_before_reset: Rbh stays inside r * (H Rh^T + Rbh); else Wbh + Rbh is added once, like onnxruntime
    h_bias = Wb[:, 2 * H :] if lbr else Wb[:, 2 * H :] + Rb[:, 2 * H :]

    def cell(u, d, t, xs, states, last):
        (h,) = states
        f_act, g_act = spec.activations[d]
        tag = f"d{d}_t{t}_"
        (h_top,) = _tops(u, d, last, (1,))
        x_zr, x_h = xs
        pre = x_zr
        if h is not None:
            pre = u.sum(x_zr, u.ip(h, spec.R[d, : 2 * H], None, tag + "rec_zr"), tag + "zr_pre")
        z, r = u.split(u.act(f_act, pre, tag + "zr"), 2, [H, H], tag + "gate")
        if lbr:
            rbh = Rb[d, 2 * H :]
            if h is not None:
                lin = u.ip(h, spec.R[d, 2 * H :], rbh if np.any(rbh) else None, tag + "rec_h")
            elif np.any(rbh):  # a zero state: H Rh^T + Rbh = Rbh, a constant row
                lin = u.ip(x_h, np.zeros((H, H), np.float32), rbh, tag + "rbh")
            else:
                lin = None
            reset = None if lin is None else u.prod(r, lin, tag + "reset")
        else:
            reset = (
                None if h is None else u.ip(u.prod(r, h, tag + "rh"), spec.R[d, 2 * H :], None, tag + "rec_h")
            )
        if reset is None:
            u.unused.append(r)
            cand_pre = x_h
        else:
            cand_pre = u.sum(x_h, reset, tag + "cand_pre")
        cand = u.act(g_act, cand_pre, tag + "cand")
        # H_t = (1 - z) * cand + z * H_{t-1} = cand + z * (H_{t-1} - cand)
        if h is None:
            h_new = u.sum(cand, u.prod(z, cand, tag + "zc"), tag + "h", h_top, minus=True)
        else:
            diff = u.sum(h, cand, tag + "diff", minus=True)
            h_new = u.sum(cand, u.prod(z, diff, tag + "zdiff"), tag + "h", h_top)
        return (h_new,)

    groups = [("zr", slice(0, 2 * H), zr_bias), ("h", slice(2 * H, 3 * H), h_bias)]
    return _unroll(node, ctx, spec, groups, cell, (1,))


@register(
    "RNN",
    since=7,
    layers=LAYERS,
    notes="unrolled over T: 3 layers per step and direction (InnerProduct, Eltwise, Tanh/Relu/Sigmoid); all "
    "directions, layout 0/1, initial state; float32 noise carried by the state (see rnn.py)",
)
def rnn(node, ctx):
    """RNN (Tanh / Relu / Sigmoid, all directions, layout 0/1, initial state) unrolled: 3 layers per step and
    direction (InnerProduct, Eltwise, activation); float32 noise (see module)."""
    spec = parse(node, ctx, 1, ["Tanh"], (5,))
    bias = spec.B[:, : spec.H] + spec.B[:, spec.H :]

    def cell(u, d, t, xs, states, last):
        (h,) = states
        tag = f"d{d}_t{t}_"
        (h_top,) = _tops(u, d, last, (1,))
        pre = xs[0] if h is None else u.sum(xs[0], u.ip(h, spec.R[d], None, tag + "rec"), tag + "pre")
        return (u.act(spec.activations[d][0], pre, tag + "h", h_top),)

    return _unroll(node, ctx, spec, [("x", slice(0, spec.H), bias)], cell, (1,))
