"""The golden model's arithmetic against independent references: Python's exact rationals for
rounding, torch's float64 convolution and pooling for the layer ops (exact for these integers)."""

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from eehw.model.golden import Conv, Dense, Flatten, MaxPool, Quant, int_range, shift_round_half_even


@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=50), st.integers(-8, 20))
@settings(max_examples=300, deadline=None)
def test_shift_matches_exact_half_even(values, shift):
    got = shift_round_half_even(np.array(values, dtype=np.int64), shift)
    want = [round(Fraction(v, 2**shift)) if shift >= 0 else v * 2 ** (-shift) for v in values]  # round() is half-even
    assert got.tolist() == want


def test_shift_hand_cases():
    # 2.5 -> 2, 3.5 -> 4, -2.5 -> -2, -3.5 -> -4, 2.75 -> 3 (shift 2: x/4)
    x = np.array([10, 14, -10, -14, 11, 9, -9])
    assert shift_round_half_even(x, 2).tolist() == [2, 4, -2, -4, 3, 2, -2]


@given(
    st.integers(2, 12),
    st.booleans(),
    st.integers(-10, 4),
    st.integers(-10, 4),
    st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=30),
)
@settings(max_examples=300, deadline=None)
def test_requant_rounds_then_saturates(bits, signed, in_exp, out_exp, values):
    q = Quant("q", in_exp, out_exp, bits, signed)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    want = [min(max(round(Fraction(v) * Fraction(2) ** (in_exp - out_exp)), lo), hi) for v in values]
    assert q(np.array(values, dtype=np.int64)).tolist() == want


def test_float_input_quant_half_even_and_narrow():
    q = Quant("in", None, -2, 4, True, narrow=True)  # step 0.25, range -7..7
    x = np.array([0.125, 0.375, -0.125, 10.0, -10.0, 0.3], dtype=np.float32)
    assert q(x).tolist() == [0, 2, 0, 7, -7, 1]
    assert int_range(4, True, narrow=True) == (-7, 7)
    assert int_range(4, False) == (0, 15)


@pytest.mark.parametrize("dims,stride,padding", [(1, 1, 2), (1, 2, 0), (2, 1, 1), (2, 2, 1)])
def test_conv_matches_torch(dims, stride, padding):
    rng = np.random.default_rng(dims * 10 + stride)
    kernel = (5,) if dims == 1 else (3, 3)
    spatial = (23,) if dims == 1 else (9, 7)
    w = rng.integers(-7, 8, size=(6, 3, *kernel))
    b = rng.integers(-500, 500, size=6)
    x = rng.integers(0, 16, size=(4, 3, *spatial))
    op = Conv("c", w, b, 0, 0, 4, (stride,) * dims, (padding,) * dims)
    conv = F.conv1d if dims == 1 else F.conv2d
    want = (
        conv(
            torch.from_numpy(x).double(),
            torch.from_numpy(w).double(),
            torch.from_numpy(b).double(),
            stride=stride,
            padding=padding,
        )
        .numpy()
        .astype(np.int64)
    )
    np.testing.assert_array_equal(op(x), want)


@pytest.mark.parametrize("dims,kernel,stride", [(1, 2, 2), (1, 3, 2), (2, 2, 2), (2, 3, 1)])
def test_maxpool_matches_torch(dims, kernel, stride):
    rng = np.random.default_rng(kernel)
    x = rng.integers(-50, 50, size=(3, 4, 11) if dims == 1 else (3, 4, 7, 9))
    op = MaxPool("p", (kernel,) * dims, (stride,) * dims)
    pool = F.max_pool1d if dims == 1 else F.max_pool2d
    want = pool(torch.from_numpy(x).double(), kernel, stride).numpy().astype(np.int64)
    np.testing.assert_array_equal(op(x), want)


def test_dense_and_flatten_by_hand():
    op = Dense("d", np.array([[1, -2], [3, 0]]), np.array([5, -1]), 0, 0, 4)
    assert op(np.array([[2, 3]])).tolist() == [[2 * 1 - 2 * 3 + 5, 3 * 2 - 1]]
    assert Flatten("f")(np.arange(12).reshape(2, 2, 3)).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
