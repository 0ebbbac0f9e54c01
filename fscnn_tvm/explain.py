"""``fscnn-tvm explain``: per layer, what the performance model predicts, what it chose and why;
with ``measure=True`` also every candidate kernel timed on this machine, whether the choice was
the fastest, and the plan's total against the oracle plan (the measured-fastest kind per layer).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from tqdm import tqdm

from . import targets
from .pipeline import plan_model
from .plan import NEAR_TIE, LayerPlan, candidates, format_plan


@dataclass
class Row:
    plan: LayerPlan
    measured_ms: dict = field(default_factory=dict)  # kind -> ms (with measure=True)

    @property
    def fastest(self) -> str | None:
        return min(self.measured_ms, key=self.measured_ms.get) if self.measured_ms else None

    @property
    def right(self) -> bool | None:
        if not self.measured_ms:
            return None
        return self.measured_ms[self.plan.kernel] <= NEAR_TIE * self.measured_ms[self.fastest]


@dataclass
class Report:
    source: str
    target: str
    profile: str
    rows: list[Row]

    @property
    def measured(self) -> bool:
        return bool(self.rows and self.rows[0].measured_ms)

    def totals(self) -> dict[str, float]:
        """Predicted plan, and with measurements: chosen plan, oracle plan and all-dense, in ms."""
        out = {"predicted": sum(r.plan.predicted_ms.get(r.plan.kernel, 0.0) for r in self.rows)}
        if self.measured:
            out["measured"] = sum(r.measured_ms[r.plan.kernel] for r in self.rows)
            out["oracle"] = sum(min(r.measured_ms.values()) for r in self.rows)
            out["all_dense"] = sum(r.measured_ms["dense"] for r in self.rows)
        return out

    def format(self) -> str:
        lines = [f"{self.source} on {self.target} (profile: {self.profile}); times in ms, predicted "
                 "then measured (m.)",
                 format_plan([r.plan for r in self.rows], [r.measured_ms for r in self.rows] if self.measured else None)]
        t = self.totals()
        lines.append("")
        lines.append(f"total predicted for this plan: {t['predicted']:.2f} ms")
        if self.measured:
            right = sum(bool(r.right) for r in self.rows)
            lines.append(f"total measured for this plan: {t['measured']:.2f} ms; oracle plan (fastest kernel per "
                         f"layer): {t['oracle']:.2f} ms ({t['measured'] / t['oracle']:.3f}x of oracle); "
                         f"all dense: {t['all_dense']:.2f} ms")
            lines.append(f"choices within 5% of the measured fastest: {right}/{len(self.rows)}")
        return "\n".join(lines)


def explain(model, input_shape=None, target="llvm", profile=None, measure: bool = False,
            progress: bool = False, winograd: bool = True, calibration_data=None) -> Report:
    """The model's per-layer plan under ``sparse="auto"``, optionally with measured kernel times
    (``calibration_data``: see ``fscnn_tvm.compile``; the measured inputs then have the layers'
    calibrated zero fractions)."""
    planned = plan_model(model, input_shape, target, "auto", profile, winograd, calibration_data)
    rows = [Row(p) for p in planned.plan]
    if measure:
        from .measure import KernelTimer  # noqa: PLC0415

        timer = KernelTimer(planned.target)
        bar = tqdm(list(zip(planned.layers, rows)), desc="measuring", unit="layer", file=sys.stderr,
                   disable=not progress)
        for layer, row in bar:
            row.measured_ms = {k: timer.seconds(layer, k) * 1e3
                               for k in candidates(layer, planned.profile, winograd)}
    return Report(planned.imported.source, targets.tag(planned.target), planned.profile.source, rows)
