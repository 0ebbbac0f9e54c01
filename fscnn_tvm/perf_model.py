"""Park-style performance model: the predicted time of each kernel kind for a layer (features -> seconds).

This module only predicts. Which kinds a layer may run, the choice and its reason are the
planner's (``plan.py``); the coefficients live in a :class:`profiles.Profile`.

Park et al. predict a sparse layer's time with a roofline, ``max(alpha*x*C/F, (S_A + beta*x*S_W)/B)``
(C dense FLOPs, x density, S_A activation and S_W weight bytes, F and B the target's compute rate
and bandwidth). Our kernels run their phases one after the other (stage the padded input, sweep
the nonzeros with a register tile, crop and apply the epilogue), so here the phases add up, and
each term is the exact count of what *our* kernel does for this layer, taken from the same knob
rules the kernel builder uses (``schedules/<target>/rules.py``)::

    t_dense = flop_padded * max(1, 8 / accumulators) / F_dense + out_vectors * c_store
              + padded_input_bytes / B + t_call
    t_csr   = 2*nnz*N*tiles*tile / F_csr + row_steps * c_step + (staged + cropped bytes) / B + t_call
    t_bsr   = 2*nnzb*R*N*tiles*tile / F_bsr + row_steps * c_step_bsr + (same bytes) / B + t_call
    t_winograd = gemm_flop / F_wino + (V elements) * c_in + (outputs) * c_out
                 + U_bytes / (B_w or B_dram) + (V + M bytes) / B_s + padded_input_bytes / B + t_call
    t_linear     = flop / F_gemv + weight_bytes / B_dram + t_call
    t_csr_linear = tiles*nnz * (c_nnz or c_nnz_l2) + N*rows * c_row + (6 or 8)*nnz / B_dram + t_call
                   (linear.byte: one DRAM rate for the dense and the CSR weights)

Weights are what a batch-1 model streams: in a model run every layer's weights were evicted by
the other layers' since its last call, so the first read of them comes from DRAM (``*.dram_byte``,
``linear.byte``), and a kernel that streams them again (a sparse conv once per register tile, a
Winograd GEMM once per row block) re-reads them from the level that holds them: L2, the L3
(``l3_byte``) or DRAM again (``dram_byte``), sized from the machine (``targets.caches``, stored in
the profile). Calibration times every kernel with cold caches (``measure.KernelTimer``) so that
the fitted rates are those of a model run, and its layers include weights larger than L2 and L3.

``tile`` counts the padded register tile (junk columns of the flat output included), ``row_steps``
the (image, tile, chunk, row) steps whose accumulator load/store and loop set-up do not depend on
the row's length: it is what makes very sparse and small layers slower per nonzero than the
FLOP term alone says. 1x1 convolutions, whose rows are short, get their own F and c_step.
Every coefficient is a rate of this target: ``fscnn-tvm calibrate`` measures a set of layers and
fits them (:func:`fit`: non-negative least squares on relative error), and the result is a
:class:`profiles.Profile` stored as ``tuning_logs/<target-tag>/profile.json``.
"""
from __future__ import annotations

import numpy as np

from . import kinds, sparse, targets
from .layer import Layer, conv_spec
from .ops import sparse_dense
from .schedules.x86 import rules as x86_rules

FMA_IN_FLIGHT = x86_rules.FMA_IN_FLIGHT
# Every coefficient of the model, in seconds per unit of its feature.
COEFFICIENTS = (
    "call",  # per kernel call
    "dense.flop", "dense.flop_1x1", "dense.flop_grouped", "dense.store", "dense.pad_byte",
    "winograd.flop", "winograd.input", "winograd.output", "winograd.weight_byte", "winograd.weight_dram_byte",
    "winograd.scratch_byte",
    "csr.flop", "csr.flop_1x1", "csr.flop_aligned", "csr.step", "csr.step_1x1",
    "bsr.flop", "bsr.flop_1x1", "bsr.step",
    "sparse.byte",  # staging and crop of the sparse convs
    "csr.flop_strided",  # what a strided CSR conv's FLOPs cost more
    "conv.dram_byte",  # a conv kernel's first read of its weights (dense, CSR, BSR)
    "l3_byte", "dram_byte",  # weights a kernel streams again, from L3 or from DRAM
    "linear.flop", "linear.byte",
    "csr_linear.nnz", "csr_linear.nnz_l2", "csr_linear.row",
    # the activation-sparse conv: FLOPs on the input's nonzeros, list walks (and the mispredicted
    # exits of random-length ones), compaction per input element, partial-sum tile vectors
    "act.flop", "act.flop_1x1", "act.list", "act.list_random", "act.compact", "act.tile",
)
# The terms that are weight traffic from DRAM: where they are most of a prediction, the layer is
# "DRAM bound" and the plan's reason says so.
DRAM_TERMS = ("conv.dram_byte", "dram_byte", "linear.byte", "winograd.weight_dram_byte")
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


# ---------------------------------------------------------------- features: what each kernel does

def cuda_features(layer: Layer, kind: str, nnz: float | None = None) -> dict[str, float]:
    """Counts of what the CUDA kernels (``schedules/cuda``) do for ``layer``."""
    from .ops import cuda_conv2d  # noqa: PLC0415 - CUDA only
    from .schedules.cuda import rules as cuda_rules  # noqa: PLC0415

    if layer.op == "linear":
        batch, in_features = layer.in_shape
        out_features = layer.out_shape[1]
        if kind == "dense":
            return {"cuda.launch": 1.0, "cuda.linear_byte": 4.0 * batch * in_features * out_features}
        count = float(np.count_nonzero(layer.weight)) if nnz is None else nnz
        return {"cuda.launch": 1.0, "cuda.csr_linear_byte": 8.0 * batch * count}
    spec = conv_spec(layer)
    rows = cuda_rules.dense_block_rows(spec) if kind == kinds.DENSE else kinds.block_rows(kind)
    # unequal strides run TVM's own conv (kernels._cuda_kernel): counted like ours, unstaged
    lay = cuda_rules.conv_layout(spec, rows) if spec.stride[0] == spec.stride[1] else None
    tile = cuda_conv2d.THREADS * cuda_conv2d.COARSEN
    tiles = lay.tiles if lay else -(-spec.out_height * spec.out_width // tile)
    swept = float(spec.batch * tiles * tile)
    per_row = layer.weight.size // spec.out_channels
    if kind == "dense":
        f = {"cuda.dense_flop": 2.0 * swept * (-(-spec.out_channels // rows) * rows) * per_row}
    elif nnz is None:
        count = float(np.count_nonzero(layer.weight)) if rows == 1 else float(
            sparse.nonzero_blocks(layer.weight, rows))
        f = {"cuda.csr_flop" if rows == 1 else "cuda.bsr_flop": 2.0 * swept * count * rows}
    else:
        f = {"cuda.csr_flop" if rows == 1 else "cuda.bsr_flop": 2.0 * swept * nnz * rows}
    direct = lay is not None and lay.direct
    staged = 0 if direct else (lay.flat_len if lay else 0) + spec.batch * spec.in_channels * spec.height * spec.width
    f["cuda.launch"] = 1.0 if direct else 2.0 + (len(lay.phases) if lay and lay.stride > 1 else 1)
    f["cuda.block"] = float(spec.batch * tiles * -(-spec.out_channels // rows))
    f["cuda.byte"] = 4.0 * (staged + spec.batch * spec.out_channels * spec.out_height * spec.out_width)
    return f


def weight_bytes(layer: Layer, kind: str, lanes: int, nnz: float | None = None) -> float:
    """Bytes of the weights kernel ``kind`` streams for ``layer`` (packed, or the sparse format's
    values and indices; Winograd: the transformed weights)."""
    if layer.op == "linear":
        in_features, out_features = layer.in_shape[1], layer.out_shape[1]
        if kind == kinds.ACT_SPARSE:  # the weight rows of the nonzero inputs, once per image
            zeros = layer.input_zeros[0] if layer.input_zeros is not None else 0.0
            return 4.0 * layer.in_shape[0] * in_features * (1.0 - zeros) * out_features
        if kind == "dense":
            block = x86_rules.linear_out_block(out_features, lanes)
            return 4.0 * in_features * -(-out_features // block) * block
        count = float(np.count_nonzero(layer.weight)) if nnz is None else nnz
        return (4.0 + np.dtype(sparse_dense.index_dtype(in_features)).itemsize) * count + 4.0 * (out_features + 1)
    spec = conv_spec(layer)
    parsed = kinds.Kind.parse(kind)
    if parsed.family == "winograd":
        lay = x86_rules.winograd_layout(spec, parsed.rows, lanes)
        return 4.0 * lay.alpha ** 2 * spec.in_channels * lay.oc_blocks * lay.oc_block
    if not parsed.sparse:
        return 4.0 * layer.weight.size
    if nnz is None:
        nnz = float(np.count_nonzero(layer.weight)) if parsed.rows == 1 else float(
            sparse.nonzero_blocks(layer.weight, parsed.rows))
    return (4.0 * parsed.rows + 4.0) * nnz  # values + a 32-bit offset per nonzero (block)


def _rereads(bytes_: float, times: float, caches: targets.Caches) -> dict[str, float]:
    """Weights streamed ``times`` more times, charged to the level that holds them."""
    if times <= 0 or bytes_ <= caches.l2:
        return {}
    return {"l3_byte" if bytes_ <= caches.l3 else "dram_byte": bytes_ * times}


def features(layer: Layer, kind: str, lanes: int, nnz: float | None = None, cuda: bool = False,
             caches: targets.Caches | None = None) -> dict[str, float]:
    """Counts of everything kernel ``kind`` does for ``layer`` (one per model coefficient).

    ``nnz`` overrides the weight's nonzero count (CSR) or block count (BSR) to predict the layer
    at another sparsity. ``cuda``: the CUDA kernels' counts (:func:`cuda_features`). ``caches``:
    the CPU's (``Profile.caches``; needed for a CPU: where weights come from depends on them).
    """
    if cuda:
        return cuda_features(layer, kind, nnz)
    if caches is None:
        raise ValueError("perf_model.features: a CPU layer's counts need the machine's caches")
    f = {"call": 1.0}
    if layer.op == "linear":
        batch, in_features = layer.in_shape
        out_features = layer.out_shape[1]
        if kind == kinds.ACT_SPARSE:  # the weight rows of the nonzero inputs, once per image
            f["linear.byte"] = weight_bytes(layer, kind, lanes)
            f["linear.flop"] = 0.5 * f["linear.byte"]  # one FMA per 4-byte weight
            f["act.compact"] = float(batch * in_features)
            return f
        if kind == "dense":
            block = x86_rules.linear_out_block(out_features, lanes)
            f["linear.flop"] = 2.0 * batch * in_features * -(-out_features // block) * block
            f["linear.byte"] = weight_bytes(layer, kind, lanes)  # once per batch (tiles share chunks)
        else:
            count = float(np.count_nonzero(layer.weight)) if nnz is None else nnz
            tile = sparse_dense.batch_tile(batch, lanes)
            # one FMA per nonzero per tile of images, on an input row from L1 while the (staged)
            # input fits it, else from L2 (4096->1024 timed hot: 0.26 ns a nonzero at batch 1, 0.46 at 8)
            in_l1 = 4 * in_features * tile <= caches.l1
            f["csr_linear.nnz" if in_l1 else "csr_linear.nnz_l2"] = -(-batch // tile) * count
            f["csr_linear.row"] = batch * out_features  # tail loop and sum of accumulators per row
            # values and indices once per batch, streamed from DRAM as the dense weights are (one
            # rate for both: apart, the fit cannot tell it from the per-nonzero term)
            f["linear.byte"] = weight_bytes(layer, kind, lanes, count)
        return f
    spec = conv_spec(layer)
    one = spec.kernel == (1, 1)
    if kind == "dense":
        conv_kind, ow_tile, oc_block = x86_rules.conv_tile(spec, lanes, l2_bytes=caches.l2)
        # the pointwise GEMMs' ow_tile counts pixels of the flattened map: the plain one's tiles
        # divide the map, the packed one's last panel is padded
        pixels = spec.out_height * spec.out_width
        if conv_kind == kinds.Compute.CONV2D_POINTWISE_PACKED:
            pixels = -(-pixels // ow_tile) * ow_tile
        elif conv_kind != kinds.Compute.CONV2D_POINTWISE:
            pixels = spec.out_height * -(-spec.out_width // ow_tile) * ow_tile
        ocp = -(-spec.out_channels // oc_block) * oc_block
        work = 2.0 * spec.batch * ocp * pixels * (spec.in_channels // spec.groups) * \
            spec.kernel[0] * spec.kernel[1]
        key = "dense.flop_grouped" if conv_kind == kinds.Compute.CONV2D_SPATIAL else (
            "dense.flop_1x1" if one else "dense.flop")
        # A tile of fewer accumulators than FMAs in flight (2 pipes x 4 cycles) waits on latency.
        accumulators = ow_tile * oc_block / lanes
        f[key] = work * max(1.0, FMA_IN_FLIGHT / accumulators)
        f["dense.store"] = spec.batch * ocp * pixels / lanes
        f["conv.dram_byte"] = weight_bytes(layer, kind, lanes)
        if conv_kind == kinds.Compute.CONV2D_POINTWISE_PACKED:  # the panels' gather
            f["dense.pad_byte"] = 4.0 * spec.batch * spec.in_channels * pixels
        elif any(spec.padding):
            f["dense.pad_byte"] = 4.0 * spec.batch * spec.in_channels * (
                spec.height + spec.padding[0] + spec.padding[2]) * (spec.width + spec.padding[1] + spec.padding[3])
        return f
    parsed = kinds.Kind.parse(kind)
    if parsed.family == "winograd":
        return {**f, **winograd_features(spec, parsed.rows, lanes, caches)}
    if parsed.family == "actsparse":
        zeros = layer.input_zeros[0] if layer.input_zeros is not None else 0.0
        return {**f, **act_sparse_features(spec, lanes, 1.0 - zeros),
                "conv.dram_byte": weight_bytes(layer, kinds.DENSE, lanes)}
    rows = parsed.rows
    layout = x86_rules.sparse_conv_layout(spec, rows, lanes)
    tile = layout.tile
    if nnz is None:
        nnz = float(np.count_nonzero(layer.weight)) if rows == 1 else float(
            sparse.nonzero_blocks(layer.weight, rows))
    swept = spec.batch * layout.tiles * tile  # outputs per row the register tile computes
    steps = float(spec.batch * layout.tiles * layout.chunks * layout.kernel_rows)
    if rows == 1:  # 1x1 rows are short; aligned layouts load whole vectors (another rate each)
        variant = "_1x1" if one else ("_aligned" if layout.align > 1 else "")
        f[f"csr.flop{variant}"] = 2.0 * nnz * swept
        f["csr.step_1x1" if one else "csr.step"] = steps
    else:
        f["bsr.flop_1x1" if one else "bsr.flop"] = 2.0 * nnz * rows * swept
        f["bsr.step"] = steps
    if layout.stride > 1 and rows == 1:  # strided CSR: the taps read phase planes, no two the same row
        f["csr.flop_strided"] = 2.0 * nnz * swept
    staged = 0 if layout.direct else layout.flat_len + spec.batch * spec.in_channels * spec.height * spec.width
    f["sparse.byte"] = 4.0 * (staged + len(layout.shifts) * spec.out_channels * swept + spec.batch * spec.out_channels *
                              spec.out_height * spec.out_width)
    w = weight_bytes(layer, kind, lanes, nnz)
    f["conv.dram_byte"] = w
    return {**f, **_rereads(w, spec.batch * layout.tiles - 1, caches)}  # every register tile sweeps them


def _valid_taps(size: int, padding: tuple[int, int], out: int, kernel: int, stride: int, dilation: int) -> float:
    """The fraction of (output, tap) pairs along one axis whose input is inside the image."""
    o, k = np.arange(out)[:, None], np.arange(kernel)[None, :]
    pos = o * stride + k * dilation - padding[0]
    return float(np.mean((pos >= 0) & (pos < size)))


def act_sparse_features(spec, lanes: int, density: float) -> dict[str, float]:
    """Counts of the activation-sparse conv at input ``density`` (nonzero fraction, spread at
    random): FMAs per nonzero under a tap, mask walks (the per-walk cost: loop entry and exit, a
    mispredicted branch once masks hold a random number of bits), compaction, tile loads and
    stores of the partial sums, and the NCHW epilogue."""
    lay = x86_rules.act_sparse_layout(spec, lanes)
    valid = (_valid_taps(spec.height, (spec.padding[0], spec.padding[2]), spec.out_height, spec.kernel[0],
                         spec.stride[0], spec.dilation[0])
             * _valid_taps(spec.width, (spec.padding[1], spec.padding[3]), spec.out_width, spec.kernel[1],
                           spec.stride[1], spec.dilation[1]))
    walks = float(spec.batch * lay.blocks * spec.kernel[0] * lay.chunks * spec.out_height * lay.segments)
    outputs = spec.batch * lay.blocks * spec.out_height * lay.segments * lay.tile
    taps = outputs * spec.kernel[0] * spec.kernel[1] * valid
    entries = spec.in_channels * density
    lists = walks * lay.span
    # masks with a random number of bits end in a mispredicted branch; all full or all empty ones do not
    random = 1.0 - density ** lay.chunk - (1.0 - density) ** lay.chunk
    # A 1x1's nonzero feeds one tap (vectors FMAs per set bit, into one pixel's accumulators):
    # its FMAs run at their own rate, ~1.4-2x the cost of a 3x3's (ResNet-50's 1x1s at 7x7 and
    # 14x14, measured in the model, RESULTS.md issue 16)
    flop = "act.flop_1x1" if spec.kernel == (1, 1) else "act.flop"
    return {flop: 2.0 * lay.oc_block * taps * entries,
            "act.list": lists, "act.list_random": lists * random,
            "act.compact": float(spec.batch * lay.hp * lay.wx * spec.in_channels),
            "act.tile": walks * lay.tile * lay.vectors,
            "dense.store": spec.batch * spec.out_channels * spec.out_height * spec.out_width / lanes}


def _winograd_weight_traffic(lay, u_bytes: float, caches: targets.Caches) -> dict[str, float]:
    """The bytes of ``U`` (the transformed weights, 4x or 1.8x the layer's) a Winograd kernel
    streams in a model run: once if they fit L2; else the first block reads them from DRAM (the
    other layers' weights evicted them) and every further block re-reads them, from L3 while
    they fit it. (In ResNet-50, F(4x4) on 256->256@14, 9.4 MB of U, ran 0.69 ms in the model
    against 0.37 ms timed alone.)"""
    if u_bytes <= caches.l2:
        return {"winograd.weight_byte": u_bytes}
    again = u_bytes * (lay.spec.batch * lay.row_blocks - 1)
    if u_bytes > caches.l3:
        return {"winograd.weight_dram_byte": u_bytes + again}
    return {"winograd.weight_dram_byte": u_bytes, "winograd.weight_byte": again}


def winograd_features(spec, tile: int, lanes: int, caches: targets.Caches) -> dict[str, float]:
    """Counts of the Winograd kernel (``ops/winograd.py``): the batched GEMM's FLOPs (padded tiles
    and channel blocks included), the transformed input values, the outputs of the output
    transform, the transformed weights it streams and the scratch (V and M) it writes and reads."""
    lay = x86_rules.winograd_layout(spec, tile, lanes)
    a2 = float(lay.alpha ** 2)
    ocp = lay.oc_blocks * lay.oc_block
    pp = lay.tiles_padded
    latency = max(1.0, FMA_IN_FLIGHT / (lay.p_tile * lay.oc_block / lanes))
    f = {"winograd.flop": 2.0 * a2 * ocp * pp * spec.in_channels * latency,
         "winograd.input": a2 * spec.in_channels * pp,
         "winograd.output": float(tile * tile * ocp * pp),
         **_winograd_weight_traffic(lay, 4.0 * a2 * spec.in_channels * ocp, caches),
         "winograd.scratch_byte": 4.0 * a2 * (spec.in_channels + ocp) * pp}
    f["dense.pad_byte"] = 4.0 * spec.batch * spec.in_channels * (lay.tiles_h * tile + 2) * (lay.tiles_w * tile + 2)
    return f


def terms(layer: Layer, kind: str, profile, nnz: float | None = None) -> dict[str, float]:
    """The predicted seconds of ``layer`` run by ``kind``, term by term (coefficient -> seconds)."""
    counts = features(layer, kind, profile.lanes, nnz, profile.cuda, None if profile.cuda else profile.caches)
    return {k: v * profile.coefficients[k] for k, v in counts.items()}


def predict(layer: Layer, kind: str, profile, nnz: float | None = None) -> float:
    """Predicted seconds of ``layer`` run by kernel ``kind`` (``dense``, ``csr``, ``bsr{R}``)."""
    return sum(terms(layer, kind, profile, nnz).values())


def memory_bound(layer: Layer, kind: str, profile) -> str | None:
    """``"DRAM bound: 151 MB of weights"`` where streaming the weights from DRAM is most of the
    predicted time of ``layer`` run by ``kind``; else ``None``."""
    t = terms(layer, kind, profile)
    total = sum(t.values())
    if profile.cuda or total <= 0 or sum(t.get(k, 0.0) for k in DRAM_TERMS) < 0.5 * total:
        return None
    return f"DRAM bound: {weight_bytes(layer, kind, profile.lanes) / 1e6:.3g} MB of weights"


# ---------------------------------------------------------------- fitting

def fit(samples: list[tuple[Layer, str, float]], lanes: int, defaults: dict, cuda: bool = False,
        caches: targets.Caches | None = None) -> tuple[dict, float]:
    """Non-negative least squares on relative error: (coefficients, median relative error).

    ``samples`` are (layer, kind, measured seconds) on a machine with ``caches``. Coefficients no
    sample exercises keep their value in ``defaults``.
    """
    from scipy.optimize import nnls  # noqa: PLC0415 - only calibration fits

    names = CUDA_COEFFICIENTS if cuda else COEFFICIENTS
    rows = np.array([[features(layer, kind, lanes, cuda=cuda, caches=caches).get(c, 0.0) for c in names]
                     for layer, kind, _ in samples])
    t = np.array([s for _, _, s in samples])
    scale = np.maximum(rows.max(axis=0), 1e-30)
    used = rows.max(axis=0) > 0
    a = (rows / scale) / t[:, None]
    coef_scaled, _ = nnls(a[:, used], np.ones(len(t)), maxiter=10000)
    coef = dict(defaults)
    for name, value in zip(np.array(names)[used], coef_scaled / scale[used]):
        coef[str(name)] = float(value)
    pred = rows @ np.array([coef[c] for c in names])
    return coef, float(np.median(np.abs(pred - t) / t))


