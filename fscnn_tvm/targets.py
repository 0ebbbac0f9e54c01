"""Targets: parse what users write ("llvm", "cuda", a TVM target dict or JSON) into a TVM Target.

``"llvm"`` means *this host*: the CPU model is detected so that the kernels use its vector width
(AVX-512: 16 fp32 lanes, AVX2: 8). A short, stable *tag* names each target in folder names
(``tuning_logs/<tag>/``), e.g. ``llvm-znver4`` or ``cuda-sm90``.
"""
from __future__ import annotations

import json
import platform
from typing import Any, Union

import tvm
from tvm.target import codegen

TargetLike = Union[str, dict, tvm.target.Target]

DEFAULT_CUDA_ARCH = "sm_90"


def parse(target: TargetLike = "llvm") -> tvm.target.Target:
    """A TVM Target from ``"llvm"``, ``"cuda"``, a dict, a JSON string, or a Target."""
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, str):
        text = target.strip()
        if text.startswith("{"):
            try:
                target = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"target: {text!r} is not valid JSON ({err.msg})") from None
        elif text == "llvm":
            target = {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()}
        elif text == "cuda":
            target = {"kind": "cuda", "arch": DEFAULT_CUDA_ARCH}
        else:
            raise ValueError(f"target: unknown target {text!r}; expected 'llvm', 'cuda', or a TVM "
                             "target as a JSON object such as '{\"kind\": \"llvm\", \"mcpu\": \"znver4\"}'")
    if not isinstance(target, dict) or "kind" not in target:
        raise ValueError(f"target: expected a dict with a 'kind' key, got {target!r}")
    if target["kind"] not in ("llvm", "cuda"):
        raise ValueError(f"target: kind {target['kind']!r} is not supported; use 'llvm' or 'cuda'")
    mcpu = target.get("mcpu")
    if target["kind"] == "llvm" and mcpu is not None and not codegen.llvm_is_valid_cpu(
            str(mcpu), str(target.get("mtriple", ""))):
        raise ValueError(f"target: LLVM does not know the CPU {mcpu!r} (e.g. 'znver4', 'skylake-avx512', "
                         "'haswell'; 'llvm' alone detects this machine's)")
    try:
        return tvm.target.Target(target)
    except Exception as err:  # TVM raises its own error types for bad attributes
        raise ValueError(f"target: TVM rejected {target!r}: {str(err).splitlines()[-1]}") from None


def tag(target: tvm.target.Target) -> str:
    """Short folder name of a target: ``llvm-<mcpu>`` or ``cuda-<sm..>``."""
    if target.kind.name == "cuda":
        arch = str(target.attrs.get("arch", DEFAULT_CUDA_ARCH)).replace("_", "")
        return f"cuda-{arch}"
    return f"llvm-{target.attrs.get('mcpu', 'generic')}"


def vector_lanes(target: tvm.target.Target, dtype_bits: int = 32) -> int:
    """fp32 lanes of the widest vector register the CPU target has (AVX-512: 16, AVX2: 8, else 4)."""
    if target.kind.name != "llvm":
        return 1
    if codegen.target_has_features("avx512f", target):
        return 512 // dtype_bits
    if codegen.target_has_features("avx2", target):
        return 256 // dtype_bits
    return 128 // dtype_bits


def describe(target: tvm.target.Target) -> dict[str, Any]:
    """The target as a JSON-able dict (for metadata and logs)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in target.export().items()
            if isinstance(v, (str, int, float, bool, tuple, list))}


def host_cpu() -> str:
    """The host CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
