"""Guided pruning (Park et al.'s GSL, one shot): prune only where the performance model says it pays.

A planner beside ``plan.py``: it plans the model, then for each layer asks the performance model
at which sparsity the sparse kernel stops gaining, and prunes the torch model's weight there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kinds, perf_model
from .pipeline import plan_model
from .plan import best_dense, break_even, capacity, shape_text, sparse_support
from .sparse import magnitude_mask

SAVING_FLOOR = 0.05  # a layer is pruned only if the model predicts at least 5% of it saved


@dataclass
class GuidedLayer:
    name: str
    shape: str
    sparsity: float  # what it was pruned to (0: left dense)
    kind: str  # kernel the model expects: dense | csr | bsr{R}
    dense_ms: float
    sparse_ms: float | None  # predicted at ``sparsity`` (None: left dense)
    block_ms: float | None  # what BSR8 would take at the same sparsity (unstructured runs only)
    reason: str


@dataclass
class GuidedReport:
    layers: list[GuidedLayer]
    max_sparsity: float
    block: tuple[int, int] | None

    @property
    def dense_ms(self) -> float:
        return sum(g.dense_ms for g in self.layers)

    @property
    def pruned_ms(self) -> float:
        return sum(g.sparse_ms if g.sparse_ms is not None else g.dense_ms for g in self.layers)

    def format(self) -> str:
        lines = [f"{'layer':<30} {'shape':<24} {'sparsity':>8} {'kernel':<9} {'dense ms':>9} "
                 f"{'pruned ms':>9} {'speedup':>7}  reason"]
        lines.append("-" * len(lines[0]))
        block_gain = 0.0
        for g in self.layers:
            pruned = g.sparse_ms if g.sparse_ms is not None else g.dense_ms
            lines.append(f"{g.name[:30]:<30} {g.shape:<24} {g.sparsity:>8.2f} {g.kind:<9} {g.dense_ms:>9.3f} "
                         f"{pruned:>9.3f} {g.dense_ms / pruned:>6.2f}x  {g.reason}")
            if g.block_ms is not None and g.sparse_ms is not None:
                block_gain += g.sparse_ms - min(g.block_ms, g.sparse_ms)
        lines.append("")
        lines.append(f"predicted: {self.dense_ms:.2f} ms dense -> {self.pruned_ms:.2f} ms pruned "
                     f"({self.dense_ms / self.pruned_ms:.2f}x) over the conv/linear layers")
        if self.block is None and block_gain > 0:
            lines.append(f"block pruning (--block 8: 8 output channels share each zero pattern) would save "
                         f"another {block_gain:.2f} ms ({self.dense_ms / (self.pruned_ms - block_gain):.2f}x)")
        return "\n".join(lines)


def prune(model, input_shape, target="llvm", profile=None, max_sparsity: float = 0.9,
           block: tuple[int, int] | None = None, skip_first_conv: bool = True) -> GuidedReport:
    """Prune only the layers the performance model says will run faster sparse; returns the report.

    For each conv/linear (but the stem conv with ``skip_first_conv``), the model predicts the
    sparse kernel's time across sparsities. A layer is pruned to the sparsity where it stops
    gaining (its nonzero work falls to the size of the kernel's fixed cost: staging, crop, row
    steps - past it the layer is bound by memory traffic, and more pruning costs accuracy for
    little time), capped at ``max_sparsity``, and only when that saves at least 5% of its dense
    time. Every other layer stays dense. ``block=(R, 1)`` prunes in output-channel blocks for
    the BSR kernels. ``model`` (an ``nn.Module``) is pruned in place.
    """
    import torch  # noqa: PLC0415 - the model is a torch module

    from .prune import prunable_parameters  # noqa: PLC0415

    if not 0.0 < max_sparsity < 1.0:
        raise ValueError(f"max sparsity must be in (0, 1), got {max_sparsity}")
    params = dict(prunable_parameters(model))
    planned = plan_model(model, input_shape, target, "auto", profile)
    profile = planned.profile
    kind = kinds.CSR if block is None or block == (1, 1) else kinds.bsr(block[0])
    report, first_conv_seen = [], False
    for layer, row in zip(planned.layers, planned.plan):
        param = params.get(f"{layer.name}.weight")
        shape = shape_text(row)
        dense_kind, dense_s = best_dense(layer, profile)
        dense_ms = dense_s * 1e3
        if param is None:
            raise ValueError(f"guided pruning: layer {layer.name} has no parameter {layer.name}.weight "
                             f"(parameters: {', '.join(list(params)[:5])}, ...)")
        if layer.op == "conv2d" and not first_conv_seen:
            first_conv_seen = True
            if skip_first_conv:
                report.append(GuidedLayer(layer.name, shape, 0.0, dense_kind, dense_ms, None, None,
                                          "first conv kept dense"))
                continue
        unsupported = sparse_support(layer)
        layer_kind = kinds.CSR if layer.op == "linear" else kind
        if unsupported:
            report.append(GuidedLayer(layer.name, shape, 0.0, dense_kind, dense_ms, None, None, unsupported))
            continue
        target_sp, reason = _useful_sparsity(layer, layer_kind, profile, max_sparsity, dense_kind)
        if target_sp is None:
            report.append(GuidedLayer(layer.name, shape, 0.0, dense_kind, dense_ms, None, None, reason))
            continue
        keep = magnitude_mask(param.detach().cpu().numpy(), target_sp, block if layer_kind != kinds.CSR else None)
        with torch.no_grad():
            param.mul_(torch.from_numpy(keep.astype(np.float32)))
        cap = capacity(layer, layer_kind)
        sparse_ms = perf_model.predict(layer, layer_kind, profile, nnz=(1 - target_sp) * cap) * 1e3
        block_ms = None
        if layer_kind == kinds.CSR and layer.op == "conv2d":
            block_ms = perf_model.predict(layer, kinds.bsr(8), profile,
                                          nnz=(1 - target_sp) * capacity(layer, kinds.bsr(8))) * 1e3
        report.append(GuidedLayer(layer.name, shape, target_sp, layer_kind, dense_ms, sparse_ms, block_ms, reason))
    return GuidedReport(report, max_sparsity, block)


def _useful_sparsity(layer, kind, profile, max_sparsity, against: str = kinds.DENSE) -> tuple[float | None, str]:
    """(sparsity to prune to, reason), or (None, why it stays dense); ``against``: the dense
    kind the layer would run otherwise (Winograd where it is faster than direct)."""
    dense = perf_model.predict(layer, against, profile)
    cap = capacity(layer, kind)
    fixed = perf_model.predict(layer, kind, profile, nnz=0.0)
    per_unit = (perf_model.predict(layer, kind, profile, nnz=cap) - fixed) / cap
    even = break_even(layer, kind, profile, against)
    if even is None or even >= max_sparsity:
        where = "never" if even is None else f"only above sparsity {even:.2f}"
        versus = f" against {against}" if against != kinds.DENSE else ""
        return None, f"{kind} pays {where}{versus}: left dense"
    # Knee: nonzero work equal to the fixed cost; pruning past it buys at most 2x more.
    knee = 1.0 - fixed / (per_unit * cap) if per_unit > 0 else max_sparsity
    chosen = round(min(max_sparsity, max(knee, even)), 2)
    sparse = perf_model.predict(layer, kind, profile, nnz=(1 - chosen) * cap)
    if sparse > (1 - SAVING_FLOOR) * dense:
        return None, f"{kind} would save under {SAVING_FLOOR:.0%} at sparsity {chosen:.2f}: left dense"
    why = (f"capped at {max_sparsity:.2f}" if chosen >= max_sparsity else
           f"past {chosen:.2f} the kernel's fixed cost dominates")
    return chosen, f"pays above {even:.2f}; {why}"
