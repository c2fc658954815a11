"""The hardware stages a block is planned into (requantiser, folded MVU, sliding window, max
pool, width converter, FIFO), each with its widths, folding, memory style and stream beats,
and their initiation intervals."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from eehw.model.golden import Quant, int_range


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
        return {
            "N": self.n,
            "IN_W": self.in_w,
            "IN_SIGNED": int(self.in_signed),
            "SHIFT": self.shift,
            "OUT_W": self.out_w,
            "OUT_SIGNED": int(self.out_signed),
            "OUT_MIN": self.out_min,
            "OUT_MAX": self.out_max,
        }


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
        return {
            "IN": self.in_n,
            "OUT": self.out_n,
            "SIMD": self.folding.simd,
            "PE": self.folding.pe,
            "A_W": self.a_w,
            "A_SIGNED": int(self.a_signed),
            "W_W": self.w_w,
            "B_W": self.b_w,
            "SHIFT": self.shift,
            "OUT_W": self.out_w,
            "OUT_SIGNED": int(self.out_signed),
            "OUT_MIN": self.out_min,
            "OUT_MAX": self.out_max,
            "WEIGHT_FILE": weight_file,
            "BIAS_FILE": bias_file,
            "W_STYLE": f'"{self.w_style.value}"',
        }


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
        return (self.k**self.dims) * self.c

    @property
    def scan_steps(self) -> int:
        """Steps of sliding_window.v's scan of the padded map (HP x WP), a sample."""
        return ((self.height + 2 * self.pad) if self.dims == 2 else 1) * (self.width + 2 * self.pad)

    @property
    def window_steps(self) -> list[int]:
        """The scan steps that complete a window, in output order (W_0 .. W_{P-1})."""
        kh = self.k if self.dims == 2 else 1
        wp = self.width + 2 * self.pad
        out_h, out_w = self.out_hw
        return [
            (kh - 1 + oh * self.stride) * wp + self.k - 1 + ow * self.stride
            for oh in range(out_h)
            for ow in range(out_w)
        ]

    @property
    def pixel_steps(self) -> list[int]:
        """The scan step of each input pixel, in stream order (the rest are padding)."""
        ph = self.pad if self.dims == 2 else 0
        wp = self.width + 2 * self.pad
        return [r * wp + x for r in range(ph, ph + self.height) for x in range(self.pad, self.pad + self.width)]

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
        return {
            "DIMS": self.dims,
            "C": self.c,
            "IN_H": self.height,
            "IN_W": self.width,
            "K": self.k,
            "STRIDE": self.stride,
            "PAD": self.pad,
            "E": self.e,
            "SIMD": self.simd,
        }


@dataclass(frozen=True)
class PoolStage(_SameWidth):
    """maxpool.v: K x K (or K) max pooling with stride K of a pixel stream, one row of partial
    maxima. ``fold`` > 1: each pixel comes as ``fold`` beats of c / fold channels (before a dense
    layer that reads fewer lanes than c, the pool then needs only that many comparators)."""

    name: str
    dims: int
    c: int
    height: int  # input rows (1 for 1-D)
    width: int  # input columns (the length for 1-D)
    k: int
    e: int
    signed: bool
    fold: int = 1  # beats a pixel

    module = "maxpool"

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.height // self.k if self.dims == 2 else 1), self.width // self.k

    @property
    def in_beat(self) -> int:
        return self.c // self.fold

    @property
    def out_beat(self) -> int:
        return self.c // self.fold

    @property
    def in_beats(self) -> int:
        return self.height * self.width * self.fold

    @property
    def out_beats(self) -> int:
        out_h, out_w = self.out_hw
        return out_h * out_w * self.fold

    @property
    def params(self) -> dict[str, int]:
        return {
            "DIMS": self.dims,
            "C": self.c,
            "IN_H": self.height,
            "IN_W": self.width,
            "K": self.k,
            "E": self.e,
            "SIGNED": int(self.signed),
            "FOLD": self.fold,
        }


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
    """axis_fifo.v. Between a sliding window and a slower MVU it lets the window scan the next
    sample's leading rows while the MVU still works through the previous sample's last windows
    (without it the MVU would idle for the window's first-window latency at every sample);
    before a later block's window it absorbs the upstream block's pooled-row bursts."""

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
    return (
        out_h * (out_w - 1) * max(nb, s)
        + (out_h - 1) * max(nb, s * wp - (out_w - 1) * s)
        + max(nb, hp * wp - (out_h - 1) * s * wp - (out_w - 1) * s)
    )
