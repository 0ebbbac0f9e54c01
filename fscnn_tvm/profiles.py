"""Performance profiles: the calibrated rates of the performance model for one target, on disk.

A profile is ``tuning_logs/<target-tag>/profile.json`` (written by ``fscnn-tvm calibrate``): the
coefficients of :mod:`perf_model` plus where they came from (TVM version, date, host CPU, fit
error). Without one, a conservative built-in profile is used, with a :class:`ProfileWarning`.
"""
from __future__ import annotations

import functools
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import fileio, targets
from .errors import ProfileError, ProfileWarning
from .perf_model import coefficient_names

PROFILE_FORMAT = 1
PROFILE_NAME = "profile.json"


@dataclass
class Profile:
    """Coefficients of the model for one target, and where they came from."""

    target: str  # targets.tag()
    coefficients: dict[str, float]
    lanes: int = 16
    meta: dict = field(default_factory=dict)  # tvm, date, host_cpu, samples, fit error
    source: str = "built-in"  # file path, or "built-in"

    @property
    def cuda(self) -> bool:
        return self.target.startswith("cuda")

    @functools.cached_property
    def caches(self) -> targets.Caches:
        """The caches of the machine the profile was measured on (older profiles: the target's)."""
        known = self.meta.get("caches")
        if isinstance(known, dict) and {"l1", "l2", "l3"} <= set(known):
            return targets.Caches(int(known["l1"]), int(known["l2"]), int(known["l3"]))
        return targets.caches(targets.parse({"kind": "llvm", "mcpu": self.target.removeprefix("llvm-")}))

    def to_json(self) -> dict:
        return {"format": PROFILE_FORMAT, "target": self.target, "lanes": self.lanes,
                "coefficients": dict(self.coefficients), **self.meta}

    def save(self, path: str | os.PathLike) -> str:
        """Write atomically (temp file + rename); returns the path."""
        self.source = fileio.atomic_write_json(path, self.to_json())
        return self.source


# Fitted on the reference machine (AMD Zen 5 class, AVX-512, one thread; `fscnn-tvm calibrate`),
# then made conservative: sparse terms x1.25, so without a calibration a layer goes sparse only
# when it clearly pays. Rates are per 16 lanes; other vector widths scale the FLOP terms.
BUILTIN = {
    "call": 1e-7,
    "dense.flop": 1 / 240e9, "dense.flop_1x1": 1 / 220e9, "dense.flop_grouped": 1 / 65e9,
    "dense.store": 4e-9, "dense.pad_byte": 1 / 50e9,
    "winograd.flop": 1 / 240e9, "winograd.input": 0.03e-9, "winograd.output": 0.6e-9,
    "winograd.weight_byte": 1 / 300e9, "winograd.weight_dram_byte": 1 / 50e9, "winograd.scratch_byte": 1 / 100e9,
    "csr.flop": 1 / 105e9, "csr.flop_1x1": 1 / 100e9, "csr.flop_aligned": 1 / 130e9, "csr.step": 10e-9,
    "csr.step_1x1": 1e-9,
    "bsr.flop": 1 / 240e9, "bsr.flop_1x1": 1 / 200e9, "bsr.step": 2.5e-9,
    "sparse.byte": 1 / 85e9, "csr.flop_strided": 1 / 400e9,
    "conv.dram_byte": 1 / 100e9, "l3_byte": 1 / 150e9, "dram_byte": 1 / 30e9,
    "linear.flop": 1 / 2000e9, "linear.byte": 1 / 30e9,
    "act.flop": 1 / 143e9, "act.flop_1x1": 1 / 90e9, "act.list": 0.5e-9, "act.list_random": 3.6e-9, "act.compact": 2.6e-9, "act.tile": 0.5e-9,
    "csr_linear.nnz": 0.3e-9, "csr_linear.nnz_l2": 0.5e-9, "csr_linear.row": 5e-9,
}
# CUDA: not measured on a GPU yet (no GPU was available to calibrate); rates of the order an
# H100-class GPU reaches with kernels of this design, sparse ones deliberately low so that a
# layer goes sparse only where it clearly pays. `fscnn-tvm calibrate --target cuda` on a GPU
# replaces them.
BUILTIN_CUDA = {
    "cuda.launch": 5e-6,
    "cuda.dense_flop": 1 / 8e12, "cuda.bsr_flop": 1 / 6e12, "cuda.csr_flop": 1 / 2.5e12,
    "cuda.block": 1e-9,
    "cuda.byte": 1 / 1.5e12,
    "cuda.linear_byte": 1 / 1.5e12, "cuda.csr_linear_byte": 1 / 1e12,
}
_CONSERVATIVE = 1.25
_SPARSE_TERMS = ("csr.", "bsr.", "sparse.", "csr_linear.", "act.")


def builtin_coefficients(lanes: int, cuda: bool = False) -> dict[str, float]:
    """The built-in coefficients for a vector width (FLOP terms scaled, sparse terms made
    conservative)."""
    if cuda:
        return dict(BUILTIN_CUDA)
    coef = {}
    for name, value in BUILTIN.items():
        if "flop" in name:
            value *= 16 / lanes
        if name.startswith(_SPARSE_TERMS):
            value *= _CONSERVATIVE
        coef[name] = value
    return coef


def builtin_profile(target) -> Profile:
    """The conservative profile used when the target has no calibrated one."""
    if target.kind.name == "cuda":
        return Profile(targets.tag(target), builtin_coefficients(1, True), 1,
                       {"note": "built-in CUDA estimates, not measured on a GPU"})
    lanes = targets.vector_lanes(target)
    return Profile(targets.tag(target), builtin_coefficients(lanes), lanes,
                   {"note": "built-in conservative profile", "caches": targets.caches(target).to_json()})


def tuning_logs_root() -> Path:
    """``$FSCNN_TVM_TUNING_LOGS``, else the repository's ``tuning_logs/`` (profiles and tuning
    records, one folder per target tag)."""
    env = os.environ.get("FSCNN_TVM_TUNING_LOGS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "tuning_logs"


def default_profile_path(target) -> Path:
    return tuning_logs_root() / targets.tag(target) / PROFILE_NAME


def read_profile(path: str | os.PathLike) -> Profile:
    """Load a profile file; :class:`ProfileError` names the file and what is wrong. A profile
    measured with another TVM version is used with a :class:`ProfileWarning` (its rates are of
    code another TVM generated)."""
    import tvm  # noqa: PLC0415

    data = fileio.read_json_file(path, "profile", ProfileError, PROFILE_FORMAT)
    if not isinstance(data.get("target"), str):
        raise ProfileError(f"{path}: no target tag")
    names = coefficient_names(data["target"])
    coef = data.get("coefficients")
    if not isinstance(coef, dict) or not set(coef) <= set(names) or not all(
            isinstance(v, (int, float)) and v >= 0 for v in coef.values()) or not coef:
        raise ProfileError(f"{path}: coefficients missing or invalid (expected non-negative numbers "
                           f"for {', '.join(names)})")
    missing = [n for n in names if n not in coef]
    if missing:  # a profile calibrated before a kernel kind existed: its terms come built in
        lanes = int(data.get("lanes", 16))
        builtin = builtin_coefficients(lanes, data["target"].startswith("cuda"))
        coef = {**coef, **{n: builtin[n] for n in missing}}
        warnings.warn(f"{path}: profile has no {', '.join(missing)} (calibrated by an older version); "
                      "using built-in values for them (run `fscnn-tvm calibrate` again)",
                      ProfileWarning, stacklevel=3)
        data = {**data, "builtin_coefficients": missing}
    if data.get("tvm", tvm.__version__) != tvm.__version__:
        warnings.warn(f"{path}: profile measured with TVM {data['tvm']}, this is {tvm.__version__}; "
                      "its rates may be off (run `fscnn-tvm calibrate` again)", ProfileWarning, stacklevel=3)
    meta = {k: v for k, v in data.items() if k not in ("format", "target", "lanes", "coefficients")}
    return Profile(data["target"], {k: float(v) for k, v in coef.items()}, int(data.get("lanes", 16)),
                   meta, str(path))


def load_profile(target, path: str | os.PathLike | None = None) -> Profile:
    """The profile for ``target``: ``path`` if given, else ``tuning_logs/<tag>/profile.json``,
    else the built-in conservative one (with a :class:`ProfileWarning`).

    A profile made for another target is refused (:class:`ProfileError`).
    """
    target = targets.parse(target)
    tag = targets.tag(target)
    if path is None:
        default = default_profile_path(target)
        if not default.is_file():
            warnings.warn(f"no calibrated profile for {tag} (looked for {default}); using the built-in "
                          f"conservative profile. Run `fscnn-tvm calibrate --target ...` to make one.",
                          ProfileWarning, stacklevel=2)
            return builtin_profile(target)
        path = default
    profile = read_profile(path)
    if profile.target != tag:
        raise ProfileError(f"{path}: profile is for target {profile.target}, not {tag}")
    return profile


def resolve(target, profile=None) -> Profile:
    """``profile`` as a :class:`Profile`: itself, the file it names, or the target's default."""
    return profile if isinstance(profile, Profile) else load_profile(target, profile)


def profile_meta(samples: int, error: float, target) -> dict:
    """Where a calibrated profile came from (stored beside its coefficients)."""
    import tvm  # noqa: PLC0415

    from . import __version__  # noqa: PLC0415

    return {"tvm": tvm.__version__, "fscnn_tvm": __version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host_cpu": targets.host_cpu(), "threads": int(os.environ.get("TVM_NUM_THREADS", "0") or 0),
            "target_full": targets.describe(target), "samples": samples,
            "caches": targets.caches(target).to_json(),
            "fit_median_relative_error": round(error, 4)}
