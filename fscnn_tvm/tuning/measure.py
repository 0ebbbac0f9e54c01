"""Measuring candidates: built in this process, run by one runner (local or RPC) per job.

The runner's workers get each candidate's arguments from files: arrays saved in the job's scratch
folder, ``args/<signature>/``, the signature being the arguments' dtypes and shapes, all a runner
is told about them. Sparse kernels need real CSR arrays there (random ones would read out of
bounds); two kernels with one signature have one spec and layout, and share a set.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import tvm

from .. import targets
from ..tvm_compat import in_process_builder
from .tasks import Task

log = logging.getLogger("fscnn_tvm")

def signature(pairs) -> str:
    """Digest of (dtype, shape) pairs: how saved argument sets are found."""
    text = ";".join(f"{dtype}:{'x'.join(str(int(d)) for d in shape)}" for dtype, shape in pairs)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def arguments(task: Task) -> list[np.ndarray]:
    """The task's call arguments: input, the kernel's constants, residual, output."""
    (in_shape, out_shape), has_residual = task.kernel.shapes(task.layer), task.layer.residual is not None
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(in_shape).astype("float32"), *task.kernel.constants]
    if has_residual:
        arrays.append(rng.standard_normal(out_shape).astype("float32"))
    arrays.append(np.zeros(out_shape, "float32"))
    return [np.ascontiguousarray(a) for a in arrays]


def save_arguments(task: Task, root: Path) -> list:
    """Save the task's arguments (once per signature); returns their MetaSchedule descriptions."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    arrays = arguments(task)
    out = root / "args" / signature((str(a.dtype), a.shape) for a in arrays)
    if not (out / "done").exists():
        out.mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(arrays):
            np.save(out / f"{i}.npy", a)
        (out / "done").write_text(str(len(arrays)))
    return [ms.arg_info.TensorInfo(str(a.dtype), list(a.shape)) for a in arrays]


def alloc_savedarguments(root: str, device, args_info, alloc_repeat: int):
    """MetaSchedule ``f_alloc_argument`` (local runner): the saved arrays of ``args_info``'s
    signature, on ``device``."""
    folder = Path(root) / "args" / signature((info[1], info[2]) for info in args_info)
    if not (folder / "done").exists():
        raise RuntimeError(f"{folder}: no saved arguments for this workload")
    count = int((folder / "done").read_text())
    arrays = [np.load(folder / f"{i}.npy") for i in range(count)]
    return [[tvm.runtime.tensor(a, device) for a in arrays] for _ in range(alloc_repeat)]


def alloc_savedarguments_rpc(root: str, session, device, args_info, alloc_repeat: int):
    """MetaSchedule ``f_alloc_argument`` (RPC runner): the same arrays, sent to the remote device."""
    return alloc_savedarguments(root, device, args_info, alloc_repeat)


def make_runner(root: Path, rpc: tuple | None):
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    config = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=20, enable_cpu_cache_flush=False)
    if rpc is None:
        return ms.runner.LocalRunner(evaluator_config=config,
                                     f_alloc_argument=functools.partial(alloc_savedarguments, str(root)))
    host, port, key = rpc
    return ms.runner.RPCRunner(ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                                   session_timeout_sec=60),
                               evaluator_config=config, max_workers=1,
                               f_alloc_argument=functools.partial(alloc_savedarguments_rpc, str(root)))


def measure(candidates: list[tuple], target, runner, builder) -> list[float]:
    """Seconds of each (scheduled PrimFunc, argument infos), built here and run by ``runner``
    (inf when one fails to build or run)."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    mods = [tvm.IRModule({"main": f}) for f, _ in candidates]
    built = builder.build([ms.builder.BuilderInput(m, targets.codegen_target(target, m)) for m in mods])
    inputs, where = [], []
    device = "cuda" if target.kind.name == "cuda" else "cpu"
    for i, (b, (_, info)) in enumerate(zip(built, candidates)):
        if b.error_msg is None:
            inputs.append(ms.runner.RunnerInput(b.artifact_path, device, info))
            where.append(i)
        else:
            log.warning("tune: a candidate failed to build: %s", b.error_msg.strip().splitlines()[-1])
    times = [float("inf")] * len(candidates)
    for i, future in zip(where, runner.run(inputs)):
        result = future.result()
        if result.error_msg is None:
            times[i] = float(np.median([float(s) for s in result.run_secs]))
        else:
            log.warning("tune: a candidate failed to run: %s", result.error_msg.strip().splitlines()[-1])
    for b in built:
        if b.artifact_path:
            shutil.rmtree(os.path.dirname(b.artifact_path), ignore_errors=True)
    return times


def parse_rpc(tracker: str | None, key: str | None):
    if tracker is None:
        if key is not None:
            raise ValueError("tune: --rpc-key needs --rpc-tracker HOST:PORT")
        return None
    host, _, port = tracker.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"tune: --rpc-tracker must be HOST:PORT, got {tracker!r}")
    if not key:
        raise ValueError("tune: --rpc-tracker needs --rpc-key (the device key the servers registered)")
    return host, int(port), key




def builder():
    """The job's builder (``tvm_compat.in_process_builder``: MetaSchedule's own is too slow here)."""
    return in_process_builder()
