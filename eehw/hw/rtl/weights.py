"""Weight and bias memory files for ``rtl_sim/hdl/mvu.v`` (read with ``$readmemh``).

Layout (the contract with mvu.v, where SF = IN/SIMD and NF = OUT/PE):

- weights: NF*SF words of PE*SIMD*W_W bits; word ``f_out*SF + f_in`` holds, in lane (p, s) at
  bits ``[(p*SIMD + s)*W_W +: W_W]``, ``W[f_out*PE + p][f_in*SIMD + s]``;
- biases: NF words of PE*B_W bits; lane p of word ``f_out`` holds ``b[f_out*PE + p]``.

Values are two's complement, one hexadecimal word per line, most significant digit first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eehw.errors import EehwError
from eehw.hw.bits import pack_rows


def _clog2(n: int) -> int:
    return (n - 1).bit_length()


def acc_width(n_in: int, a_w: int, w_w: int, b_w: int, simd: int = 1) -> int:
    """Accumulator width of mvu.v (its localparam ACC_W): wide enough that no input can overflow it."""
    sum_w = a_w + w_w + _clog2(n_in) + 1
    s_w = a_w + 1 + w_w + _clog2(simd) + 1
    return max(sum_w, b_w, s_w) + 1


def _check_fits(name: str, values: np.ndarray, bits: int) -> None:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if values.size and (values.min() < lo or values.max() > hi):
        raise EehwError(
            f"{name}: values {int(values.min())}..{int(values.max())} do not fit {bits}-bit signed "
            f"({lo}..{hi}); widen the width or requantise"
        )


def _check_divides(what: str, lanes: int, n: int) -> None:
    if lanes < 1 or n % lanes:
        raise EehwError(f"{what}={lanes} does not divide {n}; choose a divisor of {n}")


def _write_words(path: Path, lanes: np.ndarray, width: int) -> None:
    """lanes: (words, lanes per word) signed ints; lane j at bits [j*width +: width]."""
    digits = (lanes.shape[1] * width + 3) // 4
    lines = [f"{word:0{digits}x}" for word in pack_rows(lanes, width)]
    Path(path).write_text("\n".join(lines) + "\n")


def weight_words(weight: np.ndarray, simd: int, pe: int) -> np.ndarray:
    """(NF*SF, PE*SIMD) lanes in memory order: word f_out*SF + f_in, lane p*SIMD + s."""
    n_out, n_in = weight.shape
    tiles = weight.reshape(n_out // pe, pe, n_in // simd, simd)  # (f_out, p, f_in, s)
    return tiles.transpose(0, 2, 1, 3).reshape((n_out // pe) * (n_in // simd), pe * simd)


def write_weight_memory(path: Path, weight: np.ndarray, simd: int, pe: int, w_w: int) -> None:
    """Write W (OUT, IN) integers as mvu.v's weight memory."""
    weight = np.asarray(weight)
    if weight.ndim != 2 or not np.issubdtype(weight.dtype, np.integer):
        raise EehwError(f"weight memory {Path(path).name}: need a 2-D integer array, got {weight.dtype} {weight.shape}")
    n_out, n_in = weight.shape
    _check_divides("SIMD", simd, n_in)
    _check_divides("PE", pe, n_out)
    _check_fits(f"weights of {Path(path).name}", weight, w_w)
    _write_words(path, weight_words(weight.astype(np.int64), simd, pe), w_w)


def write_bias_memory(path: Path, bias: np.ndarray, pe: int, b_w: int) -> None:
    """Write b (OUT,) integers as mvu.v's bias memory."""
    bias = np.asarray(bias)
    if bias.ndim != 1 or not np.issubdtype(bias.dtype, np.integer):
        raise EehwError(f"bias memory {Path(path).name}: need a 1-D integer array, got {bias.dtype} {bias.shape}")
    _check_divides("PE", pe, len(bias))
    _check_fits(f"biases of {Path(path).name}", bias, b_w)
    _write_words(path, bias.astype(np.int64).reshape(-1, pe), b_w)
