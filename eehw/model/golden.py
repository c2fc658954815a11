"""The golden integer model: plain numpy integer arithmetic on exported weights and shifts.

Every value is an integer with a power-of-two exponent known at export time (real value =
q * 2**exp). This is the reference every later level (hls4ml C-sim, RTL) is compared with, so
it is written from the arithmetic of the quantisation contract, not from Brevitas's code:
round half to even, saturate, integer multiply-accumulate, max pooling, flatten.
Layouts follow PyTorch (N, C, L) / (N, C, H, W); flatten is in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np

from eehw.errors import EehwError


def int_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


def shift_round_half_even(q: np.ndarray, shift: int) -> np.ndarray:
    """q * 2**-shift rounded half to even (Brevitas ROUND, hls4ml RND_CONV); exact for shift <= 0."""
    q = q.astype(np.int64)
    if shift <= 0:
        return q << (-shift)
    floor = q >> shift  # arithmetic shift: floor division for negatives too
    rem = q - (floor << shift)
    half = 1 << (shift - 1)
    round_up = (rem > half) | ((rem == half) & ((floor & 1) == 1))
    return floor + round_up


@dataclass(frozen=True)
class Quant:
    """Requantise to ``bits`` at exponent ``out_exp``; ``in_exp`` None means a float input."""

    name: str
    in_exp: int | None
    out_exp: int
    bits: int
    signed: bool
    narrow: bool = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        lo, hi = int_range(self.bits, self.signed, self.narrow)
        if self.in_exp is None:
            # Scaling a float32 by a power of two is exact, so this is the same rounding Brevitas does.
            q = np.rint(np.asarray(x, dtype=np.float32) * np.float32(2.0**-self.out_exp)).astype(np.int64)
        else:
            q = shift_round_half_even(x, self.out_exp - self.in_exp)
        return np.clip(q, lo, hi)


@dataclass(frozen=True)
class Dense:
    """acc = W x + b at exponent in_exp + weight_exp; bias is already at that exponent."""

    name: str
    weight: np.ndarray = field(repr=False)  # (out, in) int64
    bias: np.ndarray | None = field(repr=False)  # (out,) int64
    in_exp: int
    weight_exp: int
    weight_bits: int

    @property
    def out_exp(self) -> int:
        return self.in_exp + self.weight_exp

    def __call__(self, x: np.ndarray) -> np.ndarray:
        acc = x.astype(np.int64) @ self.weight.T
        return acc + self.bias if self.bias is not None else acc


@dataclass(frozen=True)
class Conv:
    """N-d convolution (1-D or 2-D), zero padding, groups 1, via an integer im2col."""

    name: str
    weight: np.ndarray = field(repr=False)  # (out, in, *kernel) int64
    bias: np.ndarray | None = field(repr=False)
    in_exp: int
    weight_exp: int
    weight_bits: int
    stride: tuple[int, ...]
    padding: tuple[int, ...]

    @property
    def out_exp(self) -> int:
        return self.in_exp + self.weight_exp

    def __call__(self, x: np.ndarray) -> np.ndarray:
        kernel = self.weight.shape[2:]
        pad = [(0, 0), (0, 0)] + [(p, p) for p in self.padding]
        x = np.pad(x.astype(np.int64), pad)
        windows = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=tuple(range(2, x.ndim)))
        # windows: (N, C, *out_spatial_full, *kernel); take every stride-th position.
        index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in self.stride)
        windows = windows[index]
        dims = len(kernel)
        # (N, C, *S, *K) -> (N, *S, C, *K) -> (N, *S, C*prod(K))
        order = (0,) + tuple(range(2, 2 + dims)) + (1,) + tuple(range(2 + dims, 2 + 2 * dims))
        cols = windows.transpose(order)
        spatial = cols.shape[1 : 1 + dims]
        cols = cols.reshape(cols.shape[0], *spatial, -1)
        acc = cols @ self.weight.reshape(self.weight.shape[0], -1).T  # (N, *S, OUT)
        if self.bias is not None:
            acc = acc + self.bias
        return np.moveaxis(acc, -1, 1)


@dataclass(frozen=True)
class MaxPool:
    name: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        dims = len(self.kernel)
        # Floor mode: drop the rows and columns that do not fill a window, as PyTorch does.
        out = [(x.shape[2 + d] - self.kernel[d]) // self.stride[d] + 1 for d in range(dims)]
        windows = np.lib.stride_tricks.sliding_window_view(x, self.kernel, axis=tuple(range(2, 2 + dims)))
        index = (slice(None), slice(None)) + tuple(slice(0, o * s, s) for o, s in zip(out, self.stride))
        return windows[index].max(axis=tuple(range(-dims, 0)))


@dataclass(frozen=True)
class Flatten:
    name: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)


Op = Union[Quant, Dense, Conv, MaxPool, Flatten]


@dataclass(frozen=True)
class IntBlock:
    """One backbone segment or exit head as integer operations."""

    name: str
    ops: tuple[Op, ...]
    in_shape: tuple[int, ...]  # per sample
    out_shape: tuple[int, ...]
    out_exp: int
    out_bits: int
    out_signed: bool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for op in self.ops:
            x = op(x)
        return x

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample, the cost unit of the exit statistics."""
        total, shape = 0, self.in_shape
        for op in self.ops:
            if isinstance(op, Dense):
                total += op.weight.size
                shape = (op.weight.shape[0],)
            elif isinstance(op, Conv):
                spatial = [
                    (s + 2 * p - k) // st + 1
                    for s, p, k, st in zip(shape[1:], op.padding, op.weight.shape[2:], op.stride)
                ]
                out_positions = int(np.prod(spatial))
                total += out_positions * op.weight.size
                shape = (op.weight.shape[0], *spatial)
            elif isinstance(op, MaxPool):
                shape = (shape[0], *[(s - k) // st + 1 for s, k, st in zip(shape[1:], op.kernel, op.stride)])
            elif isinstance(op, Flatten):
                shape = (int(np.prod(shape)),)
        return total


def exit_indices(exits: list[int], positions) -> list[int]:
    """Indices into the candidate exits ``exits`` (block positions) of the exits at ``positions``."""
    missing = [p for p in positions if p not in exits]
    if missing:
        raise EehwError(f"no exit after block {missing[0]}; the model's exits are after blocks {exits}")
    return [exits.index(p) for p in positions]


@dataclass(frozen=True)
class GoldenModel:
    """Blocks in order and heads keyed by block index; block 0 starts with the float input quantiser."""

    blocks: tuple[IntBlock, ...]
    heads: dict[int, IntBlock]
    num_classes: int

    @property
    def exits(self) -> list[int]:
        return sorted(self.heads)

    @property
    def logit_exps(self) -> list[int]:
        return [self.heads[k].out_exp for k in self.exits]

    def exit_indices(self, positions) -> list[int]:
        """Indices into ``exits`` (and ``forward``'s outputs) of the exits after blocks ``positions``:
        how a design that keeps some exits finds their logits and policy constants."""
        return exit_indices(self.exits, positions)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """The integers that enter the hardware."""
        return self.blocks[0].ops[0](x)

    def forward(self, x: np.ndarray, batch: int = 4096) -> list[np.ndarray]:
        """Integer logits of every exit (shallowest first) for float inputs x."""
        outs: list[list[np.ndarray]] = [[] for _ in self.exits]
        for start in range(0, len(x), batch):
            h = x[start : start + batch]
            for k, block in enumerate(self.blocks):
                h = block(h)
                if k in self.heads:
                    outs[self.exits.index(k)].append(self.heads[k](h))
        return [np.concatenate(o) if o else np.zeros((0, self.num_classes), np.int64) for o in outs]

    def exit_costs(self) -> np.ndarray:
        """MACs of leaving at each exit (blocks up to it plus every head evaluated on the way),
        as a fraction of the final-exit-only network."""
        final_only = sum(b.macs for b in self.blocks) + self.heads[self.exits[-1]].macs
        costs, spent = [], 0
        for k, block in enumerate(self.blocks):
            spent += block.macs
            if k in self.heads:
                spent += self.heads[k].macs
                costs.append(spent / final_only)
        return np.array(costs)
