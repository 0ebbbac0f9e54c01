"""Magnitude pruning: exact counts, the skipped stem, block patterns, bad arguments."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fscnn_tvm import models, prune


def test_unstructured_exact_sparsity_and_smallest_removed():
    w = np.random.default_rng(0).standard_normal((16, 8, 3, 3))
    keep = prune.magnitude_mask(w, 0.75)
    assert keep.sum() == round(0.25 * w.size)
    assert np.abs(w[~keep]).max() <= np.abs(w[keep]).min()


def test_block_mask_shared_by_channel_groups():
    w = np.random.default_rng(1).standard_normal((20, 4, 3, 3))  # 20 = 2 groups of 8 + 4
    keep = prune.magnitude_mask(w, 0.5, block=(8, 1))
    for start in (0, 8, 16):
        group = keep[start:start + 8]
        assert (group == group[0]).all()
    assert abs(1 - keep.mean() - 0.5) < 0.05
    with pytest.raises(ValueError, match=r"\(R, 1\) blocks"):
        prune.magnitude_mask(w, 0.5, block=(1, 4))


def test_model_pruning_skips_stem():
    model = prune.magnitude(models.create("resnet18"), 0.9)
    sp = prune.weight_sparsity(model)
    assert sp["conv1"] == 0.0
    assert all(abs(v - 0.9) < 1e-3 for k, v in sp.items() if k != "conv1")
    assert prune.weight_sparsity(prune.magnitude(models.create("alexnet"), 0.5, skip_first_conv=False))[
        "features.0"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity must be in"):
        prune.magnitude(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)), bad)
