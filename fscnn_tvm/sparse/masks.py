"""Magnitude masks (numpy only): which weights pruning keeps, unstructured or in output-channel blocks."""
from __future__ import annotations

import numpy as np


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
