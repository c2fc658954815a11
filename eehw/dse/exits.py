"""Exit configurations: which exits, head types, policy and thresholds, from the cached logits (train once)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from eehw.errors import EehwError
from eehw.model.golden import exit_indices
from eehw.policy.evaluate import policy_params
from eehw.policy.logits import cached_logits
from eehw.policy.policies import HARDWARE_POLICY_CODES, PolicyName, PolicyParams, decide
from eehw.policy.thresholds import select_target

HARDWARE_POLICY_NAMES = tuple(p.value for p in HARDWARE_POLICY_CODES)
DROP_LEVELS_PP = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0)  # accuracy targets tried per exit subset (plus the config's)


@dataclass
class ExitConfig:
    """Exits kept (positions, final last), policy and thresholds, and their test outcome."""

    positions: tuple[int, ...]
    policy: str
    params: PolicyParams  # indexed by the model's candidate exits (golden.exits)
    thresholds: tuple[int | None, ...]
    drop_pp: float | None
    accuracy: float
    val_accuracy: float
    exit_fractions: np.ndarray  # per kept exit, test set
    heads: tuple[str | None, ...] = ()  # head type per kept exit; None (or nothing) = the config's own

    def head(self, k: int) -> str | None:
        return self.heads[k] if k < len(self.heads) else None

    @property
    def reach(self) -> dict[int, float]:
        """Fraction of samples reaching each backbone block (and so the head after it)."""
        last = self.positions[-1]
        out = {}
        for b in range(last + 1):
            out[b] = float(sum(f for p, f in zip(self.positions, self.exit_fractions) if p >= b))
        return out


# ---------------------------------------------------------------------------------------------
# Cached logits ("train once")


@dataclass
class HeadLogits:
    """An alternative head at one exit: its cached integer logits, their exponent and, per
    hardware policy, its calibrated max_softmax_pow2 shift."""

    val: np.ndarray
    test: np.ndarray
    exp: int
    shifts: dict[str, int]


def hardware_policies(cfg, logits, names=HARDWARE_POLICY_NAMES) -> dict[str, PolicyParams]:
    """The hardware decision policies with their per-exit constants calibrated on validation."""
    for name in names:
        if name not in HARDWARE_POLICY_NAMES:
            raise EehwError(f"policy '{name}' has no hardware decision unit; use {' or '.join(HARDWARE_POLICY_NAMES)}")
    exps = [0] * len(logits["val"])  # temperatures only; no hardware policy has them
    return {name: policy_params(cfg, logits["val"], logits["y_val"], exps, name) for name in names}


def alternative_logits(cfg, choices, data, policies) -> dict[int, dict[str, HeadLogits]]:
    """Cached logits of every alternative head (``eehw.model.head_variants``), by exit and head type."""
    out: dict[int, dict[str, HeadLogits]] = {}
    for head, variant in choices.variants.items():
        logits = cached_logits(variant.cfg, data, variant.golden)
        for p in variant.positions:
            i = variant.golden.exits.index(p)
            zv = logits["val"][i]
            out.setdefault(p, {})[head] = HeadLogits(
                zv,
                logits["test"][i],
                variant.golden.logit_exps[i],
                {name: policy_params(cfg, [zv], logits["y_val"], [0], name).shift(0) for name in policies},
            )
    return out


def kept_params(params: PolicyParams, exits: list[int], positions) -> PolicyParams:
    return params.restricted(exit_indices(exits, positions))


def _with_heads(params: PolicyParams, exits: list[int], assignment: dict[int, HeadLogits]) -> PolicyParams:
    """``params`` over every candidate exit, with the shifts of the assigned alternative heads."""
    if params.name != PolicyName.MAX_SOFTMAX_POW2 or not assignment:
        return params
    shifts = tuple(
        assignment[p].shifts[params.name.value] if p in assignment else params.shift(i) for i, p in enumerate(exits)
    )
    return PolicyParams(params.name, shifts=shifts, frac_bits=params.frac_bits)


def head_assignments(subset, alternatives) -> list[dict[int, str]]:
    """Every choice of head type at the exits of ``subset`` ({} = the config's own everywhere)."""
    per_exit = [[None, *sorted(alternatives.get(p, {}))] for p in subset]
    return [{p: h for p, h in zip(subset, combo) if h is not None} for combo in itertools.product(*per_exit)]


def exit_configs(
    exits: list[int],
    exps: list[int],
    logits,
    policies: dict[str, PolicyParams],
    drop_levels: tuple[float, ...] = DROP_LEVELS_PP,
    alternatives: dict[int, dict[str, HeadLogits]] | None = None,
) -> list[ExitConfig]:
    """Every subset of early exits x head type per kept exit x hardware policy x accuracy
    target, thresholds chosen on validation. A subset whose thresholds disable one of its
    exits is dropped (the smaller subset is the same design minus a useless head)."""
    alternatives = alternatives or {}
    final = exits[-1]
    y_val, y_test = logits["y_val"], logits["y_test"]
    configs: list[ExitConfig] = []
    seen = set()
    for r in range(len(exits)):
        for subset in itertools.combinations(exits[:-1], r):
            positions = (*subset, final)
            for heads in head_assignments(subset, alternatives):
                assigned = {p: alternatives[p][h] for p, h in heads.items()}
                idx = [exits.index(p) for p in positions]
                zv = [assigned[p].val if p in assigned else logits["val"][i] for p, i in zip(positions, idx)]
                zt = [assigned[p].test if p in assigned else logits["test"][i] for p, i in zip(positions, idx)]
                ex = [assigned[p].exp if p in assigned else exps[i] for p, i in zip(positions, idx)]
                for name, own in policies.items():
                    params = _with_heads(own, exits, assigned)
                    kp = kept_params(params, exits, positions)
                    levels = drop_levels if subset else (None,)
                    for drop in levels:
                        thresholds = () if not subset else tuple(select_target(kp, zv, ex, y_val, drop))
                        if any(t is None for t in thresholds):
                            continue
                        key = (positions, tuple(sorted(heads.items())), name, thresholds)
                        if key in seen:
                            continue
                        seen.add(key)
                        e_test, p_test = decide(kp, zt, ex, list(thresholds))
                        _, p_val = decide(kp, zv, ex, list(thresholds))
                        fractions = np.bincount(e_test, minlength=len(positions)) / len(e_test)
                        configs.append(
                            ExitConfig(
                                positions,
                                name,
                                params,
                                thresholds,
                                drop,
                                float((p_test == y_test).mean()),
                                float((p_val == y_val).mean()),
                                fractions,
                                tuple(heads.get(p) for p in positions),
                            )
                        )
    return configs
