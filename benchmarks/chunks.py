"""A/B of the CSR input-channel chunking: each layer built with 1, 2, 4, 8, 16 chunks and the
auto rule (``x86_rules.sparse_conv_chunks``), timed interleaved in one run at 90% sparsity.

    TVM_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/chunks.py
"""
from __future__ import annotations

import sys

import numpy as np
import tvm

from fscnn_tvm import sparse, targets
from fscnn_tvm.layer import conv_layer
from fscnn_tvm.measure import compiled_kernel
from fscnn_tvm.ops.conv2d import Conv2dSpec
from fscnn_tvm.schedules.x86 import rules as x86_rules
from fscnn_tvm.testing import interleaved, markdown_table

from layers import LAYERS  # benchmarks/ is on the path of a script run from it


def _build(spec, weight, target, chunks):
    """The CSR kernel with the chunk rule (``"auto"``) or ``chunks`` input-channel chunks."""
    knobs = None if chunks == "auto" else {"chunks": min(chunks, spec.in_channels)}
    lib, args, _ = compiled_kernel(conv_layer(spec, weight), "csr", target, knobs)
    return lib.mod.time_evaluator("main", tvm.cpu(), number=3, repeat=1), args


def main() -> int:
    target = targets.parse("llvm")
    variants = ["auto", 1, 2, 4, 8, 16]
    rows = []
    for name, (cin, cout, k, hw) in LAYERS.items():
        spec = Conv2dSpec(1, cin, hw, hw, cout, (k, k), padding=(k // 2,) * 4)
        w = np.random.default_rng(1).standard_normal((cout, cin, k, k)).astype("float32")
        w *= sparse.magnitude_mask(w, 0.9)
        built = {v: _build(spec, w, target, v) for v in variants}
        med = interleaved({v: lambda ev=ev, args=args: ev(*args).mean for v, (ev, args) in built.items()}, 7,
                          self_timed=True)
        print(f"... {name}", file=sys.stderr, flush=True)
        rows.append([name, x86_rules.sparse_conv_chunks(spec, 1)] + [f"{med[v] * 1e3:.3f}" for v in variants])
    print(markdown_table(["layer", "auto chunks"] + [f"{v} ms" for v in variants], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
