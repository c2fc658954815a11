"""From the golden integer model to a hardware plan: which RTL stage computes each operation,
with which widths, shifts and folding. The Verilog generator and the latency bound read this
plan; nothing here writes files.

A Dense followed by its Quant becomes one folded matrix-vector unit (``mvu``) that
requantises its accumulator; a Quant that follows another Quant (a block or head boundary)
becomes an element-wise ``requant`` stage unless it is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eehw.errors import EehwError
from eehw.golden import Conv, Dense, Flatten, GoldenModel, IntBlock, MaxPool, Quant, int_range


@dataclass(frozen=True)
class Folding:
    simd: int
    pe: int


@dataclass(frozen=True)
class RequantStage:
    name: str
    n: int
    in_w: int
    in_signed: bool
    shift: int
    out_w: int
    out_signed: bool
    out_min: int
    out_max: int

    module = "requant"
    latency = 1  # one register stage
    ii = 1

    @property
    def in_bits(self) -> int:
        return self.n * self.in_w

    @property
    def out_n(self) -> int:
        return self.n

    @property
    def params(self) -> dict[str, int]:
        return {"N": self.n, "IN_W": self.in_w, "IN_SIGNED": int(self.in_signed), "SHIFT": self.shift,
                "OUT_W": self.out_w, "OUT_SIGNED": int(self.out_signed), "OUT_MIN": self.out_min,
                "OUT_MAX": self.out_max}


@dataclass(frozen=True)
class MvuStage:
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
    positions: int = 1  # beats per sample: the output positions of a convolution, 1 for a dense layer

    module = "mvu"

    @property
    def in_n(self) -> int:
        return self.weight.shape[1]

    @property
    def out_n(self) -> int:
        return self.weight.shape[0]

    @property
    def in_bits(self) -> int:
        return self.in_n * self.a_w

    @property
    def ii(self) -> int:
        """Cycles per sample: (IN/SIMD) * (OUT/PE)."""
        return (self.in_n // self.folding.simd) * (self.out_n // self.folding.pe)

    @property
    def macs(self) -> int:
        return int(self.weight.size)

    def params(self, weight_file: str, bias_file: str) -> dict[str, int | str]:
        return {"IN": self.in_n, "OUT": self.out_n, "SIMD": self.folding.simd, "PE": self.folding.pe,
                "A_W": self.a_w, "A_SIGNED": int(self.a_signed), "W_W": self.w_w, "B_W": self.b_w,
                "SHIFT": self.shift, "OUT_W": self.out_w, "OUT_SIGNED": int(self.out_signed),
                "OUT_MIN": self.out_min, "OUT_MAX": self.out_max,
                "WEIGHT_FILE": weight_file, "BIAS_FILE": bias_file}


class _SameWidth:
    """Stages that move elements around without changing their width ``e``."""

    e: int

    @property
    def out_w(self) -> int:
        return self.e


@dataclass(frozen=True)
class WindowStage(_SameWidth):
    """sliding_window.v: one whole channels-last map in, one receptive field per output position out."""

    name: str
    dims: int
    c: int
    in_h: int
    in_w: int
    k: int
    stride: int
    pad: int
    e: int

    module = "sliding_window"
    latency = 2  # sliding_window.v: map accepted -> first window

    @property
    def out_hw(self) -> tuple[int, int]:
        out_h = (self.in_h + 2 * self.pad - self.k) // self.stride + 1 if self.dims == 2 else 1
        return out_h, (self.in_w + 2 * self.pad - self.k) // self.stride + 1

    @property
    def positions(self) -> int:
        out_h, out_w = self.out_hw
        return out_h * out_w

    @property
    def out_n(self) -> int:
        return (self.k ** self.dims) * self.c

    @property
    def ii(self) -> int:
        return self.positions

    @property
    def params(self) -> dict[str, int]:
        return {"DIMS": self.dims, "C": self.c, "IN_H": self.in_h, "IN_W": self.in_w, "K": self.k,
                "STRIDE": self.stride, "PAD": self.pad, "E": self.e}


@dataclass(frozen=True)
class CollectStage(_SameWidth):
    """collect.v: P position beats back into one whole channels-last map."""

    name: str
    p: int
    n: int
    e: int

    module = "collect"
    latency = 1  # collect.v: last position beat -> whole map

    @property
    def out_n(self) -> int:
        return self.p * self.n

    @property
    def ii(self) -> int:
        return self.p

    @property
    def params(self) -> dict[str, int]:
        return {"P": self.p, "N": self.n, "E": self.e}


@dataclass(frozen=True)
class PoolStage(_SameWidth):
    """maxpool.v: K x K (or K) max pooling with stride K of a whole channels-last map."""

    name: str
    dims: int
    c: int
    in_h: int
    in_w: int
    k: int
    e: int
    signed: bool

    module = "maxpool"
    latency = 1
    ii = 1

    @property
    def out_n(self) -> int:
        out_h = self.in_h // self.k if self.dims == 2 else 1
        return out_h * (self.in_w // self.k) * self.c

    @property
    def params(self) -> dict[str, int]:
        return {"DIMS": self.dims, "C": self.c, "IN_H": self.in_h, "IN_W": self.in_w, "K": self.k, "E": self.e,
                "SIGNED": int(self.signed)}


Stage = RequantStage | MvuStage | WindowStage | CollectStage | PoolStage


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
    """One backbone block or exit head as a chain of RTL stages."""

    name: str
    stages: tuple[Stage, ...]
    in_n: int
    in_w: int
    in_signed: bool
    out_n: int
    out_w: int
    out_signed: bool
    out_format: ElemFormat  # what the next block and the heads reading this one receive

    @property
    def module(self) -> str:
        return "eehw_" + self.name.replace(".", "_")

    @property
    def ii(self) -> int:
        """Cycles per sample of the slowest stage. A convolution's MVU states its II per output
        position and runs once per position; every other stage's II is already per sample (the
        sliding window's is its number of positions, one window a cycle)."""
        return max(s.ii * s.positions if isinstance(s, MvuStage) else s.ii for s in self.stages) if self.stages else 1

    @property
    def in_bits(self) -> int:
        return self.in_n * self.in_w

    @property
    def out_bits(self) -> int:
        return self.out_n * self.out_w


def default_folding(n_in: int, n_out: int, max_simd: int, max_pe: int) -> Folding:
    """The widest lanes within the limits that divide the layer evenly."""
    simd = max(d for d in range(1, min(n_in, max_simd) + 1) if n_in % d == 0)
    pe = max(d for d in range(1, min(n_out, max_pe) + 1) if n_out % d == 0)
    return Folding(simd, pe)


def _width(lo: int, hi: int, signed: bool) -> int:
    if signed:
        return max(int(hi).bit_length(), int(-lo - 1).bit_length() if lo < 0 else 0) + 1
    return max(int(hi).bit_length(), 1)


def plan_block(block: IntBlock, fmt_in: ElemFormat | None, foldings: dict[str, Folding],
               max_simd: int, max_pe: int) -> HwBlock:
    """Map a block's integer ops to RTL stages.

    ``fmt_in`` is how the integers entering the block are carried: the previous block's output
    format, or for block 0 None (its input quantiser's float->int step happens before the
    hardware, so it is skipped here and gives the format).
    """
    ops = list(block.ops)
    if block.name == "blocks.0":
        if not ops or not isinstance(ops[0], Quant) or ops[0].in_exp is not None:
            raise EehwError(f"{block.name}: the first block must start with the input quantiser")
        fmt_in = ElemFormat.of_quant(ops.pop(0))
    assert fmt_in is not None
    exp, bits, signed, lo, hi = fmt_in.exp, fmt_in.bits, fmt_in.signed, fmt_in.lo, fmt_in.hi
    shape = tuple(block.in_shape)  # (features,) or channels-first (C, L) / (C, H, W); beats are channels-last
    n = int(np.prod(shape))
    in_n, in_w, in_signed = n, bits, signed
    column_order: np.ndarray | None = None  # golden flatten index of each hardware element
    stages: list[Stage] = []
    i = 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, Flatten):
            if len(shape) > 1:
                # Golden flattens channel-major (c, p); the hardware vector is channels-last (p, c).
                c, positions = shape[0], int(np.prod(shape[1:]))
                column_order = np.arange(c * positions).reshape(c, positions).T.reshape(-1)
            shape = (n,)
            i += 1
            continue
        if isinstance(op, MaxPool):
            dims = len(op.kernel)
            if len(set(op.kernel)) != 1 or tuple(op.stride) != tuple(op.kernel):
                raise EehwError(f"{op.name}: the RTL max pool takes square windows with stride = window size")
            in_h, in_w_ = (shape[1], shape[2]) if dims == 2 else (1, shape[1])
            stage = PoolStage(op.name, dims, shape[0], in_h, in_w_, op.kernel[0], bits, signed)
            stages.append(stage)
            k = op.kernel[0]
            shape = (shape[0], in_h // k, in_w_ // k) if dims == 2 else (shape[0], in_w_ // k)
            n = stage.out_n
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
            stages.append(RequantStage(op.name, n, bits, signed, op.out_exp - exp, op.bits, op.signed,
                                       out_lo, out_hi))
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
                in_h, in_w_ = (shape[1], shape[2]) if dims == 2 else (1, shape[1])
                window = WindowStage(op.name + ".window", dims, shape[0], in_h, in_w_, k, op.stride[0],
                                     op.padding[0], bits)
                stages.append(window)
                # Window beats hold (kernel offset, channel) in that order: permute (out, in, *k) to match.
                weight = np.moveaxis(op.weight, 1, -1).reshape(out_ch, -1)
            else:
                weight = op.weight if column_order is None else op.weight[:, column_order]
                column_order = None
            folding = foldings.get(op.name) or default_folding(weight.shape[1], out_ch, max_simd, max_pe)
            if weight.shape[1] % folding.simd or out_ch % folding.pe:
                raise EehwError(f"{op.name}: SIMD {folding.simd} / PE {folding.pe} must divide IN "
                                f"{weight.shape[1]} / OUT {out_ch}")
            bias = op.bias if op.bias is not None else np.zeros(out_ch, np.int64)
            b_w = _width(int(bias.min(initial=0)), int(bias.max(initial=0)), True)
            out_lo, out_hi = int_range(nxt.bits, nxt.signed, nxt.narrow)
            positions = window.positions if isinstance(op, Conv) else 1
            stages.append(MvuStage(op.name, weight, bias, folding, bits, signed, op.weight_bits, b_w,
                                   nxt.out_exp - op.out_exp, nxt.bits, nxt.signed, out_lo, out_hi, positions))
            exp, bits, signed, lo, hi = nxt.out_exp, nxt.bits, nxt.signed, out_lo, out_hi
            if isinstance(op, Conv):
                out_h, out_w_ = window.out_hw
                stages.append(CollectStage(op.name + ".collect", window.positions, out_ch, bits))
                shape = (out_ch, out_h, out_w_) if dims == 2 else (out_ch, out_w_)
            else:
                shape = (out_ch,)
            n = int(np.prod(shape))
            i += 2
            continue
        raise EehwError(f"{op.name}: {type(op).__name__} has no RTL mapping")
    return HwBlock(block.name, tuple(stages), in_n, in_w, in_signed, n, bits, signed,
                   ElemFormat(exp, bits, signed, lo, hi))


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
                foldings: dict[str, Folding] | None = None, max_simd: int = 8, max_pe: int = 4) -> DesignPlan:
    """Plan the RTL of ``golden`` keeping only the exits in ``exits`` (default all; the final
    exit is always kept). ``exits=[]`` gives the no-exit baseline."""
    foldings = foldings or {}
    final = golden.exits[-1]
    keep = sorted(set(golden.exits if exits is None else exits) | {final})
    unknown = set(keep) - set(golden.exits)
    if unknown:
        raise EehwError(f"exits {sorted(unknown)} are not candidate exits; candidates: {golden.exits}")
    blocks: list[HwBlock] = []
    heads: dict[int, HwBlock] = {}
    fmt: ElemFormat | None = None
    for k, block in enumerate(golden.blocks):
        hw = plan_block(block, fmt, foldings, max_simd, max_pe)
        blocks.append(hw)
        fmt = hw.out_format
        if k in keep:
            heads[k] = plan_block(golden.heads[k], fmt, foldings, max_simd, max_pe)
    input_quant = golden.blocks[0].ops[0]
    exps = tuple(golden.heads[k].out_exp for k in keep)
    return DesignPlan(name, tuple(blocks), heads, input_quant, exps)

