"""Worker process for the pycaffe runtime. It runs INSIDE the Caffe venv (numpy 1.x, old protobuf), so it
imports nothing from onnx2caffe: only the standard library, numpy and caffe.

Protocol (client: onnx2caffe/runtimes/pycaffe.py). Every message, in both directions, is one line of
UTF-8 JSON (the header) followed by zero or more arrays, each an .npy byte string (numpy.lib.format,
never pickled) whose byte length is listed in header["arrays"] as [name, nbytes] pairs, in order.

  worker -> client at start  {"ok": true, "hello": 1, "layer_types": [...], "caffe": path}
                             or {"ok": false, "error": "..."} and exit 1 when caffe does not import
  {"cmd": "load", "prototxt": p, "caffemodel": p or null}
                          -> {"ok": true, "handle": n, "blobs": [...], "inputs": [...], "outputs": [...]}
  {"cmd": "run", "handle": n, "arrays": [[input, nbytes], ...], "outputs": [...] or null}
                          -> {"ok": true, "arrays": [[blob, nbytes], ...]} + arrays
  {"cmd": "free", "handle": n}  -> {"ok": true}
  {"cmd": "exit"}               -> (exits)
Any error that Python can catch is answered with {"ok": false, "error": "..."}; the worker stays up.
Caffe's fatal CHECK failures abort the process; the client reads the reason from our stderr.
"""

import io
import json
import os
import sys
import traceback

# Caffe logs through glog: keep only errors and fatal messages (the fatal one is the abort reason).
os.environ.setdefault("GLOG_minloglevel", "2")

# Protect the protocol channel: anything native code or Python prints to stdout goes to stderr instead.
_PROTO_OUT = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr
_PROTO_IN = sys.stdin.buffer

# Do not let the runtimes folder (this script's directory, sys.path[0]) shadow real modules.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]


def _send(header, arrays=()):
    payloads = []
    for name, arr in arrays:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
        payloads.append((name, buf.getvalue()))
    if payloads:
        header["arrays"] = [[name, len(data)] for name, data in payloads]
    _PROTO_OUT.write(json.dumps(header).encode("utf-8") + b"\n")
    for _, data in payloads:
        _PROTO_OUT.write(data)
    _PROTO_OUT.flush()


def _read_exact(n):
    chunks = []
    while n > 0:
        chunk = _PROTO_IN.read(n)
        if not chunk:
            raise EOFError("client closed the pipe in the middle of an array")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _receive():
    line = _PROTO_IN.readline()
    if not line:
        return None, []
    header = json.loads(line)
    arrays = []
    for name, nbytes in header.get("arrays", []):
        arr = np.lib.format.read_array(io.BytesIO(_read_exact(int(nbytes))), allow_pickle=False)
        arrays.append((name, arr))
    return header, arrays


class _Error(Exception):
    """An error reported to the client as is."""


def _check_prototxt(path):
    # Parse with the same caffe.proto first: a syntax error then becomes a message instead of an abort.
    from google.protobuf import text_format

    try:
        with open(path, encoding="utf-8") as f:
            text_format.Merge(f.read(), caffe_pb2.NetParameter())
    except text_format.ParseError as e:
        raise _Error(f"cannot parse {path}: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _Error(f"cannot read {path}: {e}") from None


def _load(nets, counter, header):
    prototxt = header["prototxt"]
    caffemodel = header.get("caffemodel")
    _check_prototxt(prototxt)
    if caffemodel:
        net = caffe.Net(prototxt, caffemodel, caffe.TEST)
    else:
        net = caffe.Net(prototxt, caffe.TEST)
    handle = counter
    nets[handle] = net
    return {
        "ok": True,
        "handle": handle,
        "blobs": list(net.blobs.keys()),
        "inputs": list(net.inputs),
        "outputs": list(net.outputs),
    }


def _run(net, header, arrays):
    given = dict(arrays)
    expected = list(net.inputs)
    unknown = [n for n in given if n not in expected]
    missing = [n for n in expected if n not in given]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown input(s) {unknown}")
        if missing:
            parts.append(f"missing input(s) {missing}")
        raise _Error(f"{'; '.join(parts)} (the net's inputs are {expected})")
    wanted = header.get("outputs")
    if wanted is None:
        wanted = list(net.outputs)
    bad = [n for n in wanted if n not in net.blobs]
    if bad:
        raise _Error(f"no blob named {', '.join(map(repr, bad))} in this net")
    for name, arr in given.items():
        blob = net.blobs[name]
        if tuple(blob.data.shape) != tuple(arr.shape):
            blob.reshape(*arr.shape)
        blob.data[...] = arr
    net.reshape()
    net.forward()
    return [(name, net.blobs[name].data.copy()) for name in wanted]


def main():
    nets = {}
    counter = 0
    while True:
        header, arrays = _receive()
        if header is None or header.get("cmd") == "exit":
            return 0
        try:
            cmd = header.get("cmd")
            if cmd == "load":
                counter += 1
                _send(_load(nets, counter, header))
            elif cmd == "run":
                net = nets.get(header.get("handle"))
                if net is None:
                    raise _Error("this model was closed")
                _send({"ok": True}, _run(net, header, arrays))
            elif cmd == "free":
                nets.pop(header.get("handle"), None)
                _send({"ok": True})
            else:
                raise _Error(f"unknown command {cmd!r}")
        except _Error as e:
            _send({"ok": False, "error": str(e)})
        except Exception as e:  # a Python-level failure in caffe or numpy: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            _send({"ok": False, "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    try:
        import caffe
        import numpy as np
        import numpy.lib.format  # noqa: F401 - makes np.lib.format available on every numpy version
        from caffe.proto import caffe_pb2
    except Exception as e:
        _send({"ok": False, "error": f"cannot import caffe in {sys.executable}: {type(e).__name__}: {e}"})
        sys.exit(1)
    _send({"ok": True, "hello": 1, "layer_types": sorted(caffe.layer_type_list()), "caffe": caffe.__file__})
    sys.exit(main())
