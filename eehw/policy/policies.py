"""Early-exit decision policies: per-exit confidence scores, exit decisions and calibration.

Every policy reduces to a per-exit *score* compared with a per-exit *threshold*, so threshold
selection (``eehw.policy.thresholds``) works on precomputed scores alone. ``margin`` and
``max_softmax_pow2`` are pure integer arithmetic because the hardware decision unit implements
them bit for bit (design.md section 3); ``max_softmax``, ``entropy`` and ``patience`` are
software references.

Conventions shared by every function here:
- ``z_list[k]`` holds the integer logits of exit k (shallowest first), shape (N, C); their real
  value is ``z * 2.0**scale_exps[k]``. The last exit is the final classifier.
- ``thresholds`` has one entry per non-final exit (length K-1); ``None`` disables that exit
  (never exit there, an enable bit in hardware). The final exit always takes what is left.
- The top-1 class is ``np.argmax`` (lowest index among tied maxima), as in hardware.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

import numpy as np

from eehw.errors import EehwError

Threshold = int | float | None
"""A threshold register value; ``None`` means never exit at that exit."""


class PolicyName(str, Enum):
    MARGIN = "margin"
    MAX_SOFTMAX = "max_softmax"
    MAX_SOFTMAX_POW2 = "max_softmax_pow2"
    ENTROPY = "entropy"
    PATIENCE = "patience"


EXIT_IF_AT_LEAST = frozenset({PolicyName.MARGIN, PolicyName.MAX_SOFTMAX, PolicyName.PATIENCE})
"""Policies that exit iff score >= threshold; the others exit iff score <= threshold."""

INTEGER_POLICIES = frozenset({PolicyName.MARGIN, PolicyName.MAX_SOFTMAX_POW2, PolicyName.PATIENCE})
"""Policies whose scores and thresholds are integers (hardware registers)."""

HARDWARE_POLICY_CODES = {PolicyName.MARGIN: 0, PolicyName.MAX_SOFTMAX_POW2: 1}
"""Policies with a decision unit, and the code that selects each in the Verilog unit's POLICY
parameter and the HLS unit's config (the one table both generators and the DSE read)."""

MAX_FRAC_BITS = 32  # keeps C * 2**frac_bits far inside int64
MAX_SHIFT = 62  # int64 right shifts beyond this are undefined in numpy

TEMPERATURE_RANGE = (1e-2, 1e2)  # bounds of calibrate_temperature, in real-logit units
_TEMPERATURE_GRID = 65
_GOLDEN_STEPS = 40


@dataclass(frozen=True)
class PolicyParams:
    """A policy and its per-exit constants (everything but the thresholds).

    ``name`` also takes the config string (``"margin"``); an unknown one is a user error.

    ``temperatures[k]`` divides the real logits of exit k for ``max_softmax`` and ``entropy``
    (``None``: 1.0 everywhere). ``shifts[k]`` is exit k's right shift for ``max_softmax_pow2``
    (``None``: 0 everywhere), ``frac_bits`` the fractional bits of its exponent sum.
    """

    name: PolicyName
    temperatures: tuple[float, ...] | None = None
    shifts: tuple[int, ...] | None = None
    frac_bits: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", policy_name(self.name))
        if self.temperatures is not None:
            object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
            for t in self.temperatures:
                _check_temperature(t)
        if self.shifts is not None:
            object.__setattr__(self, "shifts", tuple(self.shifts))
            for s in self.shifts:
                _check_shift(s)
        _check_frac_bits(self.frac_bits)

    def temperature(self, k: int) -> float:
        return 1.0 if self.temperatures is None else self.temperatures[k]

    def shift(self, k: int) -> int:
        return 0 if self.shifts is None else self.shifts[k]

    def restricted(self, keep: Sequence[int]) -> PolicyParams:
        """The same policy over the exits ``keep`` (indices into this one's), as a design that
        keeps only those exits runs it."""
        return PolicyParams(
            self.name,
            temperatures=tuple(self.temperature(k) for k in keep) if self.temperatures else None,
            shifts=tuple(self.shift(k) for k in keep) if self.shifts else None,
            frac_bits=self.frac_bits,
        )


def policy_name(value: PolicyName | str) -> PolicyName:
    """The policy named by a config string, or an error listing the valid names."""
    try:
        return PolicyName(value)
    except ValueError:
        valid = ", ".join(p.value for p in PolicyName)
        raise EehwError(f"unknown policy '{value}'; valid: {valid}") from None


# ---------------------------------------------------------------------------------------------
# Scores of one exit


def margin_score(z: np.ndarray) -> np.ndarray:
    """top1 - top2 per sample, int64 (N,); two equal maxima give 0, as the hardware top-2 tree."""
    z = _logits(z)
    top = np.partition(z, -2, axis=1)
    return top[:, -1] - top[:, -2]


def pow2_softmax_sum(z: np.ndarray, shift: int, frac_bits: int) -> np.ndarray:
    """Division-free max-softmax: S = sum_i (2**F >> ((max - z_i) >> shift)), int64 (N,).

    This is a base-2 softmax with temperature 2**shift in integer-logit units (a natural-base
    temperature of 2**shift / ln 2), scaled so the max term is 2**F: the max probability is
    2**F / S, so "exit iff S <= threshold" is "exit iff max-prob >= tau" for
    ``threshold = pow2_threshold_from_tau(tau, F)``. Exponents are clamped to F + 1 before
    shifting, so terms below one LSB are 0 and nothing overflows. Every tied maximum adds 2**F,
    hence 2**F <= S <= C * 2**F: ``pow2_sum_bits`` gives the register width.
    """
    z = _logits(z)
    _check_shift(shift)
    _check_frac_bits(frac_bits)
    exponent = np.minimum((z.max(axis=1, keepdims=True) - z) >> shift, frac_bits + 1)
    return np.right_shift(np.int64(1 << frac_bits), exponent).sum(axis=1)


def pow2_sum_bits(num_classes: int, frac_bits: int) -> int:
    """Unsigned width of S and of its threshold register (C * 2**F, the largest useful
    threshold, fits); never more than frac_bits + ceil(log2(C)) + 1."""
    return frac_bits + int(num_classes).bit_length()


def pow2_threshold_from_tau(tau: float, frac_bits: int) -> int:
    """floor(2**F / tau): S <= this iff 2**F / S >= tau, computed exactly (no float rounding).

    A tau at or below 1/C gives C * 2**F or more, i.e. the exit always passes.
    """
    _check_frac_bits(frac_bits)
    if not 0.0 < tau <= 1.0:
        raise EehwError(f"max-softmax confidence tau must be in (0, 1], got {tau}")
    return math.floor(Fraction(1 << frac_bits) / Fraction(tau))


def max_softmax_score(z: np.ndarray, scale_exp: int, temperature: float = 1.0) -> np.ndarray:
    """Largest probability of softmax(z * 2**scale_exp / T), float64 (N,)."""
    x = _centred(z, scale_exp, temperature)
    return 1.0 / np.exp(x).sum(axis=1)


def entropy_score(z: np.ndarray, scale_exp: int, temperature: float = 1.0) -> np.ndarray:
    """Shannon entropy in nats of softmax(z * 2**scale_exp / T), float64 (N,)."""
    x = _centred(z, scale_exp, temperature)
    e = np.exp(x)
    total = e.sum(axis=1)
    # H = log(total) - sum(p_i * x_i) with p_i = e_i / total; clip the rounding below 0.
    return np.maximum(np.log(total) - (e * x).sum(axis=1) / total, 0.0)


def patience_run_lengths(top1: np.ndarray) -> np.ndarray:
    """How many consecutive exits up to and including j agree on the top-1 class, (K, N).

    Patience p exits at j iff this is >= p, which implies j >= p - 1.
    """
    runs = np.ones_like(top1)
    for j in range(1, top1.shape[0]):
        runs[j] = np.where(top1[j] == top1[j - 1], runs[j - 1] + 1, 1)
    return runs


# ---------------------------------------------------------------------------------------------
# Decisions over all exits


def top1_classes(z_list: Sequence[np.ndarray]) -> np.ndarray:
    """Top-1 class of every exit, int64 (K, N)."""
    return np.stack([np.argmax(z, axis=1) for z in _exits(z_list)])


def exit_scores(params: PolicyParams, z_list: Sequence[np.ndarray], scale_exps: Sequence[int]) -> np.ndarray:
    """The policy's score at every exit, (K, N): int64 for integer policies, else float64."""
    z_list = _exits(z_list)
    _check_per_exit(scale_exps, len(z_list), "scale_exps")
    for field_, values in (("temperatures", params.temperatures), ("shifts", params.shifts)):
        if values is not None:
            _check_per_exit(values, len(z_list), f"policy {field_}")
    name = params.name
    if name == PolicyName.PATIENCE:
        return patience_run_lengths(top1_classes(z_list))
    if name == PolicyName.MARGIN:
        scores = [margin_score(z) for z in z_list]
    elif name == PolicyName.MAX_SOFTMAX_POW2:
        scores = [pow2_softmax_sum(z, params.shift(k), params.frac_bits) for k, z in enumerate(z_list)]
    else:
        score = max_softmax_score if name == PolicyName.MAX_SOFTMAX else entropy_score
        scores = [score(z, e, params.temperature(k)) for k, (z, e) in enumerate(zip(z_list, scale_exps))]
    return np.stack(scores)


def mask_from_scores(policy: PolicyName | str, scores: np.ndarray, thresholds: Sequence[Threshold]) -> np.ndarray:
    """Per-exit decision ignoring earlier exits, bool (K, N); the final row is all True."""
    policy = policy_name(policy)
    num_exits = scores.shape[0]
    check_thresholds(policy, thresholds, num_exits)
    mask = np.ones(scores.shape, dtype=bool)
    for k, threshold in enumerate(thresholds):
        if threshold is None:
            mask[k] = False
        elif policy in EXIT_IF_AT_LEAST:
            mask[k] = scores[k] >= threshold
        else:
            mask[k] = scores[k] <= threshold
    return mask


def exit_mask(
    params: PolicyParams,
    z_list: Sequence[np.ndarray],
    scale_exps: Sequence[int],
    thresholds: Sequence[Threshold],
) -> np.ndarray:
    """Per-exit decision ignoring earlier exits, bool (K, N); the final row is all True."""
    return mask_from_scores(params.name, exit_scores(params, z_list, scale_exps), thresholds)


def first_exit(mask: np.ndarray) -> np.ndarray:
    """Index of the first True row per column, int64 (N,): where each sample leaves."""
    return np.argmax(mask, axis=0)


def decide(
    params: PolicyParams,
    z_list: Sequence[np.ndarray],
    scale_exps: Sequence[int],
    thresholds: Sequence[Threshold],
) -> tuple[np.ndarray, np.ndarray]:
    """(exit index, predicted class) per sample, both int64 (N,): the decision unit's outputs."""
    exit_index = first_exit(exit_mask(params, z_list, scale_exps, thresholds))
    prediction = np.take_along_axis(top1_classes(z_list), exit_index[None, :], axis=0)[0]
    return exit_index, prediction


def check_thresholds(policy: PolicyName, thresholds: Sequence[Threshold], num_exits: int) -> None:
    """Refuse a threshold list the hardware registers could not hold."""
    if len(thresholds) != num_exits - 1:
        raise EehwError(
            f"got {len(thresholds)} thresholds for {num_exits} exits; give one per non-final exit "
            f"({num_exits - 1}), None to disable an exit"
        )
    for k, t in enumerate(thresholds):
        if t is None:
            continue
        if isinstance(t, (bool, np.bool_)):
            raise EehwError(f"{policy.value} threshold of exit {k} must be a number, got {t!r}")
        if policy in INTEGER_POLICIES:
            if not isinstance(t, (int, np.integer)):
                raise EehwError(f"{policy.value} threshold of exit {k} must be an integer, got {t!r}")
            minimum = 1 if policy == PolicyName.PATIENCE else 0
            if t < minimum:
                raise EehwError(f"{policy.value} threshold of exit {k} must be >= {minimum}, got {t}")
        elif not isinstance(t, (int, float, np.integer, np.floating)) or math.isnan(t):
            raise EehwError(f"{policy.value} threshold of exit {k} must be a number, got {t!r}")


# ---------------------------------------------------------------------------------------------
# Calibration on validation data


def calibrate_temperature(z: np.ndarray, y: np.ndarray, scale_exp: int) -> float:
    """Temperature in TEMPERATURE_RANGE minimising the validation NLL of softmax(z * 2**e / T).

    The NLL is convex in 1/T, hence unimodal in log T: a log-spaced grid brackets the minimum
    and a golden-section search refines it, deterministically.
    """
    x = _centred(z, scale_exp, 1.0)
    y = _labels(y, x.shape)
    x_true = x[np.arange(x.shape[0]), y]

    def nll(log_t: float) -> float:
        inv_t = math.exp(-log_t)
        return float(np.mean(np.log(np.exp(x * inv_t).sum(axis=1)) - x_true * inv_t))

    grid = np.linspace(math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1]), _TEMPERATURE_GRID)
    best = int(np.argmin([nll(g) for g in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(_GOLDEN_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2.0)


def calibrate_shift(z: np.ndarray, y: np.ndarray, frac_bits: int, max_shift: int = 15) -> int:
    """Shift in 0..max_shift minimising the validation NLL of the integer base-2 softmax.

    Uses the exact hardware terms (2**F >> e_i) / S. A true class whose term is 0 counts as
    half an LSB, so one far-off label gives a large but finite loss. Ties go to the smaller shift.
    """
    z = _logits(z)
    y = _labels(y, z.shape)
    _check_frac_bits(frac_bits)
    _check_shift(max_shift)
    distance = z.max(axis=1, keepdims=True) - z
    rows = np.arange(z.shape[0])
    losses = []
    for shift in range(max_shift + 1):
        terms = np.right_shift(np.int64(1 << frac_bits), np.minimum(distance >> shift, frac_bits + 1))
        p_true = np.maximum(terms[rows, y], 0.5) / terms.sum(axis=1)
        losses.append(-float(np.mean(np.log(p_true))))
    return int(np.argmin(losses))


# ---------------------------------------------------------------------------------------------
# Input checks: wrong shapes and types are user errors with a one-line fix.


def _logits(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] < 2:
        raise EehwError(f"logits must have shape (samples, classes) with at least 2 classes, got shape {z.shape}")
    if not np.issubdtype(z.dtype, np.integer):
        raise EehwError(
            f"logits must be integers (the golden model's fixed-point values), got dtype {z.dtype}; "
            "pass the integer logits and their scale exponent"
        )
    return z.astype(np.int64, copy=False)


def _centred(z: np.ndarray, scale_exp: int, temperature: float) -> np.ndarray:
    """Real logits / T minus the row maximum: every entry <= 0, so exp never overflows."""
    _check_temperature(temperature)
    x = _logits(z) * (2.0 ** int(scale_exp) / temperature)
    return x - x.max(axis=1, keepdims=True)


def _exits(z_list: Sequence[np.ndarray]) -> list[np.ndarray]:
    z_list = [_logits(z) for z in z_list]
    if not z_list:
        raise EehwError("no exits given: pass the integer logits of every exit, final exit last")
    if len({z.shape for z in z_list}) != 1:
        shapes = ", ".join(str(z.shape) for z in z_list)
        raise EehwError(f"every exit needs logits of the same shape (samples, classes), got {shapes}")
    return z_list


def _labels(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != shape[:1] or not np.issubdtype(y.dtype, np.integer):
        raise EehwError(f"labels must be integers of shape ({shape[0]},) to match the logits, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= shape[1]):
        raise EehwError(f"labels must be class indices in 0..{shape[1] - 1}, got values {y.min()}..{y.max()}")
    return y.astype(np.int64, copy=False)


def _check_per_exit(values: Sequence, num_exits: int, what: str) -> None:
    if len(values) != num_exits:
        raise EehwError(f"{what} has {len(values)} entries for {num_exits} exits; give one per exit")


def _check_temperature(t: float) -> None:
    if not (math.isfinite(t) and t > 0.0):
        raise EehwError(f"softmax temperature must be a positive finite number, got {t}")


def _check_shift(shift: int) -> None:
    if not _is_int_in(shift, 0, MAX_SHIFT):
        raise EehwError(f"pow2 shift must be an integer in 0..{MAX_SHIFT}, got {shift!r}")


def _check_frac_bits(frac_bits: int) -> None:
    if not _is_int_in(frac_bits, 0, MAX_FRAC_BITS):
        raise EehwError(f"frac_bits must be an integer in 0..{MAX_FRAC_BITS}, got {frac_bits!r}")


def _is_int_in(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and lo <= value <= hi
