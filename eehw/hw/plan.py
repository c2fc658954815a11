"""From the golden integer model to a hardware plan: which RTL stage computes each operation,
with which widths, shifts, folding and memory style, and how the stream between them is cut
into beats. The Verilog generator and the latency bound read this plan; nothing here writes
files.

Every stage streams (as FINN and hls4ml ``io_stream`` do): a feature map travels one pixel
(all its channels) per beat, a dense vector in beats of the reading layer's SIMD. A Dense or
Conv followed by its Quant becomes one folded matrix-vector unit (``mvu``) that requantises its
accumulator, a convolution's receptive fields come from a line-buffer ``sliding_window``, and a
Quant that follows another Quant (a block or head boundary) becomes an element-wise
``requant`` stage unless it is the identity. Where a stream's beats are not the width the next
stage reads, a width converter (``dwc``) regroups them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import gcd

import numpy as np

from eehw.errors import EehwError
from eehw.hw.stages import (
    DwcStage,
    ElemFormat,
    FifoStage,
    Folding,
    HwBlock,
    MemStyle,
    MvuStage,
    PoolStage,
    RequantStage,
    Stage,
    WindowStage,
    window_cycles,
)
from eehw.model.golden import Conv, Dense, Flatten, GoldenModel, IntBlock, MaxPool, Quant, int_range
from eehw.policy.policies import HARDWARE_POLICY_CODES, PolicyName, PolicyParams, pow2_sum_bits

#: Width of the sample tag that travels with every beat (tuser), in the RTL and the HLS top alike.
TAG_W = 16


def default_folding(n_in: int, n_out: int, max_simd: int, max_pe: int) -> Folding:
    """The widest lanes within the limits that divide the layer evenly."""
    simd = max(d for d in range(1, min(n_in, max_simd) + 1) if n_in % d == 0)
    pe = max(d for d in range(1, min(n_out, max_pe) + 1) if n_out % d == 0)
    return Folding(simd, pe)


def _width(lo: int, hi: int, signed: bool) -> int:
    if signed:
        return max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1
    return max(int(hi).bit_length(), 1)


def _regroup(name: str, beat: int, want: int, n: int, e: int) -> list[DwcStage]:
    """Width converters from beats of ``beat`` to beats of ``want`` elements (through their
    greatest common divisor when neither divides the other)."""
    if beat == want:
        return []
    if beat % want == 0 or want % beat == 0:
        return [DwcStage(name, beat, want, n, e)]
    g = gcd(beat, want)
    return [DwcStage(name + "_a", beat, g, n, e), DwcStage(name + "_b", g, want, n, e)]


def _window_fifo(window: WindowStage, n_in: int, n_out: int, folding: Folding) -> FifoStage | None:
    """A FIFO after the window when the MVU is the slower stage and holds less work than the
    window's first-window latency (sliding_window.v: (KH-1)*WP + K cycles into each sample): deep
    enough for the MVU to stay busy that long (it reads one beat per OUT/PE cycles)."""
    sf, nf = n_in // folding.simd, n_out // folding.pe
    vector_ii = sf * nf
    kh = window.k if window.dims == 2 else 1
    lead = (kh - 1) * (window.width + 2 * window.pad) + window.k
    held = (2 if nf > 1 else 1) * vector_ii  # mvu.v's ping-pong input buffer (NF > 1)
    if window.positions * vector_ii <= window_cycles(window) or lead <= held:
        return None
    depth = 4
    while depth < -(-lead // nf) + 2:
        depth *= 2
    return FifoStage(window.name.replace(".window", ".fifo"), window.simd, window.e, window.out_beats, depth)


def _pool_lanes(rest: list, pool: PoolStage, foldings: dict[str, Folding], max_simd: int, max_pe: int) -> int:
    """Channels a beat for a max pool of ``c`` channels over ``pixels`` input pixels: all of them,
    unless a dense layer reads the pooled map next (through a Flatten) with fewer lanes. Then
    the pool takes the fewest channels a beat that are a multiple of the dense's SIMD, divide
    ``c`` and keep the pool (``pixels * c / lanes`` cycles a sample) no slower than the dense
    (its SF * NF): its comparators scale with those lanes, and a converter after it would split
    the beats into SIMD slices anyway (about 480 LUT for 32 channels of 4 bits, 174 at 8 a beat)."""
    c, pixels = pool.c, pool.height * pool.width
    following = [op for op in rest if not isinstance(op, Flatten)][:1]
    if not following or not isinstance(following[0], Dense):
        return c
    dense = following[0]
    n_in, n_out = c * pool.out_beats, dense.weight.shape[0]
    folding = foldings.get(dense.name) or default_folding(n_in, n_out, max_simd, max_pe)
    if n_in % folding.simd or n_out % folding.pe:
        return c  # plan_block reports the bad folding at the dense layer
    dense_ii = (n_in // folding.simd) * (n_out // folding.pe)
    for lanes in range(folding.simd, c, folding.simd):
        if c % lanes == 0 and pixels * (c // lanes) <= dense_ii:
            return lanes
    return c


def _row_fifo(name: str, beat: int, e: int, beats: int, width: int) -> FifoStage:
    """A FIFO of one input row before a later block's sliding window. The block before it
    emits a pooled row in a burst and then nothing for a row; the window, paced by its MVU,
    takes that row over the whole period. Without the FIFO each burst stalls the upstream
    block and the two blocks' stalls add up (fmnist_cnn's baseline measured 1,119 cycles a
    sample against the 900 of its slowest block; with a 16-beat FIFO before blocks 1-3, 900)."""
    depth = 4
    while depth < width:
        depth *= 2
    return FifoStage(name + ".in_fifo", beat, e, beats, depth)


def plan_block(
    block: IntBlock,
    fmt_in: ElemFormat | None,
    foldings: dict[str, Folding],
    max_simd: int,
    max_pe: int,
    mem_styles: dict[str, MemStyle] | None = None,
) -> HwBlock:
    """Map a block's integer ops to RTL stages.

    ``fmt_in`` is how the integers entering the block are carried: the previous block's output
    format, or for block 0 None (its input quantiser's float->int step happens before the
    hardware, so it is skipped here and gives the format). A block reads a map as a pixel
    stream (channels per beat) and a vector as one beat.
    """
    mem_styles = mem_styles or {}
    ops = list(block.ops)
    if block.name == "blocks.0":
        if not ops or not isinstance(ops[0], Quant) or ops[0].in_exp is not None:
            raise EehwError(f"{block.name}: the first block must start with the input quantiser")
        fmt_in = ElemFormat.of_quant(ops.pop(0))
    assert fmt_in is not None
    exp, bits, signed, lo, hi = fmt_in.exp, fmt_in.bits, fmt_in.signed, fmt_in.lo, fmt_in.hi
    shape = tuple(block.in_shape)  # (features,) or channels-first (C, L) / (C, H, W); beats are channels-last
    n = int(np.prod(shape))
    beat = shape[0] if len(shape) > 1 else n  # elements per beat of the stream so far
    in_beat, in_w, in_signed = beat, bits, signed
    column_order: np.ndarray | None = None  # golden flatten index of each hardware element
    stages: list[Stage] = []
    i = 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, Flatten):
            if len(shape) > 1:
                # Golden flattens channel-major (c, p); the hardware stream is channels-last (p, c).
                c, positions = shape[0], int(np.prod(shape[1:]))
                column_order = np.arange(c * positions).reshape(c, positions).T.reshape(-1)
            shape = (n,)
            i += 1
            continue
        if isinstance(op, MaxPool):
            dims = len(op.kernel)
            if len(set(op.kernel)) != 1 or tuple(op.stride) != tuple(op.kernel):
                raise EehwError(f"{op.name}: the RTL max pool takes square windows with stride = window size")
            height, width = (shape[1], shape[2]) if dims == 2 else (1, shape[1])
            stage = PoolStage(op.name, dims, shape[0], height, width, op.kernel[0], bits, signed)
            lanes = _pool_lanes(ops[i + 1 :], stage, foldings, max_simd, max_pe)
            stages += _regroup(op.name + ".dwc", beat, lanes, n, bits)
            stage = replace(stage, fold=shape[0] // lanes)
            stages.append(stage)
            beat = lanes
            out_h, out_w = stage.out_hw
            shape = (shape[0], out_h, out_w) if dims == 2 else (shape[0], out_w)
            n = int(np.prod(shape))
            i += 1
            continue
        if isinstance(op, Quant):
            out_lo, out_hi = int_range(op.bits, op.signed, op.narrow)
            if op.out_exp == exp and out_lo <= lo and hi <= out_hi:
                # The identity on these values: no stage, and the elements keep the width and
                # signedness they are carried in (the quantiser's own format may be wider, e.g. an
                # 8-bit signed QuantIdentity reading a 7-bit unsigned QuantReLU).
                i += 1
                continue
            stages.append(
                RequantStage(
                    op.name, beat, n // beat, bits, signed, op.out_exp - exp, op.bits, op.signed, out_lo, out_hi
                )
            )
            exp, bits, signed, lo, hi = op.out_exp, op.bits, op.signed, out_lo, out_hi
            i += 1
            continue
        if isinstance(op, (Dense, Conv)):
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            if not isinstance(nxt, Quant):
                raise EehwError(
                    f"{op.name}: a dense or conv layer must be followed by a quantiser (QuantReLU "
                    f"or QuantIdentity) to be mapped to hardware"
                )
            out_ch = op.weight.shape[0]
            if isinstance(op, Conv):
                dims = op.weight.ndim - 2
                k = op.weight.shape[2]
                if len(set(op.weight.shape[2:])) != 1 or len(set(op.stride)) != 1 or len(set(op.padding)) != 1:
                    raise EehwError(
                        f"{op.name}: the RTL convolution takes square kernels with equal stride "
                        f"and padding on every axis"
                    )
                # Window beats hold (kernel offset, channel) in that order: permute (out, in, *k) to match.
                weight = np.moveaxis(op.weight, 1, -1).reshape(out_ch, -1)
            else:
                weight = op.weight if column_order is None else op.weight[:, column_order]
                column_order = None
            folding = foldings.get(op.name) or default_folding(weight.shape[1], out_ch, max_simd, max_pe)
            if weight.shape[1] % folding.simd or out_ch % folding.pe:
                raise EehwError(
                    f"{op.name}: SIMD {folding.simd} / PE {folding.pe} must divide IN {weight.shape[1]} / OUT {out_ch}"
                )
            positions = 1
            if isinstance(op, Conv):
                height, width = (shape[1], shape[2]) if dims == 2 else (1, shape[1])
                if block.name != "blocks.0" and not any(
                    isinstance(s, (WindowStage, PoolStage, MvuStage)) for s in stages
                ):
                    stages.append(_row_fifo(op.name, beat, bits, n // beat, width))
                window = WindowStage(
                    op.name + ".window",
                    dims,
                    shape[0],
                    height,
                    width,
                    k,
                    op.stride[0],
                    op.padding[0],
                    bits,
                    folding.simd,
                )
                stages.append(window)
                positions = window.positions
            else:
                stages += _regroup(op.name + ".dwc", beat, folding.simd, n, bits)
            if isinstance(op, Conv):
                fifo = _window_fifo(window, weight.shape[1], out_ch, folding)
                if fifo is not None:
                    stages.append(fifo)
            bias = op.bias if op.bias is not None else np.zeros(out_ch, np.int64)
            b_w = _width(int(bias.min(initial=0)), int(bias.max(initial=0)), True)
            out_lo, out_hi = int_range(nxt.bits, nxt.signed, nxt.narrow)
            stages.append(
                MvuStage(
                    op.name,
                    weight,
                    bias,
                    folding,
                    bits,
                    signed,
                    op.weight_bits,
                    b_w,
                    nxt.out_exp - op.out_exp,
                    nxt.bits,
                    nxt.signed,
                    out_lo,
                    out_hi,
                    positions,
                    mem_styles.get(op.name, MemStyle.AUTO),
                )
            )
            exp, bits, signed, lo, hi = nxt.out_exp, nxt.bits, nxt.signed, out_lo, out_hi
            if isinstance(op, Conv):
                out_h, out_w = window.out_hw
                shape = (out_ch, out_h, out_w) if dims == 2 else (out_ch, out_w)
            else:
                shape = (out_ch,)
            n = int(np.prod(shape))
            beat = out_ch
            i += 2
            continue
        raise EehwError(f"{op.name}: {type(op).__name__} has no RTL mapping")
    return HwBlock(
        block.name,
        tuple(stages),
        in_beat,
        int(np.prod(block.in_shape)) // in_beat,
        in_w,
        in_signed,
        beat,
        n // beat,
        bits,
        signed,
        ElemFormat(exp, bits, signed, lo, hi),
    )


def paced_foldings(
    golden: GoldenModel, max_simd: int, max_pe: int, mem_styles: dict[str, MemStyle] | None = None
) -> dict[str, Folding]:
    """Every weighted layer's fewest lanes (SIMD x PE within the limits) that keep its block at
    the pace of the slowest backbone block at its widest (the first block reads the input one
    pixel a beat, a later one may be bound by the lane limits): no block needs to be faster, and
    a wider one spends LUTs on lanes that wait (FINN's SetFolding to a target cycle count).
    Ties go to the wider SIMD (fewer, wider weight-memory words)."""
    widest = plan_design(golden, "paced", None, {}, max_simd, max_pe, mem_styles)
    target = max(b.ii for b in widest.blocks)
    chosen: dict[str, Folding] = {}
    parts = [(b, widest.blocks[k - 1].out_format if k else None) for k, b in enumerate(golden.blocks)]
    parts += [(golden.heads[k], widest.blocks[k].out_format) for k in golden.exits]
    for part, fmt in parts:
        for op in part.ops:
            if not isinstance(op, (Dense, Conv)):
                continue
            n_in, n_out = int(np.prod(op.weight.shape[1:])), op.weight.shape[0]
            options = sorted(
                (
                    Folding(s, p)
                    for s in range(1, min(n_in, max_simd) + 1)
                    if n_in % s == 0
                    for p in range(1, min(n_out, max_pe) + 1)
                    if n_out % p == 0
                ),
                key=lambda f: (f.simd * f.pe, -f.simd),
            )
            for folding in options:
                trial = plan_block(part, fmt, {**chosen, op.name: folding}, max_simd, max_pe, mem_styles)
                if trial.ii <= target:
                    chosen[op.name] = folding
                    break
    return chosen


@dataclass(frozen=True)
class DesignPlan:
    """A whole early-exit design: backbone blocks, the exits kept, and their decision units."""

    name: str
    blocks: tuple[HwBlock, ...]
    heads: dict[int, HwBlock]  # by block position; the last block's head is the final classifier
    input_quant: Quant
    logit_exps: tuple[int, ...]

    @property
    def exits(self) -> list[int]:
        return sorted(self.heads)


def plan_design(
    golden: GoldenModel,
    name: str,
    exits: list[int] | None = None,
    foldings: dict[str, Folding] | None = None,
    max_simd: int = 8,
    max_pe: int = 4,
    mem_styles: dict[str, MemStyle] | None = None,
) -> DesignPlan:
    """Plan the RTL of ``golden`` keeping only the exits in ``exits`` (default all; the final
    exit is always kept). ``exits=[]`` gives the no-exit baseline."""
    foldings = foldings or {}
    layers = [
        op.name for part in (*golden.blocks, *golden.heads.values()) for op in part.ops if isinstance(op, (Dense, Conv))
    ]
    for what, names in (("hardware.folding", foldings), ("hardware.memory", mem_styles or {})):
        unknown_layers = sorted(set(names) - set(layers))
        if unknown_layers:
            raise EehwError(
                f"{what}: no layer named {', '.join(unknown_layers)} in this model; "
                f"layers with weights: {', '.join(layers)}"
            )
    final = golden.exits[-1]
    keep = sorted(set(golden.exits if exits is None else exits) | {final})
    unknown = set(keep) - set(golden.exits)
    if unknown:
        raise EehwError(f"exits {sorted(unknown)} are not candidate exits; candidates: {golden.exits}")
    blocks: list[HwBlock] = []
    heads: dict[int, HwBlock] = {}
    fmt: ElemFormat | None = None
    for k, block in enumerate(golden.blocks):
        hw = plan_block(block, fmt, foldings, max_simd, max_pe, mem_styles)
        blocks.append(hw)
        fmt = hw.out_format
        if k in keep:
            heads[k] = plan_block(golden.heads[k], fmt, foldings, max_simd, max_pe, mem_styles)
    input_quant = golden.blocks[0].ops[0]
    exps = tuple(golden.heads[k].out_exp for k in keep)
    return DesignPlan(name, tuple(blocks), heads, input_quant, exps)


@dataclass(frozen=True)
class DecisionFormat:
    """Widths shared by every decision unit of a design (they all feed one merge)."""

    policy: PolicyName
    num_classes: int
    logit_w: int
    frac_bits: int

    @property
    def class_w(self) -> int:
        return max(1, (self.num_classes - 1).bit_length())

    @property
    def conf_w(self) -> int:
        if self.policy == PolicyName.MARGIN:
            return self.logit_w + 1  # top1 - top2 of signed logits
        return pow2_sum_bits(self.num_classes, self.frac_bits)

    @property
    def thr_w(self) -> int:
        return self.conf_w

    @property
    def dec_w(self) -> int:
        return self.conf_w + self.class_w + 1

    def verilog_params(self, shift: int, serial: bool) -> dict[str, int]:
        """decision_unit.v's parameters for an exit with this pow2 ``shift`` (0 for margin)."""
        return {
            "N_CLASSES": self.num_classes,
            "LOGIT_W": self.logit_w,
            "POLICY": HARDWARE_POLICY_CODES[self.policy],
            "SHIFT": shift,
            "FRAC_BITS": self.frac_bits,
            "THR_W": self.thr_w,
            "SERIAL": int(serial),
        }

    @property
    def scan(self) -> int:
        """decision_unit.v, SERIAL = 1: cycles a sample (one logit a cycle, pow2 reads them twice)."""
        return self.num_classes * (1 if self.policy == PolicyName.MARGIN else 2)

    def serial_fits(self, head_ii: int) -> bool:
        """Whether the serial unit (a quarter of the pipeline's LUTs) keeps up with a head that
        needs ``head_ii`` cycles a sample: it then never slows the exit, so the generator and
        the DSE use it there and the pipelined one only after faster heads."""
        return self.scan <= head_ii

    def latency_after(self, head_ii: int) -> int:
        """Latency of the unit an exit gets after a head of ``head_ii`` cycles a sample."""
        return self.latency(self.serial_fits(head_ii))

    def latency(self, serial: bool) -> int:
        """decision_unit.v, s_tvalid on an idle unit -> m_tvalid: the scan and the output
        register (serial), or clog2(N) comparison levels, then 1 (margin) or 3 (pow2) stages."""
        if serial:
            return self.scan + 1
        return (self.num_classes - 1).bit_length() + (1 if self.policy == PolicyName.MARGIN else 3)

    @property
    def always_exit(self) -> int:
        """A threshold every sample passes: margin >= 0, S <= all ones."""
        return 0 if self.policy == PolicyName.MARGIN else (1 << self.thr_w) - 1


# Handshake latencies of the library modules, as their headers state them (and as rtl_sim/tests
# measure).


def decision_format(plan: DesignPlan, params: PolicyParams) -> DecisionFormat:
    if params.name not in HARDWARE_POLICY_CODES:
        raise EehwError(
            f"policy '{params.name.value}' has no hardware decision unit; "
            f"use margin or max_softmax_pow2 in the config's policy.name"
        )
    final = plan.heads[plan.exits[-1]]
    widths = {plan.heads[k].out_w for k in plan.exits}
    if len(widths) != 1 or any(
        (plan.heads[k].out_beat, plan.heads[k].out_beats) != (final.out_beat, 1) for k in plan.exits
    ):
        raise EehwError("every exit head needs the same number of classes and logit width for one result stream")
    return DecisionFormat(params.name, final.out_beat, final.out_w, params.frac_bits)
