"""Run a compiled model: ``load(path)`` -> :class:`Runner`. Needs only TVM and numpy (no torch).

Every library that fscnn-tvm writes carries a small JSON description of itself (input shape and
dtype, target, plan) in a Relax function named ``fscnn_meta``, so a runner can check inputs and
explain itself with nothing but the ``.so``.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time

import numpy as np
import tvm
from tvm import relax

from .errors import InputError, ModelLoadError
from .tvm_compat import native_stderr_silenced

META_FUNCTION = "fscnn_meta"
# Integrity record appended to every library we write (loaders ignore bytes past the ELF's
# segments): magic, the library's length and its SHA-256. A copy cut short loses it.
TRAILER_MAGIC = b"FSCNNLIB"
TRAILER_SIZE = len(TRAILER_MAGIC) + 8 + 32


def integrity_trailer(path: str) -> bytes:
    """The record :func:`check_library` expects at the end of the library in ``path``."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
            size += len(block)
    return TRAILER_MAGIC + struct.pack("<Q", size) + digest.digest()


def _elf_fits(path: str, size: int) -> str | None:
    """Why the ELF file in ``path`` is cut short or malformed (``None``: its headers, section
    table and segments all lie inside its ``size`` bytes)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:
            return "not a 64-bit ELF shared library"
        phoff, shoff = struct.unpack_from("<QQ", head, 0x20)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", head, 0x36)
        if shoff + shentsize * shnum > size or phoff + phentsize * phnum > size:
            return "cut short (its header tables end past the end of the file)"
        f.seek(phoff)
        for _ in range(phnum):
            entry = f.read(phentsize)
            offset, filesz = struct.unpack_from("<Q", entry, 0x08)[0], struct.unpack_from("<Q", entry, 0x20)[0]
            if offset + filesz > size:
                return "cut short (a segment ends past the end of the file)"
    return None


def check_library(path: str) -> None:
    """Refuse a library that is cut short or altered, before it is mapped (a truncated shared
    object kills the process with SIGBUS when loaded). Libraries we wrote carry an integrity
    record (:func:`integrity_trailer`); any other must at least be a whole ELF file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(max(0, size - TRAILER_SIZE))
        tail = f.read()
    if tail.startswith(TRAILER_MAGIC) and len(tail) == TRAILER_SIZE:
        length = struct.unpack_from("<Q", tail, len(TRAILER_MAGIC))[0]
        digest = tail[len(TRAILER_MAGIC) + 8:]
        if length != size - TRAILER_SIZE:
            raise ModelLoadError(f"{path}: corrupt library (its integrity record says {length} bytes, "
                                 f"the file holds {size - TRAILER_SIZE})")
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            remaining = length
            while remaining:
                block = f.read(min(1 << 22, remaining))
                sha.update(block)
                remaining -= len(block)
        if sha.digest() != digest:
            raise ModelLoadError(f"{path}: corrupt library (its contents do not match its integrity record)")
        return
    problem = _elf_fits(path, size)
    if problem:
        raise ModelLoadError(f"{path}: cannot load: {problem}; export or copy it again")


def _device(device: str):
    return tvm.cpu() if device == "cpu" else tvm.cuda()


class Runner:
    """A callable compiled model: ``runner(x) -> numpy array`` (a tuple for several outputs).

    Safe to call from several threads at once: a Relax VM is not (two threads in one VM crash
    it), so every thread gets its own VM over the one shared executable, made on its first call.
    """

    def __init__(self, executable, device: str = "cpu", source: str = "<memory>", meta: dict | None = None):
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device
        self.source = source
        self._executable = executable
        self._dev = _device(device)
        self._local = threading.local()  # this thread's VM
        self._lock = threading.Lock()  # VMs are made one at a time
        if meta is None:  # a loaded library: its description lives inside it
            vm = self._machine()
            try:
                meta = json.loads(str(vm[META_FUNCTION]()))
            except Exception:  # noqa: BLE001 - no such function, or not our JSON: not one of ours
                raise ModelLoadError(f"{source}: not an fscnn-tvm library (no {META_FUNCTION} "
                                     "description inside)") from None
        self.meta = meta
        self.input_shape = tuple(self.meta["input_shape"])
        self.input_dtype = self.meta["input_dtype"]

    def _machine(self):
        """This thread's Relax VM on the device, made on first use (a CUDA model compiles without
        a GPU, so the device is only needed here)."""
        vm = getattr(self._local, "vm", None)
        if vm is None:
            if not self._dev.exist:
                raise ModelLoadError(f"{self.source}: no {self.device} device here to run it on "
                                     "(it can still be exported)")
            with self._lock:
                vm = self._local.vm = relax.VirtualMachine(self._executable, self._dev)
        return vm

    @property
    def plan(self) -> list:
        """The per-layer plan the library was built with (one ``plan.LayerPlan`` per conv/linear)."""
        from .plan import LayerPlan  # noqa: PLC0415 - TVM only, no torch

        return [LayerPlan.from_dict(row) for row in self.meta["plan"]]

    def explain(self) -> str:
        """The plan as a table: per layer the predicted time of each kernel kind, the choice, why."""
        from .plan import format_plan  # noqa: PLC0415

        return format_plan(self.plan)

    def _check(self, x) -> np.ndarray:
        arr = x if isinstance(x, np.ndarray) else np.asarray(getattr(x, "detach", lambda: x)())
        if tuple(arr.shape) != self.input_shape:
            raise InputError(f"{self.source}: input has shape {tuple(arr.shape)}, expected "
                             f"{self.input_shape}")
        if str(arr.dtype) != self.input_dtype:
            raise InputError(f"{self.source}: input has dtype {arr.dtype}, expected "
                             f"{self.input_dtype} (convert with .astype('{self.input_dtype}'))")
        return np.ascontiguousarray(arr)

    def _run(self, tensor):
        return self._machine()["main"](tensor)

    def _input(self, arr: np.ndarray):
        """This thread's input tensor on the device, holding ``arr``. It is allocated once: a
        fresh one per call costs its page faults every call (0.13 ms of mobilenet_v2's 4.4 ms);
        the outputs are copied out before the next call can overwrite it."""
        tensor = getattr(self._local, "input", None)
        if tensor is None:
            tensor = self._local.input = tvm.runtime.empty(self.input_shape, self.input_dtype, self._dev)
        tensor.copyfrom(arr)
        return tensor

    def __call__(self, x):
        self._machine()  # the device is checked before the input is copied to it
        out = self._run(self._input(self._check(x)))
        outs = [o.numpy() for o in out] if not hasattr(out, "numpy") else [out.numpy()]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def benchmark(self, x, repeat: int = 10, warmup: int = 1) -> list[float]:
        """Wall-clock latencies in seconds of ``repeat`` runs on ``x`` (input copy excluded)."""
        self._machine()
        tensor = tvm.runtime.tensor(self._check(x), self._dev)
        for _ in range(warmup):
            self._run(tensor)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self._run(tensor)
            self._dev.sync()
            times.append(time.perf_counter() - start)
        return times


def load(path: str, device: str = "cpu") -> Runner:
    """Load a library written by ``CompiledModel.export_library`` (or ``fscnn-tvm compile``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"{path}: no such file")
    check_library(path)
    try:
        with native_stderr_silenced():
            lib = tvm.runtime.load_module(path)
    except Exception as err:  # noqa: BLE001 - dlopen / format errors come in many types
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        if "load_from_bytes.cuda" in first:
            raise ModelLoadError(f"{path}: built for CUDA; loading it needs TVM's CUDA runtime and a GPU "
                                 "(none here)") from None
        raise ModelLoadError(f"{path}: cannot load as a compiled model ({first})") from None
    return Runner(lib, device, source=path)
