"""CUDA schedules, tried in order like ``schedules/x86``.

Our conv and linear kernels (``conv2d.py``, ``linear.py``) are written with their threads bound
and reach this list already marked ``tirx.is_scheduled``; everything TVM legalises from the other
ops gets TVM's GPU default rules (``generic.py``).
"""
from __future__ import annotations

from . import generic

RULES = [generic.schedule]
