"""The per-layer plan: which kernel each conv2d/linear gets, and why.

:func:`decide` is the one place where the kernel kind of a layer is chosen; :func:`make_plan`
applies it to every layer and :func:`format_plan` prints the table users see (``.plan``, the CLI).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import sparse
from .passes import Layer

SPARSE_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class LayerPlan:
    """One row of the plan."""

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
    kernel: str  # dense | csr | bsr{R}
    reason: str
    predicted_ms: dict = field(default_factory=dict)  # kind -> performance-model time

    def as_dict(self) -> dict:
        return asdict(self)


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
        rows = sparse.detect_block_rows(layer.weight)
        if rows > 1:
            return f"bsr{rows}"
    return "csr"


def decide(layer: Layer, sparse_mode: str, profile=None) -> tuple[str, str, dict]:
    """(kernel kind, reason, predicted ms per candidate kind) for ``layer`` under ``sparse_mode``.

    ``auto`` asks the performance model (``perf_model.choose``) with ``profile``; the predicted
    times are filled in whenever a profile is given.
    """
    if sparse_mode not in SPARSE_MODES:
        raise ValueError(f"sparse must be one of {SPARSE_MODES}, got {sparse_mode!r}")
    choice = None
    if profile is not None:
        from . import perf_model  # noqa: PLC0415 - perf_model imports this module

        choice = perf_model.choose(layer, profile)
    predicted = {k: round(t * 1e3, 4) for k, t in choice.times.items()} if choice else {}
    if sparse_mode == "never":
        return "dense", "sparse='never'", predicted
    unsupported = sparse_support(layer)
    if unsupported:
        return "dense", unsupported, predicted
    kind = sparse_kind(layer)
    if sparse_mode == "always":
        blocks = f" (output-channel blocks of {kind[3:]} share columns)" if kind != "csr" else ""
        return kind, "sparse='always'" + blocks, predicted
    if choice is None:
        raise ValueError("sparse='auto' needs a performance profile (perf_model.load_profile)")
    return choice.kind, choice.reason, predicted


def _epilogue(layer: Layer) -> str:
    parts = (["bias"] if layer.bias is not None else []) + (
        ["residual"] if layer.residual is not None else []) + ([layer.act] if layer.act != "none" else [])
    return "+".join(parts) or "-"


def make_plan(layers: list[Layer], sparse_mode: str = "auto", profile=None) -> list[LayerPlan]:
    """One :class:`LayerPlan` per layer (``profile``: a ``perf_model.Profile``, needed for auto)."""
    rows = []
    for layer in layers:
        kernel, reason, predicted = decide(layer, sparse_mode, profile)
        conv = layer.op == "conv2d"
        rows.append(LayerPlan(
            index=layer.index, name=layer.name, op=layer.op, in_shape=layer.in_shape,
            out_shape=layer.out_shape,
            kernel_size=tuple(layer.weight.shape[2:]) if conv else (),
            stride=tuple(layer.attrs["stride"]) if conv else (),
            groups=layer.attrs["groups"] if conv else 1,
            epilogue=_epilogue(layer), sparsity=round(1.0 - layer.density, 4),
            kernel=kernel, reason=reason, predicted_ms=predicted))
    return rows


def shape_text(r: LayerPlan) -> str:
    """``cin->cout KHxKW/stride @HxW [gG]`` for a conv, ``in->out`` for a linear."""
    if r.op == "conv2d":
        kh, kw = r.kernel_size
        text = f"{r.in_shape[1]}->{r.out_shape[1]} {kh}x{kw}/{r.stride[0]} @{r.in_shape[2]}x{r.in_shape[3]}"
        return text + (f" g{r.groups}" if r.groups > 1 else "")
    return f"{r.in_shape[1]}->{r.out_shape[1]}"


def format_plan(rows: list[LayerPlan]) -> str:
    """A fixed-width table of the plan, one line per layer, with the predicted times (ms)."""
    header = (f"{'#':>3} {'layer':<28} {'op':<6} {'shape':<24} {'sparsity':>8} {'kernel':<7} "
              f"{'dense ms':>9} {'sparse ms':>9} reason")
    lines = [header, "-" * len(header)]
    for r in rows:
        shape = shape_text(r)
        pred = r.predicted_ms
        sparse_times = [t for k, t in pred.items() if k != "dense"]
        dense_ms = f"{pred['dense']:.3f}" if "dense" in pred else "-"
        sparse_ms = f"{pred.get(r.kernel, min(sparse_times)):.3f}" if sparse_times and r.kernel != "dense" else (
            f"{min(sparse_times):.3f}" if sparse_times else "-")
        lines.append(f"{r.index:>3} {r.name[:28]:<28} {r.op:<6} {shape:<24} {r.sparsity:>8.3f} "
                     f"{r.kernel:<7} {dense_ms:>9} {sparse_ms:>9} {r.reason}")
    return "\n".join(lines)
