"""Magnitude pruning of convolution and linear weights, layer by layer (in place).

Unstructured: in every pruned layer, the ``round(sparsity * size)`` weights of smallest magnitude
become zero. Block ``(R, 1)``: output channels are grouped by ``R`` (the last group may be shorter)
and each group shares one zero pattern over the input positions (in-channel, kh, kw), chosen by the
L2 norm of the group's weights there; this is what the BSR kernels exploit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def magnitude_mask(weight: np.ndarray, sparsity: float, block: tuple[int, int] | None = None) -> np.ndarray:
    """Boolean keep-mask of ``weight`` (``[OC, ...]``) at ``sparsity`` (exact count, ties by index)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    oc = weight.shape[0]
    flat = np.abs(weight.reshape(oc, -1).astype(np.float64))
    if block is None or block == (1, 1):
        scores = flat
    else:
        rows, cols = block
        if cols != 1 or rows < 1:
            raise ValueError(f"block pruning supports (R, 1) blocks over output channels, got {block}")
        groups = -(-oc // rows)
        padded = np.zeros((groups * rows, flat.shape[1]))
        padded[:oc] = flat
        group_norm = np.sqrt((padded.reshape(groups, rows, -1) ** 2).sum(axis=1))
        scores = np.repeat(group_norm, rows, axis=0)[:oc]
        # Prune whole groups: rank the group scores, then expand the decision to the rows.
        n_drop = int(round(sparsity * group_norm.size))
        keep_groups = np.ones(group_norm.size, dtype=bool)
        keep_groups[np.argsort(group_norm, axis=None, kind="stable")[:n_drop]] = False
        keep = np.repeat(keep_groups.reshape(groups, -1), rows, axis=0)[:oc]
        return keep.reshape(weight.shape)
    n_drop = int(round(sparsity * scores.size))
    keep = np.ones(scores.size, dtype=bool)
    keep[np.argsort(scores, axis=None, kind="stable")[:n_drop]] = False
    return keep.reshape(weight.shape)


def prunable_parameters(model: nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Conv (4-D) and linear (2-D) weights by parameter name, in definition order.

    Works on ordinary modules and on the GraphModule of a loaded ``.pt2`` (``ep.module()``),
    which has no ``nn.Conv2d`` submodules left.
    """
    return [(name, p) for name, p in model.named_parameters()
            if name.endswith("weight") and p.dim() in (2, 4)]


def magnitude(model: nn.Module, sparsity: float, skip_first_conv: bool = True,
              block: tuple[int, int] | None = None) -> nn.Module:
    """Prune every conv/linear of ``model`` to ``sparsity`` by weight magnitude; returns ``model``.

    ``skip_first_conv`` keeps the stem conv dense (it sees raw pixels and is cheap to keep).
    ``block=(R, 1)`` makes groups of ``R`` output channels share their zero pattern.
    """
    first_conv_seen = False
    with torch.no_grad():
        for _, weight in prunable_parameters(model):
            if weight.dim() == 4 and not first_conv_seen:
                first_conv_seen = True
                if skip_first_conv:
                    continue
            keep = magnitude_mask(weight.detach().cpu().numpy(), sparsity, block)
            weight.mul_(torch.from_numpy(keep.astype(np.float32)))
    return model


def weight_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of zeros in each conv/linear weight, by layer name (parameter name less ``.weight``)."""
    return {name[: -len(".weight")] if name.endswith(".weight") else name: float((p == 0).float().mean())
            for name, p in prunable_parameters(model)}


# ---------------------------------------------------------------- guided pruning (Park's GSL, one shot)

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
        lines = [f"{'layer':<30} {'shape':<24} {'sparsity':>8} {'kernel':<6} {'dense ms':>9} "
                 f"{'pruned ms':>9} {'speedup':>7}  reason"]
        lines.append("-" * len(lines[0]))
        block_gain = 0.0
        for g in self.layers:
            pruned = g.sparse_ms if g.sparse_ms is not None else g.dense_ms
            lines.append(f"{g.name[:30]:<30} {g.shape:<24} {g.sparsity:>8.2f} {g.kind:<6} {g.dense_ms:>9.3f} "
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


def guided(model: nn.Module, input_shape, target="llvm", profile=None, max_sparsity: float = 0.9,
           block: tuple[int, int] | None = None, skip_first_conv: bool = True) -> GuidedReport:
    """Prune only the layers the performance model says will run faster sparse; returns the report.

    For each conv/linear (but the stem conv with ``skip_first_conv``), the model predicts the
    sparse kernel's time across sparsities. A layer is pruned to the sparsity where it stops
    gaining (its nonzero work falls to the size of the kernel's fixed cost: staging, crop, row
    steps - past it the layer is bound by memory traffic, and more pruning costs accuracy for
    little time), capped at ``max_sparsity``, and only when that saves at least 5% of its dense
    time. Every other layer stays dense. ``block=(R, 1)`` prunes in output-channel blocks for
    the BSR kernels.
    """
    from . import frontend, passes, perf_model, targets  # noqa: PLC0415 - heavy, TVM

    if not 0.0 < max_sparsity < 1.0:
        raise ValueError(f"max sparsity must be in (0, 1), got {max_sparsity}")
    tgt = targets.parse(target)
    if not isinstance(profile, perf_model.Profile):
        profile = perf_model.load_profile(tgt, profile)
    params = dict(prunable_parameters(model))
    imported = frontend.import_model(model, input_shape)
    layers = passes.find_layers(imported.mod, imported.layer_names)
    kind = "csr" if block is None or block == (1, 1) else f"bsr{block[0]}"
    report, first_conv_seen = [], False
    for layer in layers:
        param = params.get(f"{layer.name}.weight")
        shape = _shape_text(layer)
        dense_ms = perf_model.predict(layer, "dense", profile) * 1e3
        if param is None:
            raise ValueError(f"guided pruning: layer {layer.name} has no parameter {layer.name}.weight "
                             f"(parameters: {', '.join(list(params)[:5])}, ...)")
        if layer.op == "conv2d" and not first_conv_seen:
            first_conv_seen = True
            if skip_first_conv:
                report.append(GuidedLayer(layer.name, shape, 0.0, "dense", dense_ms, None, None, "first conv kept dense"))
                continue
        from .plan import sparse_support  # noqa: PLC0415

        unsupported = sparse_support(layer)
        layer_kind = "csr" if layer.op == "linear" else kind
        if unsupported:
            report.append(GuidedLayer(layer.name, shape, 0.0, "dense", dense_ms, None, None, unsupported))
            continue
        target_sp, reason = _useful_sparsity(layer, layer_kind, profile, max_sparsity)
        if target_sp is None:
            report.append(GuidedLayer(layer.name, shape, 0.0, "dense", dense_ms, None, None, reason))
            continue
        keep = magnitude_mask(param.detach().cpu().numpy(), target_sp, block if layer_kind != "csr" else None)
        with torch.no_grad():
            param.mul_(torch.from_numpy(keep.astype(np.float32)))
        cap = perf_model.capacity(layer, layer_kind)
        sparse_ms = perf_model.predict(layer, layer_kind, profile, nnz=(1 - target_sp) * cap) * 1e3
        block_ms = None
        if layer_kind == "csr" and layer.op == "conv2d":
            block_ms = perf_model.predict(layer, "bsr8", profile,
                                          nnz=(1 - target_sp) * perf_model.capacity(layer, "bsr8")) * 1e3
        report.append(GuidedLayer(layer.name, shape, target_sp, layer_kind, dense_ms, sparse_ms, block_ms, reason))
    return GuidedReport(report, max_sparsity, block)


def _useful_sparsity(layer, kind, profile, max_sparsity) -> tuple[float | None, str]:
    """(sparsity to prune to, reason), or (None, why it stays dense)."""
    from . import perf_model  # noqa: PLC0415

    dense = perf_model.predict(layer, "dense", profile)
    cap = perf_model.capacity(layer, kind)
    fixed = perf_model.predict(layer, kind, profile, nnz=0.0)
    per_unit = (perf_model.predict(layer, kind, profile, nnz=cap) - fixed) / cap
    even = perf_model.break_even(layer, kind, profile)
    if even is None or even >= max_sparsity:
        where = "never" if even is None else f"only above sparsity {even:.2f}"
        return None, f"{kind} pays {where}: left dense"
    # Knee: nonzero work equal to the fixed cost; pruning past it buys at most 2x more.
    knee = 1.0 - fixed / (per_unit * cap) if per_unit > 0 else max_sparsity
    chosen = round(min(max_sparsity, max(knee, even)), 2)
    sparse = perf_model.predict(layer, kind, profile, nnz=(1 - chosen) * cap)
    if sparse > (1 - SAVING_FLOOR) * dense:
        return None, f"{kind} would save under {SAVING_FLOOR:.0%} at sparsity {chosen:.2f}: left dense"
    why = (f"capped at {max_sparsity:.2f}" if chosen >= max_sparsity else
           f"past {chosen:.2f} the kernel's fixed cost dominates")
    return chosen, f"pays above {even:.2f}; {why}"


def _shape_text(layer) -> str:
    if layer.op == "conv2d":
        kh, kw = layer.weight.shape[2:]
        return f"{layer.in_shape[1]}->{layer.out_shape[1]} {kh}x{kw}/{layer.attrs['stride'][0]} @{layer.in_shape[2]}"
    return f"{layer.in_shape[1]}->{layer.out_shape[1]}"
