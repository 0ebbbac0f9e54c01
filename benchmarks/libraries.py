"""Compiled libraries side by side: the same input through each, outputs compared, times interleaved.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/libraries.py \\
        before=/tmp/r50_before.so after=/tmp/r50_after.so --rounds 15

Each library is a ``fscnn-tvm compile`` output (from two commits, or two plans); the first is the
reference of the ratios. Run on a quiet core: only ratios from one run mean anything here.
"""
from __future__ import annotations

import argparse

import numpy as np

import fscnn_tvm
from fscnn_tvm.testing import interleaved, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libraries", nargs="+", metavar="NAME=PATH.so")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--input-shape", default="1,3,224,224")
    args = parser.parse_args(argv)
    if any("=" not in spec for spec in args.libraries):
        parser.error("each library is NAME=PATH.so")
    runners = {spec.split("=", 1)[0]: fscnn_tvm.load(spec.split("=", 1)[1]) for spec in args.libraries}
    x = np.random.default_rng(0).standard_normal(tuple(int(d) for d in args.input_shape.split(","))).astype("float32")
    outputs = {name: np.array(run(x)) for name, run in runners.items()}
    first = next(iter(outputs.values()))
    med = interleaved({name: (lambda run=run: run(x)) for name, run in runners.items()}, args.rounds)
    base = next(iter(med.values()))
    rows = [[name, f"{med[name] * 1e3:.2f}", f"{base / med[name]:.3f}",
             f"{float(np.abs(outputs[name] - first).max() / np.abs(first).max()):.1e}"] for name in runners]
    print(markdown_table(["library", "ms", "speedup over the first", "max rel diff to the first"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
