"""Computations (TE) of the kernels fscnn-tvm owns; their schedules live in ``schedules/``."""
