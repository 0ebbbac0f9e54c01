"""End-to-end model latency: fscnn-tvm against PyTorch and ONNX Runtime, measured side by side.

Run pinned to one core with one thread everywhere (what RESULTS.md quotes):

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/models.py

Rounds are interleaved (ours, torch, ORT, ours, ...) so machine noise hits all three alike; the
table gives medians and the ratios of the medians. Every compiled model is also checked against
PyTorch before it is timed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

from fscnn_tvm.testing import markdown_table, zoo_specs


def _ort_session(model, shape, threads: int):
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    torch.onnx.export(model, (torch.zeros(shape),), path, input_names=["x"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def bench_model(spec: str, shape, rounds: int, threads: int) -> dict:
    import torch  # noqa: PLC0415

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import models  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, random_input, relative_error  # noqa: PLC0415

    torch.set_num_threads(threads)
    model = models.from_spec(spec)
    start = time.perf_counter()
    compiled = fscnn_tvm.compile(model, input_shape=shape)
    compile_s = time.perf_counter() - start
    x = random_input(shape)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref = model(xt).numpy()
    err = relative_error(compiled(x), ref)
    ort_run = _ort_session(model, shape, threads)
    runners = {"fscnn": lambda: compiled(x), "torch": lambda: model(xt), "ort": lambda: ort_run(x)}
    with torch.no_grad():
        med = {k: t * 1e3 for k, t in interleaved(runners, rounds).items()}
    return {"model": spec, "compile_s": compile_s, "err": err, **med}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,resnet50")
    parser.add_argument("--sparsity", default="0",
                        help="comma-separated sparsities (0 = unpruned; 0.9:8x1 = block-pruned)")
    parser.add_argument("--input-shape", default="1,3,224,224")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    shape = tuple(int(d) for d in args.input_shape.split(","))
    rows = []
    for spec in zoo_specs(args.models, args.sparsity):
        print(f"... {spec}", file=sys.stderr, flush=True)
        rows.append(bench_model(spec, shape, args.rounds, args.threads))
    print(f"\ninput {shape}, {args.threads} thread(s), median of {args.rounds} interleaved rounds\n")
    print(markdown_table(
        ["model", "fscnn-tvm ms", "PyTorch ms", "ORT ms", "vs PyTorch", "vs ORT", "max rel err", "compile s"],
        [[r["model"], f"{r['fscnn']:.2f}", f"{r['torch']:.2f}", f"{r['ort']:.2f}", f"{r['torch'] / r['fscnn']:.2f}x",
          f"{r['ort'] / r['fscnn']:.2f}x", f"{r['err']:.1e}", f"{r['compile_s']:.0f}"] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
