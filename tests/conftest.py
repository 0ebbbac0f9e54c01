"""Shared fixtures: the target, compile-and-compare helpers (real TVM builds, real torch)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import fscnn_tvm
from fscnn_tvm.testing import random_input, relative_error, torch_reference

TOLERANCE = 1e-4  # max abs error <= TOLERANCE * max |reference| (fp32, the project's bound)

warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def target():
    """The host CPU target; CUDA compile tests build for explicit archs instead."""
    return "llvm"


def check_against_torch(model: torch.nn.Module, shape, sparse="auto", target="llvm", seed=0, profile=None):
    """Compile ``model`` and assert it matches eager PyTorch on seeded random data."""
    model = model.eval()
    compiled = fscnn_tvm.compile(model, input_shape=shape, target=target, sparse=sparse, profile=profile)
    x = random_input(shape, seed)
    expected = torch_reference(model, x)
    actual = compiled(x)
    err = relative_error(actual, expected)
    assert actual.shape == expected.shape
    assert err <= TOLERANCE, f"relative error {err:.2e} > {TOLERANCE}"
    return compiled


@pytest.fixture
def compare():
    return check_against_torch


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic weights (and BN statistics) for a test module."""
    from fscnn_tvm.models import init_deterministic

    return init_deterministic(module, seed)


def sparsify_(module: torch.nn.Module, sparsity: float, seed: int = 0) -> torch.nn.Module:
    """Zero a random ``sparsity`` fraction of every conv/linear weight (unstructured)."""
    gen = np.random.default_rng(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                keep = gen.random(m.weight.shape) >= sparsity
                m.weight.mul_(torch.from_numpy(keep.astype(np.float32)))
    return module
