"""Tuning records on disk: MetaSchedule's JSON database plus ``meta.json``.

``tuning_logs/<target-tag>/<model>/`` holds ``database_workload.json`` and
``database_tuning_record.json`` (one line per record, appended as measured, so a killed job keeps
every finished record; a cut-short last line is dropped with a warning) and ``meta.json`` (written
atomically: TVM version, full target, trials, date, host CPU, and per base task the hand and tuned
times, the configuration, whether the record is used, and every time measured). A log of another
target is refused; one of another TVM version is ignored with a warning. When every task is done
the database is compacted to the records compile uses.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import tvm

from .. import __version__, fileio, profiles, targets
from ..errors import TuningLogError, TuningLogWarning
from ..tvm_compat import fresh_copy, records_of

META_NAME = "meta.json"
META_FORMAT = 1


def model_tag(model) -> str:
    """Folder name for a model: the zoo spec, a file's stem, or the module's class name."""
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        name = Path(text).stem if os.path.exists(text) else text
    else:
        name = type(model).__name__.lower()
    return "".join(c if c.isalnum() or c in "@._-" else "_" for c in name)


def default_log_dir(model, target) -> Path:
    return profiles.tuning_logs_root() / targets.tag(targets.parse(target)) / model_tag(model)


def repair_json_lines(path: Path) -> int:
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
        fileio.atomic_write_text(path, "".join(f"{line}\n" for line in good))
    return dropped


def open_database(folder: Path):
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("database_workload.json", "database_tuning_record.json"):
        dropped = repair_json_lines(folder / name)
        if dropped:
            warnings.warn(f"{folder / name}: dropped {dropped} unreadable line(s) (a write cut short)",
                          TuningLogWarning, stacklevel=2)
    return ms.database.JSONDatabase(work_dir=str(folder), module_equality="structural")


def read_meta(folder: Path) -> dict:
    path = folder / META_NAME
    if not path.exists():
        raise TuningLogError(f"{folder}: no {META_NAME}; not a tuning log (run `fscnn-tvm tune` first)")
    meta = fileio.read_json_file(path, "tuning log", TuningLogError, META_FORMAT)
    if not isinstance(meta.get("tasks"), dict):
        raise TuningLogError(f"{path}: not a tuning log of format {META_FORMAT} (no tasks)")
    return meta


def write_meta(folder: Path, meta: dict) -> None:
    fileio.atomic_write_json(folder / META_NAME, meta)


def check_meta(folder: Path, meta: dict, target) -> bool:
    """Refuse a log of another target; warn about (and ignore) one of another TVM version."""
    tag = targets.tag(target)
    if meta.get("target") != tag:
        raise TuningLogError(f"{folder}: tuning log is for target {meta.get('target')}, not {tag}")
    if meta.get("tvm") != tvm.__version__:
        warnings.warn(f"{folder}: tuning log made with TVM {meta.get('tvm')}, this is {tvm.__version__}; "
                      "ignoring it (hand schedules are used)", TuningLogWarning, stacklevel=3)
        return False
    return True


def start_meta(folder: Path, target, trials: int, model) -> dict:
    if (folder / META_NAME).exists():
        meta = read_meta(folder)
        if not check_meta(folder, meta, target):
            raise TuningLogError(f"{folder}: holds records of TVM {meta.get('tvm')}; tune into another "
                                 "--log-dir (or delete it) to start over")
        return meta
    meta = {"format": META_FORMAT, "fscnn_tvm": __version__, "tvm": tvm.__version__,
            "target": targets.tag(target), "target_full": targets.describe(target), "trials": trials,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host_cpu": targets.host_cpu(),
            "model": model_tag(model), "tasks": {}}
    write_meta(folder, meta)
    return meta


def seconds(record) -> float:
    """A record's mean run time in seconds (inf without runs)."""
    return float(np.mean([float(x) for x in record.run_secs])) if record.run_secs else float("inf")


def record_seconds(db, task, target) -> float:
    """The task's best measured seconds in the database (inf without a record)."""
    best = best_record(db, task.func, target)
    return seconds(best) if best is not None else float("inf")


def best_func(db, task, target) -> tvm.tirx.PrimFunc | None:
    """The scheduled PrimFunc of the task's best record (``None`` without one)."""
    best = best_record(db, task.func, target)
    if best is None:
        return None
    return task.func if task.space == "fixed" else replay(task.func, best)


def best_record(db, func: tvm.tirx.PrimFunc, target):
    """The fastest record of ``func``'s workload (``None`` without one)."""
    return min((r for r in records_of(db, func) if r.run_secs), key=seconds, default=None)


def replay(func: tvm.tirx.PrimFunc, record) -> tvm.tirx.PrimFunc | None:
    """``func`` scheduled by ``record``'s trace."""
    if record is None:
        return None
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": fresh_copy(func)}))
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def compact(folder: Path, db, keep: list, target) -> None:
    """Once every task is done: keep in the database only the best record of each configuration
    that compile will use (every measurement is in ``meta.json``'s ``measured`` lists). A
    workload is the whole IRModule as JSON (~0.1 MB), and a job measures ~10 per sparse kernel:
    ResNet-50's full database is ~30 MB, its compacted one ~2 MB."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        small = ms.database.JSONDatabase(work_dir=tmp, module_equality="structural")
        for func in keep:
            best = best_record(db, func, target)
            if best is not None:
                workload = small.commit_workload(tvm.IRModule({"main": func}))
                small.commit_tuning_record(ms.database.TuningRecord(best.trace, workload, list(best.run_secs),
                                                                    best.target, best.args_info))
        for name in ("database_tuning_record.json", "database_workload.json"):
            os.replace(Path(tmp) / name, folder / name)


