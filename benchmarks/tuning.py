"""Tuned against untuned, end to end: each model compiled with the hand schedules and with its
committed tuning log (``tuning_logs/<target-tag>/<model>/``), timed side by side with PyTorch.

    TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/tuning.py

Rounds are interleaved (untuned, tuned, torch, ...); medians and ratios of medians. Both
compiled models are checked against PyTorch first. The tuning wall time is the job's own
(``meta.json``); ``--retune`` tunes again into a temporary folder and times that instead.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

from fscnn_tvm.testing import markdown_table


def bench(spec: str, shape, rounds: int, retune: bool) -> dict:
    import torch  # noqa: PLC0415

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm import models, targets, tuning  # noqa: PLC0415
    from fscnn_tvm.testing import interleaved, random_input, relative_error  # noqa: PLC0415
    from fscnn_tvm.tuning.records import META_NAME  # noqa: PLC0415

    target = targets.parse("llvm")
    folder = tuning.default_log_dir(spec, target)
    if retune:
        folder = Path(tempfile.mkdtemp()) / spec
    if retune or not (folder / META_NAME).exists():
        start = time.perf_counter()
        fscnn_tvm.tune(spec, shape, log_dir=folder, progress=True)
        tune_s = time.perf_counter() - start
    else:
        tune_s = json.loads((folder / META_NAME).read_text())["seconds"]
    meta = json.loads((folder / META_NAME).read_text())
    model = models.from_spec(spec)
    untuned = fscnn_tvm.compile(model, input_shape=shape)
    tuned = fscnn_tvm.compile(model, input_shape=shape, tuning_log=folder)
    x = random_input(shape)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref = model(xt).numpy()
    errs = [relative_error(m(x), ref) for m in (untuned, tuned)]
    runners = {"untuned": lambda: untuned(x), "tuned": lambda: tuned(x), "torch": lambda: model(xt)}
    with torch.no_grad():
        med = {k: t * 1e3 for k, t in interleaved(runners, rounds).items()}
    used = sum(1 for e in meta["tasks"].values() if e["use_record"])
    return {"model": spec, "tasks": len(meta["tasks"]), "used": used, "tune_s": tune_s, "err": max(errs), **med}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16@0.9,resnet50@0.9")
    parser.add_argument("--input-shape", default="1,3,224,224")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--retune", action="store_true", help="tune again (temporary folder) and time it")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    shape = tuple(int(d) for d in args.input_shape.split(","))
    rows = [bench(m, shape, args.rounds, args.retune) for m in args.models.split(",")]
    print(f"\n1 thread, median of {args.rounds} interleaved rounds, input {shape}\n")
    print(markdown_table(
        ["model", "tasks (record used)", "tuning wall s", "untuned ms", "tuned ms", "tuned speedup", "torch ms",
         "tuned vs torch", "max rel err"],
        [[r["model"], f"{r['tasks']} ({r['used']})", f"{r['tune_s']:.0f}", f"{r['untuned']:.2f}", f"{r['tuned']:.2f}",
          f"{r['untuned'] / r['tuned']:.2f}x", f"{r['torch']:.2f}", f"{r['torch'] / r['tuned']:.2f}x",
          f"{r['err']:.1e}"] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
