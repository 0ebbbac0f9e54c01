"""A/B of the CSR input-channel chunking: each layer built with 1, 2, 4, 8, 16 chunks and the
auto rule (``kernels.sparse_conv_chunks``), timed interleaved in one run at 90% sparsity.

    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/chunks.py
"""
from __future__ import annotations

import sys

import numpy as np
import tvm

from fscnn_tvm import kernels, prune, targets
from fscnn_tvm.measure import conv_layer
from fscnn_tvm.ops.conv2d import Conv2dSpec

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from layers import LAYERS, _compiled  # noqa: E402


def _build(spec, weight, target, chunks):
    """The CSR kernel with the chunk rule (``"auto"``) or ``chunks`` input-channel chunks."""
    knobs = None if chunks == "auto" else {"chunks": min(chunks, spec.in_channels)}
    lib, args, _ = _compiled(conv_layer(spec, weight), "csr", target, knobs)
    return lib.mod.time_evaluator("main", tvm.cpu(), number=3, repeat=1), args


def main() -> int:
    target = targets.parse("llvm")
    variants = ["auto", 1, 2, 4, 8, 16]
    print("| layer | auto chunks | " + " | ".join(f"{v} ms" for v in variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    for name, (cin, cout, k, hw) in LAYERS.items():
        spec = Conv2dSpec(1, cin, hw, hw, cout, (k, k), padding=(k // 2,) * 4)
        w = np.random.default_rng(1).standard_normal((cout, cin, k, k)).astype("float32")
        w *= prune.magnitude_mask(w, 0.9)
        built = {v: _build(spec, w, target, v) for v in variants}
        times = {v: [] for v in variants}
        for _ in range(7):
            for v, (ev, args) in built.items():
                times[v].append(ev(*args).mean * 1e3)
        auto = kernels.sparse_conv_chunks(spec, 1)
        print(f"| {name} | {auto} | " + " | ".join(f"{np.median(times[v]):.3f}" for v in variants) + " |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
