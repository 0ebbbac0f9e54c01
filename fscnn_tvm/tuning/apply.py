"""Applying a tuning log: what ``compile(..., tuning_log=DIR)`` takes from it, per kernel.

Precedence (``schedules/__init__.py`` states the rule): the tuned configuration and record where
``meta.json`` says it measured faster than the hand schedule in the same job, else the hand
schedule.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import tvm

from .. import kernels
from ..errors import TuningLogError, TuningLogWarning
from .records import best_record, check_meta, open_database, read_meta, replay
from .tasks import task_name


class TunedSchedules:
    """What ``compile(..., tuning_log=DIR)`` applies: per kernel, config and scheduled PrimFunc."""

    def __init__(self, folder, target):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise TuningLogError(f"{self.folder}: no such tuning log folder")
        self.meta = read_meta(self.folder)
        self.target = target
        self.active = check_meta(self.folder, self.meta, target)
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
        from ..schedules import schedule_func  # noqa: PLC0415

        self.applied += 1
        if entry.get("scheduled_workload"):  # a configuration measured with the hand schedule
            return schedule_func(kernel.func, self.target)
        best = best_record(self.db, kernel.func, self.target)
        if best is None:
            self.applied -= 1
            warnings.warn(f"{self.folder}: no record for {entry['record_task']} although meta.json "
                          "says so; using the hand schedule", TuningLogWarning, stacklevel=2)
            return None
        return replay(kernel.func, best)
