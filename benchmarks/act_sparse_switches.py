"""The layers calibration moves to the activation-sparse kernel, timed in the model run.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/act_sparse_switches.py resnet50+trained

The model is compiled without and with ``calibration_data=models.sample_inputs()`` and run on a
fifth image (not a calibration one). For every layer whose kernel changed: its in-model time in
each build (a Relax VM instrument, ``model_layers.our_times``; median of 3 x 3 runs) and both
predictions; then whole-model wall time, alternating calls and runs of 10 calls, interleaved.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a zoo spec, e.g. resnet50+trained")
    p.add_argument("--rounds", type=int, default=21)
    args = p.parse_args()

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import models  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, markdown_table, relative_error, torch_reference  # noqa: PLC0415
    from model_layers import our_times  # noqa: PLC0415

    model = models.from_spec(args.model).eval()
    x = models.sample_inputs(5)[4:5]
    without = fscnn_tvm.compile(model, x.shape)
    calibrated = fscnn_tvm.compile(model, x.shape, calibration_data=models.sample_inputs())
    ref = torch_reference(model, x)
    for m in (without, calibrated):
        assert relative_error(m(x), ref) <= 1e-4
    runs_a, runs_b = [], []
    for _ in range(3):
        runs_a.append(our_times(without, x, 3)[0])
        runs_b.append(our_times(calibrated, x, 3)[0])
    ta = dict(zip(without.call_order, np.median(runs_a, axis=0)))
    tb = dict(zip(calibrated.call_order, np.median(runs_b, axis=0)))
    rows, delta = [], 0.0
    for i, (ra, rb) in enumerate(zip(without.plan, calibrated.plan)):
        if ra.kernel == rb.kernel:
            continue
        delta += tb[i] - ta[i]
        rows.append([ra.name, f"{ra.kernel} -> {rb.kernel}", f"{rb.input_zeros:.2f}",
                     f"{ta[i] * 1e3:.3f} -> {tb[i] * 1e3:.3f}",
                     f"{ra.predicted_ms[ra.kernel]:.3f} -> {rb.predicted_ms[rb.kernel]:.3f}"])
    print(markdown_table(["layer", "kernel", "input zeros", "in-model ms", "predicted ms"], rows))
    print(f"switched layers: {delta * 1e3:+.2f} ms in the model run")

    def ten(m):
        start = time.perf_counter()
        for _ in range(10):
            m(x)
        return (time.perf_counter() - start) / 10

    one = interleaved({"without": lambda: without(x), "with": lambda: calibrated(x)}, args.rounds)
    tens = interleaved({"without": lambda: ten(without), "with": lambda: ten(calibrated)},
                       max(3, args.rounds // 3), self_timed=True)
    for label, med in (("alternating calls", one), ("runs of 10 calls", tens)):
        print(f"{label}: without {med['without'] * 1e3:.2f} ms, calibrated {med['with'] * 1e3:.2f} ms, "
              f"speedup {med['without'] / med['with']:.3f}")


if __name__ == "__main__":
    main()
