"""``fscnn-tvm tune``: MetaSchedule jobs over a model's kernels, records on disk, compile from them.

**Tasks.** After the per-layer plan, every distinct kernel (layers of one shape share one) is a
*base task*. Its search space is our own hand schedule with sampled knobs, the AutoTVM-template
idea in MetaSchedule form:

- dense conv (``oc_blocked``): the register tile's output columns are sampled inside the schedule
  (``schedules/x86/conv2d.space``); MetaSchedule's evolutionary search with the XGBoost cost model
  picks what to measure, for each output-channel block (1, 2, 4 vectors: a compute-level knob, so
  each is its own workload);
- CSR/BSR conv: its knobs (register tile in vectors, input-channel chunks, aligned layout) shape
  the compute and the weight arrays, so each configuration is its own workload (a *variant* of the
  base task), measured with the hand schedule and committed to the same database as a record.
  Knobs are tuned one after another, a handful of values each (``_sparse_stages``): ~10
  measurements per kernel. (The performance model cannot rank them: it counts instructions and
  traffic, not the register spills and cache fit these knobs trade.)

Linear layers and grouped convs keep their hand schedules: they have no knob worth a trial.
Measuring is cheap by design: builds run in this process, one runner pool serves the whole job,
and each batch of candidates is built and run in one call.

**Records.** ``tuning_logs/<target-tag>/<model>/``: MetaSchedule's JSONDatabase
(``database_workload.json``, ``database_tuning_record.json``: one line per record, appended as it
is measured, so a killed job keeps every finished record) and ``meta.json`` (written atomically:
TVM version, full target, trials, date, host CPU, and per base task the hand schedule's latency,
the best record's, the configuration, whether the record is used, and every time measured). A
rerun skips finished tasks and only measures what is missing. A truncated last line (a kill
during a write) is dropped with a warning. When every task is done the database is compacted to
the records compile uses (``_compact``).

**Applying.** ``compile(..., tuning_log=DIR)``: per kernel, the tuned configuration and record if
``meta.json`` says it measured faster than the hand schedule (both measured by the same runner in
the same job), else the hand schedule (``schedules/__init__.py`` states the rule). A log for another
target is refused; one from another TVM version is ignored with a warning.

**Distributed.** With ``rpc_tracker="host:port"`` and ``rpc_key``, measurements run on the devices
registered with TVM's RPC tracker (MetaSchedule's ``RPCRunner``); builds stay local.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tqdm import tqdm

from . import __version__, kernels, perf_model, targets
from .errors import TuningLogError, TuningLogWarning

log = logging.getLogger("fscnn_tvm")

META_NAME = "meta.json"
META_FORMAT = 1
DEFAULT_TRIALS = 8  # per base task
MARGIN = 0.97  # a record is used only if it measured at least 3% faster than the hand schedule


@dataclass
class Task:
    """One workload to measure: a kernel (base task) or a configuration of it (variant)."""

    name: str
    base: str  # the base task's name (equal to name for the base configuration)
    config: dict  # compute-level knobs (kernels.build_kernel's ``knobs``)
    kernel: kernels.Kernel
    func: tvm.tirx.PrimFunc  # what MetaSchedule schedules (hand-scheduled already for variants)
    space: str  # "ow_tile" (sampled in the schedule) | "fixed" (the hand schedule)
    trials: int
    layer: object  # the first layer with this kernel (passes.Layer)
    kind: str  # the plan's kernel kind
    layers: list[str] = field(default_factory=list)  # every layer with this kernel


def task_name(kernel: kernels.Kernel) -> str:
    """A stable name for a kernel: its symbol and a digest of its key (shape, knobs, epilogue)."""
    return f"{kernel.symbol}_{hashlib.sha1(repr(kernel.key).encode()).hexdigest()[:10]}"


def model_tag(model) -> str:
    """Folder name for a model: the zoo spec, a file's stem, or the module's class name."""
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        name = Path(text).stem if os.path.exists(text) else text
    else:
        name = type(model).__name__.lower()
    return "".join(c if c.isalnum() or c in "@._-" else "_" for c in name)


def default_log_dir(model, target) -> Path:
    return perf_model.tuning_logs_root() / targets.tag(targets.parse(target)) / model_tag(model)


# ---------------------------------------------------------------- tasks

def _sparse_stages(layout, lanes: int) -> list[dict[str, list[int]]]:
    """The sparse conv's knobs and the values to measure, in stages; a stage measures every
    combination of its knobs' values, the other knobs at their best so far: the register tile (in
    vectors; the hand rule assumes 32 vector registers, AVX2 has 16), then the input-channel
    chunks, then the aligned layout (CSR with kw > 1 only). A handful of values each: the
    performance model counts instructions and traffic, not register spills or cache fit. (Tile and
    chunks measured jointly found the same on ResNet-50@0.9 for 1.6x the measurements.)"""
    spec = layout.spec
    hand_tv = layout.tile // lanes
    if layout.block_rows > 1:
        tiles = list(range(1, max(hand_tv, 3) + 1))
    else:
        tiles = sorted({hand_tv, 4, 6, 8, 10, 12})
    chunks = sorted({c for c in (layout.chunks // 2, layout.chunks, layout.chunks * 2, 2 if layout.chunks == 1 else 0)
                     if 1 <= c <= spec.in_channels})
    stages = [{"tile_vectors": tiles}, {"chunks": chunks}]
    if layout.block_rows == 1 and spec.kernel[1] > 1:
        stages.append({"align": sorted({1, lanes})})
    return stages


def _variant(base: Task, config: dict, target, trials: int = 1) -> Task:
    """``base``'s kernel built with ``config``: a sparse conv's is a fixed, hand-scheduled
    workload; a dense conv's is searched by MetaSchedule (``trials``)."""
    from .schedules import schedule_func  # noqa: PLC0415
    from .schedules.x86 import conv2d as x86_conv  # noqa: PLC0415

    if not config:
        return base
    kernel = kernels.build_kernel(base.layer, base.kind, target, config)
    name = base.name + "".join(f"_{k}{v}" for k, v in sorted(config.items()))
    if base.space == "ow_tile":
        n = min(trials, len(x86_conv.ow_tile_candidates(kernel.func)))
        return Task(name, base.name, dict(config), kernel, kernel.func, "ow_tile", n, base.layer, base.kind,
                    base.layers)
    return Task(name, base.name, dict(config), kernel, schedule_func(kernel.func, target), "fixed", 1,
                base.layer, base.kind, base.layers)


def _oc_block_options(base: Task, lanes: int) -> list[int]:
    """Output-channel blocks to search a dense conv with, besides the rule's: 1, 2 or 4 vectors
    (fewer output columns per register tile as the block grows)."""
    from .ops.conv2d import oc_vectorizable  # noqa: PLC0415

    spec = kernels.conv_spec(base.layer)
    hand = int(base.kernel.func.attrs["fscnn.oc_block"])
    return [b for b in (lanes, 2 * lanes, 4 * lanes)
            if b != hand and b <= max(lanes, spec.out_channels) and oc_vectorizable(spec, b)]


def extract_tasks(layers: list, plan: list, target: tvm.target.Target, trials: int = DEFAULT_TRIALS) -> list[Task]:
    """The base tasks of a planned model, one per distinct kernel (see the module docstring)."""
    from .schedules import schedule_func  # noqa: PLC0415 - heavy
    from .schedules.x86 import conv2d as x86_conv  # noqa: PLC0415

    if target.kind.name != "llvm":
        raise NotImplementedError(f"tune: target {target.kind.name!r} is not tunable yet; tune an llvm "
                                  "target (CUDA kernels keep their hand schedules)")
    tasks: dict[str, Task] = {}
    for layer, row in zip(layers, plan):
        kernel = kernels.build_kernel(layer, row.kernel, target)
        if kernel is None:
            continue
        name = task_name(kernel)
        if name in tasks:
            tasks[name].layers.append(layer.name)
            continue
        kind = kernel.func.attrs.get("fscnn.kernel")
        if kind == "conv2d_oc_blocked":
            n = min(trials, len(x86_conv.ow_tile_candidates(kernel.func)))
            tasks[name] = Task(name, name, {}, kernel, kernel.func, "ow_tile", n, layer, row.kernel, [layer.name])
        elif kind == "sparse_conv2d":
            tasks[name] = Task(name, name, {}, kernel, schedule_func(kernel.func, target), "fixed", 1,
                               layer, row.kernel, [layer.name])
    return list(tasks.values())


# ---------------------------------------------------------------- measuring
#
# One job has one runner (its worker pool starts once) and builds in this process: MetaSchedule's
# LocalBuilder starts two fresh worker pools per call (~3 s each, more than most measurements).
# The runner's workers get each candidate's arguments from files: arrays saved in the job's scratch
# folder, ``args/<signature>/``, the signature being the arguments' dtypes and shapes, all a
# runner is told about them. Sparse kernels need real CSR arrays there (random ones would read out
# of bounds); two kernels with one signature have one spec and layout, and share a set.

def _signature(pairs) -> str:
    """Digest of (dtype, shape) pairs: how saved argument sets are found."""
    text = ";".join(f"{dtype}:{'x'.join(str(int(d)) for d in shape)}" for dtype, shape in pairs)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _arguments(task: Task) -> list[np.ndarray]:
    """The task's call arguments: input, the kernel's constants, residual, output."""
    in_shape, out_shape, has_residual = task.layer.in_shape, task.layer.out_shape, task.layer.residual is not None
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(in_shape).astype("float32"), *task.kernel.constants]
    if has_residual:
        arrays.append(rng.standard_normal(out_shape).astype("float32"))
    arrays.append(np.zeros(out_shape, "float32"))
    return [np.ascontiguousarray(a) for a in arrays]


def _save_arguments(task: Task, root: Path) -> list:
    """Save the task's arguments (once per signature); returns their MetaSchedule descriptions."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    arrays = _arguments(task)
    out = root / "args" / _signature((str(a.dtype), a.shape) for a in arrays)
    if not (out / "done").exists():
        out.mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(arrays):
            np.save(out / f"{i}.npy", a)
        (out / "done").write_text(str(len(arrays)))
    return [ms.arg_info.TensorInfo(str(a.dtype), list(a.shape)) for a in arrays]


def alloc_saved_arguments(root: str, device, args_info, alloc_repeat: int):
    """MetaSchedule ``f_alloc_argument`` (local runner): the saved arrays of ``args_info``'s
    signature, on ``device``."""
    folder = Path(root) / "args" / _signature((info[1], info[2]) for info in args_info)
    if not (folder / "done").exists():
        raise RuntimeError(f"{folder}: no saved arguments for this workload")
    count = int((folder / "done").read_text())
    arrays = [np.load(folder / f"{i}.npy") for i in range(count)]
    return [[tvm.runtime.tensor(a, device) for a in arrays] for _ in range(alloc_repeat)]


def alloc_saved_arguments_rpc(root: str, session, device, args_info, alloc_repeat: int):
    """MetaSchedule ``f_alloc_argument`` (RPC runner): the same arrays, sent to the remote device."""
    return alloc_saved_arguments(root, device, args_info, alloc_repeat)


def _builder():
    """A MetaSchedule builder that builds in this process (see above)."""
    from tvm.ir.utils import derived_object  # noqa: PLC0415
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415
    from tvm.support.tar import tar  # noqa: PLC0415

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for item in build_inputs:
                try:
                    lib = tvm.compile(item.mod, target=item.target)
                    path = os.path.join(tempfile.mkdtemp(prefix="fscnn-tune-"), "kernel." + tar.output_format)
                    lib.export_library(path, fcompile=tar)
                    results.append(ms.builder.BuilderResult(path, None))
                except Exception as err:  # noqa: BLE001 - a candidate that fails to build is skipped
                    results.append(ms.builder.BuilderResult(None, f"{type(err).__name__}: {err}"))
            return results

    return InProcessBuilder()


def _runner(root: Path, rpc: tuple | None):
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    config = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=20, enable_cpu_cache_flush=False)
    if rpc is None:
        return ms.runner.LocalRunner(evaluator_config=config,
                                     f_alloc_argument=functools.partial(alloc_saved_arguments, str(root)))
    host, port, key = rpc
    return ms.runner.RPCRunner(ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                                                   session_timeout_sec=60),
                               evaluator_config=config, max_workers=1,
                               f_alloc_argument=functools.partial(alloc_saved_arguments_rpc, str(root)))


def _measure(candidates: list[tuple], target, runner, builder) -> list[float]:
    """Seconds of each (scheduled PrimFunc, argument infos), built here and run by ``runner``
    (inf when one fails to build or run)."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    built = builder.build([ms.builder.BuilderInput(tvm.IRModule({"main": f}), target) for f, _ in candidates])
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


# ---------------------------------------------------------------- the database

def _repair_json_lines(path: Path) -> int:
    """Drop lines that do not parse (a write cut short by a kill); returns how many."""
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    good = []
    for line in lines:
        try:
            json.loads(line)
            good.append(line)
        except json.JSONDecodeError:
            continue
    dropped = len(lines) - len(good)
    if dropped:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in good))
        os.replace(tmp, path)
    return dropped


def open_database(folder: Path):
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("database_workload.json", "database_tuning_record.json"):
        dropped = _repair_json_lines(folder / name)
        if dropped:
            warnings.warn(f"{folder / name}: dropped {dropped} unreadable line(s) (a write cut short)",
                          TuningLogWarning, stacklevel=2)
    return ms.database.JSONDatabase(work_dir=str(folder), module_equality="structural")


def _records(db, func: tvm.tirx.PrimFunc, target) -> list:
    """Every record of ``func``'s workload. (Filtered by hand: ``get_top_k`` of this TVM returned
    nothing for workloads that held records.)"""
    mod = tvm.IRModule({"main": func})
    if not db.has_workload(mod):
        return []
    workload = db.commit_workload(mod)
    return [r for r in db.get_all_tuning_records() if r.workload.same_as(workload)]


def read_meta(folder: Path) -> dict:
    path = folder / META_NAME
    if not path.exists():
        raise TuningLogError(f"{folder}: no {META_NAME}; not a tuning log (run `fscnn-tvm tune` first)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TuningLogError(f"{path}: corrupt ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT or not isinstance(meta.get("tasks"), dict):
        raise TuningLogError(f"{path}: not a tuning log of format {META_FORMAT}")
    return meta


def _write_meta(folder: Path, meta: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared log unreadable to others
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, folder / META_NAME)


def _check_meta(folder: Path, meta: dict, target) -> bool:
    """Refuse a log of another target; warn about (and ignore) one of another TVM version."""
    tag = targets.tag(target)
    if meta.get("target") != tag:
        raise TuningLogError(f"{folder}: tuning log is for target {meta.get('target')}, not {tag}")
    if meta.get("tvm") != tvm.__version__:
        warnings.warn(f"{folder}: tuning log made with TVM {meta.get('tvm')}, this is {tvm.__version__}; "
                      "ignoring it (hand schedules are used)", TuningLogWarning, stacklevel=3)
        return False
    return True


# ---------------------------------------------------------------- tuning

@dataclass
class TuneReport:
    log_dir: str
    tasks: dict  # base task -> entry of meta.json
    seconds: float

    def format(self) -> str:
        lines = [f"{'task':44} {'layers':>6} {'hand ms':>9} {'tuned ms':>9} {'speedup':>8}  config"]
        for name, e in sorted(self.tasks.items()):
            lines.append(f"{name:44} {len(e['layers']):6d} {e['hand_ms']:9.3f} {e['tuned_ms']:9.3f} "
                         f"{e['hand_ms'] / e['tuned_ms']:7.2f}x  {json.dumps(e['config'])}")
        lines.append(f"tuned {len(self.tasks)} tasks in {self.seconds:.0f} s; records in {self.log_dir}")
        return "\n".join(lines)


@contextlib.contextmanager
def _plain_text_statistics():
    """MetaSchedule prints its statistics as a pandas table when it runs in a Jupyter kernel
    (and fails without pandas); our progress and report say what matters, so it logs text."""
    name = "s_tir.meta_schedule.using_ipython"
    original = tvm.get_global_func(name)
    tvm.register_global_func(name, lambda: False, override=True)
    try:
        yield
    finally:
        tvm.register_global_func(name, original, override=True)


@contextlib.contextmanager
def _no_tensor_intrinsics():
    """``ms.TuneContext`` imports ``tvm.s_tir.tensor_intrin``, which parses ~250 TVMScript
    intrinsics (30-80 s here: the parser walks ``inspect.stack()`` and every frame scans
    ``sys.modules``). Our spaces tensorize nothing, so a placeholder stands in for it while the
    context is made (and is taken away after, so a real import later still works)."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        sys.modules.pop(name, None)


def _seconds(record) -> float:
    """A record's mean run time in seconds (inf without runs)."""
    return float(np.mean([float(x) for x in record.run_secs])) if record.run_secs else float("inf")


def _record_seconds(db, task: Task, target) -> float:
    """The task's best measured seconds in the database (inf without a record)."""
    best = _best_record(db, task.func, target)
    return _seconds(best) if best is not None else float("inf")


def _measure_fixed(group: list[Task], db, target, runner, builder, scratch: Path) -> None:
    """Measure the fixed workloads of ``group`` that have no record yet, in one batch, and commit
    each time as a MetaSchedule record (its trace: the hand schedule of that configuration)."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    from .schedules import fresh_copy  # noqa: PLC0415

    todo = [t for t in group if not _records(db, t.func, target)]
    if not todo:
        return
    infos = [_save_arguments(t, scratch) for t in todo]
    for task, info, seconds in zip(todo, infos, _measure(list(zip((t.func for t in todo), infos)),
                                                         target, runner, builder)):
        if seconds < float("inf"):
            workload = db.commit_workload(tvm.IRModule({"main": task.func}))
            trace = tvm.s_tir.Schedule(fresh_copy(task.func)).trace
            db.commit_tuning_record(ms.database.TuningRecord(trace, workload, [seconds], target, info))


def _search(task: Task, db, target, runner, builder, work_dir: str, scratch: Path) -> None:
    """MetaSchedule's evolutionary search (XGBoost cost model) over the task's sampled knob until
    it has ``task.trials`` records (a resumed job measures only what is missing)."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    from .schedules import fresh_copy  # noqa: PLC0415
    from .schedules.x86 import conv2d as x86_conv  # noqa: PLC0415

    remaining = task.trials - len(_records(db, task.func, target))
    if remaining <= 0:
        return
    _save_arguments(task, scratch)  # what the runner's workers call the candidates with
    with _no_tensor_intrinsics():
        context = ms.TuneContext(
            mod=tvm.IRModule({"main": fresh_copy(task.func)}), target=target,
            space_generator=ms.space_generator.ScheduleFn(x86_conv.space, sch_rules=[], postprocs=[],
                                                          mutator_probs={}),
            search_strategy=ms.search_strategy.EvolutionarySearch(population_size=max(8, task.trials),
                                                                  init_measured_ratio=0.0, genetic_num_iters=1),
            task_name=task.name, num_threads=1)
    with _plain_text_statistics():
        ms.tune_tasks(tasks=[context], task_weights=[1.0], work_dir=work_dir, max_trials_global=remaining,
                      max_trials_per_task=remaining, num_trials_per_iter=remaining,
                      builder=builder, runner=runner, database=db,
                      cost_model=ms.cost_model.XGBModel(num_tuning_cores=1), measure_callbacks="default",
                      task_scheduler="round-robin")


def _tune_sparse(base: Task, db, target, runner, builder, scratch: Path, progress) -> list[Task]:
    """Tune a sparse conv's knobs stage by stage (``_sparse_stages``); returns every configuration
    measured, the hand one first."""
    lanes = targets.vector_lanes(target)
    layout = kernels.sparse_conv_layout(kernels.conv_spec(base.layer), kernels.block_rows_of(base.kind), lanes)
    hand = {"tile_vectors": layout.tile // lanes, "chunks": layout.chunks, "align": layout.align}
    seen = {base.name: base}
    best: dict = {}
    for stage in _sparse_stages(layout, lanes):
        group = []
        for values in itertools.product(*stage.values()):
            config = {k: v for k, v in {**best, **dict(zip(stage, values))}.items() if v != hand[k]}
            task = _variant(base, config, target)
            group.append(seen.setdefault(task.name, task))
        _measure_fixed(group, db, target, runner, builder, scratch)
        winner = min(group, key=lambda t: _record_seconds(db, t, target))
        best = dict(winner.config)
        progress(f"{'+'.join(stage)}: best {json.dumps(best) if best else 'hand'} "
                 f"{_record_seconds(db, winner, target) * 1e3:.3f} ms")
    return list(seen.values())


def _best_func(db, task: Task, target) -> tvm.tirx.PrimFunc | None:
    """The scheduled PrimFunc of the task's best record (``None`` without one)."""
    best = _best_record(db, task.func, target)
    if best is None:
        return None
    return task.func if task.space == "fixed" else _replay(task.func, best)


def _best_record(db, func: tvm.tirx.PrimFunc, target):
    """The fastest record of ``func``'s workload (``None`` without one)."""
    return min((r for r in _records(db, func, target) if r.run_secs), key=_seconds, default=None)


def _replay(func: tvm.tirx.PrimFunc, record) -> tvm.tirx.PrimFunc | None:
    """``func`` scheduled by ``record``'s trace."""
    from .schedules import fresh_copy  # noqa: PLC0415

    if record is None:
        return None
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": fresh_copy(func)}))
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def tune(model, input_shape=None, target="llvm", trials: int = DEFAULT_TRIALS, log_dir=None,
         sparse: str = "auto", profile=None, rpc_tracker: str | None = None, rpc_key: str | None = None,
         progress: bool = False) -> TuneReport:
    """Tune ``model``'s kernels for ``target`` and write the records (see the module docstring).

    ``trials``: MetaSchedule trials per dense-conv task (sparse convs measure a fixed handful of
    configurations). ``log_dir``: default ``tuning_logs/<target-tag>/<model>/``. ``sparse`` and
    ``profile`` must be those the model will be compiled with (they make the plan, hence the tasks).
    """
    from . import frontend, passes  # noqa: PLC0415
    from .plan import make_plan  # noqa: PLC0415

    start = time.perf_counter()
    tgt = targets.parse(target)
    if trials < 1:
        raise ValueError(f"tune: trials must be >= 1, got {trials}")
    rpc = _parse_rpc(rpc_tracker, rpc_key)
    if not isinstance(profile, perf_model.Profile):
        profile = perf_model.load_profile(tgt, profile)
    folder = Path(log_dir) if log_dir is not None else default_log_dir(model, tgt)
    folder.mkdir(parents=True, exist_ok=True)
    meta = _start_meta(folder, tgt, trials, model)
    meta["runner"] = "local" if rpc is None else f"rpc {rpc[2]}@{rpc[0]}:{rpc[1]}"
    imported = frontend.import_model(model, input_shape)
    layers = passes.find_layers(imported.mod, imported.layer_names)
    tasks = extract_tasks(layers, make_plan(layers, sparse, profile), tgt, trials)
    db = open_database(folder)
    bar = tqdm(tasks, desc="tune", unit="task", file=sys.stderr, disable=not progress)
    # argument arrays and MetaSchedule's own files live in a scratch folder, not with the records
    with tempfile.TemporaryDirectory(prefix="fscnn-tune-") as work_dir:
        scratch = Path(work_dir)
        runner, builder = _runner(scratch, rpc), _builder()
        for base in bar:
            if meta["tasks"].get(base.name, {}).get("done"):
                continue
            label = f"{base.layers[0]} ({base.kind})"
            bar.set_postfix_str(label)
            if base.space == "fixed":
                group = _tune_sparse(base, db, tgt, runner, builder, scratch,
                                     lambda text, label=label: bar.set_postfix_str(f"{label} {text}"))
            else:  # every output-channel block, its register tile searched by MetaSchedule
                lanes = targets.vector_lanes(tgt)
                group = [base] + [_variant(base, {"oc_block": b}, tgt, trials) for b in _oc_block_options(base, lanes)]
                for task in group:
                    _search(task, db, tgt, runner, builder, work_dir, scratch)
            entry = _decide(group, db, tgt, scratch, runner, builder)
            meta["tasks"][base.name] = entry
            _write_meta(folder, meta)
            bar.set_postfix_str(f"{label} hand {entry['hand_ms']:.3f} ms, tuned {entry['tuned_ms']:.3f} ms")
            log.info("%s %s: hand %.3f ms, best record %.3f ms (%s)%s", base.name, label, entry["hand_ms"],
                     entry["best_ms"], json.dumps(entry["config"]), "" if entry["use_record"] else "; hand kept")
    if all(meta["tasks"].get(t.name, {}).get("done") for t in tasks):
        used = [_variant(t, meta["tasks"][t.name]["config"], tgt, trials) for t in tasks
                if meta["tasks"][t.name]["use_record"]]
        _compact(folder, db, [t.func for t in used], tgt)
        meta["compacted"] = True
    meta["seconds"] = round(meta.get("seconds", 0) + time.perf_counter() - start, 1)
    _write_meta(folder, meta)
    return TuneReport(str(folder), meta["tasks"], time.perf_counter() - start)


def _compact(folder: Path, db, keep: list, target) -> None:
    """Once every task is done: keep in the database only the best record of each configuration
    that compile will use (every measurement is in ``meta.json``'s ``measured`` lists). A
    workload is the whole IRModule as JSON (~0.1 MB), and a job measures ~10 per sparse kernel:
    ResNet-50's full database is ~30 MB, its compacted one ~2 MB."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        small = ms.database.JSONDatabase(work_dir=tmp, module_equality="structural")
        for func in keep:
            best = _best_record(db, func, target)
            if best is not None:
                workload = small.commit_workload(tvm.IRModule({"main": func}))
                small.commit_tuning_record(ms.database.TuningRecord(best.trace, workload, list(best.run_secs),
                                                                    best.target, best.args_info))
        for name in ("database_tuning_record.json", "database_workload.json"):
            os.replace(Path(tmp) / name, folder / name)


def _parse_rpc(tracker: str | None, key: str | None):
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


def _start_meta(folder: Path, target, trials: int, model) -> dict:
    if (folder / META_NAME).exists():
        meta = read_meta(folder)
        if not _check_meta(folder, meta, target):
            raise TuningLogError(f"{folder}: holds records of TVM {meta.get('tvm')}; tune into another "
                                 "--log-dir (or delete it) to start over")
        return meta
    from .perf_model import host_cpu  # noqa: PLC0415

    meta = {"format": META_FORMAT, "fscnn_tvm": __version__, "tvm": tvm.__version__,
            "target": targets.tag(target), "target_full": targets.describe(target), "trials": trials,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host_cpu": host_cpu(),
            "model": model_tag(model), "tasks": {}}
    _write_meta(folder, meta)
    return meta


def _decide(group: list[Task], db, target, scratch: Path, runner, builder) -> dict:
    """Measure the hand schedule and the best record side by side (one runner, one call); the
    record is used only if it measured faster by ``MARGIN``."""
    from .schedules import schedule_func  # noqa: PLC0415

    base = group[0]
    measured = [t for t in group if _record_seconds(db, t, target) < float("inf")]
    best_task = min(measured, key=lambda t: _record_seconds(db, t, target), default=None)
    best_func = _best_func(db, best_task, target) if best_task is not None else None
    candidates = [(schedule_func(base.kernel.func, target), _save_arguments(base, scratch))]
    if best_func is not None:
        candidates.append((best_func, _save_arguments(best_task, scratch)))
    times = _measure(candidates, target, runner, builder) + [float("inf")]
    hand, best = times[0], times[1]
    use = best < MARGIN * hand
    measured_ms = [{"config": t.config, "ms": [round(_seconds(r) * 1e3, 5) for r in _records(db, t.func, target)
                                           if r.run_secs]} for t in group]
    return {"layers": base.layers, "kind": base.kind, "trials": sum(len(m["ms"]) for m in measured_ms),
            "measured": measured_ms,
            "scheduled_workload": base.space == "fixed",
            "hand_ms": hand * 1e3, "best_ms": best * 1e3, "tuned_ms": min(hand, best) * 1e3 if use else hand * 1e3,
            "use_record": bool(use), "config": best_task.config if use else {},
            "record_task": best_task.name if use else None, "done": True}


# ---------------------------------------------------------------- applying records

class TunedSchedules:
    """What ``compile(..., tuning_log=DIR)`` applies: per kernel, config and scheduled PrimFunc."""

    def __init__(self, folder, target):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise TuningLogError(f"{self.folder}: no such tuning log folder")
        self.meta = read_meta(self.folder)
        self.target = target
        self.active = _check_meta(self.folder, self.meta, target)
        self.db = open_database(self.folder) if self.active else None
        self.applied = 0

    def config(self, kernel: kernels.Kernel) -> dict | None:
        """The tuned compute-level knobs for ``kernel`` (``None``: keep the hand choices)."""
        if not self.active:
            return None
        entry = self.meta["tasks"].get(task_name(kernel))
        return dict(entry["config"]) if entry and entry.get("use_record") else None

    def schedule(self, base: kernels.Kernel, kernel: kernels.Kernel) -> tvm.tirx.PrimFunc | None:
        """The record's scheduled PrimFunc for ``kernel`` (a configuration of ``base``), if used."""
        if not self.active:
            return None
        entry = self.meta["tasks"].get(task_name(base))
        if not entry or not entry.get("use_record"):
            return None
        from .schedules import schedule_func  # noqa: PLC0415

        self.applied += 1
        if entry.get("scheduled_workload"):  # a configuration measured with the hand schedule
            return schedule_func(kernel.func, self.target)
        best = _best_record(self.db, kernel.func, self.target)
        if best is None:
            self.applied -= 1
            warnings.warn(f"{self.folder}: no record for {entry['record_task']} although meta.json "
                          "says so; using the hand schedule", TuningLogWarning, stacklevel=2)
            return None
        return _replay(kernel.func, best)
