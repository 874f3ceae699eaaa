"""Cutting a Caffe net into segments that real Caffe can load one at a time.

Real Caffe allocates every blob of a net when it loads it (no buffer reuse), so a net whose blobs exceed the
machine's memory cannot be loaded whole (vit_l_16 converted: 18,049 layers, about 30 GiB of blobs). A
segment is a range of consecutive layers made into a standard Caffe net of its own: one Input layer declares
the blobs it reads that earlier layers wrote (its inputs), and its caffemodel holds only its layers' weights.
Running the segments in order, each fed the values the earlier ones produced, runs every layer in real Caffe
with the same arithmetic on the same values, so the results are bitwise those of the whole net; the memory
is the largest segment's instead of the whole net's.

Values follow Caffe's own blob semantics: a blob name holds the last value written to it (an in-place layer
rewrites its bottom), and a segment reads the value its name holds when the segment starts, which is what the
layer would have read in the whole net. A blob read by several later segments is an input of each of them.
Only Caffe information is used here: the layers, their shapes (`limits.caffe_layer_bytes`) and weights.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np

from .caffe_net import CaffeNet, Layer, _has_phase_rules
from .limits import caffe_layer_bytes


@dataclasses.dataclass
class Segment:
    start: int  # first layer (index into the net's layers)
    stop: int  # one past the last layer
    inputs: list[str]  # blobs it reads before writing them, in first-read order
    writes: list[str]  # blobs its layers write (tops), in order
    nbytes: int  # what real Caffe allocates to run it: its blobs, its inputs, twice its weights


@dataclasses.dataclass
class Plan:
    segments: list[Segment]
    shapes: dict[str, tuple[int, ...]]  # every blob's shape (inputs as declared)
    inputs: list[str]  # the net's inputs (tops of its Input layers)

    def largest(self) -> int:
        return max((s.nbytes for s in self.segments), default=0)

    def carried(self) -> int:
        """The largest total size of the values alive across a cut (kept by the caller between segments):
        a blob is alive from the segment that writes it (the start, for a net input) to the last that reads
        it."""
        born: dict[str, int] = dict.fromkeys(self.inputs, -1)  # the segment that first writes it
        last: dict[str, int] = {}  # the last segment that reads it
        for k, segment in enumerate(self.segments):
            for name in segment.inputs:
                last[name] = k
            for name in segment.writes:
                born.setdefault(name, k)
        delta = [0] * (len(self.segments) + 1)  # the cut k is before segment k
        for name, k in last.items():
            size = 4 * math.prod(self.shapes[name])
            delta[max(born.get(name, -1) + 1, 1)] += size
            delta[k + 1] -= size
        best = alive = 0
        for k in range(1, len(self.segments)):
            alive += delta[k]
            best = max(best, alive)
        return best


def weight_bytes(layer: Layer) -> int:
    return sum(4 * int(np.size(b)) for b in layer.blobs)


def plan_segments(
    net: CaffeNet, budget: int, weights: Sequence[int] | None = None, sized=None
) -> Plan | None:
    """Cut `net` greedily: each segment takes layers while its blobs, inputs and twice its weights fit
    `budget` bytes (a layer over the budget on its own is a segment of its own; budget 0: one layer each).
    `weights`: each layer's weight bytes (default: from the layers' blobs). `sized`: caffe_layer_bytes(net)
    when the caller has it already. None when the net cannot be planned (a layer cannot be shaped, or phase
    rules make which layers run depend on Caffe's phase)."""
    if any(_has_phase_rules(layer.proto) for layer in net.layers):
        return None
    if sized is None:
        sized = caffe_layer_bytes(net)
    if sized is None:
        return None
    own, shapes = sized
    if weights is None:
        weights = [weight_bytes(layer) for layer in net.layers]
    inputs = [t for layer in net.layers if layer.type == "Input" for t in layer.top]
    segments: list[Segment] = []
    cur: Segment | None = None
    written: set[str] = set()  # blobs the current segment has written

    def size(name: str) -> int:
        return 4 * math.prod(shapes[name])

    for i, layer in enumerate(net.layers):
        if layer.type == "Input":  # the net's inputs are fed to the segments that read them
            continue
        bottoms = list(dict.fromkeys(layer.bottom))
        cost = own[i] + 2 * int(weights[i])
        if cur is not None:
            added = cost + sum(size(b) for b in bottoms if b not in written and b not in cur.inputs)
            if cur.nbytes + added > budget:
                cur = None
        if cur is None:
            cur = Segment(i, i, [], [], 0)
            segments.append(cur)
            written = set()
        for b in bottoms:
            if b not in written and b not in cur.inputs:
                cur.inputs.append(b)
                cur.nbytes += size(b)
        cur.nbytes += cost
        for t in layer.top:
            written.add(t)
            if t not in cur.writes:
                cur.writes.append(t)
        cur.stop = i + 1
    return Plan(segments, shapes, inputs)


def smallest_peak(net: CaffeNet, sized=None) -> tuple[int, int] | None:
    """(the largest segment, the values carried across a cut) with one layer per segment: the least memory
    real Caffe can run `net` in; None when it cannot be planned. `sized`: as for plan_segments."""
    plan = plan_segments(net, 0, sized=sized)
    if plan is None or not plan.segments:
        return None
    return plan.largest(), plan.carried()


def _unique(base: str, taken: set[str]) -> str:
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def segment_net(net: CaffeNet, plan: Plan, segment: Segment) -> CaffeNet:
    """The segment as a standard Caffe net: an Input layer declaring its inputs with their shapes, then its
    layers (sharing the Layer objects, weights included)."""
    sub = CaffeNet(net.name)
    layers = net.layers[segment.start : segment.stop]
    if segment.inputs:
        name = _unique("segment_input", {layer.name for layer in layers})
        shapes = [{"dim": list(plan.shapes[n])} for n in segment.inputs]
        sub.add_layer(name, "Input", [], segment.inputs, input_param={"shape": shapes})
    for layer in layers:
        sub.append(layer)
    return sub


def write_segments(net: CaffeNet, plan: Plan, folder: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """Write each segment's .prototxt and (when its layers have weights) .caffemodel into `folder`; returns
    the (prototxt, caffemodel or None) paths in order."""
    paths: list[tuple[str, str | None]] = []
    for k, segment in enumerate(plan.segments):
        sub = segment_net(net, plan, segment)
        prefix = os.path.join(os.fspath(folder), f"segment{k:04d}")
        sub.write_prototxt(prefix + ".prototxt")
        model = None
        if any(layer.blobs for layer in sub.layers):
            model = prefix + ".caffemodel"
            sub.write_caffemodel(model)
        paths.append((prefix + ".prototxt", model))
    return paths
