"""Models compiled with calibration data against the same models compiled without it.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/act_sparse_models.py \\
        --models vgg16+trained,resnet50+trained,vgg16@0.9+trained,resnet50@0.9+trained --rounds 7

``+trained`` zoo models carry the published zero fractions of the trained networks' layer inputs
(``models.trained_like``: synthetic, biases shifted on ``models.sample_inputs()``). Each model is
compiled twice (without, then with ``calibration_data=models.sample_inputs()``), both checked
against PyTorch on a fresh sample (other images than the calibration ones), and timed in
interleaved rounds on that sample. ``act layers`` counts the layers the calibrated plan runs on
the activation-sparse kernel; ``their ms`` is what those layers were predicted to take without
calibration and with it. ``--denser F`` also times both on that sample scaled by F (the shifted
biases then zero fewer pre-activations: denser maps than calibrated, where each activation-sparse
conv runs its fallback kernel), with the calibrated layers' input zeros measured on it.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from fscnn_tvm.testing import markdown_table


def bench(spec: str, shape, rounds: int, denser: float | None = None) -> dict:
    import torch  # noqa: PLC0415

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import kinds, models  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, relative_error  # noqa: PLC0415

    model = models.from_spec(spec)
    x = models.sample_inputs(1, shape, seed=7)  # not one of the calibration images
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    plain = fscnn_tvm.compile(model, input_shape=shape)
    calibrated = fscnn_tvm.compile(model, input_shape=shape, calibration_data=models.sample_inputs(4, shape))
    err = max(relative_error(c(x), ref) for c in (plain, calibrated))
    runs = {"plain": lambda: plain(x), "calibrated": lambda: calibrated(x)}
    dense_zeros = []
    if denser is not None:
        xd = (x * denser).astype(x.dtype)
        with torch.no_grad():
            ref_d = model(torch.from_numpy(xd)).numpy()
        err = max([err] + [relative_error(c(xd), ref_d) for c in (plain, calibrated)])
        runs.update({"plain denser": lambda: plain(xd), "calibrated denser": lambda: calibrated(xd)})
        from fscnn_tvm import input_zeros  # noqa: PLC0415

        dense_zeros = input_zeros.zero_fractions(plain, [xd], len(plain.plan))
    med = interleaved(runs, rounds)
    act = [i for i, r in enumerate(calibrated.plan) if r.kernel == kinds.ACT_SPARSE]
    before = sum(plain.plan[i].predicted_ms[plain.plan[i].kernel] for i in act)
    after = sum(calibrated.plan[i].predicted_ms[kinds.ACT_SPARSE] for i in act)
    zeros = [calibrated.plan[i].input_zeros for i in act]
    run_zeros = [dense_zeros[i][0] for i in act if dense_zeros and dense_zeros[i]] if dense_zeros else []
    return {"model": spec, "err": err, "act": len(act), "layers": len(calibrated.plan), "before": before,
            "after": after, "zeros": zeros, "denser_zeros": run_zeros, **{k: v * 1e3 for k, v in med.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16+trained,resnet50+trained")
    parser.add_argument("--input-shape", default="1,3,224,224")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--denser", type=float, default=None, help="also time on the sample scaled by this")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    shape = tuple(int(d) for d in args.input_shape.split(","))
    rows = []
    for spec in args.models.split(","):
        r = bench(spec, shape, args.rounds, args.denser)
        zeros = ", ".join(f"{z:.2f}" for z in r["zeros"]) or "-"
        rows.append([spec, f"{r['plain']:.2f}", f"{r['calibrated']:.2f}", f"{r['plain'] / r['calibrated']:.3f}",
                     f"{r['act']}/{r['layers']}", zeros, f"{r['before']:.2f} -> {r['after']:.2f}", f"{r['err']:.1e}"])
        if args.denser is not None:
            rows[-1] += [", ".join(f"{z:.2f}" for z in r["denser_zeros"]), f"{r['plain denser']:.2f}",
                         f"{r['calibrated denser']:.2f}", f"{r['plain denser'] / r['calibrated denser']:.3f}"]
        print("| " + " | ".join(rows[-1]) + " |", file=sys.stderr, flush=True)
    print(f"\ninput {shape}, median of {args.rounds} interleaved rounds\n")
    heads = ["model", "without ms", "calibrated ms", "speedup", "act layers", "their input zeros",
             "their predicted ms", "max rel err"]
    if args.denser is not None:
        heads += [f"x{args.denser:g}: their input zeros", "without ms", "calibrated ms", "speedup"]
    print(markdown_table(heads, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
