"""CUDA schedules, tried in order like ``schedules/x86``.

Our conv and linear kernels (``fscnn_tvm/ops/cuda_conv2d.py``, ``cuda_linear.py``: one Escoin-style
direct conv for CSR, BSR and dense weights) are written with their threads bound and reach this
list already marked ``tirx.is_scheduled``; the rules that choose their geometry per layer are in
``rules.py``. Everything TVM legalises from the other ops gets TVM's GPU default rules
(``generic.py``).
"""
from __future__ import annotations

from . import generic

RULES = [generic.schedule]
