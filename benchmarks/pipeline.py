"""Benchmark: PyTorch -> Caffe in one command against a bare torch.onnx.export, as whole processes.

For each net (torchvision, random weights, 1x3x224x224), ROUNDS rounds, each running two fresh processes
one after the other, their order alternating from round to round (the machine may be shared and noisy:
ratios are taken within a round, and the medians reported):

  bare      builds the model (torchvision's builder with weights=None, weights_backbone=None) and calls
            torch.onnx.export (TorchScript exporter, dynamo=False, opset 13) into a file: nothing else
  pipeline  onnx2caffe convert torchvision:NAME --input-shape 1,3,224,224 -o OUT --no-check, ending as the
            `onnx2caffe` console script does (cli.fast_exit: exit handlers, then no interpreter teardown)
            (export, simplification, the check of the ONNX graph against PyTorch, conversion, writing the
            .onnx, .prototxt, .caffemodel and names.json; --no-check leaves out only the Caffe runtimes)

Each process reports its wall time (measured here), its system time and its peak RSS (VmHWM, read by the
process itself at exit). The goal (issue 11): pipeline within 1.3x the bare export's time, and on VGG-16
within 1.1x its peak memory.

Then one more pipeline process, this time with the check on the Caffe runtimes, measures every step
(onnx2caffe.progress steps: import torch, build, export, simplify, check against PyTorch, write .onnx,
load, passes, mapping, writing the Caffe files, the onnxruntime reference, each runtime): wall time, system
time and the peak RSS during the step (the peak is reset at each step's start through /proc/self/clear_refs).

    .venv/bin/python benchmarks/pipeline.py [--models resnet50,vgg16] [--rounds 3] [--dir DIR]
        [--src DIR]   run another checkout's onnx2caffe (its source folder first on PYTHONPATH)
        [--no-steps]  skip the per-step run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SHAPE = (1, 3, 224, 224)
GOAL_TIME = 1.3
GOAL_PEAK = 1.1  # VGG-16

_STATUS = r"""
def _status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out
"""

# argv: NAME OUT.onnx STATS.json
BARE_CHILD = (
    "import inspect, json, resource, sys, time, warnings\n"
    + _STATUS
    + r"""
t_start = time.time()
t0 = time.perf_counter()
import torch, torchvision
t1 = time.perf_counter()
builder = torchvision.models.get_model_builder(sys.argv[1])
kwargs = {"weights_backbone": None} if "weights_backbone" in inspect.signature(builder).parameters else {}
model = builder(weights=None, **kwargs).eval()  # as `torchvision:NAME` builds it: nothing downloaded
t2 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.onnx.export(model, (torch.randn(SHAPE),), sys.argv[2], dynamo=False, opset_version=13)
t3 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_SELF)
steps = {"import torch": t1 - t0, "build model": t2 - t1, "export": t3 - t2}
json.dump({"peak": _status()["VmHWM"], "sys": ru.ru_stime, "user": ru.ru_utime, "steps": steps,
           "t_start": t_start, "t_end": time.time() - t_start}, open(sys.argv[3], "w"))
""".replace("SHAPE", repr(SHAPE))
)

# argv: STATS.json PROFILE(0/1) CLI-ARGS...
PIPELINE_CHILD = (
    "import json, resource, sys, time\n"
    + _STATUS
    + r"""
t_start = time.time()
stats_path, profile, argv = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
steps = []
if profile:
    from onnx2caffe import progress

    state = {}

    def listener(event, name, seconds):
        if event == "start":
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            state[name] = (resource.getrusage(resource.RUSAGE_SELF).ru_stime, _status()["VmRSS"], time.time())
        else:
            sys0, rss0, t0 = state.pop(name)
            st = _status()
            steps.append({"step": name, "wall": seconds, "start": t0 - t_start,
                          "sys": resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0,
                          "rss_before": rss0, "peak": st["VmHWM"], "rss_after": st["VmRSS"]})

    progress.add_listener(listener)
from onnx2caffe.cli import main
rc = main(argv)
ru = resource.getrusage(resource.RUSAGE_SELF)
with open(stats_path, "w") as f:
    json.dump({"rc": rc, "peak": _status()["VmHWM"], "sys": ru.ru_stime, "user": ru.ru_utime, "steps": steps,
               "t_start": t_start, "t_end": time.time() - t_start}, f)
try:  # end as the `onnx2caffe` console script does (an older checkout: the normal exit)
    from onnx2caffe.cli import fast_exit
except ImportError:
    fast_exit = sys.exit
fast_exit(rc)
"""
)


def _env(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    if src:
        env["PYTHONPATH"] = os.path.abspath(src) + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
    return env


def _run(code: str, args: list[str], stats: str, env: dict[str, str]) -> dict:
    t_launch = time.time()
    t = time.perf_counter()
    # cwd: the results folder, so that `python -c` (cwd first on sys.path) imports the onnx2caffe asked for
    p = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(stats),
    )
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"child failed ({p.returncode}): {' '.join(args[:4])}\n{p.stderr.strip()[-3000:]}")
    with open(stats) as f:
        out = json.load(f)
    out["wall"] = wall
    if "t_start" in out:  # seconds from launching the process to its first line of code
        out["startup"] = out["t_start"] - t_launch
    return out


def run_bare(name: str, folder: str, env) -> dict:
    stats = os.path.join(os.path.abspath(folder), "bare.json")
    return _run(BARE_CHILD, [name, os.path.join(folder, f"{name}_bare.onnx"), stats], stats, env)


def run_pipeline(name: str, folder: str, env, profile: bool = False, check: bool = False) -> dict:
    stats = os.path.join(os.path.abspath(folder), "pipeline.json")
    cli = ["convert", f"torchvision:{name}", "--input-shape", ",".join(map(str, SHAPE)), "-o",
           os.path.join(folder, name)]  # fmt: skip
    if not check:
        cli.append("--no-check")
    return _run(PIPELINE_CHILD, [stats, "1" if profile else "0", *cli], stats, env)


def bench(name: str, folder: str, rounds: int, env, steps: bool) -> dict:
    mb = 2**20
    rows = []
    print(f"{name}: {rounds} rounds, bare export vs pipeline, alternating (fresh processes)")
    print(f"  {'round':<6}{'bare s':>8}{'pipe s':>8}{'ratio':>7}{'bare MB':>9}{'pipe MB':>9}{'ratio':>7}"
          f"{'bare sys':>9}{'pipe sys':>9}")  # fmt: skip
    for r in range(rounds):
        if r % 2 == 0:
            bare = run_bare(name, folder, env)
            pipe = run_pipeline(name, folder, env)
        else:
            pipe = run_pipeline(name, folder, env)
            bare = run_bare(name, folder, env)
        row = {"bare": bare, "pipeline": pipe, "time_ratio": pipe["wall"] / bare["wall"],
               "peak_ratio": pipe["peak"] / bare["peak"]}  # fmt: skip
        rows.append(row)
        print(f"  {r + 1:<6}{bare['wall']:>8.1f}{pipe['wall']:>8.1f}{row['time_ratio']:>6.2f}x"
              f"{bare['peak'] / mb:>9.0f}{pipe['peak'] / mb:>9.0f}{row['peak_ratio']:>6.2f}x"
              f"{bare['sys']:>9.1f}{pipe['sys']:>9.1f}", flush=True)  # fmt: skip
    weights = os.path.getsize(os.path.join(folder, f"{name}_bare.onnx"))
    result = {
        "name": name,
        "onnx_bytes": weights,
        "rounds": rows,
        "time_ratio": statistics.median(r["time_ratio"] for r in rows),
        "peak_ratio": statistics.median(r["peak_ratio"] for r in rows),
        "bare_steps": {
            k: statistics.median(r["bare"]["steps"][k] for r in rows) for k in rows[0]["bare"]["steps"]
        },
    }
    result["bare_steps"]["python start"] = statistics.median(r["bare"]["startup"] for r in rows)
    result["bare_steps"]["interpreter exit"] = statistics.median(
        r["bare"]["wall"] - r["bare"]["startup"] - r["bare"]["t_end"] for r in rows
    )
    print(f"  median: time {result['time_ratio']:.2f}x the bare export (goal <= {GOAL_TIME}x), "
          f"peak memory {result['peak_ratio']:.2f}x ({weights / mb:.0f} MB .onnx)")  # fmt: skip
    print("  bare export steps (median s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in result["bare_steps"].items()))  # fmt: skip
    if steps:
        try:
            prof = run_pipeline(name, folder, env, profile=True, check=True)
        except SystemExit as err:  # no Caffe runtime here: the steps without the runtimes' check
            print(f"  (the run with the Caffe check failed: {str(err).splitlines()[0]}; steps without it)")
            prof = run_pipeline(name, folder, env, profile=True, check=False)
        result["steps"] = prof["steps"]
        if not prof["steps"]:
            print("  (no per-step data: this onnx2caffe has no progress steps)")
        else:
            print(f"  steps of one pipeline run with the Caffe check ({prof['wall']:.1f} s, peak "
                  f"{prof['peak'] / mb:.0f} MB):")  # fmt: skip
            print(
                f"    {'step':<26}{'wall s':>8}{'sys s':>7}{'RSS before':>11}{'peak':>8}{'RSS after':>10} (MB)"
            )
            for s in prof["steps"]:
                print(f"    {s['step']:<26}{s['wall']:>8.2f}{s['sys']:>7.2f}{s['rss_before'] / mb:>11.0f}"
                      f"{s['peak'] / mb:>8.0f}{s['rss_after'] / mb:>10.0f}")  # fmt: skip
            first, last = prof["steps"][0], prof["steps"][-1]
            between = last["start"] + last["wall"] - first["start"] - sum(s["wall"] for s in prof["steps"])
            ending = prof["t_end"] - last["start"] - last["wall"]
            teardown = prof["wall"] - prof["startup"] - prof["t_end"]
            print(f"    outside the steps: {prof['startup']:.2f} s python start, {first['start']:.2f} s imports and "
                  f"arguments, {between:.2f} s between steps, {ending:.2f} s printing, "
                  f"{teardown:.2f} s interpreter exit")  # fmt: skip
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet50,vgg16")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="folder for the written files (default: a temporary folder)")
    p.add_argument(
        "--src", default=None, help="source folder of the onnx2caffe to run (default: the installed)"
    )
    p.add_argument("--no-steps", action="store_true", help="skip the per-step run")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the measurements to FILE")
    args = p.parse_args(argv)
    folder = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="onnx2caffe-bench-"))
    os.makedirs(folder, exist_ok=True)
    env = _env(args.src)
    results = []
    try:
        for name in [m for m in args.models.split(",") if m]:
            results.append(bench(name, folder, args.rounds, env, not args.no_steps))
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print("summary (medians of alternating rounds):")
    for r in results:
        goal = f", goal <= {GOAL_PEAK}x" if r["name"] == "vgg16" else ""
        print(f"  {r['name']:<12} time {r['time_ratio']:.2f}x the bare export (goal <= {GOAL_TIME}x), "
              f"peak memory {r['peak_ratio']:.2f}x{goal}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
