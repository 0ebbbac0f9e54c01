"""x86 schedules, tried in order: the first rule that returns a PrimFunc wins.

Each rule is ``rule(func, lanes) -> PrimFunc | None`` (``None``: "not mine"); ``lanes`` is the
fp32 vector width of the target. The generic fallback comes last and always applies.
(The CSR linear kernel, ``ops/sparse_dense.py``, is plain TIR scheduled by construction.)
"""
from __future__ import annotations

from . import conv2d, dense, generic, pool, sparse_conv2d, winograd

RULES = [sparse_conv2d.schedule, conv2d.schedule, winograd.schedule, pool.schedule, dense.schedule, generic.schedule]
