"""Shared test setup: one torch thread, quiet deprecation chatter, and a few fixtures. The helpers
themselves (compile-and-compare, random weights, sparsify) are ``fscnn_tvm.testing``."""
from __future__ import annotations

import warnings

import pytest
import torch

from fscnn_tvm.testing import check_against_torch

warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(1)


@pytest.fixture
def compare():
    return check_against_torch
