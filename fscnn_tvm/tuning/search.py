"""Searching: MetaSchedule's evolutionary search for dense convs, staged knob sweeps for sparse
convs, and the decision whether a kernel's best record beats its hand schedule."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import tvm

from .. import targets
from ..tvm_compat import fresh_copy, no_tensor_intrinsics, plain_text_statistics, records_of
from .measure import measure, save_arguments
from .records import best_func, record_seconds, seconds
from .tasks import Task, knob_stages, variant

MARGIN = 0.97  # a record is used only if it measured at least 3% faster than the hand schedule


def measure_fixed(group: list[Task], db, target, runner, builder, scratch: Path) -> None:
    """Measure the fixed workloads of ``group`` that have no record yet, in one batch, and commit
    each time as a MetaSchedule record (its trace: the hand schedule of that configuration)."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    todo = [t for t in group if not records_of(db, t.func)]
    if not todo:
        return
    infos = [save_arguments(t, scratch) for t in todo]
    times = measure(list(zip((t.func for t in todo), infos)), target, runner, builder)
    for task, info, secs in zip(todo, infos, times):
        if secs < float("inf"):
            workload = db.commit_workload(tvm.IRModule({"main": task.func}))
            trace = tvm.s_tir.Schedule(fresh_copy(task.func)).trace
            db.commit_tuning_record(ms.database.TuningRecord(trace, workload, [secs], target, info))


def search(task: Task, db, target, runner, builder, work_dir: str, scratch: Path) -> None:
    """MetaSchedule's evolutionary search (XGBoost cost model) over the task's sampled knob until
    it has ``task.trials`` records (a resumed job measures only what is missing)."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    from ..schedules.x86 import conv2d as x86_conv  # noqa: PLC0415

    remaining = task.trials - len(records_of(db, task.func))
    if remaining <= 0:
        return
    save_arguments(task, scratch)  # what the runner's workers call the candidates with
    with no_tensor_intrinsics():
        context = ms.TuneContext(
            mod=tvm.IRModule({"main": fresh_copy(task.func)}), target=target,
            space_generator=ms.space_generator.ScheduleFn(x86_conv.space, sch_rules=[], postprocs=[],
                                                          mutator_probs={}),
            search_strategy=ms.search_strategy.EvolutionarySearch(population_size=max(8, task.trials),
                                                                  init_measured_ratio=0.0, genetic_num_iters=1),
            task_name=task.name, num_threads=1)
    with plain_text_statistics():
        ms.tune_tasks(tasks=[context], task_weights=[1.0], work_dir=work_dir, max_trials_global=remaining,
                      max_trials_per_task=remaining, num_trials_per_iter=remaining,
                      builder=builder, runner=runner, database=db,
                      cost_model=ms.cost_model.XGBModel(num_tuning_cores=1), measure_callbacks="default",
                      task_scheduler="round-robin")


def tune_knobs(base: Task, db, target, runner, builder, scratch: Path, progress) -> list[Task]:
    """Tune a fixed-workload kernel's knobs (sparse conv, Winograd) stage by stage
    (``tasks.knob_stages``); returns every configuration measured, the hand one first."""
    hand, stages = knob_stages(base, targets.vector_lanes(target))
    seen = {base.name: base}
    best: dict = {}
    for stage in stages:
        group = []
        for values in itertools.product(*stage.values()):
            config = {k: v for k, v in {**best, **dict(zip(stage, values))}.items() if v != hand[k]}
            task = variant(base, config, target)
            group.append(seen.setdefault(task.name, task))
        measure_fixed(group, db, target, runner, builder, scratch)
        winner = min(group, key=lambda t: record_seconds(db, t, target))
        best = dict(winner.config)
        progress(f"{'+'.join(stage)}: best {json.dumps(best) if best else 'hand'} "
                 f"{record_seconds(db, winner, target) * 1e3:.3f} ms")
    return list(seen.values())


def decide(group: list[Task], db, target, scratch: Path, runner, builder) -> dict:
    """Measure the hand schedule and the best record side by side (one runner, one call); the
    record is used only if it measured faster by ``MARGIN``."""
    from ..schedules import schedule_func  # noqa: PLC0415

    base = group[0]
    measured = [t for t in group if record_seconds(db, t, target) < float("inf")]
    best_task = min(measured, key=lambda t: record_seconds(db, t, target), default=None)
    best = best_func(db, best_task, target) if best_task is not None else None
    candidates = [(schedule_func(base.kernel.func, target), save_arguments(base, scratch))]
    if best is not None:
        candidates.append((best, save_arguments(best_task, scratch)))
    times = measure(candidates, target, runner, builder) + [float("inf")]
    hand, tuned = times[0], times[1]
    use = tuned < MARGIN * hand
    measured_ms = [{"config": t.config, "ms": [round(seconds(r) * 1e3, 5) for r in records_of(db, t.func)
                                           if r.run_secs]} for t in group]
    return {"layers": base.layers, "kind": base.kind, "trials": sum(len(m["ms"]) for m in measured_ms),
            "measured": measured_ms,
            "scheduled_workload": base.space == "fixed",
            "hand_ms": hand * 1e3, "best_ms": tuned * 1e3, "tuned_ms": min(hand, tuned) * 1e3 if use else hand * 1e3,
            "use_record": bool(use), "config": best_task.config if use else {},
            "record_task": best_task.name if use else None, "done": True}


