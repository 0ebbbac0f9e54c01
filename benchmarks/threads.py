"""One runner called from several Python threads: calls per second with a VM per thread (what
``Runner`` does) against one shared VM behind a lock, and every output checked.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/threads.py

(Not pinned: the point is how calls from several threads share the machine's cores.)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path


def _rate(call, threads: int, calls: int) -> float:
    pool = [threading.Thread(target=lambda: [call() for _ in range(calls)]) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return threads * calls / (time.perf_counter() - start)


def main(argv=None) -> int:
    import numpy as np  # noqa: PLC0415
    import tvm  # noqa: PLC0415
    from tvm import relax  # noqa: PLC0415

    import fscnn_tvm  # noqa: PLC0415
    from fscnn_tvm.testing import markdown_table, random_input  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18@0.9")
    parser.add_argument("--input-shape", default="1,3,64,64")
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    shape = tuple(int(d) for d in args.input_shape.split(","))
    path = Path(tempfile.mkdtemp()) / "model.so"
    fscnn_tvm.compile(args.model, shape).export_library(path)
    runner = fscnn_tvm.load(path)
    x = random_input(shape)
    expected = runner(x)
    lib = tvm.runtime.load_module(str(path))
    vm, lock = relax.VirtualMachine(lib, tvm.cpu()), threading.Lock()
    tensor = tvm.runtime.tensor(x)

    def locked():
        with lock:
            return vm["main"](tensor)

    def checked():
        assert np.array_equal(runner(x), expected)

    rows = [[n, f"{_rate(checked, n, args.calls):.0f}", f"{_rate(locked, n, args.calls):.0f}"] for n in (1, 2, 4)]
    print(f"{args.model} {shape}, {args.calls} calls per thread\n")
    print(markdown_table(["threads", "VM per thread calls/s", "one VM + lock calls/s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
