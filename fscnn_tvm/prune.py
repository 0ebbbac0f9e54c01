"""Magnitude pruning of convolution and linear weights, layer by layer (in place).

Unstructured: in every pruned layer, the ``round(sparsity * size)`` weights of smallest magnitude
become zero. Block ``(R, 1)``: output channels are grouped by ``R`` (the last group may be shorter)
and each group shares one zero pattern over the input positions (in-channel, kh, kw), chosen by the
L2 norm of the group's weights there; this is what the BSR kernels exploit. (The mask itself is
numpy-only: ``sparse.magnitude_mask``. Pruning where the performance model says it pays is
``guided.py``, beside the planner.)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .sparse import magnitude_mask

__all__ = ["magnitude", "magnitude_mask", "prunable_parameters", "weight_sparsity"]


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
