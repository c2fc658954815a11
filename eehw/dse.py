"""The co-design loop: choose exits, policy, thresholds and folding under a board budget.

Train once (the model has a head at every candidate exit), cache every head's integer logits
on validation and test, characterise every block once per folding option
(``eehw.characterise``), then compose candidate designs from those figures:

- an *exit configuration* is a subset of the candidate exits (the final one always kept), a
  hardware policy and thresholds chosen on validation with ``eehw.thresholds`` for one of a
  few accuracy targets; its accuracy and exit distribution come from the cached test logits;
- a *folding* is one option per block and per kept head. Resources are the sum of the block
  figures plus decision units, conditional buffers, forks and the merge; throughput is
  min over modules of 1 / (p_m * II_m) with p_m the fraction of samples reaching module m;
  mean latency is the exit distribution over the per-exit path latencies (the same formula
  as ``RtlDesign.latency_bound``, whose value is the final exit's path).

Foldings are enumerated exhaustively when an exit configuration has at most
``EXHAUSTIVE_LIMIT`` of them; beyond that a stated heuristic, a per-throughput-level
Lagrangian sweep: for every throughput level (each module's p_m * II_m at each option), every
module independently takes the option minimising LUT + lambda * p_m * latency among those
meeting the level, for lambda on a fixed grid from 0 (cheapest) to infinity (fastest). It
finds every design on the convex hull of the LUT / mean-latency trade-off at each throughput
level and can miss designs inside that hull.

The top designs are then generated, simulated whole on the test set and synthesised
(``validate``): the report states predicted against measured cycles and LUTs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eehw.board import Board
from eehw.characterise import RESOURCE_KEYS, Characterisation
from eehw.artefacts import ExitChoice
from eehw.errors import EehwError
from eehw.head_variants import assembled_golden, own_heads, train_alternatives
from eehw.logits import cached_logits
from eehw.policies import PolicyName, PolicyParams, calibrate_shift, decide
from eehw.rtl import FORK_LATENCY, GATE_FORWARD_LATENCY, GATE_RESULT_LATENCY, MERGE_LATENCY, buffer_depth
from eehw.timing import Timing, compose_arrays, single_beat, streaming
from eehw.thresholds import select_target

OBJECTIVES = ("latency", "throughput", "resources")
HARDWARE_POLICY_NAMES = ("margin", "max_softmax_pow2")
DROP_LEVELS_PP = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0)  # accuracy targets tried per exit subset (plus the config's)
EXHAUSTIVE_LIMIT = 4096  # folding combinations per exit configuration searched exhaustively
LAMBDAS = (0.0, *np.geomspace(0.01, 100.0, 13), math.inf)  # LUT per (weighted) cycle
EQUAL_ACCURACY_PP = 0.5  # "at <= 0.5 pp accuracy loss" in the baseline comparison


WORST_LATENCY_FACTOR = 2.0  # default --max-worst-latency: this times the no-exit baseline's latency


@dataclass(frozen=True)
class Constraints:
    min_accuracy: float | None = None  # fraction of the test set
    max_latency: float | None = None  # mean cycles
    min_throughput: float | None = None  # samples per cycle
    max_worst_latency: float | None = None  # cycles to the final exit (the bound DeepSloth-style inputs hit)


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


def policy_shift(cfg, z_val: np.ndarray, y_val: np.ndarray, name: str) -> int:
    if name == "max_softmax_pow2" and cfg.policy.calibrate:
        return calibrate_shift(z_val, y_val, cfg.policy.frac_bits)
    return 0


def hardware_policies(cfg, logits, names=HARDWARE_POLICY_NAMES) -> dict[str, PolicyParams]:
    """The hardware decision policies with their per-exit constants calibrated on validation."""
    out = {}
    for name in names:
        if name not in HARDWARE_POLICY_NAMES:
            raise EehwError(f"policy '{name}' has no hardware decision unit; use {' or '.join(HARDWARE_POLICY_NAMES)}")
        if name == "margin":
            out[name] = PolicyParams(PolicyName.MARGIN, frac_bits=cfg.policy.frac_bits)
        else:
            shifts = tuple(policy_shift(cfg, z, logits["y_val"], name) for z in logits["val"])
            out[name] = PolicyParams(PolicyName.MAX_SOFTMAX_POW2, shifts=shifts, frac_bits=cfg.policy.frac_bits)
    return out


def alternative_logits(cfg, choices, data, policies) -> dict[int, dict[str, HeadLogits]]:
    """Cached logits of every alternative head (``eehw.head_variants``), by exit and head type."""
    out: dict[int, dict[str, HeadLogits]] = {}
    for head, variant in choices.variants.items():
        logits = cached_logits(variant.cfg, data, variant.golden)
        for p in variant.positions:
            i = variant.golden.exits.index(p)
            zv = logits["val"][i]
            out.setdefault(p, {})[head] = HeadLogits(
                zv, logits["test"][i], variant.golden.logit_exps[i],
                {name: policy_shift(cfg, zv, logits["y_val"], name) for name in policies})
    return out


def kept_params(params: PolicyParams, exits: list[int], positions) -> PolicyParams:
    return params.restricted([exits.index(p) for p in positions])


def _with_heads(params: PolicyParams, exits: list[int], assignment: dict[int, HeadLogits]) -> PolicyParams:
    """``params`` over every candidate exit, with the shifts of the assigned alternative heads."""
    if params.name != PolicyName.MAX_SOFTMAX_POW2 or not assignment:
        return params
    shifts = tuple(assignment[p].shifts[params.name.value] if p in assignment else params.shift(i)
                   for i, p in enumerate(exits))
    return PolicyParams(params.name, shifts=shifts, frac_bits=params.frac_bits)


def head_assignments(subset, alternatives) -> list[dict[int, str]]:
    """Every choice of head type at the exits of ``subset`` ({} = the config's own everywhere)."""
    per_exit = [[None, *sorted(alternatives.get(p, {}))] for p in subset]
    return [{p: h for p, h in zip(subset, combo) if h is not None} for combo in itertools.product(*per_exit)]


def exit_configs(exits: list[int], exps: list[int], logits, policies: dict[str, PolicyParams],
                 drop_levels: tuple[float, ...] = DROP_LEVELS_PP,
                 alternatives: dict[int, dict[str, HeadLogits]] | None = None) -> list[ExitConfig]:
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
                        configs.append(ExitConfig(positions, name, params, thresholds, drop,
                                                  float((p_test == y_test).mean()), float((p_val == y_val).mean()),
                                                  fractions, tuple(heads.get(p) for p in positions)))
    return configs


# ---------------------------------------------------------------------------------------------
# Composition


@dataclass
class Composer:
    """Predicts a design's figures from the characterisation for one exit configuration."""

    char: Characterisation
    ec: ExitConfig
    units: list[str] = field(init=False)
    reach: list[float] = field(init=False)

    def __post_init__(self):
        c, ec = self.char, self.ec
        self.units = c.blocks[: ec.positions[-1] + 1] + [c.head_unit(p, ec.head(k)) for k, p in enumerate(ec.positions)]
        r = ec.reach
        self.reach = [r[b] for b in range(ec.positions[-1] + 1)] + [r[p] for p in ec.positions]
        if len(c.blocks) != ec.positions[-1] + 1:
            raise EehwError("the final exit must follow the last backbone block")

    @property
    def sizes(self) -> list[int]:
        return [len(self.char.options[u]) for u in self.units]

    def table(self, unit: str, attr: str) -> np.ndarray:
        opts = self.char.options[unit]
        if attr in RESOURCE_KEYS:
            return np.array([o.resources[attr] for o in opts], dtype=np.float64)
        return np.array([getattr(o, attr) for o in opts], dtype=np.float64)

    def evaluate(self, choice: np.ndarray) -> dict[str, np.ndarray]:
        """Figures of every row of ``choice`` (rows x units: option index per unit)."""
        c, ec = self.char, self.ec
        choice = np.asarray(choice, dtype=np.int64).reshape(-1, len(self.units))
        n_blocks = ec.positions[-1] + 1
        res = {r: np.zeros(len(choice)) for r in RESOURCE_KEYS}
        load = np.zeros(len(choice))
        lat_unit = []
        for m, unit in enumerate(self.units):
            for r in RESOURCE_KEYS:
                res[r] += self.table(unit, r)[choice[:, m]]
            load = np.maximum(load, self.reach[m] * self.table(unit, "ii")[choice[:, m]])
            timings = np.array([o.timing.as_tuple() for o in self.char.options[unit]], dtype=np.float64)
            lat_unit.append(tuple(timings[choice[:, m], j] for j in range(4)))
        fmt = c.formats[ec.policy]
        d = fmt.latency
        # Glue: a decision unit per exit, the merge, and a fork + conditional buffer per early exit.
        last = len(ec.positions) - 1
        exits = list(c.heads)
        glue = [c.glue[c.decision_key(ec.policy, ec.params.shift(exits.index(p)), k == last)]
                for k, p in enumerate(ec.positions)]
        glue.append(c.glue[c.merge_key(len(ec.positions), fmt.dec_w)])
        for p in ec.positions[:-1]:
            glue.append(c.glue[c.fork_key(self._feat_w(p))])
        for g in glue:
            for r in RESOURCE_KEYS:
                res[r] += g[r]
        for k, p in enumerate(ec.positions[:-1]):
            h, b = n_blocks + k, p
            depth = self._depth_table(p, self.units[h])  # (head options, block options) -> bucketed depth
            keys = np.array([[c.gate_key(self._feat_w(p), fmt.dec_w, depth[i, j])
                              for j in range(depth.shape[1])] for i in range(depth.shape[0])])
            for r in RESOURCE_KEYS:
                table = np.vectorize(lambda key: c.glue[key][r], otypes=[np.float64])(keys)
                res[r] += table[choice[:, h], choice[:, b]]
        # Path latency of each exit: rtl.exit_paths on arrays (RtlDesign.latency_bound is the final exit's).
        def const(t):
            return tuple(np.full(len(choice), float(v)) for v in t.as_tuple())

        dec, merge = const(single_beat(d)), const(single_beat(MERGE_LATENCY))
        exit_lat = []
        path = None
        for k, p in enumerate(ec.positions):
            start = 0 if not exit_lat else ec.positions[k - 1] + 1
            for b in range(start, p + 1):
                path = lat_unit[b] if path is None else compose_arrays(path, lat_unit[b])
            beats = self.char.options[self.char.blocks[p]][0].hw.out_beats
            final = k == len(ec.positions) - 1
            to_dec = path if final else compose_arrays(path, const(streaming(FORK_LATENCY, beats)))
            to_dec = compose_arrays(compose_arrays(to_dec, lat_unit[n_blocks + k]), dec)
            if final:
                exit_lat.append(compose_arrays(to_dec, merge)[2])
            else:
                result_path = compose_arrays(compose_arrays(to_dec, const(single_beat(GATE_RESULT_LATENCY))), merge)
                exit_lat.append(result_path[2])
                forward = Timing.stage(GATE_FORWARD_LATENCY, 0, GATE_FORWARD_LATENCY + beats - 1, 1)
                path = compose_arrays(to_dec, const(forward))
        exit_lat = np.stack(exit_lat)
        mean = (ec.exit_fractions[:, None] * exit_lat).sum(axis=0)
        return {**res, "throughput": 1.0 / load, "mean_latency": mean, "worst_latency": exit_lat[-1],
                "exit_latency": exit_lat.T}

    def _feat_w(self, position: int) -> int:
        return self.char.options[self.char.blocks[position]][0].hw.out_bits

    def _depth_table(self, position: int, head_unit: str) -> np.ndarray:
        heads = self.char.options[head_unit]
        blocks = self.char.options[self.char.blocks[position]]
        d = self.char.formats[self.ec.policy].latency
        return np.array([[buffer_depth(h.drain, b.hw, d) for b in blocks] for h in heads])

    def foldings(self, row) -> dict[str, tuple[int, int]]:
        out = {}
        for m, unit in enumerate(self.units):
            out.update(self.char.options[unit][int(row[m])].folding)
        return out

    # -- candidate generation

    def candidates(self, limit: int = EXHAUSTIVE_LIMIT) -> tuple[np.ndarray, str]:
        sizes = self.sizes
        total = int(np.prod(sizes))
        if total <= limit:
            return np.indices(sizes).reshape(len(sizes), -1).T, "exhaustive"
        return self._lagrangian(), "lagrangian"

    def _lagrangian(self) -> np.ndarray:
        ii = [self.table(u, "ii") * r for u, r in zip(self.units, self.reach)]
        lut = [self.table(u, "LUT") for u in self.units]
        lat = [self.table(u, "latency") * r for u, r in zip(self.units, self.reach)]
        levels = np.unique(np.concatenate(ii))
        rows = []
        for cap in levels:
            allowed = [x <= cap * (1 + 1e-12) for x in ii]
            if not all(a.any() for a in allowed):
                continue
            for lam in LAMBDAS:
                row = []
                for a, cost, t in zip(allowed, lut, lat):
                    score = t if math.isinf(lam) else cost + lam * t
                    tie = cost if math.isinf(lam) else t
                    order = np.lexsort((tie, np.where(a, score, np.inf)))
                    row.append(order[0])
                rows.append(row)
        return np.unique(np.array(rows, dtype=np.int64), axis=0)


# ---------------------------------------------------------------------------------------------
# Search


@dataclass
class SearchResult:
    configs: list[ExitConfig]
    composers: list[Composer]
    choices: list[np.ndarray]  # per exit config: rows x units
    methods: list[str]
    table: dict[str, np.ndarray]  # one entry per candidate (all configs concatenated)
    fits: np.ndarray  # within the board budget
    feasible: np.ndarray  # ... and the user's constraints
    pareto: np.ndarray  # candidate indices on the Pareto front (feasible only)
    ranked: np.ndarray  # feasible candidate indices, best first by the objective
    baseline: int | None  # candidate index of the no-exit baseline at its best folding
    objective: str
    seconds: float
    max_worst_latency: float | None = None  # the worst-case ceiling applied (given or default)

    @property
    def evaluated(self) -> int:
        return len(self.table["LUT"])

    def design(self, i: int) -> dict:
        """One candidate as a plain dict (exits, policy, thresholds, folding and predicted figures)."""
        i = int(i)
        cfg_id, row = int(self.table["config"][i]), int(self.table["row"][i])
        ec, comp = self.configs[cfg_id], self.composers[cfg_id]
        choice = self.choices[cfg_id][row]
        figs = {k: float(self.table[k][i]) for k in ("accuracy", "mean_latency", "worst_latency", "throughput",
                                                     *RESOURCE_KEYS)}
        return {
            "candidate": i, "exits": list(ec.positions), "policy": ec.policy, "thresholds": list(ec.thresholds),
            "heads": [comp.char.head_type(p, ec.head(k)) for k, p in enumerate(ec.positions)],
            "drop_pp": ec.drop_pp, "val_accuracy": ec.val_accuracy,
            "exit_fractions": [float(f) for f in ec.exit_fractions],
            "folding": {k: list(v) for k, v in comp.foldings(choice).items()},
            "lanes": {u: comp.char.options[u][int(choice[m])].lanes for m, u in enumerate(comp.units)},
            "units": [{"unit": u, "reach": comp.reach[m], **comp.char.options[u][int(choice[m])].as_dict()}
                      for m, u in enumerate(comp.units)],
            "predicted": figs,
        }


def _objective_order(t: dict[str, np.ndarray], idx: np.ndarray, objective: str) -> np.ndarray:
    keys = {
        "latency": (t["mean_latency"], t["LUT"], -t["accuracy"]),
        "throughput": (-t["throughput"], t["LUT"], t["mean_latency"]),
        "resources": (t["LUT"], t["mean_latency"], -t["throughput"]),
    }[objective]
    order = np.lexsort(tuple(k[idx] for k in reversed(keys)))
    return idx[order]


def pareto_front(t: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Indices in ``idx`` not dominated in (accuracy max, mean latency min, throughput max, LUT min)."""
    if len(idx) == 0:
        return idx
    pts = np.stack([-t["accuracy"][idx], t["mean_latency"][idx], -t["throughput"][idx], t["LUT"][idx]], axis=1)
    pts, first = np.unique(pts, axis=0, return_index=True)
    idx = idx[first]
    # Prefilter: within each (accuracy, throughput) group only the (latency, LUT) staircase survives.
    keep = np.zeros(len(pts), dtype=bool)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(pts):
        groups.setdefault((p[0], p[2]), []).append(i)
    for members in groups.values():
        m = np.array(members)
        order = m[np.lexsort((pts[m, 1], pts[m, 3]))]  # by LUT, then latency
        best = math.inf
        for i in order:
            if pts[i, 1] < best:
                keep[i] = True
                best = pts[i, 1]
    cand = np.flatnonzero(keep)
    front = []
    sub = pts[cand]
    for j, i in enumerate(cand):
        p = pts[i]
        dominated = np.all(sub <= p, axis=1) & np.any(sub < p, axis=1)
        if not dominated.any():
            front.append(i)
    return idx[np.array(front, dtype=np.int64)] if front else idx[:0]


def search(char: Characterisation, configs: list[ExitConfig], board: Board, constraints: Constraints,
           objective: str = "latency", limit: int = EXHAUSTIVE_LIMIT, bar=None) -> SearchResult:
    if objective not in OBJECTIVES:
        raise EehwError(f"unknown objective '{objective}'; valid: {', '.join(OBJECTIVES)}")
    start = time.perf_counter()
    composers, choices, methods, parts = [], [], [], []
    task = bar.add_task(f"searching {len(configs)} exit configurations", total=len(configs)) if bar else None
    for cid, ec in enumerate(configs):
        comp = Composer(char, ec)
        rows, method = comp.candidates(limit)
        figs = comp.evaluate(rows)
        n = len(rows)
        parts.append({**{k: v for k, v in figs.items() if k != "exit_latency"},
                      "accuracy": np.full(n, ec.accuracy), "config": np.full(n, cid), "row": np.arange(n),
                      "early_exits": np.full(n, len(ec.positions) - 1)})
        composers.append(comp)
        choices.append(rows)
        methods.append(method)
        if bar:
            bar.update(task, advance=1)
    table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    fits = np.ones(len(table["LUT"]), dtype=bool)
    for r in RESOURCE_KEYS:
        fits &= table[r] <= getattr(board.budget, r)
    feasible = fits.copy()
    if constraints.min_accuracy is not None:
        feasible &= table["accuracy"] >= constraints.min_accuracy - 1e-12
    if constraints.max_latency is not None:
        feasible &= table["mean_latency"] <= constraints.max_latency
    if constraints.min_throughput is not None:
        feasible &= table["throughput"] >= constraints.min_throughput
    base_idx = np.flatnonzero(fits & (table["early_exits"] == 0))
    baseline = int(_objective_order(table, base_idx, objective)[0]) if len(base_idx) else None
    max_worst = constraints.max_worst_latency
    if max_worst is None and baseline is not None:
        # Early exit must not be a way to slow the device down (DeepSloth-style inputs that never
        # exit): by default the final-exit path may take at most this factor of the baseline's.
        max_worst = WORST_LATENCY_FACTOR * float(table["worst_latency"][baseline])
    if max_worst is not None:
        feasible &= table["worst_latency"] <= max_worst
    idx = np.flatnonzero(feasible)
    ranked = _objective_order(table, idx, objective)
    return SearchResult(configs, composers, choices, methods, table, fits, feasible, pareto_front(table, idx), ranked,
                        baseline, objective, time.perf_counter() - start, max_worst)


def top_designs(result: SearchResult, n: int) -> list[int]:
    """The best ``n`` feasible candidates with distinct hardware (exits, policy, folding)."""
    out, seen = [], set()
    for i in result.ranked:
        d = result.design(i)
        key = (tuple(d["exits"]), tuple(d["heads"]), d["policy"], json.dumps(d["folding"], sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        out.append(int(i))
        if len(out) == n:
            break
    return out


RATIO_KEYS = ("throughput_at_equal_luts", "luts_at_equal_throughput", "mean_latency_at_equal_accuracy")


def baseline_ratios(result: SearchResult, ceiling: bool = True) -> dict:
    """What early exit buys against the no-exit baseline, each baseline at its best folding for
    the comparison (predicted figures). Early-exit designs count when they are within the
    board budget, at most EQUAL_ACCURACY_PP points below the baseline's accuracy and
    (``ceiling``) within the worst-case latency ceiling.

    - LUTs at equal throughput: the cheapest early-exit design reaching the fastest baseline's
      throughput T, against the cheapest baseline folding reaching T (not the widest folding:
      a rate-matched baseline is the fair one, as in ATHEENA's comparison).
    - Throughput at equal LUTs: at the LUTs L of that early-exit design (or, when no early-exit
      design reaches T, of the fastest baseline), the fastest early-exit design within L against
      the fastest baseline folding within L. Block 0 sets the pace of both, so the two ratios
      are read at one point of the two LUT/throughput curves; ``curve`` lists the ratio at
      every baseline folding on the front, for the report.
    - Mean latency at equal accuracy: against the reference baseline (the objective's best).
    Each entry names its early-exit ``candidate`` and its ``baseline_candidate``."""
    t = result.table
    if result.baseline is None:
        return {}
    b = result.baseline
    base = result.fits & (t["early_exits"] == 0)
    ee = result.fits & (t["early_exits"] > 0) & (t["accuracy"] >= t["accuracy"][b] - EQUAL_ACCURACY_PP / 100 - 1e-12)
    if ceiling and result.max_worst_latency is not None:
        ee &= t["worst_latency"] <= result.max_worst_latency
    out: dict = {"baseline": b, "accuracy_tolerance_pp": EQUAL_ACCURACY_PP}

    def pick(mask, key, sign):
        idx = np.flatnonzero(mask)
        if not len(idx):
            return None
        order = np.lexsort((t["mean_latency"][idx], t["LUT"][idx], sign * t[key][idx]))
        return int(idx[order[0]])

    def entry(i, j, key):
        return None if i is None or j is None else {"ratio": float(t[key][i] / t[key][j]), "candidate": i,
                                                    "baseline_candidate": j}

    peak = float(t["throughput"][base].max())
    reach_peak = t["throughput"] >= peak * (1 - 1e-12)
    e_peak, b_peak = pick(ee & reach_peak, "LUT", 1), pick(base & reach_peak, "LUT", 1)
    out["luts_at_equal_throughput"] = entry(e_peak, b_peak, "LUT")
    luts = float(t["LUT"][e_peak if e_peak is not None else b_peak])
    within = t["LUT"] <= luts
    out["throughput_at_equal_luts"] = entry(pick(ee & within, "throughput", -1), pick(base & within, "throughput", -1),
                                            "throughput")
    front, best = [], 0.0
    for j in np.flatnonzero(base)[np.lexsort((-t["throughput"][base], t["LUT"][base]))]:
        if t["throughput"][j] <= best:
            continue  # the baseline's LUT/throughput staircase only
        best = float(t["throughput"][j])
        i = pick(ee & (t["LUT"] <= t["LUT"][j]), "throughput", -1)
        if i is not None:
            front.append({"LUT": float(t["LUT"][j]), "throughput": best, "ratio": float(t["throughput"][i]) / best})
    out["throughput_at_equal_luts_curve"] = front
    out["mean_latency_at_equal_accuracy"] = entry(pick(ee, "mean_latency", 1), b, "mean_latency")
    return out


# ---------------------------------------------------------------------------------------------
# Validation: generate, simulate whole, synthesise


def validate_job(golden, name: str, exits: list[int], params: PolicyParams, thresholds: list, folding: dict,
                 max_simd: int, max_pe: int, x_test: np.ndarray, board) -> dict:
    """Generate the design and measure it as `eehw synth` does (eehw.measure: every test sample
    simulated whole and checked against the golden model, the flow's enforcement, Yosys per
    block and for the top), in a temporary folder of the worker's: the returned dict is the
    ``Measurement``'s JSON plus the generated files (``files``, name -> bytes) for the client to
    write (``write_design_files``), so a Dask worker on another machine needs no folder shared
    with the client."""
    import tempfile

    from eehw.hwplan import Folding, plan_design
    from eehw.measure import enforce, resources, run_design
    from eehw.rtl import generate

    plan = plan_design(golden, name, list(exits[:-1]), {k: Folding(*v) for k, v in folding.items()}, max_simd, max_pe)
    with tempfile.TemporaryDirectory(prefix="eehw-validate-") as tmp:
        rtl = generate(plan, params, Path(tmp), golden.exits)
        m = run_design(golden, rtl, params, x_test, list(thresholds), workers=1)  # the pool runs jobs in parallel
        enforce(name, m)  # a validated design that is not bit-exact or breaks its bound stops the search
        start = time.perf_counter()
        m = m.with_resources(resources(rtl, board, workers=1), time.perf_counter() - start)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
        workdir = str(Path(tmp).resolve())
    return {**m.to_json(), "files": files, "worker_dir": workdir}


def write_design_files(measured: dict, out_dir: Path) -> None:
    """Write a validated design's files (``validate_job``'s ``files``) into ``out_dir`` and
    record it as the design's ``rtl_dir``. The Verilog names its weight memories by the
    worker's absolute path; those paths are rewritten to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    worker = measured.pop("worker_dir").encode()
    for name, data in measured.pop("files").items():
        if name.endswith(".v"):
            data = data.replace(worker, str(out_dir.resolve()).encode())
        (out_dir / name).write_bytes(data)
    measured["rtl_dir"] = str(out_dir)


def _err(pred: float, meas: float) -> float | None:
    return None if not meas else (pred - meas) / meas


def compare_predicted(design: dict, measured: dict) -> dict:
    p = design["predicted"]
    rows = {
        "mean_latency": (p["mean_latency"], measured["latency_cycles"]["mean"]),
        "worst_latency": (p["worst_latency"], measured["worst_case_latency_cycles"]),
        "throughput": (p["throughput"], measured["throughput_samples_per_cycle"]),
        "LUT": (p["LUT"], measured["resources"]["LUT"]),
        "FF": (p["FF"], measured["resources"]["FF"]),
    }
    return {k: {"predicted": a, "measured": b, "error": _err(a, b)} for k, (a, b) in rows.items()}


def design_id(d: dict) -> str:
    text = json.dumps({k: d[k] for k in ("exits", "heads", "policy", "folding")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------
# The whole loop, as `eehw dse` runs it


def run(config, board: str = "pynq-z2", *, constraints: Constraints | None = None, objective: str = "latency",
        scheduler=None, workers: int | None = None, validate: int = 3, validate_ratio_designs: bool = True,
        policies: tuple[str, ...] | None = None, levels: list[int] | None = None,
        limit: int = EXHAUSTIVE_LIMIT) -> dict:
    """Train (cached), characterise, search, validate the top designs and write the DSE report
    and ``chosen.json`` under ``build/<board>/<config>/dse/``; returns the report dict."""
    from eehw import flow
    from eehw.board import load_board
    from eehw.characterise import characterise, lane_levels
    from eehw.dse_report import write_reports
    from eehw.executor import executor, run_jobs
    from eehw.progress import progress

    if objective not in OBJECTIVES:
        raise EehwError(f"unknown objective '{objective}'; valid: {', '.join(OBJECTIVES)}")
    if validate < 1:
        raise EehwError(f"--validate must be at least 1 (designs simulated and synthesised whole), got {validate}")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    d = flow.run(config, stop_after="evaluate")
    brd = load_board(board)
    cfg, golden = d.cfg, d.golden
    seconds["train_evaluate"] = time.perf_counter() - start
    logits = cached_logits(cfg, d.data, golden)
    pols = hardware_policies(cfg, logits, policies or HARDWARE_POLICY_NAMES)
    t0 = time.perf_counter()
    choices = train_alternatives(cfg, d.data, d.trained, golden)
    alternatives = alternative_logits(cfg, choices, d.data, pols)
    seconds["alternative_heads"] = time.perf_counter() - t0
    constraints = constraints or Constraints()
    final_acc = float((np.argmax(logits["test"][-1], axis=1) == logits["y_test"]).mean())
    if constraints.min_accuracy is None:
        constraints = dataclasses.replace(constraints, min_accuracy=final_acc - cfg.policy.max_drop_pp / 100)
    drops = tuple(sorted(set(DROP_LEVELS_PP) | {cfg.policy.max_drop_pp}))
    hw = cfg.hardware
    levels = levels or lane_levels(hw.max_simd, hw.max_pe)
    out_dir = dse_dir(brd.name, cfg.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    with executor(scheduler or cfg.dse.scheduler, workers) as pool:
        t0 = time.perf_counter()
        configs = exit_configs(golden.exits, golden.logit_exps, logits, pols, drops, alternatives)
        seconds["exit_configurations"] = time.perf_counter() - t0
        extra_shifts = {name: {h.shifts[name] for per in alternatives.values() for h in per.values()} for name in pols}
        char = characterise(golden, brd, pols, max_simd=hw.max_simd, max_pe=hw.max_pe, pool=pool, levels=levels,
                            alternatives={t: (v.golden, v.positions) for t, v in choices.variants.items()},
                            own_types=own_heads(cfg), extra_shifts=extra_shifts)
        seconds["characterisation"] = char.seconds
        with progress() as bar:
            result = search(char, configs, brd, constraints, objective, limit, bar)
        seconds["search"] = result.seconds
        if not len(result.ranked):
            best = float(result.table["accuracy"][result.fits].max()) if result.fits.any() else None
            raise EehwError(f"no design meets the constraints on {brd.name} (best accuracy within the budget: "
                            f"{'none fits' if best is None else f'{best:.2%}'}); relax --min-accuracy, "
                            f"--max-latency, --max-worst-latency or --min-throughput")
        if result.baseline is None:
            raise EehwError(f"no folding of the no-exit baseline fits {brd.name}; use a bigger board")
        ratios = baseline_ratios(result)
        # A ratio no design within the worst-case ceiling can give (an early-exit design as
        # small as the baseline is folded slower, so its final path is longer) is still
        # reported, from the designs the ceiling excludes, and marked so.
        relaxed = baseline_ratios(result, ceiling=False)
        for key in RATIO_KEYS:
            if ratios.get(key) is None and relaxed.get(key):
                ratios[key] = {**relaxed[key], "ignores_worst_case_ceiling": True}
        picks = top_designs(result, validate)
        extra = [r[c] for key in RATIO_KEYS if (r := ratios.get(key)) and validate_ratio_designs
                 for c in ("candidate", "baseline_candidate")]
        to_run = list(dict.fromkeys([*picks, result.baseline, *extra]))
        designs = {i: result.design(i) for i in to_run}
        jobs = []
        for i, des in designs.items():
            ident = ("baseline" if i == result.baseline else
                     f"baseline-{design_id(des)}" if not des["exits"][:-1] else f"{des['policy']}-{design_id(des)}")
            des["id"] = ident
            heads = dict(zip(des["exits"], des["heads"]))
            params = result.configs[int(result.table["config"][i])].params
            jobs.append((i, (assembled_golden(choices, heads), f"{cfg.name}_dse_{i}", des["exits"], params,
                             des["thresholds"], des["folding"], hw.max_simd, hw.max_pe, d.data.x_test, brd)))
        t0 = time.perf_counter()
        with progress() as bar:
            task = bar.add_task(f"validating {len(jobs)} designs (simulate + synthesise)", total=len(jobs))
            measured = run_jobs(pool, validate_job, jobs, on_done=lambda k, r: bar.update(task, advance=1))
        seconds["validation"] = time.perf_counter() - t0
    for i, des in designs.items():
        write_design_files(measured[i], out_dir / "designs" / des["id"])
        des["measured"] = measured[i]
        des["errors"] = compare_predicted(des, measured[i])
    chosen = designs[picks[0]]
    baseline = designs[result.baseline]

    def measured_ratio(key: str, field_: str) -> float | None:
        r = ratios.get(key)
        if not r or r["candidate"] not in designs or r["baseline_candidate"] not in designs:
            return None
        a = _measured_figure(designs[r["candidate"]], field_)
        b = _measured_figure(designs[r["baseline_candidate"]], field_)
        return None if not a or not b else float(a / b)

    for key, field_ in zip(RATIO_KEYS, ("throughput", "LUT", "mean_latency")):
        if ratios.get(key):
            r = ratios[key]
            r["design"] = designs.get(r["candidate"]) and designs[r["candidate"]]["id"]
            r["baseline_design"] = designs.get(r["baseline_candidate"]) and designs[r["baseline_candidate"]]["id"]
            r["measured_ratio"] = measured_ratio(key, field_)
            r["predicted"] = {f: float(result.table[f][r["candidate"]]) for f in ("accuracy", "throughput", "LUT",
                                                                                  "mean_latency")}
    methods = {m: result.methods.count(m) for m in set(result.methods)}
    report = {
        "kind": "dse", "design": cfg.name, "board": brd.name, "part": brd.part, "clock_mhz": brd.clock_mhz,
        "dataset": d.data.name, "training_hash": cfg.training_hash(), "objective": objective,
        "constraints": {**dataclasses.asdict(constraints), "max_worst_latency": result.max_worst_latency},
        "budget": brd.budget.as_dict(), "test_samples": int(len(logits["y_test"])), "final_exit_accuracy": final_acc,
        "characterisation": {
            "lane_levels": levels, "synthesised": char.synthesised, "cached": char.cached, "seconds": char.seconds,
            "units": {u: [o.as_dict() for o in opts] for u, opts in char.options.items()}, "glue": char.glue,
            "decision_latency": {p: f.latency for p, f in char.formats.items()},
        },
        "search": {"exit_configurations": len(configs), "candidates": result.evaluated,
                   "within_budget": int(result.fits.sum()), "feasible": int(result.feasible.sum()),
                   "pareto": int(len(result.pareto)), "methods": methods, "exhaustive_limit": limit,
                   "lambdas": [None if math.isinf(x) else float(x) for x in LAMBDAS],
                   "policies": list(pols), "accuracy_targets_pp": list(drops), "seconds": result.seconds,
                   "head_types": {str(p): choices.types(p) for p in golden.exits[:-1]}},
        "alternative_heads": {t: {"positions": v.positions, "training_seconds": v.trained.seconds,
                                  "cached": v.trained.cached, "checkpoint": str(v.trained.checkpoint)}
                              for t, v in choices.variants.items()},
        "chosen": chosen,
        "baseline": baseline,
        "validated": [designs[i] for i in to_run],
        "ratios": ratios,
        "pareto": [_point(result, i) for i in result.pareto[:500]],
        "seconds": seconds,
    }
    ExitChoice(config=cfg.name, board=brd.name, training_hash=cfg.training_hash(), exits=tuple(chosen["exits"]),
               heads=tuple(chosen["heads"]), policy=result.configs[int(result.table["config"][picks[0]])].params,
               thresholds=tuple(chosen["thresholds"]),
               folding={k: tuple(v) for k, v in chosen["folding"].items()},
               baseline_folding={k: tuple(v) for k, v in baseline["folding"].items()}).save(out_dir / "chosen.json")
    report["paths"] = [str(p) for p in write_reports(report, out_dir, result)]
    return report


def dse_dir(board: str, config: str) -> Path:
    """Where `eehw dse` writes: build/<board>/<config>/dse (flow.step_rtl reads chosen.json there)."""
    from eehw.paths import build_dir

    return build_dir() / board / config / "dse"


def _measured_figure(des: dict, field_: str) -> float | None:
    m = des.get("measured")
    if not m:
        return None
    return {"throughput": m["throughput_samples_per_cycle"], "LUT": m["resources"]["LUT"],
            "mean_latency": m["latency_cycles"]["mean"]}[field_]


def _point(result: SearchResult, i: int) -> dict:
    t = result.table
    ec = result.configs[int(t["config"][i])]
    return {"candidate": int(i), "accuracy": float(t["accuracy"][i]), "mean_latency": float(t["mean_latency"][i]),
            "throughput": float(t["throughput"][i]), "LUT": float(t["LUT"][i]), "exits": list(ec.positions),
            "heads": [result.composers[int(t["config"][i])].char.head_type(p, ec.head(k))
                      for k, p in enumerate(ec.positions)], "policy": ec.policy}
