"""The co-design loop: choose exits, policy, thresholds and folding under a board budget.

Train once (the model has a head at every candidate exit), cache every head's integer logits
on validation and test, characterise every block once per folding option
(``eehw.dse.characterise``), then compose candidate designs from those figures:

- an *exit configuration* is a subset of the candidate exits (the final one always kept), a
  hardware policy and thresholds chosen on validation with ``eehw.policy.thresholds`` for one of a
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
meeting the level, and again LUT + lambda * latency (every module is on the final-exit path,
which the worst-case ceiling bounds), for lambda on a fixed grid from 0 (cheapest) to infinity
(fastest). It finds every design on the convex hulls of the LUT / mean-latency and LUT /
worst-case trade-offs at each throughput level and can miss designs inside those hulls.

The top designs and the designs behind each ratio against the baseline are then generated,
simulated whole on the test set and synthesised (``validate``): the report states predicted
against measured cycles and LUTs. A ratio whose early-exit design misses its premise once
measured (over the board, or slower than the baseline it is "at equal throughput" with) is
picked again without it, an overrun with that design's prediction error as headroom
(``repick_missed_ratios``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from eehw.artefacts import ExitChoice
from eehw.dse.compose import EXHAUSTIVE_LIMIT, LAMBDAS
from eehw.dse.exits import DROP_LEVELS_PP, HARDWARE_POLICY_NAMES, alternative_logits, exit_configs, hardware_policies
from eehw.dse.search import (
    OBJECTIVES,
    RATIO_KEYS,
    Constraints,
    SearchResult,
    baseline_ratios,
    ceiling_sweep,
    search,
    top_designs,
)
from eehw.dse.validate import compare_predicted, design_id, validate_job, write_design_files
from eehw.errors import EehwError
from eehw.model.head_variants import assembled_golden, own_heads, train_alternatives
from eehw.policy.logits import cached_logits

#: Times a ratio's early-exit design is picked again after the one picked missed its premise
#: once measured (each pick is simulated and synthesised: minutes on a large design).
RATIO_REPICKS = 2
#: How far under the baseline's measured throughput an early-exit design may measure and still
#: count as "equal throughput": the measured span runs from the first input to the last result,
#: so it holds one fill and drain, which favours the baseline's shorter pipeline (digits_cnn, 359
#: test samples: 0.7 % at stop 30); a design the search's model gets wrong by more is passed over.
THROUGHPUT_TOLERANCE = 0.02

# ---------------------------------------------------------------------------------------------
# The whole loop, as `eehw dse` runs it


def run(
    config,
    board: str = "pynq-z2",
    *,
    constraints: Constraints | None = None,
    objective: str = "latency",
    scheduler=None,
    workers: int | None = None,
    validate: int = 3,
    validate_ratio_designs: bool = True,
    policies: tuple[str, ...] | None = None,
    levels: list[int] | None = None,
    limit: int = EXHAUSTIVE_LIMIT,
) -> dict:
    """Train (cached), characterise, search, validate the top designs and write the DSE report
    and ``chosen.json`` under ``build/<board>/<config>/dse/``; returns the report dict."""
    from eehw import flow
    from eehw.board import load_board
    from eehw.dse.characterise import characterise, lane_levels
    from eehw.dse.executor import executor, run_jobs
    from eehw.progress import progress
    from eehw.report.dse import write_reports

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
    if constraints.worst_latency_factor is None:
        constraints = dataclasses.replace(constraints, worst_latency_factor=cfg.dse.worst_latency_factor)
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
        char = characterise(
            golden,
            brd,
            pols,
            max_simd=hw.max_simd,
            max_pe=hw.max_pe,
            pool=pool,
            levels=levels,
            alternatives={t: (v.golden, v.positions) for t, v in choices.variants.items()},
            own_types=own_heads(cfg),
            extra_shifts=extra_shifts,
        )
        seconds["characterisation"] = char.seconds
        with progress() as bar:
            result = search(char, configs, brd, constraints, objective, limit, bar)
        seconds["search"] = result.seconds
        if not len(result.ranked):
            best = float(result.table["accuracy"][result.fits].max()) if result.fits.any() else None
            raise EehwError(
                f"no design meets the constraints on {brd.name} (best accuracy within the budget: "
                f"{'none fits' if best is None else f'{best:.2%}'}); relax --min-accuracy, "
                f"--max-latency, --max-worst-latency or --min-throughput"
            )
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
        extra = [
            r[c]
            for key in RATIO_KEYS
            if (r := ratios.get(key)) and validate_ratio_designs
            for c in ("candidate", "baseline_candidate")
        ]
        designs: dict[int, dict] = {}  # validated candidates, in validation order

        def validate_designs(indices) -> None:
            """Simulate whole and synthesise the candidates not validated yet."""
            new = [i for i in dict.fromkeys(indices) if i not in designs]
            jobs = []
            for i in new:
                des = designs[i] = result.design(i)
                des["id"] = (
                    "baseline"
                    if i == result.baseline
                    else f"baseline-{design_id(des)}"
                    if not des["exits"][:-1]
                    else f"{des['policy']}-{design_id(des)}"
                )
                heads = dict(zip(des["exits"], des["heads"]))
                params = result.configs[int(result.table["config"][i])].params
                jobs.append(
                    (
                        i,
                        (
                            assembled_golden(choices, heads),
                            f"{cfg.name}_dse_{i}",
                            des["exits"],
                            params,
                            des["thresholds"],
                            des["folding"],
                            hw.max_simd,
                            hw.max_pe,
                            d.data.x_test,
                            brd,
                        ),
                    )
                )
            if not jobs:
                return
            t0 = time.perf_counter()
            with progress() as bar:
                task = bar.add_task(f"validating {len(jobs)} designs (simulate + synthesise)", total=len(jobs))
                measured = run_jobs(pool, validate_job, jobs, on_done=lambda k, r: bar.update(task, advance=1))
            seconds["validation"] = seconds.get("validation", 0.0) + time.perf_counter() - t0
            for i in new:
                write_design_files(measured[i], out_dir / "designs" / designs[i]["id"])
                designs[i]["measured"] = measured[i]
                designs[i]["errors"] = compare_predicted(designs[i], measured[i])

        validate_designs([*picks, result.baseline, *extra])
        fits = result.fits
        for _ in range(RATIO_REPICKS if validate_ratio_designs else 0):
            fits, again = repick_missed_ratios(result, ratios, designs, brd.budget, fits)
            if not again:
                break
            validate_designs([ratios[k][c] for k in again for c in ("candidate", "baseline_candidate")])
    pick = chosen_design(picks, result.baseline, designs, brd.name)
    chosen, baseline = designs[pick], designs[result.baseline]

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
            missed = ratio_misses(key, r, designs)
            r["measured_ratio"] = None if missed else measured_ratio(key, field_)
            if missed:
                r["misses"] = missed
            r["predicted"] = {
                f: float(result.table[f][r["candidate"]]) for f in ("accuracy", "throughput", "LUT", "mean_latency")
            }
    methods = {m: result.methods.count(m) for m in set(result.methods)}
    report = {
        "kind": "dse",
        "design": cfg.name,
        "board": brd.name,
        "part": brd.part,
        "clock_mhz": brd.clock_mhz,
        "dataset": d.data.name,
        "training_hash": cfg.training_hash(),
        "objective": objective,
        "constraints": {**dataclasses.asdict(constraints), "max_worst_latency": result.max_worst_latency},
        "budget": brd.budget.as_dict(),
        "test_samples": int(len(logits["y_test"])),
        "final_exit_accuracy": final_acc,
        "characterisation": {
            "lane_levels": levels,
            "synthesised": char.synthesised,
            "cached": char.cached,
            "seconds": char.seconds,
            "units": {u: [o.as_dict() for o in opts] for u, opts in char.options.items()},
            "glue": char.glue,
            "decision_latency": {
                p: {"pipeline": f.latency(False), "serial": f.latency(True), "serial_scan": f.scan}
                for p, f in char.formats.items()
            },
        },
        "search": {
            "exit_configurations": len(configs),
            "candidates": result.evaluated,
            "within_budget": int(result.fits.sum()),
            "feasible": int(result.feasible.sum()),
            "pareto": int(len(result.pareto)),
            "methods": methods,
            "exhaustive_limit": limit,
            "lambdas": [None if math.isinf(x) else float(x) for x in LAMBDAS],
            "policies": list(pols),
            "accuracy_targets_pp": list(drops),
            "seconds": result.seconds,
            "head_types": {str(p): choices.types(p) for p in golden.exits[:-1]},
        },
        "alternative_heads": {
            t: {
                "positions": v.positions,
                "training_seconds": v.trained.seconds,
                "cached": v.trained.cached,
                "checkpoint": str(v.trained.checkpoint),
            }
            for t, v in choices.variants.items()
        },
        "chosen": chosen,
        "baseline": baseline,
        "validated": list(designs.values()),
        "ratios": ratios,
        "ceiling_sweep": ceiling_sweep(result),
        "pareto": [pareto_point(result, i) for i in result.pareto[:500]],
        "seconds": seconds,
    }
    ExitChoice(
        config=cfg.name,
        board=brd.name,
        training_hash=cfg.training_hash(),
        exits=tuple(chosen["exits"]),
        heads=tuple(chosen["heads"]),
        policy=result.configs[int(result.table["config"][pick])].params,
        thresholds=tuple(chosen["thresholds"]),
        folding={k: tuple(v) for k, v in chosen["folding"].items()},
        baseline_folding={k: tuple(v) for k, v in baseline["folding"].items()},
    ).save(out_dir / "chosen.json")
    report["paths"] = [str(p) for p in write_reports(report, out_dir, result)]
    return report


def ratio_misses(key: str, ratio: dict, designs: dict[int, dict]) -> list[str]:
    """Why a ratio's two validated designs, once measured, do not compare what the ratio says:
    the early-exit design's misses (``candidate_misses``), or its baseline over the budget once
    synthesised."""
    base = designs.get(ratio["baseline_candidate"])
    over = [] if base is None else [f"{base['id']}: {o}" for o in _overruns(base)]
    return candidate_misses(key, ratio, designs) + over


def candidate_misses(key: str, ratio: dict, designs: dict[int, dict]) -> list[str]:
    """The early-exit design behind a ratio, once measured: over the budget once synthesised (a
    prediction within the budget can overrun it), or, for LUTs at equal throughput, more than
    THROUGHPUT_TOLERANCE slower than its baseline (the search's throughput model missed)."""
    ee, base = designs.get(ratio["candidate"]), designs.get(ratio["baseline_candidate"])
    if ee is None:
        return []
    out = [f"{ee['id']}: {o}" for o in _overruns(ee)]
    if key == "luts_at_equal_throughput" and base is not None:
        a, b = _measured_figure(ee, "throughput"), _measured_figure(base, "throughput")
        if a is not None and b and a < b * (1 - THROUGHPUT_TOLERANCE):
            out.append(
                f"{ee['id']}: throughput {a:.6f} samples/cycle measured, {1 - a / b:.1%} under {base['id']}'s {b:.6f}"
            )
    return out


def _overruns(des: dict) -> list[str]:
    return [f"over the budget once synthesised, {o}" for o in des["measured"]["resources"]["overruns"]]


def repick_missed_ratios(
    result: SearchResult, ratios: dict, designs: dict[int, dict], budget, fits: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """A ratio's early-exit design can miss once measured (``candidate_misses``): pick that ratio
    again among the candidates left, without it and, where it overran the budget, without every
    candidate the synthesis leaves no room for (``without_overrun``). Updates ``ratios`` in place
    (``passed_over`` names what was passed over, and why); returns the narrowed ``fits`` and the
    keys picked again, whose designs are still to validate."""
    missed = {key: r for key in RATIO_KEYS if (r := ratios.get(key)) and candidate_misses(key, r, designs)}
    for r in missed.values():
        des = designs[r["candidate"]]
        if des["measured"]["resources"]["fits"]:
            fits = fits.copy()
            fits[r["candidate"]] = False
        else:
            fits = without_overrun(result.table, fits, r["candidate"], des, budget)
    narrowed = dataclasses.replace(result, fits=fits)
    picked = {
        c: baseline_ratios(narrowed, ceiling=c)
        for c in {not r.get("ignores_worst_case_ceiling") for r in missed.values()}
    }
    again = []
    for key, r in missed.items():
        ceiling = not r.get("ignores_worst_case_ceiling")
        if n := picked[ceiling].get(key):
            ratios[key] = {
                **n,
                **({} if ceiling else {"ignores_worst_case_ceiling": True}),
                "passed_over": [*r.get("passed_over", []), *ratio_misses(key, r, designs)],
            }
            again.append(key)
    return fits, again


def without_overrun(table: dict, fits: np.ndarray, i: int, des: dict, budget) -> np.ndarray:
    """``fits`` less candidate ``i`` (validated as ``des``, over the budget once synthesised) and
    every early-exit candidate predicted above the budget less ``i``'s prediction error
    (measured - predicted) in a resource ``i`` overran: the room the synthesis showed there is."""
    out = fits.copy()
    out[i] = False
    measured = des["measured"]["resources"]
    early = table["early_exits"] > 0
    for name in budget.names():
        limit = getattr(budget, name)
        if measured[name] > limit:
            out &= ~early | (table[name] <= limit - (measured[name] - float(table[name][i])))
    return out


def chosen_design(picks: list[int], baseline: int, designs: dict[int, dict], board: str) -> int:
    """The objective's best validated design that fits the board once synthesised (a prediction
    within the budget can still overrun it by a few hundred LUTs). None fitting, or a baseline
    that does not fit, stops the flow: the report never offers a design the board cannot hold."""
    fitting = [i for i in picks if designs[i]["measured"]["resources"]["fits"]]
    if not fitting:
        first = ", ".join(designs[picks[0]]["measured"]["resources"]["overruns"])
        raise EehwError(
            f"none of the {len(picks)} top designs fits {board} once synthesised (the first: {first}); "
            f"validate more with --validate N"
        )
    if not designs[baseline]["measured"]["resources"]["fits"]:
        over = ", ".join(designs[baseline]["measured"]["resources"]["overruns"])
        raise EehwError(f"the no-exit baseline does not fit {board} once synthesised ({over}); use a bigger board")
    return fitting[0]


def dse_dir(board: str, config: str) -> Path:
    """Where `eehw dse` writes: build/<board>/<config>/dse (flow.step_rtl reads chosen.json there)."""
    from eehw.paths import build_dir

    return build_dir() / board / config / "dse"


def _measured_figure(des: dict, field_: str) -> float | None:
    m = des.get("measured")
    if not m:
        return None
    if field_ == "throughput":
        return m.get("throughput_samples_per_cycle")
    if field_ == "LUT":
        return m["resources"]["LUT"]
    return m["latency_cycles"]["mean"]


def pareto_point(result: SearchResult, i: int) -> dict:
    t = result.table
    ec = result.configs[int(t["config"][i])]
    return {
        "candidate": int(i),
        "accuracy": float(t["accuracy"][i]),
        "mean_latency": float(t["mean_latency"][i]),
        "throughput": float(t["throughput"][i]),
        "LUT": float(t["LUT"][i]),
        "exits": list(ec.positions),
        "heads": [
            result.composers[int(t["config"][i])].char.head_type(p, ec.head(k)) for k, p in enumerate(ec.positions)
        ],
        "policy": ec.policy,
    }
