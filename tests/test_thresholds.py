"""Threshold selection: hand-built validation sets with obvious answers, then properties on random data."""

import math

import numpy as np
import pytest

from eehw.errors import EehwError
from eehw.policy.policies import PolicyName, PolicyParams, decide, pow2_sum_bits
from eehw.policy.thresholds import (
    MODES,
    candidate_thresholds,
    evaluate,
    select_budgeted,
    select_subnet,
    select_target,
    select_thresholds,
)

MARGIN = PolicyParams(PolicyName.MARGIN)


def two_class_exit(margins: list[int], correct: list[bool]) -> np.ndarray:
    """Logits with the given margin per sample, top-1 = class 0 (the label) when correct."""
    return np.array([[m, 0] if ok else [0, m] for m, ok in zip(margins, correct)], dtype=np.int64)


# Ten samples, all labelled 0. Exit 0 is right at margins 9..4, wrong at 3 and 2, right at 1 and 0
# (a [0, 0] row is class 0); the final exit is always right.
Y10 = np.zeros(10, dtype=np.int64)
EXIT0 = two_class_exit(list(range(9, -1, -1)), [True] * 6 + [False] * 2 + [True] * 2)
FINAL = two_class_exit([5] * 10, [True] * 10)


def random_validation(num_exits: int = 3, num_samples: int = 2000, num_classes: int = 6, seed: int = 3):
    """Exits that get better with depth, so early exit has something to trade."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, num_samples)
    z_list = []
    for k in range(num_exits):
        z = rng.integers(-48, 48, (num_samples, num_classes))
        z[np.arange(num_samples), y] += 24 * (k + 1)
        z_list.append(z)
    return z_list, [-4] * num_exits, y


def params_for(name: PolicyName, num_exits: int = 3) -> PolicyParams:
    return PolicyParams(name, temperatures=(1.5,) * num_exits, shifts=(3,) * num_exits, frac_bits=8)


# ---------------------------------------------------------------------------------------------
# Building blocks


def test_candidates_by_hand():
    assert candidate_thresholds("margin", np.array([0, 1, 1, 3])) == [None, 3, 1, 0]
    assert candidate_thresholds("max_softmax_pow2", np.array([16, 20, 16])) == [None, 16, 20]
    assert candidate_thresholds("max_softmax", np.array([0.5, 0.9])) == [None, 0.9, 0.5]
    assert candidate_thresholds("entropy", np.array([0.5, 0.1])) == [None, 0.1, 0.5]
    assert all(type(c) is int for c in candidate_thresholds("margin", np.array([2, 7]))[1:])


def test_candidates_are_thinned_to_observed_quantiles():
    scores = np.arange(1000)
    candidates = candidate_thresholds("margin", scores)
    assert len(candidates) <= 65
    assert candidates[:2] == [None, 999] and candidates[-1] == 0  # strictest first, last exits all
    assert set(candidates[1:]) <= set(scores.tolist())


def test_evaluate_by_hand():
    accuracy, cost = evaluate(np.array([0, 1, 1]), np.array([1, 2, 0]), np.array([1, 2, 2]), [0.5, 1.0])
    assert accuracy == pytest.approx(2 / 3)
    assert cost == pytest.approx(2.5 / 3)


# ---------------------------------------------------------------------------------------------
# Target mode


@pytest.mark.parametrize(
    ("max_drop_pp", "expected"),
    [
        (0.0, (4,)),  # no error allowed: margins 9..4
        (5.0, (4,)),  # one error is 10 points
        (10.0, (3,)),  # one error: down to margin 3
        (20.0, (0,)),  # two errors: everyone exits at exit 0 (margins 1 and 0 are right)
    ],
)
def test_target_by_hand(max_drop_pp, expected):
    assert select_target(MARGIN, [EXIT0, FINAL], [0, 0], Y10, max_drop_pp) == expected


def test_target_three_exits_by_hand():
    # Exit 0: samples 0-4 right at margin 5, samples 5-9 wrong at margin 1 -> threshold 5.
    # Exit 1 (reached by 5-9): margins 4, 4, 3, 2, 1, right/right/wrong/wrong/right; one error
    # allowed (10 points) -> threshold 3 (samples 5, 6, 7 leave). Loosening either exit then fails.
    exit0 = two_class_exit([5] * 5 + [1] * 5, [True] * 5 + [False] * 5)
    exit1 = two_class_exit([0] * 5 + [4, 4, 3, 2, 1], [True] * 7 + [False, False, True])
    thresholds = select_target(MARGIN, [exit0, exit1, FINAL], [0, 0, 0], Y10, 10.0)
    assert thresholds == (5, 3)
    exit_index, _ = decide(MARGIN, [exit0, exit1, FINAL], [0, 0, 0], thresholds)
    assert exit_index.tolist() == [0] * 5 + [1] * 3 + [2] * 2


def test_target_second_pass_loosens_an_earlier_exit():
    # The final exit is wrong on sample 9 only, so 10 points allow two errors in all.
    # Pass 1, exit 0 (margins 5; 3, 3, 3; 1...): threshold 3 would add the errors on samples 1
    # and 2 to the final's on 9, so it keeps 5. Exit 1 then takes everyone left with one error
    # (sample 3) and fixes sample 9. Pass 2: exit 0 at 3 now costs exactly two errors -> (3, 4).
    exit0 = two_class_exit([5, 3, 3, 3] + [1] * 6, [True, False, False, True] + [False] * 6)
    exit1 = two_class_exit([4] * 10, [True] * 3 + [False] + [True] * 6)
    final = two_class_exit([5] * 10, [True] * 9 + [False])
    assert select_target(MARGIN, [exit0, exit1, final], [0, 0, 0], Y10, 10.0) == (3, 4)


def test_target_patience_by_hand():
    # Top-1 per exit for samples A, B, C; labels 2, 0, 3 (the final exit is right on all).
    top1 = [[2, 1, 0], [2, 2, 1], [2, 2, 2], [2, 0, 3]]
    z_list = [np.eye(4, dtype=np.int64)[row] * 10 for row in top1]
    y = np.array([2, 0, 3])
    patience = PolicyParams("patience")
    # p = 1 gets 1/3 right, p = 2 gets 2/3, p = 3 gets all.
    assert select_target(patience, z_list, [0] * 4, y, 0.0) == (3, 3, 3)
    assert select_target(patience, z_list, [0] * 4, y, 34.0) == (2, 2, 2)
    assert select_target(patience, z_list, [0] * 4, y, 67.0) == (1, 1, 1)


@pytest.mark.parametrize("name", list(PolicyName))
def test_target_meets_target_and_exits_early(name):
    z_list, scale_exps, y = random_validation()
    params = params_for(name)
    final_accuracy = np.mean(np.argmax(z_list[-1], axis=1) == y)
    thresholds = select_target(params, z_list, scale_exps, y, 1.0)
    exit_index, prediction = decide(params, z_list, scale_exps, thresholds)
    accuracy, _ = evaluate(exit_index, prediction, y, [0.3, 0.6, 1.05])
    assert accuracy >= final_accuracy - 0.01 - 1e-12
    assert np.mean(exit_index < 2) > 0.2


# ---------------------------------------------------------------------------------------------
# Budgeted mode


def test_budgeted_by_hand():
    # cost = 1.1 - 0.6 * (fraction leaving at exit 0) <= 0.8 needs at least 5 of 10 at exit 0.
    # Exiting 5 or 6 (margins down to 4) is all right; 6 is cheaper (0.74), 7 makes an error.
    costs = [0.5, 1.1]
    thresholds = select_budgeted(MARGIN, [EXIT0, FINAL], [0, 0], Y10, costs, 0.8)
    assert thresholds == (4,)
    accuracy, cost = evaluate(*decide(MARGIN, [EXIT0, FINAL], [0, 0], thresholds), Y10, costs)
    assert (accuracy, cost) == (1.0, pytest.approx(0.74))


def test_budgeted_refuses_an_impossible_budget_naming_the_cheapest_cost():
    with pytest.raises(EehwError, match=r"0\.5000"):
        select_budgeted(MARGIN, [EXIT0, FINAL], [0, 0], Y10, [0.5, 1.1], 0.4)


@pytest.mark.parametrize("name", list(PolicyName))
def test_budgeted_respects_the_budget(name):
    z_list, scale_exps, y = random_validation()
    params = params_for(name)
    costs = [0.3, 0.6, 1.05]
    everyone_at_0 = select_subnet(params, 3, 0, z_list[0].shape[1])
    baseline, _ = evaluate(*decide(params, z_list, scale_exps, everyone_at_0), y, costs)
    for max_cost in (0.3, 0.5, 0.8, 1.05):
        thresholds = select_budgeted(params, z_list, scale_exps, y, costs, max_cost)
        accuracy, cost = evaluate(*decide(params, z_list, scale_exps, thresholds), y, costs)
        assert cost <= max_cost + 1e-9
        assert accuracy >= baseline  # exiting everyone at exit 0 is always a feasible option


# ---------------------------------------------------------------------------------------------
# Subnet mode and dispatch


@pytest.mark.parametrize("name", list(PolicyName))
def test_subnet_makes_every_sample_leave_at_its_exit(name):
    z_list, scale_exps, y = random_validation(num_exits=4)
    z_list[1][:50] = 7  # all-equal rows: the least confident a sample can be
    z_list[2][:50, :2] = 2**15 - 1  # tied saturated maxima
    params = params_for(name, num_exits=4)
    for k in range(4):
        thresholds = select_subnet(params, 4, k, z_list[0].shape[1])
        assert len(thresholds) == 3 and all(t is None for i, t in enumerate(thresholds) if i != k)
        exit_index, _ = decide(params, z_list, scale_exps, thresholds)
        assert np.all(exit_index == k)
    assert select_subnet(params, 4, 3, 6) == (None, None, None)


def test_subnet_pow2_threshold_fits_the_register():
    for num_classes in (2, 10, 16):
        (threshold,) = select_subnet(PolicyParams("max_softmax_pow2", frac_bits=8), 2, 0, num_classes)
        assert threshold == num_classes * 256
        assert threshold.bit_length() <= pow2_sum_bits(num_classes, 8)


def test_select_thresholds_dispatches_on_mode():
    z_list, scale_exps, y = [EXIT0, FINAL], [0, 0], Y10
    costs = [0.5, 1.1]
    assert select_thresholds("target", MARGIN, z_list, scale_exps, y, costs, max_drop_pp=10.0) == (3,)
    assert select_thresholds("budgeted", MARGIN, z_list, scale_exps, y, costs, max_cost=0.8) == (4,)
    assert select_thresholds("subnet", MARGIN, z_list, scale_exps, y, costs, exit=0) == (0,)
    assert select_thresholds("subnet", PolicyParams("entropy"), z_list, scale_exps, y, costs, exit=0) == (math.inf,)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda z, y: select_thresholds("fastest", MARGIN, z, [0, 0], y, [0.5, 1.1]), ", ".join(MODES)),
        (lambda z, y: select_thresholds("target", MARGIN, z, [0, 0], y, [0.5, 1.1]), "max_drop_pp"),
        (lambda z, y: select_thresholds("budgeted", MARGIN, z, [0, 0], y, [0.5, 1.1]), "max_cost"),
        (lambda z, y: select_thresholds("subnet", MARGIN, z, [0, 0], y, [0.5, 1.1]), "exit"),
        (lambda z, y: select_subnet(MARGIN, 2, 2, 2), "exits 0..1"),
        (lambda z, y: select_target(MARGIN, z, [0, 0], y, -1.0), "max_drop_pp"),
        (lambda z, y: select_target(MARGIN, z, [0, 0], y[:5], 1.0), "labels"),
        (lambda z, y: select_budgeted(MARGIN, z, [0, 0], y, [0.5], 1.0), "exit_costs"),
    ],
)
def test_user_errors(call, message):
    with pytest.raises(EehwError, match=message) as info:
        call([EXIT0, FINAL], Y10)
    assert "\n" not in str(info.value)
