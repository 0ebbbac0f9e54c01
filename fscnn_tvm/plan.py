"""The per-layer plan: which kernel each conv2d/linear gets, and why.

This module owns the decision: which kernel kinds can run a layer (:func:`candidates`), the
predicted-fastest of them with its reason (:func:`choose`, asking ``perf_model.predict``), and the
``sparse=`` mode on top (:func:`decide`). :func:`make_plan` applies it to every layer, and
:func:`format_plan` prints the one table users see (``CompiledModel.explain()``, ``fscnn-tvm
explain``, with measured columns when there are measurements).

Adding a kernel kind: list it in :func:`candidates` where it can run; the performance model
predicts it (``perf_model.features``), and everything here and in ``explain`` picks it up.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from . import kinds, perf_model, sparse
from .layer import Layer, conv_spec
from .ops import winograd

SPARSE_MODES = ("auto", "always", "never")
NEAR_TIE = 1.05  # within 5%: a measured choice counts as right; a predicted dense kind may yield


@dataclass(frozen=True)
class LayerPlan:
    """One row of the plan (also what a compiled library carries in its description)."""

    index: int
    name: str
    op: str  # conv2d | linear
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel_size: tuple[int, ...]  # (kh, kw) for conv2d, () for linear
    stride: tuple[int, ...]
    groups: int
    epilogue: str  # e.g. "bias+residual+relu"
    sparsity: float
    kernel: str  # a kernel kind: dense | winograd{m} | csr | bsr{R} | actsparse
    reason: str
    predicted_ms: dict = field(default_factory=dict)  # kind -> performance-model time
    input_zeros: float | None = None  # calibrated zero fraction of the input (None: not calibrated)
    input_zeros_spread: float | None = None  # its standard deviation over the calibration samples
    # An activation-sparse conv counts its input's nonzeros first and runs this kind instead on an
    # input with fewer zeros than ``fallback_zeros`` (its break-even against that kind).
    fallback: str | None = None
    fallback_zeros: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LayerPlan:
        """A row read back from a library's JSON description (lists become tuples again)."""
        tuples = ("in_shape", "out_shape", "kernel_size", "stride")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


# ---------------------------------------------------------------- what can run a layer

def sparse_support(layer: Layer) -> str | None:
    """Why ``layer`` cannot run a sparse kernel, or ``None`` when it can."""
    if layer.op == "linear":
        return None
    if layer.attrs["groups"] != 1:
        return f"groups={layer.attrs['groups']}: sparse kernels need groups=1"
    if layer.attrs["stride"][0] != layer.attrs["stride"][1]:
        return f"stride {layer.attrs['stride']}: sparse kernels need equal strides"
    return None


def sparse_kind(layer: Layer) -> str:
    """``bsr{R}`` when the weight is block-pruned over output channels, else ``csr``."""
    if layer.op == "conv2d":
        return kinds.bsr(sparse.detect_block_rows(layer.weight))
    return kinds.CSR


def winograd_support(layer: Layer, profile=None) -> str | None:
    """Why ``layer`` cannot run a Winograd kernel, or ``None`` when it can."""
    if layer.op != "conv2d":
        return "linear"
    if profile is not None and profile.cuda:
        return "Winograd kernels are x86 only"
    return winograd.supports(conv_spec(layer))


def act_sparse_support(layer: Layer, profile=None) -> str | None:
    """Why ``layer`` cannot run the activation-sparse kernel, or ``None`` when it can."""
    if layer.input_zeros is None:
        return "input zeros not calibrated"
    if profile is not None and profile.cuda:
        return "activation-sparse kernels are x86 only"
    if layer.op == "conv2d" and layer.attrs["groups"] != 1:
        return f"groups={layer.attrs['groups']}: the activation-sparse kernel needs groups=1"
    return None


def dense_candidates(layer: Layer, profile=None, use_winograd: bool = True) -> list[str]:
    """The dense-weight kinds that can run ``layer``: direct, and Winograd F(2x2) and F(4x4) for
    3x3 stride-1 convs (``use_winograd=False``: direct only, the opt-out for direct numerics), in
    order of closeness to the direct convolution's numerics (and of transformed-weight bytes)."""
    if not use_winograd or winograd_support(layer, profile) is not None:
        return [kinds.DENSE]
    from .schedules.x86.rules import WINOGRAD_TILES  # noqa: PLC0415 - x86 rule

    return [kinds.DENSE] + [kinds.winograd(m) for m in WINOGRAD_TILES]


def best_dense(layer: Layer, profile, use_winograd: bool = True) -> tuple[str, float]:
    """(the dense-weight kind the plan would run, its predicted seconds) for ``layer``."""
    times = {k: perf_model.predict(layer, k, profile) for k in dense_candidates(layer, profile, use_winograd)}
    kind, _ = _dense_choice(list(times), times)
    return kind, times[kind]


def candidates(layer: Layer, profile=None, use_winograd: bool = True) -> list[str]:
    """The kernel kinds that can run ``layer``: the dense ones (:func:`dense_candidates`), CSR,
    and the BSR kind its weight suits; ``actsparse`` where the input's zeros were calibrated.
    Blocks of 8 output channels are also blocks of 4, and on a CPU with 16 vector registers (fewer
    than 16 fp32 lanes: AVX2) BSR4 measured 1.1-1.3x faster than BSR8 on them (RESULTS.md, session
    5), so both compete there; with 32 registers and on GPUs only BSR8 was measured."""
    dense = dense_candidates(layer, profile, use_winograd)
    act = [kinds.ACT_SPARSE] if act_sparse_support(layer, profile) is None else []
    if sparse_support(layer) is not None:
        return dense + act
    rows = kinds.block_rows(sparse_kind(layer))
    few_registers = profile is not None and not profile.cuda and profile.lanes < 16
    also = [4] if rows == 8 and few_registers else []
    return dense + [kinds.CSR] + [kinds.bsr(r) for r in [rows, *also] if r > 1] + act


# ---------------------------------------------------------------- the choice

def capacity(layer: Layer, kind: str) -> float:
    """Nonzero count (CSR) or block count (BSR) of a fully dense weight."""
    rows = kinds.block_rows(kind)
    if rows == 1:
        return float(layer.weight.size)
    oc = layer.weight.shape[0]
    return float(-(-oc // rows) * (layer.weight.size // oc))


def break_even(layer: Layer, kind: str, profile, against: str = kinds.DENSE) -> float | None:
    """Sparsity above which ``kind`` is predicted faster than the dense kind ``against``
    (``None``: never)."""
    t_dense = perf_model.predict(layer, against, profile)
    fixed = perf_model.predict(layer, kind, profile, nnz=0.0)
    full = capacity(layer, kind)
    per_nnz = (perf_model.predict(layer, kind, profile, nnz=full) - fixed) / full
    if fixed >= t_dense:
        return None
    if per_nnz <= 0:
        return 0.0
    return float(max(0.0, 1.0 - (t_dense - fixed) / per_nnz / full))


@dataclass(frozen=True)
class Choice:
    kind: str
    times: dict  # kind -> predicted seconds, every candidate
    reason: str
    break_even: float | None = None  # sparsity above which the sparse kind beats the best dense kind
    fallback: tuple | None = None  # activation-sparse conv: (kind, input zeros below which it runs)


def _dense_choice(options: list[str], times: dict) -> tuple[str, str]:
    """The dense-weight kind to run and why, when there is a choice: the predicted fastest,
    unless a kind with better numerics (direct, then the smaller Winograd tile, which also
    streams fewer transformed-weight bytes: the order of :func:`dense_candidates`) is predicted
    within ``NEAR_TIE`` of it."""
    dense = [k for k in options if not kinds.is_sparse(k)]
    fastest = min(dense, key=lambda k: (times[k], k != kinds.DENSE))
    if len(dense) == 1:
        return fastest, ""
    best = next(k for k in dense if times[k] <= NEAR_TIE * times[fastest])
    if best != fastest:
        return best, (f"{best} {times[best] * 1e3:.3f} ms, within {NEAR_TIE - 1:.0%} of {fastest} "
                      f"{times[fastest] * 1e3:.3f} ms (closer numerics, fewer weight bytes)")
    runner_up = min((k for k in dense if k != best), key=times.get)
    return best, (f"{best} {times[best] * 1e3:.3f} ms < {runner_up} {times[runner_up] * 1e3:.3f} ms "
                  f"({times[runner_up] / times[best]:.1f}x)")


def choose(layer: Layer, profile, use_winograd: bool = True, allow_sparse: bool = True) -> Choice:
    """The predicted-fastest kernel kind for ``layer`` with every candidate's time and a reason.

    A sparse kind is weighed against the fastest dense kind (Winograd where it runs and pays), so
    its break-even sparsity is the one against that kind, and the reason names it; where the
    chosen kernel's time is mostly its weights streaming from DRAM, the reason says so.
    ``allow_sparse=False`` chooses among the dense kinds only (``sparse="never"``)."""
    choice = _with_act_sparse(layer, profile, _choose(layer, profile, use_winograd, allow_sparse))
    bound = perf_model.memory_bound(layer, choice.kind, profile)
    return replace(choice, reason=f"{choice.reason}; {bound}") if bound else choice


def act_break_even(layer: Layer, profile, against_seconds: float) -> float | None:
    """The input zero fraction above which the activation-sparse kernel is predicted faster than
    ``against_seconds`` (``None``: not even on an all-zero input)."""
    def at(zeros: float) -> float:
        return perf_model.predict(replace(layer, input_zeros=(zeros, 0.0)), kinds.ACT_SPARSE, profile)

    if at(1.0) >= against_seconds:
        return None
    if at(0.0) < against_seconds:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(14):  # to 1e-4
        mid = (low + high) / 2
        low, high = (mid, high) if at(mid) >= against_seconds else (low, mid)
    return high


def _with_act_sparse(layer: Layer, profile, choice: Choice) -> Choice:
    """``choice`` weighed against the activation-sparse kernel where it can run (the input's
    zeros calibrated): the faster of the two, the reason saying at which input zeros it pays.
    The kernel must be predicted faster by more than ``NEAR_TIE``: a conv holds its fallback's
    weights besides its own, and a linear layer has no fallback (ResNet-50's fc after the
    average pool, 0.00 input zeros, took it on a predicted tie and ran 0.93x the dense kernel's
    speed; layer3/4 convs took it for 1-2% predicted gains, each holding its weights twice)."""
    if kinds.ACT_SPARSE not in choice.times:
        return choice
    t_act, t_best = choice.times[kinds.ACT_SPARSE], choice.times[choice.kind]
    zeros = layer.input_zeros[0]
    even = act_break_even(layer, profile, t_best / NEAR_TIE)
    pays = "never pays" if even is None else f"pays above input zeros {even:.2f}"
    if t_best <= NEAR_TIE * t_act < NEAR_TIE * t_best:
        return replace(choice, reason=f"{choice.reason}; actsparse {t_act * 1e3:.3f} ms is within "
                                      f"{NEAR_TIE - 1:.0%} ({pays}; input zeros {zeros:.2f})")
    if t_act < t_best:
        reason = (f"actsparse {t_act * 1e3:.3f} ms < {choice.kind} {t_best * 1e3:.3f} ms "
                  f"({t_best / t_act:.2f}x at calibrated input zeros {zeros:.2f}; {pays})")
        fallback = None
        below = act_break_even(layer, profile, t_best) if layer.op == "conv2d" else None
        if below:  # an input with fewer zeros, where it is predicted slower, runs choice.kind
            fallback = (choice.kind, below)
            reason += (f"; an input with fewer zeros than {below:.2f} runs {choice.kind} "
                       "(counted per call; both kernels' weights held)")
        return Choice(kinds.ACT_SPARSE, choice.times, reason, choice.break_even, fallback)
    return replace(choice, reason=f"{choice.reason}; actsparse {pays} (input zeros {zeros:.2f})")


def _choose(layer: Layer, profile, use_winograd: bool, allow_sparse: bool) -> Choice:
    every = candidates(layer, profile, use_winograd)
    times = {k: perf_model.predict(layer, k, profile) for k in every}  # actsparse too: _with_act_sparse
    options = [k for k in every if k != kinds.ACT_SPARSE]
    best_dense, dense_reason = _dense_choice(options, times)
    sparse_kinds = [k for k in options if kinds.is_sparse(k)]
    if not sparse_kinds or not allow_sparse:
        parts = [p for p in (dense_reason, sparse_support(layer) if allow_sparse else "sparse='never'") if p]
        return Choice(best_dense, times, "; ".join(parts) or "dense only")
    rival = min(sparse_kinds, key=times.get)
    even = break_even(layer, rival, profile, best_dense)
    ms = {k: times[k] * 1e3 for k in options}
    if times[rival] < times[best_dense]:
        reason = (f"{rival} {ms[rival]:.3f} ms < {best_dense} {ms[best_dense]:.3f} ms "
                  f"({times[best_dense] / times[rival]:.1f}x; pays above sparsity {even:.2f})")
        return Choice(rival, times, reason, even)
    against = f" against {best_dense}" if best_dense != kinds.DENSE else ""
    if even is None:
        sparse_part = f"{rival} never pays here{against} (its fixed cost alone is more)"
    else:
        sparse_part = f"{rival} pays above sparsity {even:.2f}{against}"
    if dense_reason:
        reason = f"{dense_reason}; {sparse_part}"
    else:
        reason = f"dense {ms['dense']:.3f} ms < {rival} {ms[rival]:.3f} ms ({sparse_part})"
    return Choice(best_dense, times, reason, even)


def decide(layer: Layer, sparse_mode: str, profile=None, use_winograd: bool = True) -> tuple[str, str, dict, tuple | None]:
    """(kernel kind, reason, predicted ms per candidate kind, fallback) for ``layer`` under
    ``sparse_mode``; ``fallback``: see :attr:`Choice.fallback`.

    ``auto`` takes :func:`choose`'s answer (it needs ``profile``); ``always`` runs the sparse
    kind wherever one can run; ``never`` chooses among the dense kinds only (direct without a
    profile). The predicted times are filled in whenever a profile is given.
    ``use_winograd=False`` keeps every dense layer on the direct kernel.
    """
    if sparse_mode not in SPARSE_MODES:
        raise ValueError(f"sparse must be one of {SPARSE_MODES}, got {sparse_mode!r}")
    choice = choose(layer, profile, use_winograd) if profile is not None else None
    predicted = {k: round(t * 1e3, 4) for k, t in choice.times.items()} if choice else {}
    if sparse_mode == "never":
        if profile is None:
            return kinds.DENSE, "sparse='never'", predicted, None
        never = choose(layer, profile, use_winograd, allow_sparse=False)
        return never.kind, never.reason, predicted, None
    unsupported = sparse_support(layer)
    if unsupported:
        return kinds.DENSE, unsupported, predicted, None
    kind = sparse_kind(layer)
    if sparse_mode == "always":
        rows = kinds.block_rows(kind)
        blocks = f" (output-channel blocks of {rows} share columns)" if rows > 1 else ""
        return kind, "sparse='always'" + blocks, predicted, None
    if choice is None:
        raise ValueError("sparse='auto' needs a performance profile (profiles.load_profile)")
    return choice.kind, choice.reason, predicted, choice.fallback


def make_plan(layers: list[Layer], sparse_mode: str = "auto", profile=None,
              use_winograd: bool = True) -> list[LayerPlan]:
    """One :class:`LayerPlan` per layer (``profile``: a ``profiles.Profile``, needed for auto;
    ``use_winograd=False``: dense layers stay on the direct kernel)."""
    rows = []
    for layer in layers:
        kernel, reason, predicted, fallback = decide(layer, sparse_mode, profile, use_winograd)
        conv = layer.op == "conv2d"
        rows.append(LayerPlan(
            index=layer.index, name=layer.name, op=layer.op, in_shape=layer.in_shape,
            out_shape=layer.out_shape,
            kernel_size=tuple(layer.weight.shape[2:]) if conv else (),
            stride=tuple(layer.attrs["stride"]) if conv else (),
            groups=layer.attrs["groups"] if conv else 1,
            epilogue=layer.epilogue, sparsity=round(1.0 - layer.density, 4),
            kernel=kernel, reason=reason, predicted_ms=predicted,
            input_zeros=None if layer.input_zeros is None else round(layer.input_zeros[0], 4),
            input_zeros_spread=None if layer.input_zeros is None else round(layer.input_zeros[1], 4),
            fallback=fallback[0] if fallback else None,
            fallback_zeros=round(fallback[1], 4) if fallback else None))
    return rows


# ---------------------------------------------------------------- the table

def shape_text(r: LayerPlan) -> str:
    """``cin->cout KHxKW/stride @HxW [gG]`` for a conv, ``in->out`` for a linear."""
    if r.op == "conv2d":
        kh, kw = r.kernel_size
        text = f"{r.in_shape[1]}->{r.out_shape[1]} {kh}x{kw}/{r.stride[0]} @{r.in_shape[2]}x{r.in_shape[3]}"
        return text + (f" g{r.groups}" if r.groups > 1 else "")
    return f"{r.in_shape[1]}->{r.out_shape[1]}"


def _kind_order(kind: str) -> tuple:
    parsed = kinds.Kind.parse(kind)
    return (kinds.FAMILIES.index(parsed.family), parsed.rows)


def _ms(value, width: int = 8) -> str:
    return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"




def format_plan(rows: list[LayerPlan], measured: list[dict] | None = None) -> str:
    """A fixed-width table of the plan, one line per layer: predicted ms of every candidate kind,
    the choice and its reason; with ``measured`` (kind -> ms per row) also the measured times,
    the measured fastest and whether the choice is within 5% of it."""
    columns = sorted({k for r in rows for k in r.predicted_ms} | ({k for m in measured for k in m}
                                                                  if measured else set()), key=_kind_order)
    widths = {k: max(8, len(k)) for k in columns}
    mwidths = {k: max(8, len(k) + 2) for k in columns}
    choice = max([6] + [len(r.kernel) for r in rows])
    head = (f"{'#':>3} {'layer':<26} {'op':<6} {'shape':<24} {'sparsity':>8} {'in.zeros':>8} "
            + " ".join(f"{k:>{widths[k]}}" for k in columns) + f" {'choice':<{choice}}")
    if measured:
        head += " " + " ".join(f"{'m.' + k:>{mwidths[k]}}" for k in columns) + f" {'fastest':<{choice}} ok"
    head += "  reason"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(rows):
        zeros = "-" if r.input_zeros is None else f"{r.input_zeros:.2f}"
        line = (f"{r.index:>3} {r.name[:26]:<26} {r.op:<6} {shape_text(r):<24} {r.sparsity:>8.3f} {zeros:>8} "
                + " ".join(_ms(r.predicted_ms.get(k), widths[k]) for k in columns) + f" {r.kernel:<{choice}}")
        if measured:
            m = measured[i]
            fastest = min(m, key=m.get)
            right = m[r.kernel] <= NEAR_TIE * m[fastest]
            line += (" " + " ".join(_ms(m.get(k), mwidths[k]) for k in columns)
                     + f" {fastest:<{choice}} {'yes' if right else 'NO '}")
        lines.append(line + "  " + r.reason)
    if rows and all(r.input_zeros is None for r in rows):
        lines.append("input zeros not calibrated: no activation-sparse kernels (calibrate with "
                     "calibration_data=, or --calibration-data)")
    return "\n".join(lines)
