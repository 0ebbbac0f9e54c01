"""``fscnn-tvm explain``: per layer, what the performance model predicts, what it chose and why;
with ``measure=True`` also every candidate kernel timed on this machine, whether the choice was
the fastest, and the plan's total against the oracle plan (the measured-fastest kind per layer).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from tqdm import tqdm

from . import frontend, passes, perf_model, targets
from .plan import LayerPlan, make_plan, shape_text

NEAR_TIE = 1.05  # a choice within 5% of the measured fastest counts as right


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

    def totals(self) -> dict[str, float]:
        """Predicted plan, and with measurements: chosen plan, oracle plan and all-dense, in ms."""
        out = {"predicted": sum(r.plan.predicted_ms.get(r.plan.kernel, 0.0) for r in self.rows)}
        if self.rows and self.rows[0].measured_ms:
            out["measured"] = sum(r.measured_ms[r.plan.kernel] for r in self.rows)
            out["oracle"] = sum(min(r.measured_ms.values()) for r in self.rows)
            out["all_dense"] = sum(r.measured_ms["dense"] for r in self.rows)
        return out

    def format(self) -> str:
        measured = bool(self.rows and self.rows[0].measured_ms)
        head = (f"{'#':>3} {'layer':<26} {'shape':<24} {'density':>7} {'dense':>8} {'csr':>8} {'bsr':>8} "
                f"{'choice':<6}")
        if measured:
            head += f" {'m.dense':>8} {'m.csr':>8} {'m.bsr':>8} {'fastest':<7} ok"
        head += "  reason"
        lines = [f"{self.source} on {self.target} (profile: {self.profile}); times in ms, predicted "
                 "then measured (m.)", head, "-" * len(head)]
        for r in self.rows:
            p = r.plan
            pred = p.predicted_ms
            bsr = next((k for k in pred if k.startswith("bsr")), None)
            cells = [pred.get("dense"), pred.get("csr"), pred.get(bsr) if bsr else None]
            line = (f"{p.index:>3} {p.name[:26]:<26} {shape_text(p):<24} {1 - p.sparsity:>7.3f} "
                    + " ".join(_ms(c) for c in cells) + f" {p.kernel:<6}")
            if measured:
                m = r.measured_ms
                line += (" " + " ".join(_ms(m.get(k)) for k in ("dense", "csr", bsr))
                         + f" {r.fastest:<7} {'yes' if r.right else 'NO '}")
            lines.append(line + "  " + p.reason)
        t = self.totals()
        lines.append("")
        lines.append(f"total predicted for this plan: {t['predicted']:.2f} ms")
        if measured:
            right = sum(bool(r.right) for r in self.rows)
            lines.append(f"total measured for this plan: {t['measured']:.2f} ms; oracle plan (fastest kernel per "
                         f"layer): {t['oracle']:.2f} ms ({t['measured'] / t['oracle']:.3f}x of oracle); "
                         f"all dense: {t['all_dense']:.2f} ms")
            lines.append(f"choices within 5% of the measured fastest: {right}/{len(self.rows)}")
        return "\n".join(lines)


def _ms(value) -> str:
    return f"{value:>8.3f}" if value is not None else f"{'-':>8}"


def explain(model, input_shape=None, target="llvm", profile=None, measure: bool = False,
            progress: bool = False) -> Report:
    """The model's per-layer plan under ``sparse="auto"``, optionally with measured kernel times."""
    tgt = targets.parse(target)
    if not isinstance(profile, perf_model.Profile):
        profile = perf_model.load_profile(tgt, profile)
    imported = frontend.import_model(model, input_shape)
    layers = passes.find_layers(imported.mod, imported.layer_names)
    rows = [Row(p) for p in make_plan(layers, "auto", profile)]
    if measure:
        from .measure import KernelTimer  # noqa: PLC0415

        timer = KernelTimer(tgt)
        bar = tqdm(list(zip(layers, rows)), desc="measuring", unit="layer", file=sys.stderr,
                   disable=not progress)
        for layer, row in bar:
            kinds = perf_model.candidates(layer, profile)
            row.measured_ms = {k: timer.seconds(layer, k) * 1e3 for k in kinds}
    return Report(imported.source, targets.tag(tgt), profile.source, rows)
