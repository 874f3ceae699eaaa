"""MatMul (numpy semantics: batched, broadcast batch axes, rank-1 operands) -> InnerProduct / Convolution for a
constant operand, an exact broadcast-multiply-sum composition between two activations.

- activation @ constant 2-D weight (K, N): InnerProduct over the last axis (the weight transposed).
- constant 2-D (M, K) @ activation (..., K, N): Convolution 1x1 with the constant as a (M, K, 1, 1) weight over the
  activation viewed as (batch, K, N, 1): sums over K like a GEMM.
- activation @ activation (attention's Q @ K^T, attn @ V; also a batched constant, made an exact constant blob):
  Caffe multiplies two blobs only element-wise (Eltwise PROD, two-bottom Scale), so every product
  x[m, k] * y[k, n] is formed explicitly, then summed over k. The 4-D product has the axes B (flattened batch),
  M, K, N in some order: one operand is repeated over its missing axis by Concat copies, the other multiplies it
  through a two-bottom Scale (Caffe and OpenCV broadcast the second bottom over the axes around its own run),
  or both are repeated and an Eltwise PROD multiplies them; the K axis is then summed (_compose.sum_axis: a
  ones InnerProduct when K is last). The order, and which operand is repeated, are chosen by a cost model of
  OpenCV (plans(); operand and output transposes via _permute included). An operand transposed by a Transpose
  node just before the MatMul is read in the orientation it has (pass fold_transpose_into_matmul makes
  onnx2caffe::MatMul with transA / transB).
  Exactness: each product is rounded once like onnxruntime's (which may fuse it into an FMA), and the K-term
  sum is accumulated in another order: |error| <= K * 2^-24 * sum_k |x[m, k] y[k, n]| (float32 noise).
  Cost: the B*M*K*N products are materialised (4 bytes each; refused above MAX_PRODUCT = 2^26 entries) and
  passed over ~3 times (repeat, Scale, sum), in chunks of at most CHUNK = 2^20 entries along the layout's outer
  axis so that each chunk stays in cache (~2.5x faster on OpenCV than one streamed pass; ~6 layers per chunk,
  at most 64 chunks): on OpenCV (one thread) ~1 ns per product against a GEMM's ~0.05 - YOLO11n's two
  attention products cost ~2-3 ms at 320x320 (2 x 100 tokens), ~20-25 ms at 640x640 (2 x 400 tokens).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from onnx2caffe.registry import register

from . import _permute
from ._compose import (
    SUM_SLICES,
    broadcast_shape,
    broadcast_to,
    constant_blob,
    fresh,
    permute,
    repeat_axis,
    repeat_cost,
    reshape,
    sum_axis,
    tidy,
    view,
)

MAX_PRODUCT = 1 << 26  # entries of the materialised (B, M, K, N) product: 256 MB of float32

DOMAIN = "onnx2caffe"


# OpenCV cost model (one thread, ns per entry of the 4-D product, formed in chunks of <= CHUNK entries; per-layer
# profiles of YOLO11's attention products at 640x640; repeat_cost and the transposes' costs come with theirs)
_SCALE_NS = 0.35  # two-bottom Scale
_ELTWISE_NS = 0.6  # Eltwise PROD of two full blobs (both repeated: twice the memory of a Scale plan)
_IP_SUM_NS = 0.3  # InnerProduct (1, K) ones over the last axis
_SLICE_SUM_NS = 0.3  # Slice + Eltwise SUM over a middle axis (K <= SUM_SLICES)
_CONV_SUM_NS = 3.0  # Convolution 1x1 with one output channel (OpenCV has no fast path for it)
_STREAM = 2.5  # the per-entry costs when a chunk cannot be kept under CHUNK entries (streamed through memory)
_CHUNK_LAYER_NS = 12000.0  # the ~4 layers each chunk adds


def _perm_ns(sizes: dict, have: str, want: str) -> float:
    """Estimated ns of permuting a blob with axes `have` (letters) into the order `want`."""
    if have == want:
        return 0.0
    shape = [sizes[c] for c in have]
    dims, order = _permute.normalize(shape, [have.index(c) for c in want])
    return _permute.plan(tuple(dims), tuple(order))[0] if order != sorted(order) else 0.0


def _sub(layout: str, letters: str) -> str:
    return "".join(c for c in layout if c in letters)


def plans(sizes: dict, given: dict, free: dict) -> list:
    """Candidate ways to form the product, cheapest first: (ns, layout, how).

    The 4-D product has the axes B (flattened batch; absent when 1), M, K, N in the order `layout`. how "a" /
    "b": that operand multiplies through a two-bottom Scale (so its axes must form a contiguous run of the
    layout: Caffe and OpenCV broadcast the second bottom over the axes before and after the run; a
    batch-free operand leaves B out of the run), and the other operand is materialised by repeating it over
    its missing axis; how "ab": both are repeated and an Eltwise PROD multiplies them. Each operand is first
    permuted from its given order (given[op], e.g. "BKM" for a transposed A) into the layout's order, and the
    output (the layout without K) is permuted to "BMN". K last lets an InnerProduct do the sum (fast); another
    position needs Slice + Eltwise SUM or a Convolution 1x1 with one output channel (slower on OpenCV)."""
    letters = "BMKN" if sizes["B"] > 1 else "MKN"
    prod = math.prod(sizes[c] for c in letters)
    own = {"a": "BMK" if sizes["B"] > 1 else "MK", "b": "BKN" if sizes["B"] > 1 else "KN"}
    out = []
    for layout in ("".join(p) for p in itertools.permutations(letters)):
        # the product is formed in chunks along the layout's outer axis: too few of them stream through memory
        _, chunks = chunking(layout, sizes)
        stream = _STREAM if prod / len(chunks) > CHUNK else 1.0
        middle = _SLICE_SUM_NS if sizes["K"] <= SUM_SLICES else _CONV_SUM_NS
        base = prod * (_IP_SUM_NS if layout[-1] == "K" else middle) * stream + len(chunks) * _CHUNK_LAYER_NS
        base += _perm_ns(sizes, _sub(layout, "BMN"), _sub("BMN", letters))
        for how in ("a", "b", "ab"):
            cost = base
            for op in "ab":
                scaled = op in how and how != "ab"
                mine = own[op] if not (scaled and free[op]) else own[op].replace("B", "")
                want = _sub(layout, mine)
                if scaled:
                    if want not in layout:  # not a contiguous run
                        cost = math.inf
                        break
                    cost += prod * _SCALE_NS * stream
                else:
                    missing = next(c for c in layout if c not in own[op])
                    p = layout.index(missing)
                    P = math.prod(sizes[c] for c in layout[:p])
                    Q = math.prod(sizes[c] for c in layout[p + 1 :])
                    cost += repeat_cost(P, sizes[missing], Q) * stream
                have = _sub(given[op], mine)
                cost += _perm_ns(sizes, have, want)
            if how == "ab":
                cost += prod * _ELTWISE_NS * stream
            if cost < math.inf:
                out.append((cost, layout, how))
    return sorted(out, key=lambda p: p[0])


# most entries of the 4-D product formed at once (4 MB: in cache); larger products are chunked
CHUNK = 1 << 20
MAX_CHUNKS = 64


def chunking(layout: str, sizes: dict) -> tuple[str, list[int]]:
    """(letter, chunk sizes): the product is formed in chunks along the outermost non-K axis of the layout, each
    of at most CHUNK entries (at most MAX_CHUNKS chunks). On OpenCV a product that stays in cache is formed and
    summed ~2x faster than one streamed through memory (measured on YOLO11's attention at 640x640)."""
    total = math.prod(sizes[c] for c in layout)
    letter = next(c for c in layout if c != "K")
    size = sizes[letter]
    count = min(size, MAX_CHUNKS, -(-total // CHUNK))
    base, extra = divmod(size, count)
    return letter, [base + (1 if i < extra else 0) for i in range(count)]


def product(ctx, node, a, a_shape, ta: bool, b, b_shape, tb: bool, top: str, out_shape) -> list:
    """Layers writing `top` (shape out_shape) = op(a) @ op(b) for two blobs of rank >= 2 (op = transpose of the
    last two axes when ta / tb), batch axes broadcast numpy-style. See the module docstring and plans()."""
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    M, K = (a_shape[-1], a_shape[-2]) if ta else (a_shape[-2], a_shape[-1])
    K2, N = (b_shape[-1], b_shape[-2]) if tb else (b_shape[-2], b_shape[-1])
    if K != K2:
        node.reject(f"shapes {a_shape} and {b_shape} do not multiply (K {K} vs {K2})")
    batch = broadcast_shape(node, a_shape[:-2], b_shape[:-2])
    Bt = math.prod(batch)
    if Bt * M * K * N > MAX_PRODUCT:
        node.reject(
            f"the product of two activations is built as a {Bt}x{M}x{K}x{N} blob; more than {MAX_PRODUCT} "
            "entries (MAX_PRODUCT) is refused"
        )
    sizes = {"B": Bt, "M": M, "K": K, "N": N}
    has_b = Bt > 1
    given = {
        "a": ("B" if has_b else "") + ("KM" if ta else "MK"),
        "b": ("B" if has_b else "") + ("NK" if tb else "KN"),
    }
    free = {"a": all(d == 1 for d in a_shape[:-2]), "b": all(d == 1 for d in b_shape[:-2])}
    _, layout, how = plans(sizes, given, free)[0]
    own = {"a": "BMK" if has_b else "MK", "b": "BKN" if has_b else "KN"}
    layers: list = []
    src = {"a": (a, a_shape), "b": (b, b_shape)}

    def operand(op: str, keep_free: bool):
        """(blob, letters, shape) of operand op with its axes in the layout's order (B left out if keep_free)."""
        blob, shape = src[op]
        mine = own[op].replace("B", "") if keep_free else own[op]
        have = _sub(given[op], mine)
        if not keep_free and tuple(shape[:-2]) != tuple(batch):
            full = tuple(batch) + tuple(shape[-2:])
            more, blob = broadcast_to(ctx, node, blob, shape, full, f"{op}_batch")
            layers.extend(more)
            shape = full
        want = _sub(layout, mine)
        cur = tuple(sizes[c] for c in have)
        if want == have:
            more, v = view(ctx, node, blob, shape, cur, f"{op}_view")
            layers.extend(more)
            return v, want, cur
        t = fresh(ctx, node, f"{op}_t")
        perm = [have.index(c) for c in want]
        layers.extend(permute(ctx, node, blob, t, cur, perm, f"{op}_t", bottom_shape=shape))
        return t, want, tuple(cur[i] for i in perm)

    # the operands in the layout's order, prepared once for every chunk
    ops = {}
    for op in "ab":
        keep_free = how == op and free[op]
        ops[op] = operand(op, keep_free)
    letter, chunks = chunking(layout, sizes)

    def pieces(op: str) -> list:
        """operand op cut into the chunks along `letter` (the whole operand for each chunk when it lacks it)."""
        blob, letters, shape = ops[op]
        if letter not in letters or len(chunks) == 1:
            return [(blob, shape)] * len(chunks)
        axis = letters.index(letter)
        outer = math.prod(shape[:axis])
        inner = math.prod(shape[axis + 1 :])
        more, src3 = view(ctx, node, blob, shape, (outer, shape[axis], inner), f"{op}_chunk_view")
        layers.extend(more)
        tops = [fresh(ctx, node, f"{op}_chunk") for _ in chunks]
        points = list(itertools.accumulate(chunks))[:-1]
        layers.append(
            ctx.layer(
                fresh(ctx, node, f"{op}_chunks"),
                "Slice",
                [src3],
                tops,
                slice_param={"axis": 1, "slice_point": points},
            )
        )
        return [(t, (outer, n, inner)) for t, n in zip(tops, chunks, strict=True)]

    cut = {op: pieces(op) for op in "ab"}
    rest = layout.replace("K", "")
    results = []
    for i, n in enumerate(chunks):
        local = dict(sizes, **{letter: n})
        shape4 = tuple(local[c] for c in layout)

        def repeated(op: str, i=i, local=local, shape4=shape4):
            blob, shape = cut[op][i]
            missing = next(c for c in layout if c not in own[op])
            p = layout.index(missing)
            P, Q = math.prod(shape4[:p]), math.prod(shape4[p + 1 :])
            more, rep = repeat_axis(ctx, node, blob, shape, P, local[missing], Q, f"{op}_rep")
            layers.extend(more)
            more, rep = view(ctx, node, rep, (P, local[missing], Q), shape4, f"{op}_rep_view")
            layers.extend(more)
            return rep

        prods = fresh(ctx, node, "products")
        if how == "ab":
            ra, rb = repeated("a"), repeated("b")
            layers.append(ctx.layer(prods, "Eltwise", [ra, rb], [prods], eltwise_param={"operation": "PROD"}))
        else:
            rep = repeated("b" if how == "a" else "a")
            gate, gshape = cut[how][i]
            run = ops[how][1]
            more, gate = view(ctx, node, gate, gshape, tuple(local[c] for c in run), f"{how}_gate")
            layers.extend(more)
            layers.append(
                ctx.layer(prods, "Scale", [rep, gate], [prods], scale_param={"axis": layout.index(run[0])})
            )
        k = layout.index("K")
        P, Q = math.prod(shape4[:k]), math.prod(shape4[k + 1 :])
        more, summed, s_shape = sum_axis(ctx, node, prods, shape4, P, K, Q, None, "sum_k")
        layers.extend(more)
        results.append((summed, s_shape, tuple(local[c] for c in rest)))
    if len(results) == 1:
        summed, s_shape, _ = results[0]
    else:  # the chunks joined along `letter` (outermost of the output but for B / K before it)
        axis = rest.index(letter)
        parts = []
        for blob, shape, want in results:
            outer, inner = math.prod(want[:axis]), math.prod(want[axis + 1 :])
            more, v = view(ctx, node, blob, shape, (outer, want[axis], inner), "chunk_out")
            layers.extend(more)
            parts.append(v)
        summed = fresh(ctx, node, "joined")
        layers.append(ctx.layer(summed, "Concat", parts, [summed], concat_param={"axis": 1}))
        want = tuple(sizes[c] for c in rest)
        s_shape = (math.prod(want[:axis]), want[axis], math.prod(want[axis + 1 :]))
    final = "BMN" if has_b else "MN"
    if rest != final:
        perm = [rest.index(c) for c in final]
        layers.extend(
            permute(
                ctx,
                node,
                summed,
                top,
                tuple(sizes[c] for c in rest),
                perm,
                "out_t",
                bottom_shape=s_shape,
                top_shape=out_shape,
            )
        )
    else:
        layers.append(reshape(ctx, fresh(ctx, node, "out"), summed, top, out_shape))
    return layers


def _const_left(node, ctx, w, x, y):
    """constant 2-D (M, K) @ activation (..., K, N) -> Convolution 1x1 with weight (M, K, 1, 1) on (B, K, N, 1)."""
    shape = ctx.shape(x)
    M, K = w.shape
    N = shape[-1]
    Bt = math.prod(shape[:-2])
    layers, v = view(ctx, node, ctx.blob(x), shape, (Bt, K, N, 1), "in")
    conv = fresh(ctx, node, "conv")
    layers.append(
        ctx.layer(
            node.name,
            "Convolution",
            [v],
            [conv],
            blobs=[np.ascontiguousarray(w, np.float32).reshape(M, K, 1, 1)],
            convolution_param={"num_output": int(M), "bias_term": False, "kernel_size": [1]},
        )
    )
    layers.append(reshape(ctx, fresh(ctx, node, "out"), conv, ctx.blob(y), ctx.shape(y)))
    return layers


def _operand(ctx, node, name, what):
    """(blob, shape, layers) of a MatMul operand; a constant becomes an exact constant blob."""
    value = ctx.const(name)
    if value is None:
        return ctx.blob(name), tuple(ctx.shape(name)), []
    if value.dtype != np.float32:
        node.reject(f"the {what} operand is a {value.dtype} constant (Caffe blobs are float32)")
    layers, blob = constant_blob(ctx, node, value, f"{what}_const")
    return blob, value.shape if value.ndim else (1,), layers


def matmul_layers(node, ctx, ta: bool = False, tb: bool = False):
    x, w_name, y = node.inputs[0], node.inputs[1], node.outputs[0]
    cx, cw = ctx.const(x), ctx.const(w_name)
    if cx is not None and cw is not None:
        node.reject("both operands are constants (not folded)")
    out_shape = tuple(ctx.shape(y))
    if not out_shape:
        node.reject("a rank-0 (scalar) output has no Caffe blob form")
    if not ta and not tb:
        if cw is not None and cw.ndim == 2 and len(ctx.shape(x)) >= 2 and cw.dtype == np.float32:
            shape = ctx.shape(x)
            if shape[-1] != cw.shape[0]:
                node.reject(f"shapes {shape} and {cw.shape} do not multiply")
            return inner_product(ctx, node, x, y, cw.T, None, len(shape) - 1)
        if cx is not None and cx.ndim == 2 and len(ctx.shape(w_name)) >= 2 and cx.dtype == np.float32:
            if ctx.shape(w_name)[-2] != cx.shape[1]:
                node.reject(f"shapes {cx.shape} and {ctx.shape(w_name)} do not multiply")
            return _const_left(node, ctx, cx, w_name, y)
    a, a_shape, layers = _operand(ctx, node, x, "first")
    b, b_shape, more = _operand(ctx, node, w_name, "second")
    layers += more
    # numpy's rank-1 rules: a vector on the left is a row (1, K), on the right a column (K, 1)
    if len(a_shape) == 1:
        more, a = view(ctx, node, a, a_shape, (1, a_shape[0]), "a_row")
        layers += more
        a_shape = (1, a_shape[0])
    if len(b_shape) == 1:
        more, b = view(ctx, node, b, b_shape, (b_shape[0], 1), "b_col")
        layers += more
        b_shape = (b_shape[0], 1)
    layers += product(ctx, node, a, a_shape, ta, b, b_shape, tb, ctx.blob(y), out_shape)
    return tidy(ctx, node, layers)


def inner_product(ctx, node, x, y, weight_nk, bias, axis):
    p = {"num_output": int(weight_nk.shape[0])}
    blobs = [np.ascontiguousarray(weight_nk, dtype=np.float32)]
    if bias is None:
        p["bias_term"] = False
    else:
        blobs.append(np.asarray(bias, np.float32).reshape(-1))
    if axis != 1:
        p["axis"] = axis
    return [
        ctx.layer(node.name, "InnerProduct", [ctx.blob(x)], [ctx.blob(y)], blobs=blobs, inner_product_param=p)
    ]


_LAYERS = ("InnerProduct", "Convolution", "Concat", "Scale", "Eltwise", "Reshape", "Slice", "Power")


@register(
    "MatMul",
    since=1,
    layers=_LAYERS,
    notes="x @ constant 2-D -> InnerProduct; constant 2-D @ x -> Convolution 1x1; activation @ activation "
    "(batched, broadcast) -> one operand repeated by Concat copies, two-bottom Scale by the other, ones "
    "InnerProduct over K (axis order by cost): the B*M*K*N products are materialised (limit 2^26 entries), "
    "~1-2 ns each on OpenCV; sum order differs: |err| <= K 2^-24 sum|x y|",
)
def matmul(node, ctx):
    """MatMul: constant weight -> InnerProduct / Convolution 1x1; two activations -> broadcast-multiply-sum."""
    return matmul_layers(node, ctx)


@register(
    "MatMul",
    since=1,
    domain=DOMAIN,
    layers=_LAYERS,
    notes="MatMul(a, b) with transA / transB (from fold_transpose_into_matmul): the MatMul composition reading "
    "the operands in the orientation they have (no transpose materialised); same bound and limit",
)
def matmul_transposed(node, ctx):
    """onnx2caffe::MatMul(a, b, transA, transB) (from fold_transpose_into_matmul): operands read transposed."""
    ta, tb = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
    return matmul_layers(node, ctx, ta, tb)
