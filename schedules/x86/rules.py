"""The x86 knob rules: register tiles, output-channel blocks, input-channel chunks, alignment.

Each rule reads the target's vector width (``lanes``: 16 fp32 lanes with AVX-512, 8 with AVX2)
and the layer's shape, and returns the knobs the computes in ``fscnn_tvm/ops/`` are built with.
The kernel builder (``fscnn_tvm/kernels.py``) and the performance model (``perf_model.py``) both
call them, so the model counts exactly what the kernel will do; the tuner (``fscnn_tvm/tuning/``)
searches around them.
"""
from __future__ import annotations

from fscnn_tvm.kinds import Compute
from fscnn_tvm.ops.act_sparse_conv2d import MASK_BITS, ActSparseLayout
from fscnn_tvm.ops.conv2d import Conv2dSpec, is_1x1_gemm, is_pointwise, oc_vectorizable
from fscnn_tvm.ops.sparse_conv2d import SparseConvLayout
from fscnn_tvm.ops.winograd import WinogradLayout


FMA_IN_FLIGHT = 8  # independent FMAs a core needs to hide FMA latency (Zen 4/5, Intel: 2 pipes x 4)


def registers_budget(lanes: int) -> int:
    """Accumulator vectors a dense tile keeps live: ~14 of 32 zmm (AVX-512), ~10 of 16 ymm."""
    return 14 if lanes >= 16 else 10


def max_ow_tile(lanes: int, oc_block: int) -> int:
    """Widest output-column tile whose accumulators fit the registers."""
    return max(1, registers_budget(lanes) * lanes // oc_block)


WIDE_TILE_VECTORS = 7  # pointwise tile for maps of 7 x odd vectors (28x28 with AVX-512: 49)


def pointwise_tile(spec: Conv2dSpec, lanes: int) -> tuple[int, int] | None:
    """(oc_tile, columns) of the pointwise GEMM kernel for a 1x1 conv, or None where it does not
    apply (not ``is_pointwise``, or a map whose pixels are not whole vectors: 14x14, 7x7).

    The tile is ~24 accumulators with AVX-512 (~12 with AVX2): up to 4 vectors of consecutive
    pixels (as many as divide the map) x up to as many output channels as the rest allows, the
    channel count weighing padded channels against loads per FMA (6 x 4 vectors for 256 channels,
    not 4 x 4 without padding: measured 0.42 against 0.46 ms on 256->64@56). Measured on a Zen 5
    core against the ``oc_blocked`` tile (RESULTS.md, issue 15): 16->96@112 0.45 -> 0.24 ms,
    24->144@56 0.19 -> 0.12, 64->256@56 0.57 -> 0.46, 256->64@56 0.44 -> 0.42; 512->128@28 a tie.
    A map of 49 vectors (28x28 with AVX-512) would get one vector x 16 channels: a load per FMA
    (every FMA broadcasts its own weight). A narrowing layer there gets 7 vectors x 3 channels
    instead, with its reduction in chunks (:func:`pointwise_k_chunk`): on an Intel Xeon core
    (RESULTS.md, session 16) 512->128@28 1.96 -> 1.26 ms hot, 2.34 -> 1.52 cold; 512->256@28
    3.92 -> 2.62 hot, 4.37 -> 2.91 cold. Widening layers there keep one vector (their chunked
    order was measured with it).
    """
    pixels = spec.height * spec.width
    if not is_pointwise(spec) or pixels % lanes:
        return None
    vectors = max(v for v in (4, 2, 1) if (pixels // lanes) % v == 0)
    if vectors == 1 and (pixels // lanes) % WIDE_TILE_VECTORS == 0 and spec.out_channels <= spec.in_channels:
        vectors = WIDE_TILE_VECTORS  # 3 channels x 7 vectors, its reduction chunked
    top = min((24 if lanes >= 16 else 12) // vectors, 16)
    oc = spec.out_channels

    def cost(t: int) -> float:  # padded channels x (1 + loads and broadcasts per FMA)
        return -(-oc // t) * t / oc * (1 + (vectors + t) / (vectors * t))

    oc_tile = min(range(max(1, top // 2), top + 1), key=lambda t: (cost(t), -t))
    return oc_tile, vectors * lanes


def pointwise_chunk(spec: Conv2dSpec, columns: int, oc_tile: int, l1_bytes: int, l2_bytes: int,
                    mcpu: str) -> int:
    """Register tiles per pixel chunk of the pointwise GEMM's chunked order, 0 for the
    pixel-block-outer order (:func:`schedules.x86.conv2d.schedule_pointwise`).

    The chunked order is the GEMM's cache blocking: a chunk of pixels whose input (IC x pixels)
    takes at most half of L2, then each channel block's weights (kept in L1) swept over the
    chunk's tiles, the epilogue per tile. It applies where the pixel-block-outer order's buffer
    of one pixel block's outputs (OC x ``columns`` floats) exceeds half of L1, or the layer widens
    (OC > IC). Measured on an Intel Xeon core (AVX-512, 48 KB L1, 2 MB L2; RESULTS.md, session 14):
    16->96@112 1.51 -> 0.46 ms, 64->256@56 1.93 -> 1.25, 128->512@32 2.31 -> 1.76, 2048->512@8
    1.32 -> 1.13, 1024->256@16 1.16 -> 1.03; the narrowing 256->64@56 and 144->24@56 keep the
    block-outer order (1.01 against 1.16 ms chunked). Not on AMD cores (``znver*``): there the
    block-outer order with one epilogue per pixel block was measured faster (Zen 5, issue 15), and
    the chunked order has not been measured."""
    if mcpu.startswith("znver") or not is_pointwise(spec):
        return 0
    oc = -(-spec.out_channels // oc_tile) * oc_tile
    if 4 * oc * columns <= l1_bytes // 2 and spec.out_channels <= spec.in_channels:
        return 0
    return pointwise_chunk_tiles(spec, columns, l2_bytes)


def pointwise_k_chunk(spec: Conv2dSpec, columns: int, lanes: int, l1_bytes: int) -> int:
    """Input channels per reduction chunk of the pointwise GEMM's pixel-block-outer order, 0 for
    one pass over all of them.

    A 7-vector tile (:func:`pointwise_tile`) reads ``IC x columns`` floats of input per pixel
    block, once per channel block: 229 KB for 512 channels, past L1. In chunks of ``kc`` input
    channels (the largest divisor of IC whose ``kc x columns`` floats take at most 2/3 of L1) every
    channel block sweeps one chunk from L1, and the accumulators are reloaded once per chunk.
    Measured on an Intel Xeon core (48 KB L1; RESULTS.md, session 16), 3x112 tile: 512->128@28
    1.55 -> 1.26 ms hot (64 channels; 128: 1.58, 32: 1.70); a chunk that does not divide IC
    costs a bounds check per step (48 of 256: 2x slower). On 56x56 maps (4-vector tiles) chunks of
    64 or 128 moved 256->64 and 256->128 by -3% to +8% cold: not applied there."""
    if columns != WIDE_TILE_VECTORS * lanes:
        return 0
    budget = l1_bytes * 2 // 3 // (4 * columns)
    if spec.in_channels <= budget:
        return 0
    chunk = max(d for d in range(1, budget + 1) if spec.in_channels % d == 0)
    return chunk if chunk >= 16 else 0


def pointwise_chunk_tiles(spec: Conv2dSpec, columns: int, l2_bytes: int) -> int:
    """The chunked order's tiles per chunk: the most that divide the map's tiles and whose input
    (IC x pixels) takes at most half of L2 (at least one)."""
    tiles = spec.height * spec.width // columns
    budget = max(1, l2_bytes // 2 // (4 * spec.in_channels * columns))
    return max(d for d in range(1, tiles + 1) if tiles % d == 0 and d <= budget)


def packed_pointwise_tile(spec: Conv2dSpec, lanes: int, l2_bytes: int) -> tuple[int, int] | None:
    """(oc_tile, columns) of the packed 1x1 GEMM (``conv2d_pointwise_packed``), or None where the
    ``oc_blocked`` tile stays: a strided 1x1 ungrouped conv (a downsample) whose input exceeds
    half of L2.

    The ``oc_blocked`` tile sweeps the whole input once per channel block; the packed GEMM gathers
    each panel of output pixels once and runs every channel block over it. Measured on an Intel
    Xeon core (AVX-512, 2 MB L2; RESULTS.md, session 15), timed cold in three runs: ResNet-50's
    downsample 256->512 1x1/2 @56 (3.2 MB input) 6.0-7.7 -> 3.0-3.5 ms; 512->1024/2 @28 (1.6 MB)
    4.3-4.6 -> 3.3-4.2 in two runs, a tie in the third; with an input that fits (1024->2048/2
    @14, 0.8 MB) ``oc_blocked`` was as fast or faster, and the packed GEMM on every stride-1 1x1 of
    a 14x14 or 7x7 map made MobileNetV2 and ResNet-50 3-9% slower end to end (any of three
    tiles; on a map of whole vectors the plain pointwise GEMM runs). The tile is 12 channels x
    one vector of pixels (the fewest padded pixels; 12 accumulators cover the FMAs in flight):
    on 256->512/2 @56 the fastest of 6x64, 8x32 and 12x16 in all three runs. Not measured on
    AMD cores."""
    if not is_1x1_gemm(spec) or spec.stride == (1, 1):
        return None
    if 4 * spec.in_channels * spec.height * spec.width <= l2_bytes // 2:
        return None
    return min(12, spec.out_channels), lanes


def conv_tile(spec: Conv2dSpec, lanes: int, oc_block: int | None = None,
              l2_bytes: int | None = None) -> tuple[str, int, int]:
    """(compute, ow_tile, oc_block) for a dense conv (``oc_block``: a tuned choice instead of the
    rule's); the compute is ``conv2d_oc_blocked`` or, where channel blocks would straddle groups,
    ``conv2d_spatial``.

    A tile keeps ~14 accumulators live (of 32 registers with AVX-512, of 16 with AVX2 ~10). With
    AVX-512 a layer whose output channels are whole pairs of vectors and whose reduction has 64
    steps or more gets ~7 columns x two vectors (each broadcast feeds two FMAs). With AVX2 wide rows get ``ow_tile`` ~10 x one vector; narrow rows
    (<12 columns) get the whole row x two vectors, and so do large kernels (5x5 and up). Tiles are
    chosen to waste the fewest padded columns. A 1x1 conv on a map of whole vectors is the
    pointwise GEMM (:func:`pointwise_tile`; then ``ow_tile`` is its pixels per tile and
    ``oc_block`` its channels) unless a tuned ``oc_block`` asks for the blocked tile; a strided
    1x1 whose input outgrows half of ``l2_bytes`` (the target's L2) is the packed GEMM
    (:func:`packed_pointwise_tile`).
    """
    pointwise = pointwise_tile(spec, lanes) if oc_block is None else None
    if pointwise:
        return Compute.CONV2D_POINTWISE, pointwise[1], pointwise[0]
    packed = packed_pointwise_tile(spec, lanes, l2_bytes) if oc_block is None and l2_bytes else None
    if packed:
        return Compute.CONV2D_POINTWISE_PACKED, packed[1], packed[0]
    ow = spec.out_width
    large_kernel = spec.kernel[0] * spec.kernel[1] >= 25  # 7x7 stem: 1.50 -> 1.04 ms with 2 vectors
    reduction = spec.in_channels // spec.groups * spec.kernel[0] * spec.kernel[1]
    if oc_block is None and lanes >= 16 and spec.out_channels % (2 * lanes) == 0 and reduction >= 64:
        # 32 vector registers: 7 columns x 2 vectors beat 14 x 1 on every ResNet-50 conv on a Zen 5
        # core (1x1: 1.05-1.5x, 1x1 stride 2: 1.4-1.5x; 3x3: 1.0-1.25x; RESULTS.md, issue 15);
        # not on a short reduction (VGG's 3->64 3x3: 27 steps, 2.3x slower)
        oc_block = 2 * lanes
    if oc_block is None:
        oc_block = lanes if (ow >= 12 and not large_kernel) or spec.out_channels <= lanes else 2 * lanes
    if not oc_vectorizable(spec, oc_block):
        oc_block = lanes
    if not oc_vectorizable(spec, oc_block):
        tiles = max(1, min(4, -(-ow // lanes)))
        return Compute.CONV2D_SPATIAL, tiles * lanes, lanes
    max_tile = max_ow_tile(lanes, oc_block)
    if ow <= max_tile:
        return Compute.CONV2D_OC_BLOCKED, ow, oc_block
    best = min(range(max(2, max_tile // 2), max_tile + 1), key=lambda t: (-(-ow // t) * t - ow, -t))
    return Compute.CONV2D_OC_BLOCKED, best, oc_block


ROW_LOOP_MIN_VECTORS = 6  # input-row vectors from which a 3x3 depthwise conv runs as a row loop


def depthwise_row_loop(spec: Conv2dSpec, lanes: int) -> bool:
    """Whether a ``conv2d_spatial`` conv (one input channel per group: depthwise) runs as a plain
    loop over each output row that LLVM's loop vectoriser vectorises, its zero padding inlined
    and split off by loop partitioning (``schedules/x86/conv2d.schedule_spatial_rows``), in place
    of TVM-vectorised row tiles over a padded (strided: de-interleaved) plane copy. Pays for
    3x3 kernels on input rows of :data:`ROW_LOOP_MIN_VECTORS` vectors or more, where the plane
    copy costs as much as the conv (a strided tap becomes two loads and a permute per vector).
    Measured (RESULTS.md, session 13): Zen 5 (AVX-512) 96@112 stride 2 1.48x, 32@112 and
    144@56 a tie; AVX2 96@112/2 1.85x, 144@56/2 1.20x, 32@112 2.47x, 144@56 1.98x. Narrower
    rows lose (192@28: 0.93x AVX2, 0.63x AVX-512) and so do 5x5 kernels (0.3-0.98x)."""
    return (spec.in_channels == spec.groups and spec.kernel[0] * spec.kernel[1] <= 9
            and spec.width >= ROW_LOOP_MIN_VECTORS * lanes)


PAD_GROUP_BYTES = 16 << 10  # padded depthwise planes staged together: a third of a Zen 4/5 L1
PAD_GROUP_MAX = 16


def pad_plane_group(plane_bytes: int, planes: int) -> int:
    """Padded planes a depthwise conv stages before sweeping them (a divisor of ``planes``, the
    channels: a group within one image): as many as fit :data:`PAD_GROUP_BYTES`, up to :data:`PAD_GROUP_MAX`.
    A plane padded right before its sweep is read back while its own stores are still in the
    store queue, and a small plane's rows are stored in pieces (4 + 2 + 1 floats of a 7-wide
    row) that no vector load can be forwarded from: each such load waits for the stores to
    retire. Staged several planes ahead, the stores have retired. Zen 5: 960@7 0.0305 ->
    0.0221 ms, 384@14 0.0244 -> 0.0163, 576@14 stride 2 0.0324 -> 0.0261; 192@28 (4 KB planes)
    gains little and loses with more than 4 (RESULTS.md, session 13)."""
    most = max(1, min(PAD_GROUP_MAX, PAD_GROUP_BYTES // max(1, plane_bytes)))
    return max(g for g in range(1, most + 1) if planes % g == 0)


PREFETCH_MAX_TILES = 16  # register tiles per channel block up to which weights are prefetched


def weight_prefetch_rows(spec: Conv2dSpec, lanes: int, ow_tile: int, oc_block: int) -> int:
    """Output rows over which an ``oc_blocked`` conv prefetches the next channel block's weights
    (``schedules/x86/conv2d.with_weight_prefetch``), 0 for none: where few register tiles sweep
    each block's weights (at most :data:`PREFETCH_MAX_TILES`: maps of few rows, whose first row
    would otherwise wait on DRAM) and the weights do not stay in L2 between two runs of a model
    (more than half of it). Batch 1 only: the fused row loop spans one image. Measured with
    DRAM-cold caches (RESULTS.md, session 13): 1.2-1.6x on 1x1 layers at 7x7 (7 tiles a block),
    0.8-1.0x at 14x14 (28 tiles: the weights stay in L2 over enough rows to hide the first)."""
    tiles = spec.out_height * -(-spec.out_width // ow_tile)
    weight_bytes = 4 * spec.in_channels // spec.groups * spec.kernel[0] * spec.kernel[1] * \
        -(-spec.out_channels // oc_block) * oc_block
    if spec.batch != 1 or spec.out_channels <= oc_block or tiles > PREFETCH_MAX_TILES or weight_bytes <= L2_BYTES.get(lanes, L2_BYTES[8]) // 2:
        return 0
    return spec.out_height


WINOGRAD_TILES = (2, 4)  # ascending: the plan prefers the smaller tile on a near tie. F(6x6) compiles
# ~10x slower and measured slower here (RESULTS.md)
# L2 per core of the machines the rules were measured on: Zen 4/5 (AVX-512) 1 MB, Zen 3 (AVX2) 512 KB
L2_BYTES = {16: 1 << 20, 8: 512 << 10}
L3_SHARE = 24 << 20  # what one core keeps in L3 between two calls of a kernel (32 MB L3 here)


def winograd_gemm_tile(spec: Conv2dSpec, tile: int, lanes: int) -> tuple[int, int]:
    """(p_tile, oc_block) of the Winograd GEMM's register tile: ``p_tile`` consecutive tiles of a
    row x one or two vectors of output channels, within the direct kernel's accumulator budget,
    wasting the fewest padded tiles (a row is computed in whole register blocks) and channels;
    a tile of fewer than 8 accumulators waits on FMA latency."""
    budget = registers_budget(lanes)
    tw = -(-spec.out_width // tile)
    best = None
    for vecs in (1, 2) if spec.out_channels > lanes else (1,):
        ocp = -(-spec.out_channels // (vecs * lanes)) * vecs * lanes
        for pt in range(1, min(tw, budget // vecs) + 1):
            work = -(-tw // pt) * pt * ocp * max(1.0, FMA_IN_FLIGHT / (pt * vecs))
            key = (work, vecs, -pt)
            if best is None or key < best[0]:
                best = (key, pt, vecs * lanes)
    return best[1], best[2]


def winograd_block_rows(spec: Conv2dSpec, tile: int, lanes: int, p_tile: int) -> int:
    """Tile rows per block of the Winograd kernel (a divisor of the tile rows).

    A block's transformed input ``V`` and GEMM output ``M`` (``4 a^2 (IC + OC)`` bytes per tile)
    stay near L1/L2 only if the block is small, but every block streams all of ``U``, the
    transformed weights (``4 a^2 IC OC`` bytes). The rule takes the block that moves the fewest
    bytes: ``U`` per block (a tenth of it while ``U`` fits L3, a re-read being cheap) plus ``V`` and ``M`` written and
    read back for the part of the block beyond half of L2 (``U`` and the input share it). Deep
    layers on small maps (``U`` of tens of MB) get one block per image; wide maps small blocks.
    """
    a2 = (tile + 2) ** 2
    th, tw = -(-spec.out_height // tile), -(-spec.out_width // tile)
    twp = -(-tw // p_tile) * p_tile
    room = L2_BYTES.get(lanes, L2_BYTES[8]) / 2
    ocp = -(-spec.out_channels // lanes) * lanes
    u_bytes = 4.0 * a2 * spec.in_channels * ocp
    u_weight = 0.1 if u_bytes <= L3_SHARE else 1.0

    def traffic(rows: int) -> float:
        blocks = spec.batch * th // rows
        scratch = 4.0 * a2 * (spec.in_channels + ocp) * rows * twp
        return blocks * (u_bytes * u_weight + 2 * scratch * max(0.0, 1 - room / scratch))

    return min((r for r in range(1, th + 1) if th % r == 0), key=lambda r: (traffic(r), -r))


def winograd_layout(spec: Conv2dSpec, tile: int, lanes: int, p_tile: int | None = None,
                    block_rows: int | None = None) -> WinogradLayout:
    """The Winograd kernel's layout by the rules above (``p_tile``, ``block_rows``: tuned
    choices instead)."""
    pt, oc_block = winograd_gemm_tile(spec, tile, lanes)
    pt = p_tile or pt
    return WinogradLayout(spec, tile, oc_block, pt, block_rows or winograd_block_rows(spec, tile, lanes, pt))


def linear_out_block(out_features: int, lanes: int) -> int:
    """Outputs per block of the dense linear kernel: four vectors where the layer has them."""
    return 4 * lanes if out_features >= 4 * lanes else lanes


ALIGN_MIN_CHANNELS = 256  # aligned CSR layouts from this many input channels (RESULTS.md, aligned A/B)
ALIGN_MIN_LANES = 16  # ... and only where a vector is a whole 64-byte cache line (AVX-512)


def sparse_conv_align(spec: Conv2dSpec, block_rows: int, lanes: int) -> int:
    """``lanes`` (aligned loads, taps split by column shift) or 1.

    A misaligned 512-bit load always splits a cache line; aligned layouts measured 1.1-1.2x on
    VGG16 conv3_2..conv5_2 and ResNet-50's 3x3@14 on a Zen 5 core (CSR, 90%). They pay only with
    many input channels (long rows per shift): on conv1_2 and conv2_2 the extra partial rows cost
    more than the split loads. With AVX2 (a 256-bit load splits a line half as often) they lost
    everywhere on Zen 3 (0.79-0.95x), and BSR is bound by its FMAs, not its loads.
    """
    if (block_rows == 1 and lanes >= ALIGN_MIN_LANES and spec.kernel[1] > 1
            and spec.in_channels >= ALIGN_MIN_CHANNELS):
        return lanes
    return 1


def sparse_conv_tile(spec: Conv2dSpec, block_rows: int, lanes: int, align: int = 1) -> int:
    """Register tile (outputs) of the sparse conv: ~14 vectors for CSR; for BSR, R rows of
    ``budget / R`` vectors each.

    CSR picks 7..14 vectors to waste the fewest outputs past the flat row count (an exact fit
    lets 1x1 layers read their input in place). BSR keeps ~24 accumulators with 32 vector
    registers (AVX-512) and ~12 with 16 (AVX2): 24 on AVX2 spilled, and BSR8 ran at 28-33 GF/s
    on a Zen 3 core against 44-51 GF/s with one vector per row (RESULTS.md, session 5).
    """
    if block_rows > 1:
        budget = 24 if lanes >= 16 else 12
        return max(1, budget // block_rows) * lanes
    flat = spec.out_height * SparseConvLayout(spec, lanes, align=align).ws
    best = min(range(7, 15), key=lambda tv: (-(-flat // (tv * lanes)) * tv * lanes, -tv))
    return best * lanes


CHUNK_CHANNELS = 32  # input channels per chunk (benchmarks/RESULTS.md, chunking A/B)


def sparse_conv_chunks(spec: Conv2dSpec, block_rows: int) -> int:
    """Input-channel chunks of a sparse conv (1 = no split).

    Measured on one core at 90% sparsity: splitting CSR 3x3 layers into chunks of 32 input
    channels keeps a tile's input windows of one chunk near L1 while every output channel sweeps
    them (1.07-1.33x). 1x1 layers have too few nonzeros per (row, chunk), and BSR is bound by its
    FMAs, not by loads (reloading 24 accumulators per chunk cost it 1.2-1.5x): neither is split.
    """
    if spec.kernel == (1, 1) or block_rows > 1:
        return 1
    return max(1, -(-spec.in_channels // CHUNK_CHANNELS))


def sparse_conv_layout(spec: Conv2dSpec, block_rows: int, lanes: int) -> SparseConvLayout:
    """The layout (tile, chunks, alignment) of the sparse conv for ``spec`` on ``lanes`` lanes."""
    align = sparse_conv_align(spec, block_rows, lanes)
    tile = sparse_conv_tile(spec, block_rows, lanes, align)
    return SparseConvLayout(spec, tile, block_rows, sparse_conv_chunks(spec, block_rows), align)


ACT_SPARSE_L1_BYTES = 36 << 10  # the weights one (block, kernel row, chunk) walk uses: in L1


def act_sparse_layout(spec: Conv2dSpec, lanes: int) -> ActSparseLayout:
    """The activation-sparse conv's knobs (``ops/act_sparse_conv2d.py``).

    Each nonzero input feeds ``vectors`` output-channel vectors for every kernel column, so up
    to 4 vectors (AVX-512; 2 with AVX2's 16 registers) per block keep enough independent FMAs in
    flight. The register tile is ~24 accumulators (~12 with AVX2), its width spread evenly over
    the output row; a chunk holds as many input channels as keep the weights it uses
    (``KW x chunk x oc_block`` floats) within :data:`ACT_SPARSE_L1_BYTES`, and at most one mask's
    bits (:data:`~fscnn_tvm.ops.act_sparse_conv2d.MASK_BITS`). Measured on a Zen 5 core,
    512->512 3x3 @28 (RESULTS.md, issue 16): 64 channels x 6 pixels x 48-channel chunks 7.9 ms
    at 80% zeros, against 8.2-9.3 for 32 x 7-14 or chunks of 32-512 channels; on an Intel Xeon
    core (session 17) chunks of 96-512 were no faster at 90% zeros and 1.6-1.8x slower on a
    dense input. A 1x1 gets 6 pixels and 64-channel chunks too: 128->512 @28 with 90% zeros
    1.02 ms with the lists' 3 pixels x two accumulator sets x 128 channels, 0.92 with masks.
    """
    budget = 24 if lanes >= 16 else 12
    vectors = min(4 if lanes >= 16 else 2, -(-spec.out_channels // lanes))
    widest = max(1, budget // vectors)
    segments = -(-spec.out_width // widest)
    tile = -(-spec.out_width // segments)
    oc_block = vectors * lanes
    chunk = max(8, ACT_SPARSE_L1_BYTES // (4 * spec.kernel[1] * oc_block))
    chunk = min(spec.in_channels, MASK_BITS, chunk)
    return ActSparseLayout(spec, lanes, oc_block, tile, chunk)
