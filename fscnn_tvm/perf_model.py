"""Park-style performance model: predicted time of each kernel kind for a layer, and the choice.

Park et al. predict a sparse layer's time with a roofline, ``max(alpha*x*C/F, (S_A + beta*x*S_W)/B)``
(C dense FLOPs, x density, S_A activation and S_W weight bytes, F and B the target's compute rate
and bandwidth). Our kernels run their phases one after the other (stage the padded input, sweep
the nonzeros with a register tile, crop and apply the epilogue), so here the phases add up, and
each term is the exact count of what *our* kernel does for this layer, taken from the same knob
rules the kernel builder uses (``kernels.py``)::

    t_dense = flop_padded * max(1, 8 / accumulators) / F_dense + out_vectors * c_store
              + padded_input_bytes / B + t_call
    t_csr   = 2*nnz*N*tiles*tile / F_csr + row_steps * c_step + (staged + cropped bytes) / B + t_call
    t_bsr   = 2*nnzb*R*N*tiles*tile / F_bsr + row_steps * c_step_bsr + (same bytes) / B + t_call
    t_linear     = flop / F_gemv + weight_bytes / B_w + t_call
    t_csr_linear = N*nnz * c_nnz + N*rows * c_row + t_call   (8 bytes streamed per nonzero)

``tile`` counts the padded register tile (junk columns of the flat output included), ``row_steps``
the (image, tile, chunk, row) steps whose accumulator load/store and loop set-up do not depend on
the row's length: it is what makes very sparse and small layers slower per nonzero than the
FLOP term alone says. 1x1 convolutions, whose rows are short, get their own F and c_step.
Every coefficient is a rate of this target: ``fscnn-tvm calibrate`` measures a set of layers and
fits them (non-negative least squares on relative error), and the result is a :class:`Profile`
stored as ``tuning_logs/<target-tag>/profile.json``.
"""
from __future__ import annotations

import json
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import kernels, sparse, targets
from .errors import ProfileError, ProfileWarning
from .passes import Layer

PROFILE_FORMAT = 1
FMA_IN_FLIGHT = 8  # independent FMAs a core needs to hide FMA latency (Zen 4/5, Intel: 2 pipes x 4)
PROFILE_NAME = "profile.json"
# Every coefficient of the model, in seconds per unit of its feature.
COEFFICIENTS = (
    "call",  # per kernel call
    "dense.flop", "dense.flop_1x1", "dense.flop_grouped", "dense.store", "dense.pad_byte",
    "csr.flop", "csr.flop_1x1", "csr.step", "csr.step_1x1",
    "bsr.flop", "bsr.step",
    "sparse.byte",  # staging and crop of the sparse convs
    "linear.flop", "linear.byte",
    "csr_linear.nnz", "csr_linear.row",
)
# CUDA targets (schedules/cuda): a roofline of our one direct conv kernel and linear kernel.
CUDA_COEFFICIENTS = (
    "cuda.launch",  # per kernel launch (staging copies included)
    "cuda.dense_flop", "cuda.bsr_flop", "cuda.csr_flop",  # FLOPs the kernel does, padding included
    "cuda.block",  # per thread block (staging the row's nonzeros, the barriers)
    "cuda.byte",  # staging, input and output traffic of the convs
    "cuda.linear_byte", "cuda.csr_linear_byte",  # weights (+ column indices) streamed by linears
)


def coefficient_names(target_tag: str) -> tuple[str, ...]:
    """The model's coefficients for a target tag (``cuda-*`` or a CPU)."""
    return CUDA_COEFFICIENTS if target_tag.startswith("cuda") else COEFFICIENTS


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

    def to_json(self) -> dict:
        return {"format": PROFILE_FORMAT, "target": self.target, "lanes": self.lanes,
                "coefficients": dict(self.coefficients), **self.meta}

    def save(self, path: str | os.PathLike) -> str:
        """Write atomically (temp file + rename); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        self.source = str(path)
        return str(path)


# Fitted on the reference machine (AMD Zen 5 class, AVX-512, one thread; `fscnn-tvm calibrate`),
# then made conservative: sparse terms x1.25, so without a calibration a layer goes sparse only
# when it clearly pays. Rates are per 16 lanes; other vector widths scale the FLOP terms.
_BUILTIN = {
    "call": 1e-7,
    "dense.flop": 1 / 240e9, "dense.flop_1x1": 1 / 220e9, "dense.flop_grouped": 1 / 65e9,
    "dense.store": 4e-9, "dense.pad_byte": 1 / 50e9,
    "csr.flop": 1 / 105e9, "csr.flop_1x1": 1 / 100e9, "csr.step": 10e-9, "csr.step_1x1": 1e-9,
    "bsr.flop": 1 / 240e9, "bsr.step": 2.5e-9,
    "sparse.byte": 1 / 85e9,
    "linear.flop": 1 / 2000e9, "linear.byte": 1 / 85e9,
    "csr_linear.nnz": 0.22e-9, "csr_linear.row": 5e-9,
}
# CUDA: not measured on a GPU yet (no GPU was available to calibrate); rates of the order an
# H100-class GPU reaches with kernels of this design, sparse ones deliberately low so that a
# layer goes sparse only where it clearly pays. `fscnn-tvm calibrate --target cuda` on a GPU
# replaces them.
_BUILTIN_CUDA = {
    "cuda.launch": 5e-6,
    "cuda.dense_flop": 1 / 8e12, "cuda.bsr_flop": 1 / 6e12, "cuda.csr_flop": 1 / 2.5e12,
    "cuda.block": 1e-9,
    "cuda.byte": 1 / 1.5e12,
    "cuda.linear_byte": 1 / 1.5e12, "cuda.csr_linear_byte": 1 / 1e12,
}
_CONSERVATIVE = 1.25
_SPARSE_TERMS = ("csr.", "bsr.", "sparse.", "csr_linear.")


def builtin_profile(target) -> Profile:
    """The conservative profile used when the target has no calibrated one."""
    if target.kind.name == "cuda":
        return Profile(targets.tag(target), dict(_BUILTIN_CUDA), 1,
                       {"note": "built-in CUDA estimates, not measured on a GPU"})
    lanes = targets.vector_lanes(target)
    coef = {}
    for name, value in _BUILTIN.items():
        if "flop" in name:
            value *= 16 / lanes
        if name.startswith(_SPARSE_TERMS):
            value *= _CONSERVATIVE
        coef[name] = value
    return Profile(targets.tag(target), coef, lanes, {"note": "built-in conservative profile"})


def tuning_logs_root() -> Path:
    """``$FSCNN_TVM_TUNING_LOGS``, else the repository's ``tuning_logs/``."""
    env = os.environ.get("FSCNN_TVM_TUNING_LOGS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "tuning_logs"


def default_profile_path(target) -> Path:
    return tuning_logs_root() / targets.tag(target) / PROFILE_NAME


def read_profile(path: str | os.PathLike) -> Profile:
    """Load a profile file; :class:`ProfileError` names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProfileError(f"{path}: not a valid profile (corrupt JSON: {err})") from None
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"{path}: not a profile of format {PROFILE_FORMAT} (got format "
                           f"{data.get('format') if isinstance(data, dict) else None!r})")
    if not isinstance(data.get("target"), str):
        raise ProfileError(f"{path}: no target tag")
    names = coefficient_names(data["target"])
    coef = data.get("coefficients")
    if not isinstance(coef, dict) or set(coef) != set(names) or not all(
            isinstance(v, (int, float)) and v >= 0 for v in coef.values()):
        raise ProfileError(f"{path}: coefficients missing or invalid (expected non-negative numbers "
                           f"for {', '.join(names)})")
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


# ---------------------------------------------------------------- features: what each kernel does

def cuda_features(layer: Layer, kind: str, nnz: float | None = None) -> dict[str, float]:
    """Counts of what the CUDA kernels (``schedules/cuda``) do for ``layer``."""
    from .schedules.cuda import conv2d as cuda_conv  # noqa: PLC0415 - CUDA only

    if layer.op == "linear":
        batch, in_features = layer.in_shape
        out_features = layer.out_shape[1]
        if kind == "dense":
            return {"cuda.launch": 1.0, "cuda.linear_byte": 4.0 * batch * in_features * out_features}
        count = float(np.count_nonzero(layer.weight)) if nnz is None else nnz
        return {"cuda.launch": 1.0, "cuda.csr_linear_byte": 8.0 * batch * count}
    spec = kernels.conv_spec(layer)
    rows = cuda_conv.dense_block_rows(spec) if kind == "dense" else kernels.block_rows_of(kind)
    # unequal strides run TVM's own conv (kernels._cuda_kernel): counted like ours, unstaged
    lay = cuda_conv.layout(spec, rows) if spec.stride[0] == spec.stride[1] else None
    tiles = lay.tiles if lay else -(-spec.out_height * spec.out_width // (cuda_conv.THREADS * cuda_conv.COARSEN))
    swept = float(spec.batch * tiles * cuda_conv.THREADS * cuda_conv.COARSEN)
    per_row = layer.weight.size // spec.out_channels
    if kind == "dense":
        f = {"cuda.dense_flop": 2.0 * swept * (-(-spec.out_channels // rows) * rows) * per_row}
    elif nnz is None:
        count = float(np.count_nonzero(layer.weight)) if rows == 1 else float(
            sparse.bsr_from_dense(layer.weight, rows).indptr[-1])
        f = {"cuda.csr_flop" if rows == 1 else "cuda.bsr_flop": 2.0 * swept * count * rows}
    else:
        f = {"cuda.csr_flop" if rows == 1 else "cuda.bsr_flop": 2.0 * swept * nnz * rows}
    direct = lay is not None and lay.direct
    staged = 0 if direct else (lay.flat_len if lay else 0) + spec.batch * spec.in_channels * spec.height * spec.width
    f["cuda.launch"] = 1.0 if direct else 2.0 + (len(lay.phases) if lay and lay.stride > 1 else 1)
    f["cuda.block"] = float(spec.batch * tiles * -(-spec.out_channels // rows))
    f["cuda.byte"] = 4.0 * (staged + spec.batch * spec.out_channels * spec.out_height * spec.out_width)
    return f


def features(layer: Layer, kind: str, lanes: int, nnz: float | None = None, cuda: bool = False) -> dict[str, float]:
    """Counts of everything kernel ``kind`` does for ``layer`` (one per model coefficient).

    ``nnz`` overrides the weight's nonzero count (CSR) or block count (BSR) to predict the layer
    at another sparsity. ``cuda``: the CUDA kernels' counts (:func:`cuda_features`).
    """
    if cuda:
        return cuda_features(layer, kind, nnz)
    f = {"call": 1.0}
    if layer.op == "linear":
        batch, in_features = layer.in_shape
        out_features = layer.out_shape[1]
        if kind == "dense":
            block = 4 * lanes if out_features >= 4 * lanes else lanes
            padded = -(-out_features // block) * block
            f["linear.flop"] = 2.0 * batch * in_features * padded
            f["linear.byte"] = 4.0 * in_features * padded
        else:
            count = float(np.count_nonzero(layer.weight)) if nnz is None else nnz
            f["csr_linear.nnz"] = batch * count  # value + column index streamed per image
            f["csr_linear.row"] = batch * out_features  # tail loop and horizontal sum per row
        return f
    spec = kernels.conv_spec(layer)
    one = spec.kernel == (1, 1)
    if kind == "dense":
        conv_kind, ow_tile, oc_block = kernels.conv_tile(spec, lanes)
        owp = -(-spec.out_width // ow_tile) * ow_tile
        ocp = -(-spec.out_channels // oc_block) * oc_block
        work = 2.0 * spec.batch * ocp * spec.out_height * owp * (spec.in_channels // spec.groups) * \
            spec.kernel[0] * spec.kernel[1]
        key = "dense.flop_grouped" if conv_kind == "conv2d_spatial" else (
            "dense.flop_1x1" if one else "dense.flop")
        # A tile of fewer accumulators than FMAs in flight (2 pipes x 4 cycles) waits on latency.
        accumulators = ow_tile * oc_block / lanes
        f[key] = work * max(1.0, FMA_IN_FLIGHT / accumulators)
        f["dense.store"] = spec.batch * ocp * spec.out_height * owp / lanes
        if any(spec.padding):
            f["dense.pad_byte"] = 4.0 * spec.batch * spec.in_channels * (
                spec.height + spec.padding[0] + spec.padding[2]) * (spec.width + spec.padding[1] + spec.padding[3])
        return f
    rows = kernels.block_rows_of(kind)
    layout = kernels.sparse_conv_layout(spec, rows, lanes)
    tile = layout.tile
    if nnz is None:
        nnz = float(np.count_nonzero(layer.weight)) if rows == 1 else float(
            sparse.bsr_from_dense(layer.weight, rows).indptr[-1])
    swept = spec.batch * layout.tiles * tile  # outputs per row the register tile computes
    steps = float(spec.batch * layout.tiles * layout.chunks * layout.kernel_rows)
    if rows == 1:
        f["csr.flop_1x1" if one else "csr.flop"] = 2.0 * nnz * swept
        f["csr.step_1x1" if one else "csr.step"] = steps
    else:
        f["bsr.flop"] = 2.0 * nnz * rows * swept
        f["bsr.step"] = steps
    staged = 0 if layout.direct else layout.flat_len + spec.batch * spec.in_channels * spec.height * spec.width
    f["sparse.byte"] = 4.0 * (staged + len(layout.shifts) * spec.out_channels * swept + spec.batch * spec.out_channels *
                              spec.out_height * spec.out_width)
    return f


def predict(layer: Layer, kind: str, profile: Profile, nnz: float | None = None) -> float:
    """Predicted seconds of ``layer`` run by kernel ``kind`` (``dense``, ``csr``, ``bsr{R}``)."""
    counts = features(layer, kind, profile.lanes, nnz, profile.cuda)
    return sum(v * profile.coefficients[k] for k, v in counts.items())


# ---------------------------------------------------------------- the decision

@dataclass(frozen=True)
class Choice:
    kind: str
    times: dict  # kind -> predicted seconds, every candidate
    reason: str
    break_even: float | None = None  # sparsity above which the sparse kind beats dense


def candidates(layer: Layer, profile: Profile | None = None) -> list[str]:
    """The kernel kinds that can run ``layer``: dense, CSR, and the BSR kind its weight suits.
    Blocks of 8 output channels are also blocks of 4, and on a CPU with 16 vector registers (fewer
    than 16 fp32 lanes: AVX2) BSR4 measured 1.1-1.3x faster than BSR8 on them (RESULTS.md, session
    5), so both compete there; with 32 registers and on GPUs only BSR8 was measured."""
    from .plan import sparse_kind, sparse_support  # noqa: PLC0415 - plan imports this module

    if sparse_support(layer) is not None:
        return ["dense"]
    rows = kernels.block_rows_of(sparse_kind(layer))
    few_registers = profile is not None and not profile.cuda and profile.lanes < 16
    also = [4] if rows == 8 and few_registers else []
    return ["dense", "csr"] + [f"bsr{r}" for r in [rows, *also] if r > 1]


def capacity(layer: Layer, kind: str) -> float:
    """Nonzero count (CSR) or block count (BSR) of a fully dense weight."""
    rows = kernels.block_rows_of(kind)
    if rows == 1:
        return float(layer.weight.size)
    oc = layer.weight.shape[0]
    return float(-(-oc // rows) * (layer.weight.size // oc))


def break_even(layer: Layer, kind: str, profile: Profile) -> float | None:
    """Sparsity above which ``kind`` is predicted faster than dense (``None``: never)."""
    t_dense = predict(layer, "dense", profile)
    fixed = predict(layer, kind, profile, nnz=0.0)
    full = capacity(layer, kind)
    per_nnz = (predict(layer, kind, profile, nnz=full) - fixed) / full
    if fixed >= t_dense:
        return None
    if per_nnz <= 0:
        return 0.0
    return float(max(0.0, 1.0 - (t_dense - fixed) / per_nnz / full))


def choose(layer: Layer, profile: Profile) -> Choice:
    """The predicted-fastest kernel kind for ``layer`` with every candidate's time and a reason."""
    kinds = candidates(layer, profile)
    times = {k: predict(layer, k, profile) for k in kinds}
    best = min(kinds, key=lambda k: (times[k], k != "dense"))  # ties go to dense
    sparse_kinds = [k for k in kinds if k != "dense"]
    if not sparse_kinds:
        from .plan import sparse_support  # noqa: PLC0415

        return Choice("dense", times, sparse_support(layer) or "dense only")
    rival = best if best != "dense" else min(sparse_kinds, key=times.get)
    even = break_even(layer, rival, profile)
    ms = {k: times[k] * 1e3 for k in kinds}
    if best != "dense":
        reason = (f"{best} {ms[best]:.3f} ms < dense {ms['dense']:.3f} ms "
                  f"({times['dense'] / times[best]:.1f}x; pays above sparsity {even:.2f})")
    elif even is None:
        reason = f"dense {ms['dense']:.3f} ms; {rival} never pays here (its fixed cost alone is more)"
    else:
        reason = (f"dense {ms['dense']:.3f} ms < {rival} {ms[rival]:.3f} ms "
                  f"({rival} pays above sparsity {even:.2f})")
    return Choice(best, times, reason, even)


# ---------------------------------------------------------------- fitting

def fit(samples: list[tuple[Layer, str, float]], lanes: int, cuda: bool = False) -> tuple[dict, float]:
    """Non-negative least squares on relative error: (coefficients, median relative error).

    ``samples`` are (layer, kind, measured seconds). Coefficients no sample exercises keep the
    built-in value.
    """
    from scipy.optimize import nnls  # noqa: PLC0415 - only calibration fits

    names = CUDA_COEFFICIENTS if cuda else COEFFICIENTS
    rows = np.array([[features(layer, kind, lanes, cuda=cuda).get(c, 0.0) for c in names]
                     for layer, kind, _ in samples])
    t = np.array([s for _, _, s in samples])
    scale = np.maximum(rows.max(axis=0), 1e-30)
    used = rows.max(axis=0) > 0
    a = (rows / scale) / t[:, None]
    coef_scaled, _ = nnls(a[:, used], np.ones(len(t)), maxiter=10000)
    coef = dict(_BUILTIN_CUDA if cuda else _BUILTIN)
    for name, value in zip(np.array(names)[used], coef_scaled / scale[used]):
        coef[str(name)] = float(value)
    pred = rows @ np.array([coef[c] for c in names])
    return coef, float(np.median(np.abs(pred - t) / t))


def profile_meta(samples: int, error: float, target) -> dict:
    import tvm  # noqa: PLC0415

    from . import __version__  # noqa: PLC0415

    return {"tvm": tvm.__version__, "fscnn_tvm": __version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host_cpu": host_cpu(), "threads": int(os.environ.get("TVM_NUM_THREADS", "0") or 0),
            "target_full": targets.describe(target), "samples": samples,
            "fit_median_relative_error": round(error, 4)}
