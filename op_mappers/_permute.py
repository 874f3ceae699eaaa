"""Any permutation of the axes of a static-shape blob as pure data movement (Reshape, Slice, Concat); bit-exact.

BVLC Caffe has no Permute layer (SSD-Caffe added one; OpenCV loads it, BVLC does not), but a permutation is a
sequence of *adjacent block swaps*: viewing the blob as (P, A, B, Q), move the block of A entries behind the
block of B entries, (P, A, B, Q) -> (P, B, A, Q). One swap is two layers around two free Reshape views:

    view (P, A, B, 1, Q) -> Slice axis 1 into A pieces (P, 1, B, 1, Q) -> Concat axis 3 -> (P, 1, B, A, Q)

(or the mirror image slicing B, whichever side is smaller; unit P and Q axes are left out of the views). The
Concat writes piece a into column a of every (B, A) matrix: memory order is exactly (P, B, A, Q). Every value is
copied, never computed, so the result is bit-exact for any input (inf, NaN and -0.0 included) on Caffe and
OpenCV. (A Convolution / InnerProduct with a permutation-matrix weight, or a Deconvolution with one-hot kernels,
would move data in one layer but costs a multiply-add per entry and output row and is not exact for inf / NaN:
0 * inf is NaN. Caffe's Tile does not run on OpenCV.)

Planning (`plan`): unit axes are dropped and axes that stay neighbours are merged; a shortest-path search over
the orders of the remaining (at most 6 for a 6-D blob) axes finds the sequence of block swaps of least
estimated cost. A swap whose smaller side exceeds MAX_PIECES pieces is itself decomposed: a block of A = a1 * a2
entries is swapped in two steps ((P, a1, a2, B, Q) -> (P, a1, B, a2, Q) -> (P, B, a1, a2, Q)), and a prime
block is split into A - 1 and 1 entries (Slice, swap each part, Concat). So any static permutation has a plan.

Cost model (OpenCV 4.14, one thread; benchmarks/compositions.py and per-layer profiles): every swap copies the
tensor twice (Slice, Concat) in contiguous runs of Q entries; OpenCV's generic Slice / Concat spend ~10-25 ns per
run on top of ~1 ns per entry, so a swap ending at the last axis (Q == 1: attention maps, NCHW -> NHWC, the
detection heads' (0, 3, 4, 1, 2)) costs ~10-30 ns per entry, 10-80x OpenCV's own Permute of the ONNX model;
with Q >= 16 a swap is close to a memcpy. Layers: 2 per swap (+ Reshape views), at most rank - 1 swaps
(measured plans: 1 for (0, 1, 3, 2) and NCHW -> NHWC, 2 for (0, 3, 2, 1), 2 for pixel shuffle), plus 2 per
factoring step of a block of more than MAX_PIECES entries. No size limit remains.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import math

from ._layers import fresh, identity, reshape

MAX_PIECES = 512  # most tops of one Slice / bottoms of one Concat in a swap

# cost model, in nanoseconds on OpenCV's CPU backend (rough; only the ranking of plans matters)
_LAYER_NS = 3000.0
_PIECE_NS = 700.0
_RUN_NS = 20.0
_ENTRY_NS = 1.0


@dataclasses.dataclass(frozen=True)
class Swap:
    """(P, A, B, Q) -> (P, B, A, Q) in one Slice + one Concat (min(A, B) pieces, slicing the smaller side)."""

    P: int
    A: int
    B: int
    Q: int

    @property
    def pieces(self) -> int:
        return min(self.A, self.B)


@dataclasses.dataclass(frozen=True)
class Split:
    """(P, A, B, Q) -> (P, B, A, Q) by cutting the A side (on_a) or the B side at `cut` entries: Slice into two
    parts, swap each part with `first` and `second`, Concat the results."""

    P: int
    A: int
    B: int
    Q: int
    on_a: bool
    cut: int
    first: tuple
    second: tuple


def _divisors(n: int) -> list[int]:
    small = [d for d in range(2, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _direct_cost(P: int, A: int, B: int, Q: int) -> float:
    total = P * A * B * Q
    return 2 * _LAYER_NS + min(A, B) * _PIECE_NS + (total // Q) * _RUN_NS + 2 * total * _ENTRY_NS


@functools.lru_cache(maxsize=4096)
def swap_plan(P: int, A: int, B: int, Q: int) -> tuple[float, tuple]:
    """(estimated ns, steps) swapping (P, A, B, Q) -> (P, B, A, Q); steps is a tuple of Swap / Split."""
    if A == 1 or B == 1:
        return 0.0, ()
    if min(A, B) <= MAX_PIECES:
        # one direct swap: fewer passes over the data beat fewer pieces at any size we measured
        return _direct_cost(P, A, B, Q), (Swap(P, A, B, Q),)
    best: tuple[float, tuple] | None = None
    for on_a, size in ((True, A), (False, B)):
        for f in _divisors(size):
            if on_a:  # A = f * g: (P, f, g, B, Q) -> (P, f, B, g, Q) -> (P, B, f, g, Q)
                g = A // f
                c1, s1 = swap_plan(P * f, g, B, Q)
                c2, s2 = swap_plan(P, f, B, g * Q)
            else:  # B = f * g: (P, A, f, g, Q) -> (P, f, A, g, Q) -> (P, f, g, A, Q)
                g = B // f
                c1, s1 = swap_plan(P, A, f, g * Q)
                c2, s2 = swap_plan(P * f, A, g, Q)
            if best is None or c1 + c2 < best[0]:
                best = (c1 + c2, s1 + s2)
    if best is None:  # both sides prime and large: cut one entry off the smaller side
        on_a = A <= B
        size = A if on_a else B
        rest = (P, size - 1, B, Q) if on_a else (P, A, size - 1, Q)
        one = (P, 1, B, Q) if on_a else (P, A, 1, Q)
        c1, s1 = swap_plan(*rest)
        c2, s2 = swap_plan(*one)
        total = P * A * B * Q
        cost = c1 + c2 + 2 * _LAYER_NS + 2 * total * _ENTRY_NS
        best = (cost, (Split(P, A, B, Q, on_a, size - 1, s1, s2),))
    return best


def normalize(shape, perm) -> tuple[list[int], list[int]]:
    """(dims, order): the permutation with unit axes dropped and neighbouring axes that stay neighbours merged.
    The output's memory order equals the input's viewed as `dims`, transposed by `order` (order[i] = the
    merged input axis that becomes merged output axis i)."""
    big = [a for a in range(len(shape)) if shape[a] != 1]
    rank = {a: i for i, a in enumerate(big)}
    kept = [rank[p] for p in perm if shape[p] != 1]
    groups: list[list[int]] = []  # runs of (non-unit) input axes that stay together, in output order
    for p in kept:
        if groups and p == groups[-1][-1] + 1:
            groups[-1].append(p)
        else:
            groups.append([p])
    starts = sorted(g[0] for g in groups)
    order = [starts.index(g[0]) for g in groups]
    by_start = {g[0]: g for g in groups}
    dims = [math.prod(shape[big[a]] for a in by_start[s]) for s in starts]
    return dims, order


@functools.lru_cache(maxsize=1024)
def plan(dims: tuple[int, ...], order: tuple[int, ...]) -> tuple[float, tuple]:
    """Cheapest sequence of block swaps turning axes `dims` (in memory order) into the order `order`
    (order[i] = the input axis that becomes output axis i). Returns (estimated ns, steps)."""
    r = len(dims)
    start = tuple(range(r))
    goal = tuple(order)
    if start == goal:
        return 0.0, ()
    dist = {start: 0.0}
    prev: dict[tuple, tuple] = {}
    heap = [(0.0, start)]
    while heap:
        d, state = heapq.heappop(heap)
        if state == goal:
            break
        if d > dist[state]:
            continue
        sizes = [dims[a] for a in state]
        for i in range(r):
            for j in range(i + 1, r):
                for k in range(j + 1, r + 1):
                    P, A = math.prod(sizes[:i]), math.prod(sizes[i:j])
                    B, Q = math.prod(sizes[j:k]), math.prod(sizes[k:])
                    cost, steps = swap_plan(P, A, B, Q)
                    nxt = state[:i] + state[j:k] + state[i:j] + state[k:]
                    nd = d + cost
                    if nd < dist.get(nxt, math.inf):
                        dist[nxt] = nd
                        prev[nxt] = (state, steps)
                        heapq.heappush(heap, (nd, nxt))
    steps: tuple = ()
    state = goal
    while state != start:
        state, s = prev[state]
        steps = s + steps
    return dist[goal], steps


def count(steps) -> dict:
    """Totals of a plan: swaps (passes over the data), Slice/Concat layers, pieces."""
    out = {"swaps": 0, "layers": 0, "pieces": 0}
    for s in steps:
        if isinstance(s, Swap):
            out["swaps"] += 1
            out["layers"] += 2
            out["pieces"] += s.pieces
        else:
            out["layers"] += 2
            for sub in (s.first, s.second):
                c = count(sub)
                for k in out:
                    out[k] += c[k]
    return out


def emit(ctx, node, bottom: str, top: str, in_shape, out_shape, steps, tag: str = "perm") -> list:
    """Layers applying `steps` to `bottom` (shape in_shape) and writing `top` (shape out_shape)."""
    layers: list = []
    cur, cur_shape = bottom, tuple(in_shape)

    def view(blob, shape_now, shape):
        if tuple(shape_now) == tuple(shape):
            return blob
        v = fresh(ctx, node, f"{tag}_view")
        layers.append(reshape(ctx, v, blob, v, shape))
        return v

    def apply(blob, shape_now, steps_):
        for s in steps_:
            if isinstance(s, Swap):
                blob, shape_now = one_swap(blob, shape_now, s)
            else:
                blob, shape_now = split(blob, shape_now, s)
        return blob, shape_now

    def one_swap(blob, shape_now, s: Swap):
        P, A, B, Q = s.P, s.A, s.B, s.Q
        if A <= B:  # (P, A, B, 1, Q): slice A, concat behind B
            dims, s_axis, c_axis = [P, A, B, 1, Q], 1, 3
        else:  # (P, 1, A, B, Q): slice B, concat in front of A
            dims, s_axis, c_axis = [P, 1, A, B, Q], 3, 1
        n = min(A, B)
        # unit P / Q axes are left out of the views (OpenCV copies lower-rank blobs faster)
        if Q == 1:
            dims.pop()
        if P == 1:
            dims.pop(0)
            s_axis, c_axis = s_axis - 1, c_axis - 1
        src = view(blob, shape_now, dims)
        out = list(dims)
        out[s_axis], out[c_axis] = 1, n
        pieces = [fresh(ctx, node, f"{tag}_piece") for _ in range(n)]
        layers.append(
            ctx.layer(
                fresh(ctx, node, f"{tag}_split"),
                "Slice",
                [src],
                pieces,
                slice_param={"axis": s_axis, "slice_point": list(range(1, n))},
            )
        )
        joined = fresh(ctx, node, f"{tag}_join")
        layers.append(
            ctx.layer(joined, "Concat", pieces, [joined], concat_param={"axis": c_axis}),
        )
        return joined, tuple(out)

    def split(blob, shape_now, s: Split):
        P, A, B, Q = s.P, s.A, s.B, s.Q
        if s.on_a:
            src = view(blob, shape_now, (P, A, B * Q))
            parts = [(P, s.cut, B * Q), (P, A - s.cut, B * Q)]
            cat_shape = [(P, B, s.cut, Q), (P, B, A - s.cut, Q)]
            c_axis = 2
        else:
            src = view(blob, shape_now, (P, A, B, Q))
            parts = [(P, A, s.cut, Q), (P, A, B - s.cut, Q)]
            cat_shape = [(P, s.cut, A, Q), (P, B - s.cut, A, Q)]
            c_axis = 1
        halves = [fresh(ctx, node, f"{tag}_part") for _ in range(2)]
        layers.append(
            ctx.layer(
                fresh(ctx, node, f"{tag}_cut"),
                "Slice",
                [src],
                halves,
                slice_param={"axis": 1 if s.on_a else 2, "slice_point": [s.cut]},
            )
        )
        done = []
        for half, part, sub, cat in zip(halves, parts, (s.first, s.second), cat_shape, strict=True):
            b, sh = apply(half, part, sub)
            done.append(view(b, sh, cat))
        joined = fresh(ctx, node, f"{tag}_glue")
        layers.append(ctx.layer(joined, "Concat", done, [joined], concat_param={"axis": c_axis}))
        return joined, (P, B, A, Q)

    if not steps:
        if tuple(in_shape) == tuple(out_shape):
            return [identity(ctx, fresh(ctx, node, f"{tag}_copy"), bottom, top)]
        return [reshape(ctx, fresh(ctx, node, f"{tag}_reshape"), bottom, top, out_shape)]
    cur, cur_shape = apply(cur, cur_shape, steps)
    if tuple(cur_shape) == tuple(out_shape):
        # rename: the last Concat writes `top` directly
        last = layers[-1]
        last.proto.top[0] = top
        return layers
    layers.append(reshape(ctx, fresh(ctx, node, f"{tag}_out"), cur, top, out_shape))
    return layers


def permute(
    ctx, node, bottom: str, top: str, shape, perm, tag: str = "perm", bottom_shape=None, top_shape=None
) -> list:
    """Layers writing `top` = numpy.transpose(`bottom` viewed as `shape`, perm), bit-exact. bottom_shape /
    top_shape: the blobs' real shapes when they differ from `shape` / the transposed shape (same entry count)."""
    shape = tuple(int(d) for d in shape)
    out_shape = tuple(shape[p] for p in perm)
    dims, order = normalize(shape, perm)
    _, steps = plan(tuple(dims), tuple(order))
    in_real = tuple(bottom_shape) if bottom_shape is not None else shape
    out_real = tuple(top_shape) if top_shape is not None else out_shape
    return emit(ctx, node, bottom, top, in_real, out_real, steps, tag)
