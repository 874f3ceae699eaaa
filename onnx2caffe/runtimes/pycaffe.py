"""The "pycaffe" runtime: real Caffe, in a long-lived worker process.

pycaffe needs numpy 1.x and an old protobuf, so it lives in its own venv (`make caffe` builds one into
.caffe/). We start `<that python> -u _pycaffe_worker.py` once per PycaffeRuntime and talk to it over
its stdin/stdout: a JSON header line followed by .npy arrays (numpy.lib.format, no pickle), see the
worker's docstring. Loading and running a small net then costs milliseconds, not the ~0.5 s import.

Caffe's fatal CHECK failures abort the worker: the call in flight raises RuntimeExecutionError with
Caffe's message (read from the worker's stderr), and the next call starts a new worker. Models loaded
before the crash are loaded again, transparently, the next time they are run. The worker keeps each
loaded net until its model is closed (model.close() or `with`) or the runtime is closed. A worker that
hangs (rather than aborting) is not timed out.

Real Caffe allocates every blob of a net at load (no buffer reuse), so a big net can exceed the machine's
memory (converted vit_l_16: about 30 GiB of blobs). load() therefore first estimates the blobs on the Caffe
side (limits.caffe_layer_bytes, from Caffe's shape rules; runtimes know nothing of ONNX) and, when they
and twice the caffemodel exceed segment_budget(), returns a SegmentedPycaffeModel (pycaffe_segmented.py):
the net is cut greedily into consecutive layer ranges that each fit the budget (caffe_segments.py), every
range is written once as a Caffe net of its own with its share of the weights, and each run loads, runs and
frees them in turn in the same worker, passing the blobs alive across a cut through this process. The values
are bitwise those of the whole net. A net that fits, or one whose shapes cannot be inferred, loads whole.
"""

from __future__ import annotations

import collections
import io
import json
import os
import re
import subprocess
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.lib.format  # noqa: F401 - np.lib.format on every numpy version

from onnx2caffe import limits
from onnx2caffe.caffe_net import CaffeNet
from onnx2caffe.caffe_segments import plan_segments
from onnx2caffe.errors import Onnx2CaffeError, RuntimeExecutionError, RuntimeUnavailableError
from onnx2caffe.runtimes.base import LoadedModel, Runtime, as_float32_inputs, check_files

WORKER = Path(__file__).with_name("_pycaffe_worker.py")
REPO_CAFFE_ROOT = Path(__file__).resolve().parents[2] / ".caffe"
HOW_TO_GET = (
    "build it with `make caffe` (into .caffe/ of the checkout), or point ONNX2CAFFE_CAFFE_ROOT at a "
    "folder built by scripts/build_caffe.sh, or ONNX2CAFFE_CAFFE_PYTHON at a python that can `import caffe`"
)
SEGMENT_ENV = "ONNX2CAFFE_PYCAFFE_SEGMENT_BYTES"  # a segment's budget in bytes, instead of the free memory
SEGMENT_MARGIN = 2**30
_STDERR_LINES = 200  # worker stderr lines kept for error messages


class _WorkerDied(Exception):
    """The worker process ended; args[0] is the reason taken from its stderr."""


def locate_caffe(caffe_root: str | Path | None = None) -> tuple[Path, dict[str, str], str]:
    """(python executable, environment, description) of the Caffe to use; RuntimeUnavailableError if
    the chosen location has no Caffe. Order: caffe_root, $ONNX2CAFFE_CAFFE_ROOT,
    $ONNX2CAFFE_CAFFE_PYTHON, the checkout's .caffe/."""
    env = dict(os.environ)
    env["GLOG_minloglevel"] = "2"
    env.pop("PYTHONHOME", None)
    python_env = os.environ.get("ONNX2CAFFE_CAFFE_PYTHON")
    if caffe_root is not None:
        root, origin = Path(caffe_root), "caffe_root argument"
    elif os.environ.get("ONNX2CAFFE_CAFFE_ROOT"):
        root, origin = Path(os.environ["ONNX2CAFFE_CAFFE_ROOT"]), "ONNX2CAFFE_CAFFE_ROOT"
    elif python_env:
        python = Path(python_env)
        if not (python.is_file() and os.access(python, os.X_OK)):
            raise RuntimeUnavailableError(
                f"pycaffe runtime unavailable: ONNX2CAFFE_CAFFE_PYTHON={python_env} is not an executable; "
                + HOW_TO_GET
            )
        return python, env, f"ONNX2CAFFE_CAFFE_PYTHON={python_env}"
    else:
        root, origin = REPO_CAFFE_ROOT, "the checkout's .caffe"
    root = root.expanduser().resolve()
    python = root / "venv" / "bin" / "python"
    src = root / "src" / "python"
    if not python.is_file() or not (src / "caffe" / "__init__.py").is_file():
        raise RuntimeUnavailableError(
            f"pycaffe runtime unavailable: no Caffe build in {root} ({origin}; expected {python} and "
            f"{src}/caffe); " + HOW_TO_GET
        )
    # Only the Caffe tree: our own PYTHONPATH (numpy 2, new protobuf) must not leak into its venv.
    env["PYTHONPATH"] = str(src)
    return python, env, str(root)


_GLOG_PREFIX = re.compile(r"^[FEWI]\d{4}(?:\d{4})? [\d:.]+\s+\d+ ")
_PROTOBUF_PREFIX = re.compile(r"^\[libprotobuf (?:ERROR|FATAL) [^\]]*\]\s*")


def summarize_stderr(lines: Sequence[str]) -> str:
    """One line out of a dead worker's stderr: protobuf parse errors and glog fatal/error messages
    (without their timestamp prefixes); else the last non-empty line."""
    picked = []
    for line in lines:
        line = line.strip()
        if _PROTOBUF_PREFIX.match(line):
            picked.append(_PROTOBUF_PREFIX.sub("", line))
        elif line[:1] in "FE" and _GLOG_PREFIX.match(line):
            picked.append(_GLOG_PREFIX.sub("", line))
    if not picked:
        rest = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("    @ ")]
        picked = rest[-1:] or ["no message on stderr"]
    msg = "; ".join(dict.fromkeys(picked))  # unique, in order
    return msg if len(msg) <= 1000 else msg[:997] + "..."


class _Worker:
    """One worker process: pipes, a thread draining stderr, request/response framing."""

    def __init__(self, python: Path, env: dict[str, str]) -> None:
        self.stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self.stderr_count = 0
        try:
            self.proc = subprocess.Popen(
                [str(python), "-u", str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        except OSError as e:
            raise _WorkerDied(f"cannot start {python}: {e}") from None
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self.hello, _ = self.receive()
        if not self.hello.get("ok"):
            self.kill()
            raise _WorkerDied(self.hello.get("error", "worker failed to start"))

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))
            self.stderr_count += 1

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _died(self, since: int) -> _WorkerDied:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        self._stderr_thread.join(timeout=2)
        new = self.stderr_count - since
        lines = list(self.stderr)[-new:] if new > 0 else []
        reason = summarize_stderr(lines)
        if code is not None and code < 0:
            reason += f" (worker killed by signal {-code})"
        return _WorkerDied(reason)

    def request(
        self, header: dict, arrays: Sequence[tuple[str, np.ndarray]] = ()
    ) -> tuple[dict, list[tuple[str, np.ndarray]]]:
        since = self.stderr_count
        payloads = []
        for name, arr in arrays:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            payloads.append((name, buf.getvalue()))
        if payloads:
            header = dict(header, arrays=[[name, len(data)] for name, data in payloads])
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(header).encode("utf-8") + b"\n")
            for _, data in payloads:
                self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(since) from None
        return self.receive(since)

    def receive(self, since: int = 0) -> tuple[dict, list[tuple[str, np.ndarray]]]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise self._died(since)
        try:
            header = json.loads(line)
        except ValueError:
            self.kill()
            raise _WorkerDied(f"unexpected output from the worker: {line[:200]!r}") from None
        arrays = []
        for name, nbytes in header.get("arrays", []):
            data = self.proc.stdout.read(int(nbytes))
            if len(data) != int(nbytes):
                raise self._died(since)
            arrays.append((name, np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)))
        return header, arrays

    def stop(self) -> None:
        if self.alive():
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"cmd": "exit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.kill()
        _close_pipes(self.proc)

    def kill(self) -> None:
        _kill(self.proc)


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    _close_pipes(proc)


class PycaffeRuntime(Runtime):
    """Real Caffe through pycaffe, in a worker process started at construction and kept alive."""

    name = "pycaffe"

    def __init__(self, caffe_root: str | Path | None = None, segment_bytes: int | None = None) -> None:
        self._python, self._env, self.location = locate_caffe(caffe_root)
        self.segment_bytes = segment_bytes
        self._lock = threading.RLock()
        self._worker: _Worker | None = None
        self._finalizer: weakref.finalize | None = None
        self.generation = 0  # increments with every worker start
        self._closed = False
        try:
            worker = self._ensure_worker()
        except _WorkerDied as e:
            raise RuntimeUnavailableError(
                f"pycaffe runtime unavailable ({self.location}): {e.args[0]}; " + HOW_TO_GET
            ) from None
        self._layer_types = frozenset(worker.hello.get("layer_types", ()))
        self.caffe_module = worker.hello.get("caffe", "")

    @property
    def worker_pid(self) -> int | None:
        """The current worker's process id (None when none is running)."""
        w = self._worker
        return w.proc.pid if w is not None and w.alive() else None

    def _ensure_worker(self) -> _Worker:
        if self._closed:
            raise RuntimeExecutionError("pycaffe runtime is closed")
        if self._worker is not None and self._worker.alive():
            return self._worker
        if self._worker is not None:
            self._worker.kill()
        self._worker = None
        worker = _Worker(self._python, self._env)
        self._worker = worker
        self.generation += 1
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _kill, worker.proc)
        return worker

    def _call(self, header: dict, arrays: Sequence[tuple[str, np.ndarray]], what: str):
        """Send one request; returns (generation, header, arrays). RuntimeExecutionError on any error."""
        with self._lock:
            try:
                worker = self._ensure_worker()
            except _WorkerDied as e:
                raise RuntimeExecutionError(
                    f"pycaffe: {what}: cannot restart the Caffe worker: {e.args[0]}"
                ) from None
            generation = self.generation
            try:
                resp, out = worker.request(header, arrays)
            except _WorkerDied as e:
                raise RuntimeExecutionError(f"pycaffe: {what}: Caffe aborted: {e.args[0]}") from None
        if not resp.get("ok"):
            raise RuntimeExecutionError(f"pycaffe: {what}: {resp.get('error', 'unknown error')}")
        return generation, resp, out

    def supported_layer_types(self) -> frozenset[str]:
        return self._layer_types

    def load(self, prototxt: str | Path, caffemodel: str | Path | None = None) -> LoadedModel:
        proto_path, model_path = check_files(self.name, prototxt, caffemodel)
        if self._closed:
            raise RuntimeExecutionError("pycaffe runtime is closed")
        planned = self._plan_segments(proto_path, model_path)
        if planned is not None:
            from onnx2caffe.runtimes.pycaffe_segmented import SegmentedPycaffeModel

            return SegmentedPycaffeModel(self, proto_path, model_path, *planned)
        return PycaffeModel(self, proto_path, model_path)

    def segment_budget(self) -> int | None:
        """The bytes one segment may take in the worker: the constructor's segment_bytes, else
        $ONNX2CAFFE_PYCAFFE_SEGMENT_BYTES, else 80 % of the available memory less 1 GiB (the margin covers
        this process's copies of the values, the libraries and the estimate's error); None when unknown."""
        if self.segment_bytes is not None:
            return int(self.segment_bytes)
        text = os.environ.get(SEGMENT_ENV, "").strip()
        if text:
            try:
                return int(text)
            except ValueError:
                raise RuntimeExecutionError(
                    f"pycaffe: {SEGMENT_ENV}={text!r} is not a number of bytes"
                ) from None
        avail, _ = limits.available_memory()
        return None if avail is None else max(avail - SEGMENT_MARGIN, 0) * 4 // 5

    def _plan_segments(self, prototxt: Path, caffemodel: Path | None):
        """(the net with its weights, its segment plan) when the net's blobs do not fit segment_budget();
        None to load it whole (it fits, or it cannot be planned: Caffe then reports what is wrong)."""
        budget = self.segment_budget()
        if budget is None:
            return None
        try:
            net = CaffeNet.load(prototxt)
        except Onnx2CaffeError:
            return None
        sized = limits.caffe_layer_bytes(net)
        if sized is None:
            return None
        weights = caffemodel.stat().st_size if caffemodel is not None else 0
        if sum(sized[0]) + 2 * weights <= budget:
            return None
        try:
            net = CaffeNet.load(prototxt, caffemodel)
        except Onnx2CaffeError:
            return None
        plan = plan_segments(net, budget)
        if plan is None or len(plan.segments) < 2:
            return None
        return net, plan

    def _load_handle(self, prototxt: Path, caffemodel: Path | None) -> tuple[int, dict]:
        header = {
            "cmd": "load",
            "prototxt": str(prototxt),
            "caffemodel": str(caffemodel) if caffemodel else None,
        }
        what = f"cannot load {prototxt}" + (f" with {caffemodel.name}" if caffemodel else "")
        generation, resp, _ = self._call(header, (), what)
        return generation, resp

    def _free(self, generation: int, handle: int) -> None:
        with self._lock:
            w = self._worker
            if self._closed or w is None or not w.alive() or generation != self.generation:
                return
            try:
                w.request({"cmd": "free", "handle": handle})
            except _WorkerDied:
                pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
            if self._finalizer is not None:
                self._finalizer.detach()


class PycaffeModel(LoadedModel):
    def __init__(self, runtime: PycaffeRuntime, prototxt: Path, caffemodel: Path | None) -> None:
        super().__init__(prototxt, caffemodel)
        self._rt = runtime
        self._closed = False
        self._generation, info = runtime._load_handle(prototxt, caffemodel)
        self._set_info(info)

    def _set_info(self, info: dict) -> None:
        self._handle = int(info["handle"])
        self._blobs = list(info["blobs"])
        self._inputs = list(info["inputs"])
        self._outputs = list(info["outputs"])

    def run(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        if self._closed:
            raise RuntimeExecutionError(f"pycaffe: model {self.prototxt} was closed")
        arrays = as_float32_inputs(inputs)
        if outputs is not None:
            outputs = [outputs] if isinstance(outputs, str) else list(outputs)
            unknown = [n for n in outputs if n not in self._blobs]
            if unknown:
                raise RuntimeExecutionError(
                    f"pycaffe: {self.prototxt.name} has no blob named {', '.join(map(repr, unknown))} "
                    f"(blobs: {', '.join(self._blobs[:50])}{' ...' if len(self._blobs) > 50 else ''})"
                )
        with self._rt._lock:
            if self._generation != self._rt.generation or self._rt.worker_pid is None:
                # The worker that held this net died (a Caffe abort): load it into a fresh one.
                self._generation, info = self._rt._load_handle(self.prototxt, self.caffemodel)
                self._set_info(info)
            header = {"cmd": "run", "handle": self._handle, "outputs": outputs}
            _, _, out = self._rt._call(header, list(arrays.items()), f"running {self.prototxt} failed")
        return {name: np.asarray(arr, dtype=np.float32) for name, arr in out}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._rt._free(self._generation, self._handle)
