"""The search over exit configurations x foldings under a board budget, the Pareto front and the ratios against the no-exit baseline."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np

from eehw.board import Board
from eehw.dse.characterise import RESOURCE_KEYS, Characterisation
from eehw.dse.compose import EXHAUSTIVE_LIMIT, Composer
from eehw.dse.exits import ExitConfig
from eehw.errors import EehwError

OBJECTIVES = ("latency", "throughput", "resources")

EQUAL_ACCURACY_PP = 0.5  # "at <= 0.5 pp accuracy loss" in the baseline comparison


WORST_LATENCY_FACTOR = 2.0  # default worst-case ceiling: this times the no-exit baseline's latency
# Ceilings at which the report also states the predicted ratios, so the price of a tighter
# worst case is visible next to the one applied (inf: no ceiling).
CEILING_SWEEP = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, math.inf)


@dataclasses.dataclass(frozen=True)
class Constraints:
    min_accuracy: float | None = None  # fraction of the test set
    max_latency: float | None = None  # mean cycles
    min_throughput: float | None = None  # samples per cycle
    max_worst_latency: float | None = None  # cycles to the final exit (the bound DeepSloth-style inputs hit)
    worst_latency_factor: float | None = None  # without max_worst_latency: this times the baseline's (default 2)


# ---------------------------------------------------------------------------------------------
# Search


@dataclasses.dataclass
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
        figs = {
            k: float(self.table[k][i])
            for k in ("accuracy", "mean_latency", "worst_latency", "throughput", *RESOURCE_KEYS)
        }
        return {
            "candidate": i,
            "exits": list(ec.positions),
            "policy": ec.policy,
            "thresholds": list(ec.thresholds),
            "heads": [comp.char.head_type(p, ec.head(k)) for k, p in enumerate(ec.positions)],
            "drop_pp": ec.drop_pp,
            "val_accuracy": ec.val_accuracy,
            "exit_fractions": [float(f) for f in ec.exit_fractions],
            "folding": {k: list(v) for k, v in comp.foldings(choice).items()},
            "lanes": {u: comp.char.options[u][int(choice[m])].lanes for m, u in enumerate(comp.units)},
            "units": [
                {"unit": u, "reach": comp.reach[m], **comp.char.options[u][int(choice[m])].as_dict()}
                for m, u in enumerate(comp.units)
            ],
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


def search(
    char: Characterisation,
    configs: list[ExitConfig],
    board: Board,
    constraints: Constraints,
    objective: str = "latency",
    limit: int = EXHAUSTIVE_LIMIT,
    bar=None,
) -> SearchResult:
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
        parts.append(
            {
                **{k: v for k, v in figs.items() if k != "exit_latency"},
                "accuracy": np.full(n, ec.accuracy),
                "config": np.full(n, cid),
                "row": np.arange(n),
                "early_exits": np.full(n, len(ec.positions) - 1),
            }
        )
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
        factor = constraints.worst_latency_factor or WORST_LATENCY_FACTOR
        max_worst = factor * float(table["worst_latency"][baseline])
    if max_worst is not None:
        feasible &= table["worst_latency"] <= max_worst
    idx = np.flatnonzero(feasible)
    ranked = _objective_order(table, idx, objective)
    return SearchResult(
        configs,
        composers,
        choices,
        methods,
        table,
        fits,
        feasible,
        pareto_front(table, idx),
        ranked,
        baseline,
        objective,
        time.perf_counter() - start,
        max_worst,
    )


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
        return (
            None
            if i is None or j is None
            else {"ratio": float(t[key][i] / t[key][j]), "candidate": i, "baseline_candidate": j}
        )

    peak = float(t["throughput"][base].max())
    reach_peak = t["throughput"] >= peak * (1 - 1e-12)
    e_peak, b_peak = pick(ee & reach_peak, "LUT", 1), pick(base & reach_peak, "LUT", 1)
    out["luts_at_equal_throughput"] = entry(e_peak, b_peak, "LUT")
    luts = float(t["LUT"][e_peak if e_peak is not None else b_peak])
    within = t["LUT"] <= luts
    out["throughput_at_equal_luts"] = entry(
        pick(ee & within, "throughput", -1), pick(base & within, "throughput", -1), "throughput"
    )
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


SWEPT_RATIOS = ("throughput_at_equal_luts", "luts_at_equal_throughput")


def ceiling_sweep(result: SearchResult, factors=CEILING_SWEEP) -> list[dict]:
    """The predicted ratios at other worst-case ceilings (factors of the baseline's worst case):
    folding a rarely reached block deeper lengthens the final-exit path, so the ceiling decides
    how much early exit can save; the report shows that price next to the ceiling applied."""
    if result.baseline is None:
        return []
    base_worst = float(result.table["worst_latency"][result.baseline])
    out = []
    for f in factors:
        r = baseline_ratios(dataclasses.replace(result, max_worst_latency=f * base_worst))
        out.append(
            {
                "factor": None if math.isinf(f) else f,
                "max_worst_latency": None if math.isinf(f) else f * base_worst,
                **{k: (r[k]["ratio"] if r.get(k) else None) for k in SWEPT_RATIOS},
                # the final path of the design behind "LUTs at equal throughput"
                "worst_latency": (
                    float(result.table["worst_latency"][at_peak["candidate"]])
                    if (at_peak := r.get("luts_at_equal_throughput"))
                    else None
                ),
            }
        )
    return out
