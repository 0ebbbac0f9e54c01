"""The per-layer plan: which kernel each conv2d/linear gets, and why.

:func:`decide` is the one place where the kernel kind of a layer is chosen; :func:`make_plan`
applies it to every layer and :func:`format_plan` prints the table users see (``.plan``, the CLI).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

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

    def as_dict(self) -> dict:
        return asdict(self)


# Density thresholds of sparse="auto", measured on one Zen core (benchmarks/RESULTS.md):
# dense conv ~250 GF/s, CSR ~75 GF/s and BSR8 ~190 GF/s of nonzero work, so CSR breaks even near
# 70% sparsity and BSR near 25%; the thresholds keep a margin. The performance model replaces them.
AUTO_MIN_SPARSITY = {"csr": 0.75, "bsr": 0.4, "linear": 0.8}


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


def decide(layer: Layer, sparse_mode: str) -> tuple[str, str]:
    """(kernel kind, reason) for ``layer`` under the user's ``sparse`` mode."""
    if sparse_mode not in SPARSE_MODES:
        raise ValueError(f"sparse must be one of {SPARSE_MODES}, got {sparse_mode!r}")
    if sparse_mode == "never":
        return "dense", "sparse='never'"
    unsupported = sparse_support(layer)
    if unsupported:
        return "dense", unsupported
    kind = sparse_kind(layer)
    sparsity = 1.0 - layer.density
    if sparse_mode == "always":
        return kind, "sparse='always'" + (f" (output-channel blocks of {kind[3:]} share columns)" if kind != "csr" else "")
    rule = "linear" if layer.op == "linear" else ("bsr" if kind != "csr" else "csr")
    threshold = AUTO_MIN_SPARSITY[rule]
    if sparsity >= threshold:
        return kind, f"sparsity {sparsity:.2f} >= {threshold:.2f} ({rule} threshold)"
    return "dense", f"sparsity {sparsity:.2f} < {threshold:.2f} ({rule} threshold)"


def _epilogue(layer: Layer) -> str:
    parts = (["bias"] if layer.bias is not None else []) + (
        ["residual"] if layer.residual is not None else []) + ([layer.act] if layer.act != "none" else [])
    return "+".join(parts) or "-"


def make_plan(layers: list[Layer], sparse_mode: str = "auto") -> list[LayerPlan]:
    rows = []
    for layer in layers:
        kernel, reason = decide(layer, sparse_mode)
        conv = layer.op == "conv2d"
        rows.append(LayerPlan(
            index=layer.index, name=layer.name, op=layer.op, in_shape=layer.in_shape,
            out_shape=layer.out_shape,
            kernel_size=tuple(layer.weight.shape[2:]) if conv else (),
            stride=tuple(layer.attrs["stride"]) if conv else (),
            groups=layer.attrs["groups"] if conv else 1,
            epilogue=_epilogue(layer), sparsity=round(1.0 - layer.density, 4),
            kernel=kernel, reason=reason))
    return rows


def format_plan(rows: list[LayerPlan]) -> str:
    """A fixed-width table of the plan, one line per layer."""
    header = f"{'#':>3} {'layer':<28} {'op':<6} {'shape':<24} {'sparsity':>8} {'kernel':<7} reason"
    lines = [header, "-" * len(header)]
    for r in rows:
        if r.op == "conv2d":
            kh, kw = r.kernel_size
            shape = f"{r.in_shape[1]}->{r.out_shape[1]} {kh}x{kw}/{r.stride[0]} @{r.in_shape[2]}x{r.in_shape[3]}"
            if r.groups > 1:
                shape += f" g{r.groups}"
        else:
            shape = f"{r.in_shape[1]}->{r.out_shape[1]}"
        lines.append(f"{r.index:>3} {r.name[:28]:<28} {r.op:<6} {shape:<24} {r.sparsity:>8.3f} "
                     f"{r.kernel:<7} {r.reason}")
    return "\n".join(lines)
