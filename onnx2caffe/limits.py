"""Size limits of a conversion and of its check, and the estimates that refuse impossible work up front.

Conversion (whatever the check):
  * Caffe blob: at most 2**31 - 1 elements. Caffe's Blob::Reshape aborts beyond ("blob size exceeds
    INT_MAX"), and OpenCV's importer counts elements in an int too. Estimated exactly from the inferred shape
    of every tensor before any pass or mapper runs (`check_tensor_sizes`).
  * caffemodel: at most 2**31 - 1 bytes, protobuf's limit on one message, which Caffe reads caffemodels with.
    Estimated three times, each before the work it guards: the floating-point weights of the ONNX graph as
    float32 before mapping (`check_weight_total`), the running total of the blobs the mappers have returned
    after each node, and `MapContext.check_array` (a mapper asks before it allocates a large weight).
  * composition memory: a mapper may allocate at most `node_budget()` while it runs: the caffemodel limit
    (no node can write more weights than that) plus four times its constant inputs (float64 and transposed
    working copies of its own weights) plus 256 MiB. On Linux this holds whatever the mapper does: the
    process's soft address-space limit (RLIMIT_AS) is lowered to its current size plus the budget while the
    mapper runs (`address_space_budget`), so an allocation past it fails at once with MemoryError, which
    refuses the node with the size asked for, instead of building e.g. a 4.8 GB Deconvolution kernel.

The check (skipped by --no-check), estimated after mapping and before anything is written
(`estimate_check_memory`): our process holds the ONNX and Caffe weights, the random input and onnxruntime's
outputs throughout; then each runtime in turn adds its own: onnxruntime its weights and the peak of live
activations (tensors in graph order, each freed after its last consumer); OpenCV twice the Caffe weights
(parsed file and blobs), a copy of the input, the live activations and two copies of the outputs; real Caffe
(a worker process) every blob of the net at once (Caffe allocates all of them; counted on the Caffe net,
whose compositions have blobs the ONNX graph lacks, with the buffers its layers keep: `caffe_blob_bytes`),
twice the weights, and the copies of inputs and outputs that cross the pipe. A net too big for that runs in
segments (onnx2caffe/caffe_segments.py: consecutive layers, one Caffe net at a time), so the worker is
counted as the smallest it can be when that is less: its largest one-layer segment (blobs, inputs, twice its
weights), while our process also reads the whole caffemodel to split it and keeps the values carried across
a cut (`caffe_segments.smallest_peak`); the pycaffe runtime then cuts as coarsely as the memory available at
load allows. The largest of the three, plus 512 MiB of libraries, must fit in the memory available (MemAvailable, a cgroup limit, and the address-space limit of this process and of
the worker it starts, whichever is smallest).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from .errors import ConversionError, ResourceError

BLOB_MAX_ELEMENTS = 2**31 - 1  # Caffe Blob::Reshape: CHECK_LE(count, INT_MAX)
CAFFEMODEL_LIMIT = 2**31 - 1  # protobuf's limit on one serialized message (= caffe_net.PROTO_SIZE_LIMIT)
NODE_SLACK = 256 * 2**20  # small working arrays of a mapper, Python objects, protobuf messages
CONST_COPIES = 4  # working copies of its constant inputs a mapper may make (float64, transposed, float32)
LIBRARIES = 512 * 2**20  # resident size of onnxruntime, OpenCV and the Caffe worker's libraries
WORKER_OVERHEAD = 128 * 2**20  # the Caffe worker's Python + Caffe, resident

_FLOAT_KINDS = "f"


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5 KiB', 4.8e9 -> '4.47 GiB'."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _count(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _dims(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def activation_tensors(graph) -> list[str]:
    """Every non-constant tensor of `graph` (an OnnxGraph): graph inputs, then node outputs in graph order."""
    seen: dict[str, None] = dict.fromkeys(graph.inputs)
    for n in graph.graph.node:
        for o in n.output:
            if o and not graph.is_const(o):
                seen.setdefault(o)
    return list(seen)


def _where(graph, tensor: str) -> str:
    if graph.is_graph_input(tensor):
        return f"input '{tensor}'"
    node = graph.producer(tensor)
    if node is None:
        return f"tensor '{tensor}'"
    return f"tensor '{tensor}' (output of node '{node.name}', {node.op_type})"


# ------------------------------------------------------------------------------------------ conversion
def check_tensor_sizes(graph) -> None:
    """ConversionError for the first tensor with more elements than a Caffe blob can hold."""
    for t in activation_tensors(graph):
        shape = graph.shape(t)
        if shape is None:
            continue
        count = _count(shape)
        if count > BLOB_MAX_ELEMENTS:
            raise ConversionError(
                f"{graph.source}: {_where(graph, t)} has shape {_dims(shape)}, {count} elements, over the "
                f"{BLOB_MAX_ELEMENTS} a Caffe blob can hold (Caffe aborts: 'blob size exceeds INT_MAX'); "
                "use a smaller input shape"
            )


def check_weight_total(graph) -> None:
    """ConversionError when the floating-point constants the nodes read (the weights, written as float32)
    cannot fit one caffemodel."""
    used = {i for n in graph.graph.node for i in n.input if i}
    total = 0
    for name, value in graph.constants.items():
        if name in used and value.dtype.kind in _FLOAT_KINDS:
            total += value.size * 4
    if total > CAFFEMODEL_LIMIT:
        raise ConversionError(
            f"{graph.source}: the model's weights are {fmt_bytes(total)} as float32, over the "
            f"{fmt_bytes(CAFFEMODEL_LIMIT)} a caffemodel can hold (protobuf's message limit, which Caffe "
            "reads caffemodels with)"
        )


def weights_message(added: int, before: int, what: str = "its weights") -> str:
    """Why a node's weights do not fit the caffemodel (the reason part of an UnsupportedNodeError)."""
    return (
        f"{what} ({fmt_bytes(added)}) would bring the caffemodel to {fmt_bytes(before + added)}, over the "
        f"{fmt_bytes(CAFFEMODEL_LIMIT)} it can hold (protobuf's message limit, which Caffe reads caffemodels "
        "with); a smaller input shape may help when the size grows with it"
    )


def node_budget(graph, node) -> int:
    """The memory a node's mapper may allocate while it runs (see the module docstring)."""
    const = 0
    for i in node.input:
        value = graph.const(i) if i else None
        if value is not None:
            const += int(value.nbytes)
    return CAFFEMODEL_LIMIT + CONST_COPIES * const + NODE_SLACK


def _vm_size() -> int | None:
    """This process's address-space size in bytes (Linux), None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def address_space_budget(nbytes: int) -> Iterator[None]:
    """While the block runs, this process may grow its address space by at most `nbytes` more: the soft
    RLIMIT_AS is lowered to the current size + nbytes (never raised), then restored. Any allocation past it
    fails at once with MemoryError. Linux, main thread only (the limit is process-wide: other threads of a
    host application are left alone); elsewhere it does nothing."""
    try:
        import resource
    except ImportError:
        yield
        return
    size = _vm_size()
    if size is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        old = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        yield
        return
    soft, hard = old
    target = size + int(nbytes)
    if soft != resource.RLIM_INFINITY:
        target = min(target, soft)
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (target, hard))
    except (OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def memory_error_text(exc: BaseException) -> str:
    """numpy's 'Unable to allocate 2.98 GiB for an array with shape (20000, 20000) and data type float64',
    else a generic phrase."""
    text = " ".join(str(exc).split())
    return text[0].lower() + text[1:] if text else "an allocation failed"


# ------------------------------------------------------------------------------------------ the check
@dataclasses.dataclass
class CheckEstimate:
    inputs: int  # the random input (float32)
    outputs: int  # onnxruntime's outputs, kept for the comparison
    onnx_weights: int  # the ONNX constants this process holds
    caffe_weights: int  # the Caffe blobs (caffemodel data)
    live_peak: int  # largest sum of activations alive at once, in graph order
    all_blobs: int  # every activation at once (real Caffe allocates all its blobs)
    stages: dict[str, int]  # runtime -> what it adds while it runs (machine-wide)
    in_process: dict[str, int]  # runtime -> what it adds to this process
    worker: int  # the Caffe worker process's own peak (0 without pycaffe)

    @property
    def held(self) -> int:
        return self.inputs + self.outputs + self.onnx_weights + self.caffe_weights

    @property
    def total(self) -> int:
        return self.held + max(self.stages.values(), default=0) + LIBRARIES

    @property
    def largest(self) -> str:
        return max(self.stages, key=self.stages.get) if self.stages else ""


def _nbytes(graph, tensor: str, itemsize: int | None = None) -> int:
    shape = graph.shape(tensor)
    if shape is None:
        return 0
    if itemsize is None:
        dtype = graph.dtype(tensor)
        itemsize = dtype.itemsize if dtype is not None and dtype.itemsize else 4
    return _count(shape) * itemsize


def live_peak(graph) -> int:
    """The largest total size (float32) of the activations alive at once when the nodes run in graph order,
    each tensor freed after its last consumer (graph inputs and outputs stay alive)."""
    tensors = activation_tensors(graph)
    size = {t: _nbytes(graph, t, 4) for t in tensors}
    last: dict[str, int] = {}
    for k, n in enumerate(graph.graph.node):
        for i in n.input:
            if i in size:
                last[i] = k
    keep = set(graph.inputs) | set(graph.outputs)
    alive = sum(size[t] for t in graph.inputs)
    peak = alive
    for k, n in enumerate(graph.graph.node):
        for o in n.output:
            if o in size:
                alive += size[o]
        peak = max(peak, alive)
        for i in dict.fromkeys(n.input):
            if i in size and last.get(i) == k and i not in keep:
                alive -= size[i]
    return peak


_SHARES_DATA = frozenset({"Reshape", "Flatten", "Split"})  # their tops share the bottom's memory


def caffe_layer_bytes(net) -> tuple[list[int], dict[str, tuple[int, ...]]] | None:
    """(bytes real Caffe allocates for each layer of `net`, a CaffeNet, in order; every blob's shape): the
    layer's top blobs that are not its bottoms' memory (an in-place top is its bottom; Reshape, Flatten and
    Split tops share their bottom's memory), plus the forward-pass buffers it keeps: the im2col buffer of a
    Convolution or Deconvolution that is not a plain 1x1, the max index of MAX Pooling and MAX Eltwise,
    BatchNorm's two bottom-sized buffers, MVN's and an in-place Scale's one, LRN's two. None when a layer
    cannot be shaped. `caffe_blob_bytes` sums it; the pycaffe runtime cuts a net into segments with it."""
    from .ncnn.reader import ForkLayerParameter  # the fields of the SSD fork too (pooling's ceil_mode)
    from .ncnn.shapes import ShapeError, conv_geometry, infer

    shapes: dict[str, tuple[int, ...]] = {}
    per_layer: list[int] = []
    for layer in net.layers:
        try:
            lp = ForkLayerParameter.FromString(layer.proto.SerializeToString())
            tops = infer(lp, [shapes[b] for b in layer.bottom], layer.blobs)
        except (ShapeError, KeyError, ValueError, AttributeError, IndexError, ZeroDivisionError):
            return None
        count = [math.prod(t) for t in tops]
        bottom = math.prod(shapes[layer.bottom[0]]) if layer.bottom else 0
        extra = 0
        kind = layer.type
        if kind in ("Convolution", "Deconvolution") and layer.bottom:
            g = conv_geometry(lp)
            plain = all(k == 1 for k in g["kernel"]) and all(v == 1 for v in g["stride"])
            plain = plain and not any(g["pad"])
            if not plain:
                k = math.prod(g["kernel"]) * shapes[layer.bottom[0]][1]
                spatial = tops[0][2:] if kind == "Convolution" else shapes[layer.bottom[0]][2:]
                n_out = tops[0][1] if kind == "Deconvolution" else 0
                extra = (n_out * math.prod(g["kernel"]) if n_out else k) * math.prod(spatial)
        elif kind == "Pooling" and lp.pooling_param.pool == 0:  # MAX: an index per output
            extra = sum(count)
        elif kind == "Eltwise" and lp.eltwise_param.operation == 2:  # MAX: an index per output
            extra = sum(count)
        elif kind in ("BatchNorm", "LRN"):
            extra = 2 * bottom
        elif kind == "MVN" or (kind == "Scale" and layer.top and layer.top[0] in layer.bottom[:1]):
            extra = bottom
        own = extra
        for t, s, c in zip(layer.top, tops, count, strict=False):
            if t not in layer.bottom and kind not in _SHARES_DATA:
                own += c
            shapes[t] = s
        per_layer.append(4 * own)
    return per_layer, shapes


def caffe_blob_bytes(net) -> int | None:
    """What real Caffe allocates for `net`'s activations (a CaffeNet) when it loads it whole: the sum of
    `caffe_layer_bytes`. None when a layer cannot be shaped (the ONNX-side estimate is used alone then).

    The compositions make blobs that have no ONNX tensor (a batched MatMul's broadcast operands and
    products: about 30 GiB for vit_l_16, whose ONNX activations total 1.1 GiB), so the ONNX graph alone
    underestimates real Caffe."""
    per_layer = caffe_layer_bytes(net)
    return None if per_layer is None else sum(per_layer[0])


def estimate_check_memory(
    graph,
    caffe_weight_bytes: int,
    runtimes: Sequence[str],
    caffe_blobs: int | None = None,
    caffe_segments: tuple[int, int] | None = None,
) -> CheckEstimate:
    """The memory the check will take (see the module docstring); `runtimes`: the names that will run;
    `caffe_blobs`: caffe_blob_bytes of the Caffe net, when known (real Caffe's blobs); `caffe_segments`:
    caffe_segments.smallest_peak of the Caffe net, when known (its largest one-layer segment, weights
    included, and the values carried across a cut)."""
    a_in = sum(_nbytes(graph, t, 4) for t in graph.inputs)
    a_out = sum(_nbytes(graph, t) for t in graph.outputs)
    w = sum(int(v.nbytes) for v in graph.constants.values())
    wc = int(caffe_weight_bytes)
    peak = live_peak(graph)
    all_blobs = sum(_nbytes(graph, t, 4) for t in activation_tensors(graph))
    if caffe_blobs is not None:
        all_blobs = max(all_blobs, int(caffe_blobs))
    stages = {"onnxruntime": w + peak}
    ours = {"onnxruntime": w + peak}
    worker = 0
    for name in runtimes:
        if name == "opencv":
            stages[name] = ours[name] = 2 * wc + a_in + peak + 2 * a_out
        elif name == "pycaffe":
            # the worker: every blob, the caffemodel parsed and copied, the input it received, the output
            # copied out of its blob and serialized; this process: the serialized input, the output read back
            worker = all_blobs + 2 * wc + a_in + 2 * a_out + WORKER_OVERHEAD
            ours[name] = 2 * a_in + a_out
            if caffe_segments is not None:
                # in segments: the worker holds one segment (its blobs, inputs and weights twice); this
                # process reads the whole caffemodel once to split it and keeps the values across a cut
                largest, carried = (int(v) for v in caffe_segments)
                segmented = largest + a_in + 2 * a_out + WORKER_OVERHEAD
                if segmented < worker:
                    worker = segmented
                    ours[name] += wc + carried
            stages[name] = worker + ours[name]
        else:  # another runtime: assume it holds what OpenCV does
            stages[name] = ours[name] = 2 * wc + a_in + peak + 2 * a_out
    return CheckEstimate(a_in, a_out, w, wc, peak, all_blobs, stages, ours, worker)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> tuple[int | None, str]:
    """(bytes of memory this machine can still give, where the figure comes from): MemAvailable, lowered to
    the headroom of a cgroup memory limit when one is set. (None, "") when unknown."""
    best: tuple[int | None, str] = (None, "")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    best = (int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo")
                    break
    except (OSError, ValueError, IndexError):
        pass
    if best[0] is None:
        try:
            best = (os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical memory")
        except (OSError, ValueError, AttributeError):
            pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            room = max(limit - usage, 0)
            if best[0] is None or room < best[0]:
                best = (room, f"the cgroup memory limit ({limit_file})")
    return best


def address_space_room() -> tuple[int | None, int | None]:
    """(soft RLIMIT_AS, this process's current address-space size), None where unlimited or unknown."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None, None
    if soft == resource.RLIM_INFINITY:
        return None, None
    return int(soft), _vm_size()


def library_address_space() -> int:
    """Address space the runtimes' libraries and thread pools reserve in this process (not resident):
    1 GiB, plus each thread's stack and malloc arena for one thread per CPU."""
    return 2**30 + 72 * 2**20 * (os.cpu_count() or 1)


def check_fits(est: CheckEstimate, source: str) -> None:
    """ResourceError (one line naming `source`, the size, the limit, the ways out) when the check cannot
    fit."""
    ways = "convert with --no-check (the files are written unchecked) or with a smaller input shape"
    parts = (
        f"input {fmt_bytes(est.inputs)}, largest activations {fmt_bytes(est.live_peak)}, "
        f"{fmt_bytes(est.all_blobs)} of blobs on real Caffe, weights {fmt_bytes(est.onnx_weights)} ONNX + "
        f"{fmt_bytes(est.caffe_weights)} Caffe"
    )
    avail, where = available_memory()
    if avail is not None and est.total > avail:
        raise ResourceError(
            f"{source}: the check needs about {fmt_bytes(est.total)} of memory ({parts}; most on "
            f"{est.largest}), more than the {fmt_bytes(avail)} available ({where}); {ways}"
        )
    soft, size = address_space_room()
    if soft is None:
        return
    ours = (size or 0) + library_address_space() + est.held + max(est.in_process.values(), default=0)
    if ours > soft:
        raise ResourceError(
            f"{source}: the check needs about {fmt_bytes(ours)} of address space in this process ({parts}), "
            f"over its limit of {fmt_bytes(soft)} (RLIMIT_AS, ulimit -v); {ways}"
        )
    if est.worker and est.worker + library_address_space() > soft:
        raise ResourceError(
            f"{source}: the check needs about {fmt_bytes(est.worker + library_address_space())} of address "
            f"space in the Caffe worker ({parts}), over the limit of {fmt_bytes(soft)} (RLIMIT_AS, ulimit -v) "
            f"it inherits; {ways}"
        )


def float32_normal(rng: np.random.Generator, shape: Sequence[int], chunk: int = 1 << 20) -> np.ndarray:
    """rng.standard_normal(shape).astype(np.float32), value for value (the generator's float64 stream drawn in
    order), without the float64 array: the input of a big check takes its own size, not three times it."""
    out = np.empty(tuple(int(d) for d in shape), dtype=np.float32)
    flat = out.reshape(-1)
    for start in range(0, flat.size, chunk):
        stop = min(start + chunk, flat.size)
        flat[start:stop] = rng.standard_normal(stop - start)
    return out
