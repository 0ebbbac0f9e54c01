"""Where a model's time goes, layer by layer, in a model run: our kernels against ONNX Runtime's nodes.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/model_layers.py resnet50

Our side: a Relax VM instrument times every call of the compiled model (the layer kernels in the
order the model makes them, ``CompiledModel.call_order``, and the ops TVM lowered itself). ORT's
side: its profiler's per-node kernel times on the same input. Layers are matched by (input shape,
output channels, kernel size); both are averaged over ``--runs`` runs after two warm-up runs. The
table ends with totals per (kernel size / stride, our kind): where we lose, and by how much.
The instrument adds a few microseconds per call; the per-layer times are for comparing, not for
quoting as the model's time (``benchmarks/models.py`` does that).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np


def our_times(compiled, x, runs: int) -> tuple[list[float], dict[str, float]]:
    """Seconds per layer kernel call (in call order) and per other op symbol, averaged."""
    from tvm.relax import VMInstrumentReturnKind  # noqa: PLC0415

    calls: list[tuple[str, float]] = []
    start = [0.0]

    def instrument(func, symbol, before_run, ret_value, *args):
        if before_run:
            start[0] = time.perf_counter()
        else:
            calls.append((str(symbol), time.perf_counter() - start[0]))
        return VMInstrumentReturnKind.NO_OP

    for _ in range(2):
        compiled(x)
    vm = compiled._machine()
    vm.set_instrument(instrument)
    try:
        for _ in range(runs):
            compiled(x)
    finally:
        vm.set_instrument(lambda *a: VMInstrumentReturnKind.NO_OP)
    kernels = [0.0] * len(compiled.call_order)
    others: dict[str, float] = collections.defaultdict(float)
    j = 0
    for symbol, seconds in calls:
        if symbol.startswith("fscnn_"):
            kernels[j % len(kernels)] += seconds / runs
            j += 1
        else:
            others[symbol] += seconds / runs
    return kernels, dict(others)


def ort_times(model, x, runs: int) -> tuple[dict, float]:
    """ORT's per-node seconds by (input shape, output channels, kernel), as lists in run order,
    and its total over every node."""
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), path, input_names=["x"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(folder, "ort")
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    for _ in range(runs + 2):  # the profile holds every run: the two warm-up runs are averaged in
        sess.run(None, {"x": x})
    events = [e for e in json.load(open(sess.end_profiling())) if e.get("cat") == "Node"
              and e["name"].endswith("_kernel_time")]
    total = sum(e["dur"] for e in events) * 1e-6 / (runs + 2)
    per_node: dict[str, float] = collections.defaultdict(float)
    first: list = []
    for e in events:
        if e["name"] not in per_node:
            first.append(e)
        per_node[e["name"]] += e["dur"] * 1e-6 / (runs + 2)
    by_key: dict = collections.defaultdict(list)
    for e in first:
        if e["args"].get("op_name") not in ("Conv", "FusedConv", "Gemm"):
            continue
        shapes = [list(d.values())[0] for d in e["args"]["input_type_shape"]]
        data, weight = shapes[0], shapes[1]
        out_channels = weight[1] if e["args"]["op_name"] == "Gemm" and len(data) == 2 and weight[0] == data[1] else weight[0]
        by_key[(tuple(data[1:]), out_channels, tuple(weight[2:]))].append(per_node[e["name"]])
    return by_key, total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a zoo spec, e.g. resnet50 or resnet50@0.7")
    p.add_argument("--input-shape", default="1,3,224,224")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import models  # noqa: PLC0415
    from fscnn_tvm.testing import markdown_table  # noqa: PLC0415

    shape = tuple(int(v) for v in args.input_shape.split(","))
    model = models.from_spec(args.model).eval()
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    compiled = fscnn_tvm.compile(model, shape)
    ours, others = our_times(compiled, x, args.runs)
    theirs, ort_total = ort_times(model, x, args.runs)
    plan = compiled.plan
    rows, groups = [], collections.defaultdict(lambda: [0, 0.0, 0.0])
    for seconds, index in zip(ours, compiled.call_order):
        row = plan[index]
        kernel = tuple(row.kernel_size) if row.kernel_size else ()
        key = (tuple(row.in_shape[1:]), row.out_shape[1], kernel)
        ort_s = theirs[key].pop(0) if theirs.get(key) else float("nan")
        rows.append([row.name, row.kernel, "x".join(map(str, row.in_shape[1:])), row.out_shape[1],
                     "x".join(map(str, kernel)) + (f"/{row.stride[0]}" if row.stride else ""),
                     f"{seconds * 1e3:.3f}", f"{ort_s * 1e3:.3f}", f"{seconds / ort_s:.2f}"])
        g = groups[("x".join(map(str, kernel)) + (f"/{row.stride[0]}" if row.stride else "") or "linear", row.kernel)]
        g[0] += 1
        g[1] += seconds
        g[2] += ort_s
    print(markdown_table(["layer", "kind", "input", "out", "kernel", "ours ms", "ORT ms", "ours / ORT"], rows))
    print()
    print(markdown_table(["kernel", "kind", "layers", "ours ms", "ORT ms", "ours / ORT"],
                         [[k, kind, n, f"{a * 1e3:.2f}", f"{b * 1e3:.2f}", f"{a / b:.2f}"]
                          for (k, kind), (n, a, b) in sorted(groups.items())]))
    print(f"\nlayer kernels: ours {sum(ours) * 1e3:.2f} ms; other ops ours {sum(others.values()) * 1e3:.2f} ms "
          f"(largest: " + ", ".join(f"{k} {v * 1e3:.2f}" for k, v in sorted(others.items(), key=lambda kv: -kv[1])[:3])
          + f"); ORT every node {ort_total * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
