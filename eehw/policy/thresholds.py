"""Choosing per-exit thresholds on validation data: an accuracy target, a cost budget or one exit.

Thresholds are the decision unit's run-time registers (one per non-final exit, ``None`` =
exit disabled), so every mode here only picks register values for the same hardware
(design.md section 3). Scores are computed once per exit; each candidate threshold list is
then evaluated with a few vectorised passes over (K, N) arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eehw.errors import EehwError
from eehw.policy.policies import (
    EXIT_IF_AT_LEAST,
    INTEGER_POLICIES,
    PolicyName,
    PolicyParams,
    Threshold,
    exit_scores,
    first_exit,
    mask_from_scores,
    policy_name,
    top1_classes,
)

MODES = ("target", "budgeted", "subnet")
MAX_CANDIDATES = 64  # thresholds tried per exit in target mode
BUDGET_LEVELS = 257  # quantile levels swept in budgeted mode, 0 (exit nobody) to 1 (exit all)
_COST_TOLERANCE = 1e-9  # mean costs are float sums; do not refuse a budget met up to rounding


def candidate_thresholds(
    policy: PolicyName | str, scores: np.ndarray, max_candidates: int = MAX_CANDIDATES
) -> list[Threshold]:
    """Thresholds worth trying at one exit: ``[None, strictest, ..., most permissive]``.

    Each is an observed validation score, so it exits exactly the samples scoring at least as
    well, and the last one exits every validation sample. Many distinct scores are thinned to
    ``max_candidates`` quantiles of the score distribution.
    """
    policy = policy_name(policy)
    scores = np.asarray(scores)
    values = np.unique(scores)
    if values.size > max_candidates:
        levels = np.linspace(0.0, 1.0, max_candidates)
        values = np.unique(np.quantile(scores, levels, method="inverted_cdf"))
    if policy in EXIT_IF_AT_LEAST:
        values = values[::-1]
    return [None, *(_register(policy, v) for v in values)]


def evaluate(
    exit_index: np.ndarray, prediction: np.ndarray, y: np.ndarray, exit_costs: Sequence[float]
) -> tuple[float, float]:
    """(accuracy, mean cost) of a run; costs are relative to the final-only network."""
    costs = np.asarray(exit_costs, dtype=np.float64)
    return float(np.mean(prediction == y)), float(np.mean(costs[exit_index]))


def select_target(
    params: PolicyParams,
    z_val: Sequence[np.ndarray],
    scale_exps: Sequence[int],
    y: np.ndarray,
    max_drop_pp: float,
) -> tuple[Threshold, ...]:
    """Exit as many samples as early as possible with validation accuracy >= final - max_drop_pp.

    Greedy heuristic, not a global optimum: for exit 0, 1, ... in turn take the most permissive
    candidate that keeps the overall accuracy on target (later exits still disabled) and fix it;
    then a second pass loosens each exit further where the target still holds. Patience uses
    the same p at every exit and takes the smallest p on target. All exits disabled always
    meets the target, so this never fails.
    """
    if not (math.isfinite(max_drop_pp) and max_drop_pp >= 0.0):
        raise EehwError(f"max_drop_pp must be a number of accuracy points >= 0, got {max_drop_pp}")
    val = _Validation.build(params, z_val, scale_exps, y, None)
    needed = val.correct[-1].sum() - max_drop_pp / 100.0 * val.num_samples - 1e-9

    def on_target(thresholds: Sequence[Threshold]) -> bool:
        return val.outcome(thresholds)[0] >= needed

    num_gates = val.num_exits - 1
    if params.name == PolicyName.PATIENCE:
        return next(t for t in _patience_options(val.num_exits) if on_target(t))
    candidates = [candidate_thresholds(params.name, val.scores[k]) for k in range(num_gates)]
    chosen: list[Threshold] = [None] * num_gates
    for _ in range(2):
        for k in range(num_gates):
            current = candidates[k].index(chosen[k])
            for option in reversed(candidates[k][current + 1 :]):
                if on_target([*chosen[:k], option, *chosen[k + 1 :]]):
                    chosen[k] = option
                    break
    return tuple(chosen)


def select_budgeted(
    params: PolicyParams,
    z_val: Sequence[np.ndarray],
    scale_exps: Sequence[int],
    y: np.ndarray,
    exit_costs: Sequence[float],
    max_cost: float,
) -> tuple[Threshold, ...]:
    """Most accurate thresholds on validation whose mean cost is <= max_cost (ties: cheaper).

    Sweeps one common knob: every exit's threshold is the same quantile level q of its own
    score distribution, q from 0 (exit nobody) to 1 (exit everybody); patience sweeps a
    common p in 1..K instead.
    """
    if not (math.isfinite(max_cost) and max_cost >= 0.0):
        raise EehwError(f"max_cost must be a mean cost >= 0 (a fraction of the final-only network), got {max_cost}")
    val = _Validation.build(params, z_val, scale_exps, y, exit_costs)
    if params.name == PolicyName.PATIENCE:
        options = _patience_options(val.num_exits)
    else:
        options = _quantile_options(params.name, val.scores[:-1], BUDGET_LEVELS)
    best: tuple[int, float, tuple[Threshold, ...]] | None = None
    cheapest = math.inf
    for thresholds in options:
        num_correct, cost = val.outcome(thresholds)
        cheapest = min(cheapest, cost)
        if cost <= max_cost + _COST_TOLERANCE and (best is None or (num_correct, -cost) > (best[0], -best[1])):
            best = (num_correct, cost, thresholds)
    if best is None:
        raise EehwError(
            f"no thresholds keep the mean cost within max_cost={max_cost:g}: the cheapest reachable "
            f"on validation is {cheapest:.4f}; raise max_cost to at least that"
        )
    return best[2]


def select_subnet(params: PolicyParams, num_exits: int, exit: int, num_classes: int) -> tuple[Threshold, ...]:
    """Thresholds under which every sample leaves at ``exit``: earlier exits disabled, ``exit``
    always passing (its loosest register value), later exits disabled (never reached)."""
    if isinstance(exit, bool) or not isinstance(exit, (int, np.integer)) or not 0 <= exit < num_exits:
        raise EehwError(f"subnet exit {exit} does not exist: the network has exits 0..{num_exits - 1}")
    always = {
        PolicyName.MARGIN: 0,  # top1 - top2 >= 0
        PolicyName.MAX_SOFTMAX_POW2: num_classes << params.frac_bits,  # S <= C * 2**F
        PolicyName.MAX_SOFTMAX: 0.0,  # max probability >= 0
        PolicyName.ENTROPY: math.inf,  # entropy <= inf
        PolicyName.PATIENCE: 1,  # one exit always agrees with itself
    }[params.name]
    return tuple(always if k == exit else None for k in range(num_exits - 1))


def select_thresholds(
    mode: str,
    params: PolicyParams,
    z_val: Sequence[np.ndarray],
    scale_exps: Sequence[int],
    y: np.ndarray,
    exit_costs: Sequence[float],
    *,
    max_drop_pp: float | None = None,
    max_cost: float | None = None,
    exit: int | None = None,
) -> tuple[Threshold, ...]:
    """Dispatch on the selection mode of the config (``policy.mode``)."""
    if mode not in MODES:
        raise EehwError(f"unknown threshold selection mode '{mode}'; valid: {', '.join(MODES)}")
    if mode == "target":
        if max_drop_pp is None:
            raise EehwError("target mode needs max_drop_pp (allowed accuracy drop in points)")
        return select_target(params, z_val, scale_exps, y, max_drop_pp)
    if mode == "budgeted":
        if max_cost is None:
            raise EehwError("budgeted mode needs max_cost (mean cost as a fraction of the final-only network)")
        return select_budgeted(params, z_val, scale_exps, y, exit_costs, max_cost)
    if exit is None:
        raise EehwError("subnet mode needs exit (the index of the exit every sample leaves at)")
    num_classes = np.shape(z_val[0])[1] if len(z_val) else 0
    return select_subnet(params, len(z_val), exit, num_classes)


@dataclass(frozen=True)
class _Validation:
    """Scores and per-exit correctness of the validation set, to evaluate thresholds quickly."""

    policy: PolicyName
    scores: np.ndarray  # (K, N)
    correct: np.ndarray  # (K, N) bool: exit k's top-1 class is the label
    costs: np.ndarray  # (K,)

    @classmethod
    def build(
        cls,
        params: PolicyParams,
        z_val: Sequence[np.ndarray],
        scale_exps: Sequence[int],
        y: np.ndarray,
        exit_costs: Sequence[float] | None,
    ) -> _Validation:
        scores = exit_scores(params, z_val, scale_exps)
        num_exits, num_samples = scores.shape
        y = np.asarray(y)
        if y.shape != (num_samples,) or not np.issubdtype(y.dtype, np.integer):
            raise EehwError(
                f"labels must be integers of shape ({num_samples},) to match the logits, got {y.dtype} {y.shape}"
            )
        if num_samples == 0:
            raise EehwError("the validation set is empty: thresholds need validation samples")
        costs = np.ones(num_exits) if exit_costs is None else np.asarray(exit_costs, dtype=np.float64)
        if costs.shape != (num_exits,) or not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise EehwError(
                f"exit_costs must hold {num_exits} finite costs >= 0, one per exit, got {list(costs.ravel())}"
            )
        return cls(params.name, scores, top1_classes(z_val) == y[None, :], costs)

    @property
    def num_exits(self) -> int:
        return self.scores.shape[0]

    @property
    def num_samples(self) -> int:
        return self.scores.shape[1]

    def outcome(self, thresholds: Sequence[Threshold]) -> tuple[int, float]:
        """(correct samples, mean cost)."""
        exit_index = first_exit(mask_from_scores(self.policy, self.scores, thresholds))
        num_correct = int(self.correct[exit_index, np.arange(self.num_samples)].sum())
        return num_correct, float(self.costs[exit_index].mean())


def _patience_options(num_exits: int) -> list[tuple[Threshold, ...]]:
    """Common patience p = 1..K, most aggressive first; p = K never exits early."""
    return [(p,) * (num_exits - 1) for p in range(1, num_exits + 1)]


def _quantile_options(policy: PolicyName, scores: np.ndarray, num_levels: int) -> list[tuple[Threshold, ...]]:
    """Thresholds letting at least a fraction q of each exit's samples through, q on a grid.

    q = 0 disables every exit; an observed score (``inverted_cdf``) keeps thresholds exact.
    """
    levels = np.linspace(0.0, 1.0, num_levels)[1:]
    if policy in EXIT_IF_AT_LEAST:  # exit iff score >= t: t is the (1 - q) quantile
        levels = 1.0 - levels
    per_exit = [np.quantile(s, levels, method="inverted_cdf") for s in scores]
    options = [(None,) * scores.shape[0]]
    options += [tuple(_register(policy, t[i]) for t in per_exit) for i in range(levels.size)]
    return options


def _register(policy: PolicyName, value: np.generic) -> Threshold:
    """A score value as a plain Python threshold: int for integer registers, else float."""
    return int(value) if policy in INTEGER_POLICIES else float(value)
