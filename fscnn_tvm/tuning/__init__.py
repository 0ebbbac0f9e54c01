"""``fscnn-tvm tune``: MetaSchedule jobs over a model's kernels, records on disk, compile from them.

One file per idea: ``tasks.py`` (what is tuned), ``measure.py`` (building and running candidates),
``search.py`` (how configurations are searched and the record-vs-hand decision), ``records.py``
(the database and ``meta.json``), ``apply.py`` (what compile takes from a log). This file runs a
job.

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
  Knobs are tuned one after another, a handful of values each (``sparse_stages``): ~10
  measurements per kernel;
- Winograd conv: the same staged sweep over its tiles per GEMM register block and tile rows per
  block (``winograd_stages``). (The performance model cannot rank them: it counts instructions and
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
the records compile uses (``compact``).

**Applying.** ``compile(..., tuning_log=DIR)``: per kernel, the tuned configuration and record if
``meta.json`` says it measured faster than the hand schedule (both measured by the same runner in
the same job), else the hand schedule (``schedules/__init__.py`` states the rule). A log for another
target is refused; one from another TVM version is ignored with a warning.

**Distributed.** With ``rpc_tracker="host:port"`` and ``rpc_key``, measurements run on the devices
registered with TVM's RPC tracker (MetaSchedule's ``RPCRunner``); builds stay local.
"""
from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .. import targets
from ..errors import TuningLogError
from ..pipeline import plan_model
from .apply import TunedSchedules
from .measure import builder as make_builder
from .measure import make_runner, parse_rpc
from .records import compact, default_log_dir, open_database, start_meta, write_meta
from .search import decide, search, tune_knobs
from .tasks import DEFAULT_TRIALS, extract_tasks, oc_block_options, variant

__all__ = ["DEFAULT_TRIALS", "TuneReport", "TunedSchedules", "default_log_dir", "extract_tasks", "tune"]

log = logging.getLogger("fscnn_tvm")


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


def tune(model, input_shape=None, target="llvm", trials: int = DEFAULT_TRIALS, log_dir=None,
         sparse: str = "auto", profile=None, rpc_tracker: str | None = None, rpc_key: str | None = None,
         progress: bool = False, winograd: bool = True, calibration_data=None) -> TuneReport:
    """Tune ``model``'s kernels for ``target`` and write the records (see the module docstring).

    ``trials``: MetaSchedule trials per dense-conv task (sparse convs measure a fixed handful of
    configurations). ``log_dir``: default ``tuning_logs/<target-tag>/<model>/``. ``sparse`` and
    ``profile`` (and ``winograd``) must be those the model will be compiled with (they make the plan,
    hence the tasks), and so must ``calibration_data``.
    """
    start = time.perf_counter()
    tgt = targets.parse(target)
    if trials < 1:
        raise ValueError(f"tune: trials must be >= 1, got {trials}")
    rpc = parse_rpc(rpc_tracker, rpc_key)
    folder = Path(log_dir) if log_dir is not None else default_log_dir(model, tgt)
    if folder.exists() and not folder.is_dir():
        raise TuningLogError(f"{folder}: is a file; the tuning log is a folder (made if missing)")
    folder.mkdir(parents=True, exist_ok=True)
    meta = start_meta(folder, tgt, trials, model)
    meta["runner"] = "local" if rpc is None else f"rpc {rpc[2]}@{rpc[0]}:{rpc[1]}"
    planned = plan_model(model, input_shape, tgt, sparse, profile, winograd, calibration_data)
    tasks = extract_tasks(planned.layers, planned.plan, tgt, trials)
    db = open_database(folder)
    bar = tqdm(tasks, desc="tune", unit="task", file=sys.stderr, disable=not progress)
    # argument arrays and MetaSchedule's own files live in a scratch folder, not with the records
    with tempfile.TemporaryDirectory(prefix="fscnn-tune-") as work_dir:
        scratch = Path(work_dir)
        runner, builder = make_runner(scratch, rpc), make_builder()
        for base in bar:
            if meta["tasks"].get(base.name, {}).get("done"):
                continue
            label = f"{base.layers[0]} ({base.kind})"
            bar.set_postfix_str(label)
            if base.space == "fixed":
                group = tune_knobs(base, db, tgt, runner, builder, scratch,
                                     lambda text, label=label: bar.set_postfix_str(f"{label} {text}"))
            else:  # every output-channel block, its register tile searched by MetaSchedule
                lanes = targets.vector_lanes(tgt)
                group = [base] + [variant(base, {"oc_block": b}, tgt, trials) for b in oc_block_options(base, lanes)]
                for task in group:
                    search(task, db, tgt, runner, builder, work_dir, scratch)
            entry = decide(group, db, tgt, scratch, runner, builder)
            meta["tasks"][base.name] = entry
            write_meta(folder, meta)
            bar.set_postfix_str(f"{label} hand {entry['hand_ms']:.3f} ms, tuned {entry['tuned_ms']:.3f} ms")
            log.info("%s %s: hand %.3f ms, best record %.3f ms (%s)%s", base.name, label, entry["hand_ms"],
                     entry["best_ms"], json.dumps(entry["config"]), "" if entry["use_record"] else "; hand kept")
    if all(meta["tasks"].get(t.name, {}).get("done") for t in tasks):
        used = [variant(t, meta["tasks"][t.name]["config"], tgt, trials) for t in tasks
                if meta["tasks"][t.name]["use_record"]]
        compact(folder, db, [t.func for t in used], tgt)
        meta["compacted"] = True
    meta["seconds"] = round(meta.get("seconds", 0) + time.perf_counter() - start, 1)
    write_meta(folder, meta)
    return TuneReport(str(folder), meta["tasks"], time.perf_counter() - start)


