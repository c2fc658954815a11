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

from dataclasses import dataclass, field
from enum import Enum
from math import gcd

import numpy as np

from eehw.errors import EehwError
from eehw.golden import Conv, Dense, Flatten, GoldenModel, IntBlock, MaxPool, Quant, int_range


@dataclass(frozen=True)
class Folding:
    simd: int
    pe: int


class MemStyle(str, Enum):
    """Where a module keeps a memory (FINN's ram_style): chosen by size, or forced per layer."""

    AUTO = "auto"
    BLOCK = "block"
    DISTRIBUTED = "distributed"


class _EveryBeat:
    """Stages that pass every beat (``n`` elements, ``beats`` a sample) through one for one."""

    n: int
    beats: int

    @property
    def in_beat(self) -> int:
        return self.n

    @property
    def out_beat(self) -> int:
        return self.n

    @property
    def in_beats(self) -> int:
        return self.beats

    @property
    def out_beats(self) -> int:
        return self.beats


@dataclass(frozen=True)
class RequantStage(_EveryBeat):
    """requant.v: element-wise requantisation of every beat (``n`` elements) of the stream."""

    name: str
    n: int  # elements per beat
    beats: int  # beats per sample
    in_w: int
    in_signed: bool
    shift: int
    out_w: int
    out_signed: bool
    out_min: int
    out_max: int

    module = "requant"

    @property
    def params(self) -> dict[str, int]:
        return {"N": self.n, "IN_W": self.in_w, "IN_SIGNED": int(self.in_signed), "SHIFT": self.shift,
                "OUT_W": self.out_w, "OUT_SIGNED": int(self.out_signed), "OUT_MIN": self.out_min,
                "OUT_MAX": self.out_max}


@dataclass(frozen=True)
class MvuStage:
    """mvu.v: one vector of ``in_n`` elements (IN/SIMD beats of SIMD) in, one beat of ``out_n``
    elements out, ``positions`` vectors per sample (a convolution's output positions)."""

    name: str
    weight: np.ndarray = field(repr=False)  # (out, in) int64
    bias: np.ndarray = field(repr=False)  # (out,) int64
    folding: Folding
    a_w: int
    a_signed: bool
    w_w: int
    b_w: int
    shift: int
    out_w: int
    out_signed: bool
    out_min: int
    out_max: int
    positions: int = 1
    w_style: MemStyle = MemStyle.AUTO

    module = "mvu"

    @property
    def in_n(self) -> int:
        return self.weight.shape[1]

    @property
    def out_n(self) -> int:
        return self.weight.shape[0]

    @property
    def in_beat(self) -> int:
        return self.folding.simd

    @property
    def out_beat(self) -> int:
        return self.out_n

    @property
    def in_beats(self) -> int:
        return self.positions * self.in_n // self.folding.simd

    @property
    def out_beats(self) -> int:
        return self.positions

    @property
    def vector_ii(self) -> int:
        """Cycles per vector: (IN/SIMD) * (OUT/PE)."""
        return (self.in_n // self.folding.simd) * (self.out_n // self.folding.pe)

    @property
    def macs(self) -> int:
        return int(self.weight.size)

    def params(self, weight_file: str, bias_file: str) -> dict[str, int | str]:
        return {"IN": self.in_n, "OUT": self.out_n, "SIMD": self.folding.simd, "PE": self.folding.pe,
                "A_W": self.a_w, "A_SIGNED": int(self.a_signed), "W_W": self.w_w, "B_W": self.b_w,
                "SHIFT": self.shift, "OUT_W": self.out_w, "OUT_SIGNED": int(self.out_signed),
                "OUT_MIN": self.out_min, "OUT_MAX": self.out_max,
                "WEIGHT_FILE": weight_file, "BIAS_FILE": bias_file, "W_STYLE": f'"{self.w_style.value}"'}


class _SameWidth:
    """Stages that move elements around without changing their width ``e``."""

    e: int

    @property
    def in_w(self) -> int:
        return self.e

    @property
    def out_w(self) -> int:
        return self.e


@dataclass(frozen=True)
class WindowStage(_SameWidth):
    """sliding_window.v: a pixel stream in, each output position's receptive field out in
    beats of ``simd`` elements (the next MVU's SIMD), from a (K-1)-row line buffer."""

    name: str
    dims: int
    c: int
    height: int  # input rows (1 for 1-D)
    width: int  # input columns (the length for 1-D)
    k: int
    stride: int
    pad: int
    e: int
    simd: int

    module = "sliding_window"

    @property
    def out_hw(self) -> tuple[int, int]:
        out_h = (self.height + 2 * self.pad - self.k) // self.stride + 1 if self.dims == 2 else 1
        return out_h, (self.width + 2 * self.pad - self.k) // self.stride + 1

    @property
    def positions(self) -> int:
        out_h, out_w = self.out_hw
        return out_h * out_w

    @property
    def window(self) -> int:
        """Elements of one receptive field."""
        return (self.k ** self.dims) * self.c

    @property
    def in_beat(self) -> int:
        return self.c

    @property
    def out_beat(self) -> int:
        return self.simd

    @property
    def in_beats(self) -> int:
        return self.height * self.width

    @property
    def out_beats(self) -> int:
        return self.positions * self.window // self.simd

    @property
    def params(self) -> dict[str, int | str]:
        return {"DIMS": self.dims, "C": self.c, "IN_H": self.height, "IN_W": self.width, "K": self.k,
                "STRIDE": self.stride, "PAD": self.pad, "E": self.e, "SIMD": self.simd}


@dataclass(frozen=True)
class PoolStage(_SameWidth):
    """maxpool.v: K x K (or K) max pooling with stride K of a pixel stream, one row of partial maxima."""

    name: str
    dims: int
    c: int
    height: int  # input rows (1 for 1-D)
    width: int  # input columns (the length for 1-D)
    k: int
    e: int
    signed: bool

    module = "maxpool"

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.height // self.k if self.dims == 2 else 1), self.width // self.k

    @property
    def in_beat(self) -> int:
        return self.c

    @property
    def out_beat(self) -> int:
        return self.c

    @property
    def in_beats(self) -> int:
        return self.height * self.width

    @property
    def out_beats(self) -> int:
        out_h, out_w = self.out_hw
        return out_h * out_w

    @property
    def params(self) -> dict[str, int]:
        return {"DIMS": self.dims, "C": self.c, "IN_H": self.height, "IN_W": self.width, "K": self.k, "E": self.e,
                "SIGNED": int(self.signed)}


@dataclass(frozen=True)
class DwcStage(_SameWidth):
    """dwc.v: the same elements in beats of ``out_n`` instead of ``in_n`` (one divides the other)."""

    name: str
    in_n: int
    out_n: int
    n: int  # elements per sample
    e: int

    module = "dwc"

    @property
    def in_beat(self) -> int:
        return self.in_n

    @property
    def out_beat(self) -> int:
        return self.out_n

    @property
    def in_beats(self) -> int:
        return self.n // self.in_n

    @property
    def out_beats(self) -> int:
        return self.n // self.out_n

    @property
    def params(self) -> dict[str, int]:
        return {"IN_N": self.in_n, "OUT_N": self.out_n, "N": self.n, "E": self.e}


@dataclass(frozen=True)
class FifoStage(_EveryBeat, _SameWidth):
    """axis_fifo.v between a sliding window and a slower MVU: lets the window scan the next
    sample's leading rows while the MVU still works through the previous sample's last windows
    (without it the MVU would idle for the window's first-window latency at every sample)."""

    name: str
    n: int  # elements per beat
    e: int
    beats: int  # beats per sample
    depth: int

    module = "axis_fifo"

    @property
    def params(self) -> dict[str, int]:
        return {"W": self.n * self.e, "DEPTH": self.depth}


Stage = RequantStage | MvuStage | WindowStage | PoolStage | DwcStage | FifoStage


@dataclass(frozen=True)
class ElemFormat:
    """How the integers on a stream are physically carried: exponent, width, signedness, and the
    value range they can take (which may be narrower than the width allows)."""

    exp: int
    bits: int
    signed: bool
    lo: int
    hi: int

    @classmethod
    def of_quant(cls, q: Quant) -> "ElemFormat":
        lo, hi = int_range(q.bits, q.signed, q.narrow)
        return cls(q.out_exp, q.bits, q.signed, lo, hi)


@dataclass(frozen=True)
class HwBlock:
    """One backbone block or exit head as a chain of RTL stages, with the stream it reads
    (``in_beats`` beats of ``in_beat`` elements per sample) and the stream it writes."""

    name: str
    stages: tuple[Stage, ...]
    in_beat: int
    in_beats: int
    in_w: int
    in_signed: bool
    out_beat: int
    out_beats: int
    out_w: int
    out_signed: bool
    out_format: ElemFormat  # what the next block and the heads reading this one receive

    @property
    def module(self) -> str:
        return "eehw_" + self.name.replace(".", "_")

    @property
    def ii(self) -> int:
        """Cycles per sample of the slowest stage (each stage's own limit, stage_ii)."""
        return max((stage_ii(s) for s in self.stages), default=1)

    @property
    def in_bits(self) -> int:
        """Bits of one input beat."""
        return self.in_beat * self.in_w

    @property
    def out_bits(self) -> int:
        """Bits of one output beat."""
        return self.out_beat * self.out_w


def stage_ii(stage: Stage) -> int:
    """Cycles per sample a stage needs on back-to-back samples, as its module header states."""
    if isinstance(stage, MvuStage):
        return stage.positions * stage.vector_ii
    if isinstance(stage, WindowStage):
        return window_cycles(stage)
    return max(stage.in_beats, stage.out_beats)  # requant, maxpool, dwc: one beat per cycle


def window_cycles(stage: WindowStage) -> int:
    """sliding_window.v header: the padded map is scanned one step a cycle, and a window
    position waits until the previous window's NB beats have left: the sum over the gaps d_j
    between window positions (across samples for the last) of max(NB, d_j)."""
    hp, wp = stage.height + (2 * stage.pad if stage.dims == 2 else 0), stage.width + 2 * stage.pad
    out_h, out_w = stage.out_hw
    nb, s = stage.window // stage.simd, stage.stride
    return (out_h * (out_w - 1) * max(nb, s) + (out_h - 1) * max(nb, s * wp - (out_w - 1) * s)
            + max(nb, hp * wp - (out_h - 1) * s * wp - (out_w - 1) * s))


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


def plan_block(block: IntBlock, fmt_in: ElemFormat | None, foldings: dict[str, Folding],
               max_simd: int, max_pe: int, mem_styles: dict[str, MemStyle] | None = None) -> HwBlock:
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
            stages.append(stage)
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
            stages.append(RequantStage(op.name, beat, n // beat, bits, signed, op.out_exp - exp, op.bits,
                                       op.signed, out_lo, out_hi))
            exp, bits, signed, lo, hi = op.out_exp, op.bits, op.signed, out_lo, out_hi
            i += 1
            continue
        if isinstance(op, (Dense, Conv)):
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            if not isinstance(nxt, Quant):
                raise EehwError(f"{op.name}: a dense or conv layer must be followed by a quantiser (QuantReLU "
                                f"or QuantIdentity) to be mapped to hardware")
            out_ch = op.weight.shape[0]
            if isinstance(op, Conv):
                dims = op.weight.ndim - 2
                k = op.weight.shape[2]
                if (len(set(op.weight.shape[2:])) != 1 or len(set(op.stride)) != 1 or len(set(op.padding)) != 1):
                    raise EehwError(f"{op.name}: the RTL convolution takes square kernels with equal stride "
                                    f"and padding on every axis")
                # Window beats hold (kernel offset, channel) in that order: permute (out, in, *k) to match.
                weight = np.moveaxis(op.weight, 1, -1).reshape(out_ch, -1)
            else:
                weight = op.weight if column_order is None else op.weight[:, column_order]
                column_order = None
            folding = foldings.get(op.name) or default_folding(weight.shape[1], out_ch, max_simd, max_pe)
            if weight.shape[1] % folding.simd or out_ch % folding.pe:
                raise EehwError(f"{op.name}: SIMD {folding.simd} / PE {folding.pe} must divide IN "
                                f"{weight.shape[1]} / OUT {out_ch}")
            positions = 1
            if isinstance(op, Conv):
                height, width = (shape[1], shape[2]) if dims == 2 else (1, shape[1])
                window = WindowStage(op.name + ".window", dims, shape[0], height, width, k, op.stride[0],
                                     op.padding[0], bits, folding.simd)
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
            stages.append(MvuStage(op.name, weight, bias, folding, bits, signed, op.weight_bits, b_w,
                                   nxt.out_exp - op.out_exp, nxt.bits, nxt.signed, out_lo, out_hi, positions,
                                   mem_styles.get(op.name, MemStyle.AUTO)))
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
    return HwBlock(block.name, tuple(stages), in_beat, int(np.prod(block.in_shape)) // in_beat, in_w, in_signed,
                   beat, n // beat, bits, signed, ElemFormat(exp, bits, signed, lo, hi))


def paced_foldings(golden: GoldenModel, max_simd: int, max_pe: int,
                   mem_styles: dict[str, MemStyle] | None = None) -> dict[str, Folding]:
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
            options = sorted((Folding(s, p) for s in range(1, min(n_in, max_simd) + 1) if n_in % s == 0
                              for p in range(1, min(n_out, max_pe) + 1) if n_out % p == 0),
                             key=lambda f: (f.simd * f.pe, -f.simd))
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


def plan_design(golden: GoldenModel, name: str, exits: list[int] | None = None,
                foldings: dict[str, Folding] | None = None, max_simd: int = 8, max_pe: int = 4,
                mem_styles: dict[str, MemStyle] | None = None) -> DesignPlan:
    """Plan the RTL of ``golden`` keeping only the exits in ``exits`` (default all; the final
    exit is always kept). ``exits=[]`` gives the no-exit baseline."""
    foldings = foldings or {}
    layers = [op.name for part in (*golden.blocks, *golden.heads.values()) for op in part.ops
              if isinstance(op, (Dense, Conv))]
    for what, names in (("hardware.folding", foldings), ("hardware.memory", mem_styles or {})):
        unknown_layers = sorted(set(names) - set(layers))
        if unknown_layers:
            raise EehwError(f"{what}: no layer named {', '.join(unknown_layers)} in this model; "
                            f"layers with weights: {', '.join(layers)}")
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

