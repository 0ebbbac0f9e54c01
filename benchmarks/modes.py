"""``sparse="auto"`` against ``"always"`` and ``"never"``, end to end, and the predicted total.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/modes.py \\
        --models vgg16,resnet50,alexnet,mobilenet_v2,resnet18 --sparsity 0,0.5,0.75,0.9

Per model and sparsity the three plans are compiled, each checked against PyTorch, and timed in
interleaved rounds. ``auto / best`` is auto's time over the faster of always and never (1.00:
auto found the better plan; the target is <= 1.03). ``predicted`` is the auto plan's total of
the performance model's per-layer times, ``pred / meas`` that over auto's measured time (the
layers only: pools, adds that did not fuse and the like are not predicted).
"""
from __future__ import annotations

import argparse
import sys
import warnings

from fscnn_tvm.testing import markdown_table, zoo_specs

MODES = ("auto", "always", "never")


def bench(spec: str, shape, rounds: int) -> dict:
    import torch  # noqa: PLC0415

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import kinds, models  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, random_input, relative_error  # noqa: PLC0415

    model = models.from_spec(spec)
    x = random_input(shape)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    compiled = {m: fscnn_tvm.compile(model, input_shape=shape, sparse=m) for m in MODES}
    err = max(relative_error(c(x), ref) for c in compiled.values())
    med = interleaved({m: (lambda c=c: c(x)) for m, c in compiled.items()}, rounds)
    predicted = sum(r.predicted_ms.get(r.kernel, 0.0) for r in compiled["auto"].plan)
    sparse_layers = sum(kinds.is_sparse(r.kernel) for r in compiled["auto"].plan)
    return {"model": spec, "err": err, "predicted": predicted, "layers": len(compiled["auto"].plan),
            "sparse_layers": sparse_layers, **{m: t * 1e3 for m, t in med.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,resnet50,alexnet,mobilenet_v2,resnet18")
    parser.add_argument("--sparsity", default="0,0.5,0.75,0.9",
                        help="comma-separated sparsities (0 = unpruned; 0.9:8x1 = block-pruned)")
    parser.add_argument("--input-shape", default="1,3,224,224")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    shape = tuple(int(d) for d in args.input_shape.split(","))
    rows = []
    for spec in zoo_specs(args.models, args.sparsity):
        r = bench(spec, shape, args.rounds)
        best = min(r["always"], r["never"])
        rows.append([spec, f"{r['auto']:.2f}", f"{r['always']:.2f}", f"{r['never']:.2f}",
                     f"{r['auto'] / best:.3f}", f"{r['sparse_layers']}/{r['layers']}",
                     f"{r['predicted']:.2f}", f"{r['predicted'] / r['auto']:.2f}", f"{r['err']:.1e}"])
        print("| " + " | ".join(rows[-1]) + " |", file=sys.stderr, flush=True)
    print(f"\ninput {shape}, median of {args.rounds} interleaved rounds\n")
    print(markdown_table(["model", "auto ms", "always ms", "never ms", "auto / best", "sparse layers (auto)",
                          "predicted ms", "pred / meas", "max rel err"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
