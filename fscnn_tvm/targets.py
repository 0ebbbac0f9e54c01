"""Targets: parse what users write ("llvm", "cuda", a TVM target dict or JSON) into a TVM Target.

``"llvm"`` means *this host*: the CPU model is detected so that the kernels use its vector width
(AVX-512: 16 fp32 lanes, AVX2: 8). A short, stable *tag* names each target in folder names
(``tuning_logs/<tag>/``), e.g. ``llvm-znver4`` or ``cuda-sm90``.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from typing import Any, Union

import tvm
from tvm.target import codegen

from .kinds import Compute, compute_of

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


NO_GATHER = ("+prefer-no-gather", "+prefer-no-scatter")
GATHER_KERNELS = (Compute.SPARSE_DENSE,)  # the CSR linear: LLVM gathers its input by column


def codegen_target(target: tvm.target.Target, mod: tvm.IRModule | None = None) -> tvm.target.Target:
    """The target LLVM compiles ``mod`` for: with AVX-512, told to prefer no gathers and
    scatters unless ``mod`` has a CSR linear kernel.

    LLVM's cost model rates AVX-512 gathers and scatters as cheap, so its loop vectoriser
    vectorises a depthwise conv's de-interleaving padding loop over rows (a gather and a
    scatter per vector) where the column loop is short: 192@28 stride 2 ran 0.064 ms on a Zen 5
    core against 0.020 without them (and 0.027 with AVX2, which has no scatter); the
    activation-sparse 3x3 conv runs 1.0-1.07x faster without. The CSR linear's nonzero loop
    gathers its input by column index and is 1.05-1.34x faster with gathers (RESULTS.md,
    session 13): a module with one keeps them (one LLVM target compiles a whole module)."""
    if target.kind.name != "llvm" or not codegen.target_has_features("avx512f", target):
        return target
    if mod is not None and any(compute_of(f) in GATHER_KERNELS
                               for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)):
        return target
    spec = {k: (list(v) if isinstance(v, (tuple, list, tvm.ir.Array)) else v) for k, v in target.export().items()}
    mattr = [str(f) for f in spec.get("mattr") or []]
    spec["mattr"] = mattr + [f for f in NO_GATHER if f not in mattr]
    return tvm.target.Target(spec)


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


@dataclass(frozen=True)
class Caches:
    """What the performance model needs of a CPU's cache hierarchy, in bytes: the L1 data cache
    and L2 of one core, and the last-level cache one core can fill (its whole L3 when it runs
    alone)."""

    l1: int
    l2: int
    l3: int

    def to_json(self) -> dict:
        return {"l1": self.l1, "l2": self.l2, "l3": self.l3}


# CPUs whose caches we know without running on them (cross-compiling): L1d and L2 per core, the
# L3 of one core complex. Others, off the host, get DEFAULT_CACHES.
_K, _M = 1 << 10, 1 << 20
KNOWN_CACHES = {"znver3": Caches(32 * _K, 512 * _K, 32 * _M), "znver4": Caches(32 * _K, _M, 32 * _M),
                "znver5": Caches(48 * _K, _M, 32 * _M), "skylake-avx512": Caches(32 * _K, _M, 16 * _M),
                "icelake-server": Caches(48 * _K, 1280 * _K, 32 * _M),
                "sapphirerapids": Caches(48 * _K, 2 * _M, 64 * _M),
                "haswell": Caches(32 * _K, 256 * _K, 8 * _M), "skylake": Caches(32 * _K, 256 * _K, 8 * _M)}
DEFAULT_CACHES = Caches(32 * _K, _M, 16 * _M)
_SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": _K, "M": _M, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def host_caches(root: str = _SYSFS_CACHE) -> Caches | None:
    """This machine's L1d, L2 and L3 from sysfs (``None`` where it does not say)."""
    found = {}
    try:
        for index in sorted(os.listdir(root)):
            path = os.path.join(root, index)
            if not (index.startswith("index") and os.path.isdir(path)):
                continue  # the kernel also puts a ``uevent`` file here
            with open(os.path.join(path, "level")) as f:
                level = int(f.read())
            with open(os.path.join(path, "type")) as f:
                kind = f.read().strip()
            if kind in ("Unified", "Data") and level in (1, 2, 3):
                with open(os.path.join(path, "size")) as f:
                    found[level] = _size(f.read())
    except (OSError, ValueError):
        return None
    if not {1, 2} <= set(found):
        return None
    return Caches(found[1], found[2], found.get(3, found[2]))


def caches(target: tvm.target.Target) -> Caches:
    """The target CPU's caches: this machine's (sysfs) when the target is the host CPU, else the
    known sizes of its ``mcpu``, else :data:`DEFAULT_CACHES`."""
    mcpu = str(target.attrs.get("mcpu", "")) if target.kind.name == "llvm" else ""
    if mcpu and mcpu == str(codegen.llvm_get_system_cpu()):
        host = host_caches()
        if host is not None:
            return host
    return KNOWN_CACHES.get(mcpu, DEFAULT_CACHES)
