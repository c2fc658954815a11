"""Decision policies: hand-computed cases, naive references for the bit-exact ones, calibration."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from eehw.errors import EehwError
from eehw.policy.policies import (
    PolicyName,
    PolicyParams,
    calibrate_shift,
    calibrate_temperature,
    decide,
    entropy_score,
    exit_mask,
    margin_score,
    max_softmax_score,
    patience_run_lengths,
    pow2_softmax_sum,
    pow2_sum_bits,
    pow2_threshold_from_tau,
)

LOGIT_MIN, LOGIT_MAX = -(2**15), 2**15 - 1  # 16-bit logits, the saturated extremes included


def one_hot_logits(classes: list[int], num_classes: int = 4) -> np.ndarray:
    """Logits whose top-1 class is ``classes[n]`` for sample n."""
    z = np.zeros((len(classes), num_classes), dtype=np.int64)
    z[np.arange(len(classes)), classes] = 10
    return z


# ---------------------------------------------------------------------------------------------
# Hand-computed cases


def test_margin_by_hand():
    z = np.array([[5, 3, 3], [4, 4, 1], [-1, -7, 2], [0, 9, 1]])
    np.testing.assert_array_equal(margin_score(z), [2, 0, 3, 8])
    assert margin_score(z).dtype == np.int64


def test_pow2_sum_by_hand():
    # shift 1, F = 4 (2**F = 16). Row 0: max 10, d = [0, 3, 8, 1, 0, 40], e = d >> 1 = [0, 1, 4, 0, 0, 20],
    # e clamps to 5 so the last term is 16 >> 5 = 0: S = 16 + 8 + 1 + 16 + 16 + 0 = 57.
    # Row 1: six tied maxima, each 16: S = 96. Row 2: d = [5, 0, 2, 1, 9, 33] -> e = [2, 0, 1, 0, 4, 16]:
    # S = 4 + 16 + 8 + 16 + 1 + 0 = 45.
    z = np.array([[10, 7, 2, 9, 10, -30], [3, 3, 3, 3, 3, 3], [-5, 0, -2, -1, -9, -33]])
    np.testing.assert_array_equal(pow2_softmax_sum(z, shift=1, frac_bits=4), [57, 96, 45])
    # shift 0, F = 2: d = [0, 1, 2, 3] -> terms 4, 2, 1, 0.
    np.testing.assert_array_equal(pow2_softmax_sum(np.array([[7, 6, 5, 4]]), shift=0, frac_bits=2), [7])


def test_pow2_threshold_and_width_by_hand():
    assert pow2_threshold_from_tau(0.5, 4) == 32
    assert pow2_threshold_from_tau(0.3, 4) == 53  # 16 / 0.3 = 53.33
    assert pow2_threshold_from_tau(1.0, 4) == 16  # only a lone maximum with nothing else in range
    assert pow2_threshold_from_tau(0.25, 8) == 1024  # exact, no float rounding below it
    assert pow2_sum_bits(10, 8) == 12  # 10 * 256 = 2560 < 4096
    assert pow2_sum_bits(16, 8) == 13  # 16 * 256 = 4096 needs 13 bits = F + log2(C) + 1
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(EehwError, match="tau"):
            pow2_threshold_from_tau(bad, 4)


def test_max_softmax_and_entropy_by_hand():
    z = np.array([[2, 0], [0, 0], [1000, 0]])
    p = 1.0 / (1.0 + math.exp(-1.0))  # real logits [1, 0] at scale 2**-1
    np.testing.assert_allclose(max_softmax_score(z, -1, 1.0), [p, 0.5, 1.0], rtol=1e-12)
    np.testing.assert_allclose(max_softmax_score(z[:1], -1, 0.5), [1.0 / (1.0 + math.exp(-2.0))], rtol=1e-12)
    h = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    np.testing.assert_allclose(entropy_score(z, -1, 1.0), [h, math.log(2), 0.0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(entropy_score(np.full((1, 4), 7), 3), [math.log(4)], rtol=1e-12)
    assert np.all(np.isfinite(entropy_score(np.array([[LOGIT_MAX, LOGIT_MIN]]), 8)))


def test_patience_by_hand():
    # Top-1 classes per exit (rows = exits) for samples A, B, C.
    top1 = [[2, 1, 0], [2, 2, 1], [2, 2, 2], [2, 0, 3]]
    runs = [[1, 1, 1], [2, 1, 1], [3, 2, 1], [4, 1, 1]]
    np.testing.assert_array_equal(patience_run_lengths(np.array(top1)), runs)
    z_list = [one_hot_logits(row) for row in top1]
    params = PolicyParams(PolicyName.PATIENCE)
    expected = {  # p -> (exit index, prediction) of A, B, C
        1: ([0, 0, 0], [2, 1, 0]),
        2: ([1, 2, 3], [2, 2, 3]),
        3: ([2, 3, 3], [2, 0, 3]),
        4: ([3, 3, 3], [2, 0, 3]),
    }
    for p, (exits, predictions) in expected.items():
        exit_index, prediction = decide(params, z_list, [0] * 4, [p] * 3)
        np.testing.assert_array_equal(exit_index, exits)
        np.testing.assert_array_equal(prediction, predictions)


def test_exit_mask_by_hand():
    z0 = np.array([[5, 3, 3], [4, 4, 1], [0, 9, 1]])  # margins 2, 0, 8
    z1 = np.array([[1, 0, 0], [0, 0, 6], [0, 0, 0]])  # margins 1, 6, 0
    final = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]])
    params = PolicyParams("margin")
    mask = exit_mask(params, [z0, z1, final], [0, 0, 0], [2, None])
    np.testing.assert_array_equal(mask, [[True, False, True], [False, False, False], [True, True, True]])
    exit_index, prediction = decide(params, [z0, z1, final], [0, 0, 0], [3, 1])
    np.testing.assert_array_equal(exit_index, [1, 1, 0])
    np.testing.assert_array_equal(prediction, [0, 2, 1])  # argmax picks the lowest tied index


# ---------------------------------------------------------------------------------------------
# Bit-exact policies against naive references


def naive_pow2_sum(row: list[int], shift: int, frac_bits: int) -> int:
    """Deliberately plain: Python ints, 2**(F - e) when e <= F."""
    top = max(row)
    total = 0
    for value in row:
        e = (top - value) >> shift
        if e <= frac_bits:
            total += 2 ** (frac_bits - e)
    return total


def naive_margin(row: list[int]) -> int:
    ordered = sorted(row, reverse=True)
    return ordered[0] - ordered[1]


logit_values = st.one_of(st.integers(LOGIT_MIN, LOGIT_MAX), st.sampled_from([LOGIT_MIN, LOGIT_MAX, 0, -1, 1]))
logit_arrays = st.integers(2, 16).flatmap(
    lambda c: hnp.arrays(np.int64, st.tuples(st.integers(1, 8), st.just(c)), elements=logit_values)
)


@st.composite
def logits_with_ties(draw) -> np.ndarray:
    """Random rows, plus tied maxima and all-equal rows, which random values almost never hit."""
    z = draw(logit_arrays).copy()
    tie = draw(st.sampled_from(["none", "top", "all"]))
    if tie == "top":
        z[:, 1] = z.max(axis=1)
    elif tie == "all":
        z[:] = z[:, :1]
    return z


@settings(max_examples=300, deadline=None)
@given(z=logits_with_ties(), shift=st.integers(0, 8), frac_bits=st.integers(1, 16))
def test_pow2_sum_matches_naive_reference(z, shift, frac_bits):
    expected = [naive_pow2_sum(row, shift, frac_bits) for row in z.tolist()]
    got = pow2_softmax_sum(z, shift, frac_bits)
    assert got.tolist() == expected
    assert all(s.bit_length() <= pow2_sum_bits(z.shape[1], frac_bits) for s in expected)
    assert all(s.bit_length() <= frac_bits + math.ceil(math.log2(z.shape[1])) + 1 for s in expected)


@settings(max_examples=300, deadline=None)
@given(
    z=logits_with_ties(),
    shift=st.integers(0, 8),
    frac_bits=st.integers(1, 16),
    tau=st.floats(min_value=1e-6, max_value=1.0),
)
def test_pow2_threshold_means_max_probability_at_least_tau(z, shift, frac_bits, tau):
    threshold = pow2_threshold_from_tau(tau, frac_bits)
    for s in pow2_softmax_sum(z, shift, frac_bits).tolist():
        assert (s <= threshold) == (Fraction(2**frac_bits, s) >= Fraction(tau))


@settings(max_examples=300, deadline=None)
@given(z=logits_with_ties())
def test_margin_matches_sorted_reference(z):
    assert margin_score(z).tolist() == [naive_margin(row) for row in z.tolist()]


def reference_decide(params, z_list, scale_exps, thresholds):
    """Per-sample loop: leave at the first exit whose own test passes, the last exit otherwise."""
    name = params.name
    num_exits, num_samples = len(z_list), z_list[0].shape[0]
    exits, predictions = [], []
    for n in range(num_samples):
        top1 = [int(np.argmax(z[n])) for z in z_list]
        for k in range(num_exits):
            t = thresholds[k] if k < num_exits - 1 else None
            row = z_list[k][n : n + 1]
            if k == num_exits - 1:
                leave = True
            elif t is None:
                leave = False
            elif name == PolicyName.MARGIN:
                leave = naive_margin(z_list[k][n].tolist()) >= t
            elif name == PolicyName.MAX_SOFTMAX_POW2:
                leave = naive_pow2_sum(z_list[k][n].tolist(), params.shift(k), params.frac_bits) <= t
            elif name == PolicyName.MAX_SOFTMAX:
                leave = max_softmax_score(row, scale_exps[k], params.temperature(k))[0] >= t
            elif name == PolicyName.ENTROPY:
                leave = entropy_score(row, scale_exps[k], params.temperature(k))[0] <= t
            else:
                leave = k >= t - 1 and len(set(top1[k - t + 1 : k + 1])) == 1
            if leave:
                exits.append(k)
                predictions.append(top1[k])
                break
    return exits, predictions


@pytest.mark.parametrize("name", list(PolicyName))
def test_decide_matches_per_sample_reference(name):
    rng = np.random.default_rng(7)
    num_exits, num_samples, num_classes = 4, 300, 5
    y = rng.integers(0, num_classes, num_samples)
    z_list = []
    for k in range(num_exits):
        z = rng.integers(-40, 40, (num_samples, num_classes))
        z[np.arange(num_samples), y] += 10 * k
        z_list.append(z)
    scale_exps = [-3, -2, -3, -4]
    params = PolicyParams(name, temperatures=(1.0, 0.5, 2.0, 1.0), shifts=(0, 2, 3, 1), frac_bits=6)
    options = {
        PolicyName.MARGIN: [5, None, 20],
        PolicyName.MAX_SOFTMAX_POW2: [80, 100, None],
        PolicyName.MAX_SOFTMAX: [None, 0.6, 0.5],
        PolicyName.ENTROPY: [0.8, 1.0, None],
        PolicyName.PATIENCE: [1, 2, 2],
    }[name]
    for thresholds in (options, [None] * 3, options[::-1]):
        exit_index, prediction = decide(params, z_list, scale_exps, thresholds)
        exits, predictions = reference_decide(params, z_list, scale_exps, thresholds)
        assert exit_index.tolist() == exits
        assert prediction.tolist() == predictions


# ---------------------------------------------------------------------------------------------
# Calibration


def test_calibrate_temperature_recovers_known_temperature():
    rng = np.random.default_rng(0)
    num_samples, num_classes, scale_exp, temperature = 20_000, 10, -4, 2.0
    z = rng.integers(-80, 80, (num_samples, num_classes))  # real logits in [-5, 5)
    x = z * 2.0**scale_exp / temperature
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) < rng.random((num_samples, 1))).sum(axis=1)
    assert calibrate_temperature(z, y, scale_exp) == pytest.approx(temperature, rel=0.05)


def test_calibrate_shift_recovers_known_shift():
    rng = np.random.default_rng(1)
    num_samples, num_classes, shift, frac_bits = 20_000, 8, 3, 16
    z = rng.integers(-60, 60, (num_samples, num_classes))
    weights = 2.0 ** -((z.max(axis=1, keepdims=True) - z) >> shift)
    p = weights / weights.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) < rng.random((num_samples, 1))).sum(axis=1)
    assert calibrate_shift(z, y, frac_bits) == shift


# ---------------------------------------------------------------------------------------------
# User errors


def test_user_errors_are_one_line_eehw_errors():
    z = np.zeros((3, 4), dtype=np.int64)
    cases = [
        lambda: PolicyParams("softmax"),
        lambda: PolicyParams("margin", temperatures=(0.0,)),
        lambda: PolicyParams("max_softmax_pow2", shifts=(-1,)),
        lambda: margin_score(z.astype(np.float32)),
        lambda: margin_score(z[:, :1]),
        lambda: decide(PolicyParams("margin"), [z, z], [0, 0], [1, 2]),
        lambda: decide(PolicyParams("margin"), [z, z], [0, 0], [1.5]),
        lambda: decide(PolicyParams("patience"), [z, z], [0, 0], [0]),
        lambda: decide(PolicyParams("margin"), [z, z[:2]], [0, 0], [1]),
        lambda: decide(PolicyParams("entropy", temperatures=(1.0,)), [z, z], [0, 0], [1.0]),
        lambda: calibrate_temperature(z, np.array([0, 1, 4]), 0),
    ]
    for case in cases:
        with pytest.raises(EehwError) as info:
            case()
        assert "\n" not in str(info.value)
