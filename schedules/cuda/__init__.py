"""CUDA schedules, tried in order like ``schedules/x86``. None yet: CUDA compilation is issue 6."""
from __future__ import annotations

RULES: list = []
