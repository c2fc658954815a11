"""The co-design loop: composition model against hand-computed figures, the search against an
independent brute-force enumeration, the stated heuristic's guarantee, and the whole loop on
a tiny model whose top designs are simulated and synthesised (predicted vs measured)."""

import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from dse_cases import (
    CONFIGS,
    DEC_LUT,
    FINAL_DEC_LUT,
    FORK_LUT,
    GATE_LUT,
    MERGE_LUT,
    QUEUE_LUT,
    SCAN,
    SERIAL_DEC_LUT,
    SERIAL_FINAL_DEC_LUT,
    board,
    characterisation,
    exit_config,
    three_block_char,
    unit_option,
)

from eehw import flow
from eehw.dse.characterise import lane_levels, layer_folding
from eehw.dse.compose import LAMBDAS, Composer
from eehw.dse.exits import exit_configs, hardware_policies
from eehw.dse.explore import THROUGHPUT_TOLERANCE, chosen_design, dse_dir, ratio_misses, repick_missed_ratios, run
from eehw.dse.search import Constraints, baseline_ratios, ceiling_sweep, search
from eehw.errors import EehwError
from eehw.hw.timing import pow2_depth
from eehw.policy.logits import cached_logits

# ---------------------------------------------------------------------------------------------
# A hand-made characterisation: no Yosys, every figure chosen here.


def test_lane_levels_and_layer_folding_are_the_stated_options():
    assert lane_levels(8, 4) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    assert lane_levels(2, 1) == [1, 2]
    assert lane_levels(3, 1) == [1, 2, 3]
    assert lane_levels(18, 16) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 288]
    # Most lanes <= L that divide IN / OUT within the limits, ties to the wider SIMD.
    for n_in, n_out, lanes, max_simd, max_pe in itertools.product(
        (64, 16, 10, 48), (16, 10, 32), (1, 2, 4, 8, 32), (8, 2), (4, 1)
    ):
        f = layer_folding(n_in, n_out, lanes, max_simd, max_pe)
        pairs = [
            (s * p, s, p)
            for s in range(1, max_simd + 1)
            for p in range(1, max_pe + 1)
            if n_in % s == 0 and n_out % p == 0 and s * p <= lanes
        ]
        best = max(pairs)
        assert (f.simd * f.pe, f.simd, f.pe) == best


def test_composition_matches_hand_computed_throughput_latency_and_resources():
    options = {
        "blocks.0": [unit_option("blocks.0", 100, 105, 1000)],
        "blocks.1": [unit_option("blocks.1", 200, 205, 500)],
        # head 0 takes 8 cycles a sample, too few for the serial decision unit (10); head 1 60
        "heads.0": [unit_option("heads.0", 8, 55, 300)],
        "heads.1": [unit_option("heads.1", 60, 66, 400)],
    }
    comp = Composer(characterisation(options, 2), exit_config((0, 1), (0.6, 0.4)))
    figs = comp.evaluate(np.zeros((1, 4), dtype=int))
    # Throughput: 1 / max(1 * 100, 0.4 * 200, 1 * 8, 0.4 * 60).
    assert figs["throughput"][0] == pytest.approx(1 / 100)
    # Exit 0: block 0, fork 1, head 55, pipelined decision 5, gate 1, merge 1.
    exit0 = 105 + 1 + 55 + 5 + 1 + 1
    # Exit 1 (final): block 0, then the features wait in the gate for exit 0's decision
    # (fork 1 + head 55 + decision 5 + gate 1) and pass the forward queue (1), block 1, head 66,
    # serial decision 10 + 1, merge 1.
    exit1 = 105 + (1 + 55 + 5 + 1) + 1 + 205 + 66 + 11 + 1
    assert figs["worst_latency"][0] == exit1
    assert figs["mean_latency"][0] == pytest.approx(0.6 * exit0 + 0.4 * exit1)
    assert (
        figs["LUT"][0]
        == 1000 + 500 + 300 + 400 + DEC_LUT + SERIAL_FINAL_DEC_LUT + MERGE_LUT[2] + FORK_LUT + GATE_LUT + QUEUE_LUT
    )
    # The no-exit design: one decision unit, a one-port merge, no fork or gate.
    base = Composer(characterisation(options, 2), exit_config((1,), (1.0,))).evaluate(np.zeros((1, 3), dtype=int))
    assert base["throughput"][0] == pytest.approx(1 / 200)
    assert base["mean_latency"][0] == 105 + 205 + 66 + 11 + 1
    assert base["LUT"][0] == 1000 + 500 + 400 + SERIAL_FINAL_DEC_LUT + MERGE_LUT[1]


def test_fifo_depths_round_up_to_powers_of_two():
    assert [pow2_depth(d) for d in (1, 4, 5, 8, 9, 33)] == [4, 4, 8, 8, 16, 64]


# ---------------------------------------------------------------------------------------------
# Search against brute force


def _brute_force(char, configs, lut_budget, min_accuracy):
    """Every exit configuration x every option of every unit, figures from first principles."""
    points = []
    for cid, ec in enumerate(configs):
        last = ec.positions[-1]
        units = [f"blocks.{b}" for b in range(last + 1)] + [f"heads.{p}" for p in ec.positions]
        for combo in itertools.product(*(range(len(char.options[u])) for u in units)):
            opt = {u: char.options[u][i] for u, i in zip(units, combo)}
            reach = {b: sum(f for p, f in zip(ec.positions, ec.exit_fractions) if p >= b) for b in range(last + 1)}
            load = max(
                [reach[b] * opt[f"blocks.{b}"].ii for b in range(last + 1)]
                + [reach[p] * opt[f"heads.{p}"].ii for p in ec.positions]
            )
            lat, mean, path, dec_lut = 0, 0.0, 0, 0
            for j, p in enumerate(ec.positions):
                blocks = sum(opt[f"blocks.{b}"].latency for b in range(p + 1))
                head = opt[f"heads.{p}"].latency
                serial = opt[f"heads.{p}"].ii >= SCAN  # the serial decision unit keeps up with this head
                dec = SCAN + 1 if serial else 5
                if j < len(ec.positions) - 1:
                    lat = blocks + path + 1 + head + dec + 1 + 1
                    path += 1 + head + dec + 1 + 1  # fork, head, decision, gate, forward queue
                    dec_lut += SERIAL_DEC_LUT if serial else DEC_LUT
                else:
                    lat = blocks + path + head + dec + 1
                    dec_lut += SERIAL_FINAL_DEC_LUT if serial else FINAL_DEC_LUT
                mean += ec.exit_fractions[j] * lat
            lut = (
                sum(o.resources["LUT"] for o in opt.values())
                + dec_lut
                + MERGE_LUT[len(ec.positions)]
                + (FORK_LUT + GATE_LUT + QUEUE_LUT) * (len(ec.positions) - 1)
            )
            if lut <= lut_budget and ec.accuracy >= min_accuracy:
                points.append((ec.accuracy, mean, 1 / load, lut, cid, lat))
    return points


def _brute_pareto(points):
    front = set()
    for a in points:
        dominated = any(
            b[0] >= a[0] and b[1] <= a[1] and b[2] >= a[2] and b[3] <= a[3] and b[:4] != a[:4] for b in points
        )
        if not dominated:
            front.add(tuple(round(x, 9) for x in a[:4]))
    return front


@pytest.mark.parametrize("objective", ["latency", "throughput", "resources"])
def test_search_equals_brute_force_enumeration(objective):
    char = three_block_char()
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    lut_budget, min_acc = 5200, 0.935
    no_ceiling = Constraints(min_accuracy=min_acc, max_worst_latency=math.inf)
    result = search(char, configs, board(lut_budget), no_ceiling, objective)
    points = _brute_force(char, configs, lut_budget, min_acc)
    assert result.evaluated == sum(3 ** (p[-1] + 1 + len(p)) for p, _, _ in CONFIGS)  # exhaustive here
    assert int(result.feasible.sum()) == len(points)
    key = {
        "latency": lambda p: (p[1], p[3], -p[0]),
        "throughput": lambda p: (-p[2], p[3], p[1]),
        "resources": lambda p: (p[3], p[1], -p[2]),
    }[objective]
    best = min(points, key=key)
    got = result.design(result.ranked[0])["predicted"]
    assert (got["accuracy"], got["mean_latency"], got["throughput"], got["LUT"]) == pytest.approx(best[:4])
    front = {
        tuple(
            round(x, 9)
            for x in (
                result.table["accuracy"][i],
                result.table["mean_latency"][i],
                result.table["throughput"][i],
                result.table["LUT"][i],
            )
        )
        for i in result.pareto
    }
    assert front == _brute_pareto(points)


def test_lagrangian_heuristic_keeps_the_cheapest_design_at_every_throughput_level():
    """The stated guarantee: with lambda = 0 at each throughput level, each module's cheapest
    option meeting the level, so the LUT-vs-throughput staircase equals the exhaustive one;
    lambda = infinity gives the fastest design."""
    char = three_block_char()
    for positions, fractions, acc in CONFIGS:
        comp = Composer(char, exit_config(positions, fractions, acc))
        full, method = comp.candidates()
        assert method == "exhaustive"
        heur, method = comp.candidates(limit=1)
        assert method == "lagrangian" and len(heur) < len(full)
        f, h = comp.evaluate(full), comp.evaluate(heur)
        for level in np.unique(f["throughput"]):
            assert h["LUT"][h["throughput"] >= level - 1e-15].min() == f["LUT"][f["throughput"] >= level - 1e-15].min()
        assert h["mean_latency"].min() == pytest.approx(f["mean_latency"].min())


def test_lagrangian_heuristic_prices_the_final_path_the_worst_case_ceiling_bounds():
    """Every unit is on the final-exit path whatever its reach, so for each throughput level and
    price lambda of the heuristic the candidates hold the exhaustive minimum of LUT + lambda * worst-case latency
    (here the path is a sum of the units' latencies plus constants, so that minimum is exact)."""
    char = three_block_char()
    for positions, fractions, acc in CONFIGS:
        comp = Composer(char, exit_config(positions, fractions, acc))
        f, h = comp.evaluate(comp.candidates()[0]), comp.evaluate(comp.candidates(limit=1)[0])
        for level in np.unique(f["throughput"]):
            fl, hl = f["throughput"] >= level - 1e-15, h["throughput"] >= level - 1e-15
            for lam in filter(math.isfinite, LAMBDAS):
                full = (f["LUT"] + lam * f["worst_latency"])[fl].min()
                assert (h["LUT"] + lam * h["worst_latency"])[hl].min() == pytest.approx(full)


def test_baseline_ratios_compare_like_with_like():
    char = three_block_char()
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    result = search(char, configs, board(), Constraints(), "throughput")
    t = result.table
    b = result.baseline
    assert t["early_exits"][b] == 0
    # The baseline is the fastest no-exit design within the budget.
    base = np.flatnonzero(t["early_exits"] == 0)
    assert t["throughput"][b] == t["throughput"][base].max()
    r = baseline_ratios(result)
    # Like with like: within 0.5 pp of the baseline's accuracy, in budget, and no design the
    # search itself would refuse (final path at most twice the baseline's, the default ceiling).
    ok = (t["early_exits"] > 0) & (t["accuracy"] >= t["accuracy"][b] - 0.005 - 1e-12) & result.fits
    ok &= t["worst_latency"] <= 2 * t["worst_latency"][b]
    assert ok.any() and not ok.all()

    # Each baseline at its best folding for the comparison: the cheapest one reaching the
    # fastest baseline's throughput, and the fastest one within the early-exit design's LUTs.
    peak = t["throughput"][base].max()
    at_peak = t["throughput"] >= peak
    ee_luts = t["LUT"][ok & at_peak].min()
    assert r["luts_at_equal_throughput"]["ratio"] == pytest.approx(ee_luts / t["LUT"][base[at_peak[base]]].min())
    j = r["luts_at_equal_throughput"]["baseline_candidate"]
    assert t["early_exits"][j] == 0 and t["throughput"][j] >= peak
    within = t["LUT"] <= ee_luts
    assert r["throughput_at_equal_luts"]["ratio"] == pytest.approx(
        t["throughput"][ok & within].max() / t["throughput"][base[within[base]]].max()
    )
    assert t["early_exits"][r["throughput_at_equal_luts"]["baseline_candidate"]] == 0
    assert r["mean_latency_at_equal_accuracy"]["ratio"] == pytest.approx(
        t["mean_latency"][ok].min() / t["mean_latency"][b]
    )
    # The curve: at every step of the baseline's LUT/throughput staircase, the fastest early-exit
    # design within the same LUTs.
    expected, best = [], 0.0
    for j in sorted(base, key=lambda j: (t["LUT"][j], -t["throughput"][j])):
        if t["throughput"][j] > best:
            best = t["throughput"][j]
            fits = ok & (t["LUT"] <= t["LUT"][j])
            if fits.any():
                expected.append((t["LUT"][j], best, t["throughput"][fits].max() / best))
    got = [(p["LUT"], p["throughput"], p["ratio"]) for p in r["throughput_at_equal_luts_curve"]]
    assert np.allclose(got, expected) if expected else got == []


def _paced_case():
    """Block 0 sets the pace (II 100); block 1 costs 2000 LUT per lane at II 400 / lanes; 75 % of
    the samples leave at exit 0."""
    options = {
        "blocks.0": [unit_option("blocks.0", 100, 105, 2000)],
        "blocks.1": [unit_option("blocks.1", 400 // n, 405 // n, 2000 * n, lanes=n) for n in (1, 2, 4)],
        "heads.0": [unit_option("heads.0", SCAN, 15, 100)],
        "heads.1": [unit_option("heads.1", SCAN, 15, 100)],
    }
    configs = [exit_config((1,), (1.0,), 0.95), exit_config((0, 1), (0.75, 0.25), 0.95)]
    return characterisation(options, 2), configs


def test_ratios_where_early_exit_pays_are_the_hand_computed_ones():
    """Block 0 sets the pace (II 100 at any folding); block 1 costs 2000 LUT per lane at II 400 /
    lanes. With 75 % of samples leaving at exit 0, the early-exit design folds block 1 to 1 lane
    and still keeps block 0's pace (0.25 * 400 = 100), where the baseline needs 4 lanes."""
    char, configs = _paced_case()
    result = search(char, configs, board(), Constraints(max_worst_latency=math.inf), "latency")
    r = baseline_ratios(result)
    # both heads take SCAN cycles a sample: serial decision units
    base = {n: 2000 + 2000 * n + 100 + SERIAL_FINAL_DEC_LUT + MERGE_LUT[1] for n in (1, 2, 4)}
    early = (
        2000 + 2000 + 100 + 100 + SERIAL_DEC_LUT + SERIAL_FINAL_DEC_LUT + MERGE_LUT[2] + FORK_LUT + GATE_LUT + QUEUE_LUT
    )
    assert r["luts_at_equal_throughput"]["ratio"] == pytest.approx(early / base[4])
    # At the early-exit design's LUTs (between the 1- and 2-lane baselines) the baseline runs
    # block 1 at 1 lane: 1/400 against 1/100.
    assert base[1] < early < base[2]
    assert r["throughput_at_equal_luts"]["ratio"] == pytest.approx(4.0)
    assert [(p["LUT"], round(p["ratio"], 9)) for p in r["throughput_at_equal_luts_curve"]] == [
        (base[2], 2.0),
        (base[4], 1.0),
    ]


def test_ceiling_sweep_prices_the_worst_case():
    """The report's sweep: at each ceiling factor, the cheapest early-exit design at the baseline's
    pace whose final path stays within factor x the baseline's, from the brute-force figures. In
    the hand-computed case block 1 folded to 1 lane (the cheapest) makes the final path longest,
    so tighter ceilings cost LUTs until early exit no longer pays."""
    char, configs = _paced_case()
    result = search(char, configs, board(), Constraints(max_worst_latency=math.inf), "latency")
    points = _brute_force(char, configs, 53200, 0.0)
    base = [p for p in points if p[4] == 0]
    early = [p for p in points if p[4] == 1]
    base_worst = min(base, key=lambda p: (p[1], p[3]))[5]
    peak = max(p[2] for p in base)
    cheapest_base = min(p[3] for p in base if p[2] >= peak)
    sweep = {c["factor"]: c for c in ceiling_sweep(result, (1.0, 1.5, 2.0, 3.0, math.inf))}
    seen = set()
    for f, c in sweep.items():
        limit = math.inf if f is None else f * base_worst
        ok = [p for p in early if p[2] >= peak and p[5] <= limit]
        if not ok:
            assert c["luts_at_equal_throughput"] is None
            continue
        best = min(ok, key=lambda p: p[3])
        assert c["luts_at_equal_throughput"] == pytest.approx(best[3] / cheapest_base)
        assert c["worst_latency"] <= limit
        seen.add(round(c["luts_at_equal_throughput"], 6))
    assert sweep[None]["luts_at_equal_throughput"] < sweep[1.5]["luts_at_equal_throughput"]
    assert len(seen) >= 3  # the ceiling does decide the ratio here


def test_worst_latency_factor_sets_the_ceiling():
    char = three_block_char()
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    default = search(char, configs, board(), Constraints(min_accuracy=0.0), "latency")
    wide = search(char, configs, board(), Constraints(min_accuracy=0.0, worst_latency_factor=3.5), "latency")
    assert wide.max_worst_latency == pytest.approx(1.75 * default.max_worst_latency)
    # An explicit ceiling in cycles wins over the factor.
    given = search(char, configs, board(), Constraints(max_worst_latency=123.0, worst_latency_factor=3.5), "latency")
    assert given.max_worst_latency == 123.0


def test_ratios_respect_the_worst_case_ceiling_unless_asked_not_to():
    char = three_block_char()
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    free = search(char, configs, board(), Constraints(max_worst_latency=1e9), "throughput")
    t, b = free.table, free.baseline
    ok = (t["early_exits"] > 0) & (t["accuracy"] >= t["accuracy"][b] - 0.005 - 1e-12) & free.fits
    at_thr = ok & (t["throughput"] >= t["throughput"][b])
    best = baseline_ratios(free)["luts_at_equal_throughput"]["candidate"]
    # A ceiling under the cheapest design at the baseline's throughput, above some other one.
    limit = float(t["worst_latency"][at_thr & (t["worst_latency"] < t["worst_latency"][best])].max())
    tight = search(char, configs, board(), Constraints(max_worst_latency=limit), "throughput")
    assert tight.baseline == b
    within = at_thr & (t["worst_latency"] <= limit)
    got = baseline_ratios(tight)["luts_at_equal_throughput"]
    assert got["ratio"] == pytest.approx(t["LUT"][within].min() / t["LUT"][got["baseline_candidate"]])
    relaxed = baseline_ratios(tight, ceiling=False)["luts_at_equal_throughput"]
    assert relaxed["candidate"] == best and relaxed["ratio"] < got["ratio"]


# ---------------------------------------------------------------------------------------------
# The whole loop on a tiny model: characterise (Yosys), search, validate (Verilator + Yosys)


@pytest.fixture(scope="module")
def tiny_dse(tiny_dse_config):
    path = tiny_dse_config
    report = run(path, "pynq-z2", policies=("margin",), validate=3, validate_ratio_designs=False)
    return path, report


@pytest.mark.slow
def test_whole_loop_reports_and_validates_three_designs(tiny_dse):
    _, report = tiny_dse
    s = report["search"]
    assert s["candidates"] > 0 and s["feasible"] > 0 and s["pareto"] > 0
    assert report["characterisation"]["lane_levels"] == [1, 2]
    assert len(report["validated"]) >= 3
    chosen = report["chosen"]
    assert chosen["predicted"]["accuracy"] >= report["constraints"]["min_accuracy"] - 1e-12
    for r, limit in report["budget"].items():
        assert chosen["measured"]["resources"][r] <= limit
    for des in report["validated"]:
        bit = des["measured"]["bit_exact"]
        assert bit["mismatches"] == 0 and bit["lost"] == 0 and bit["duplicated"] == 0
        # The exit distribution the search used is the one the hardware produces.
        assert des["measured"]["exit_rates"] == pytest.approx(des["exit_fractions"])


@pytest.mark.slow
def test_predicted_cycles_are_within_five_percent_of_simulation(tiny_dse):
    _, report = tiny_dse
    for des in report["validated"]:
        lat = des["measured"]["latency_cycles"]
        # Per exit: every sample leaving at exit k takes that exit's predicted path latency.
        for k, per in enumerate(lat["per_exit"]):
            if per["samples"]:
                assert per["max"] == per["mean"]  # an idle pipeline: one latency per exit
        e = des["errors"]
        assert abs(e["mean_latency"]["error"]) <= 0.05, des["id"]
        assert abs(e["worst_latency"]["error"]) <= 0.05, des["id"]
        assert des["measured"]["worst_case_latency_cycles"] <= des["measured"]["latency_bound"]


@pytest.mark.slow
def test_a_repeated_search_validates_from_the_cache(tiny_dse):
    """The same search again: every validated design is found in the Verilator-run and Yosys
    caches (the design is generated at the same path, whose memory file names are part of
    those keys), so it adds no cache entry and reports the same measurements."""
    from eehw.paths import cache_dir

    path, first = tiny_dse

    def entries():
        return {p for kind in ("sim", "yosys") for p in (cache_dir() / kind).rglob("*") if p.is_file()}

    before = entries()
    again = run(path, "pynq-z2", policies=("margin",), validate=3, validate_ratio_designs=False)
    assert entries() == before
    for a, b in zip(first["validated"], again["validated"], strict=True):
        assert a["id"] == b["id"] and a["measured"]["resources"] == b["measured"]["resources"]
        assert a["measured"]["latency_cycles"] == b["measured"]["latency_cycles"]


@pytest.mark.slow
def test_predictions_hold_on_a_cnn(cnn_dse_config):
    """On a 2-D CNN (line buffers, pooling, a folded MVU per conv), every validated design,
    simulated whole and synthesised: the composed LUT and FF within 10 % and the throughput
    within 5 % of the measured ones, and each unit the DSE composed is the unit the built design
    holds (its characterised LUT and FF are the design's own per-block Yosys counts)."""
    # The chosen design and the baseline (the whole-loop test validates three on the MLP).
    report = run(cnn_dse_config, "pynq-z2", policies=("margin",), validate=1, validate_ratio_designs=False)
    assert len(report["validated"]) >= 2
    assert {bool(d["exits"][:-1]) for d in report["validated"]} == {True, False}  # early-exit and baseline
    for des in report["validated"]:
        e = des["errors"]
        assert abs(e["throughput"]["error"]) <= 0.05, (des["id"], e["throughput"])
        assert abs(e["LUT"]["error"]) <= 0.10, (des["id"], e["LUT"])
        assert abs(e["FF"]["error"]) <= 0.10, (des["id"], e["FF"])
        per_block = des["measured"]["resources"]["per_block"]
        for unit in des["units"]:
            for r in ("LUT", "FF"):
                predicted, measured = unit["resources"][r], per_block[unit["unit"]][r]
                assert abs(predicted - measured) <= 0.10 * measured, (des["id"], unit["unit"], r, predicted, measured)


def test_the_chosen_design_fits_once_synthesised():
    """The objective's best design whose measured resources overrun the board is passed over for
    the next one that fits; none fitting, or a baseline that does not fit, is one clear error."""

    def des(fits):
        over = [] if fits else ["LUT over by 353 (53,553 / 53,200)"]
        return {"measured": {"resources": {"fits": fits, "overruns": over}}}

    designs = {7: des(False), 3: des(True), 5: des(True), 9: des(True)}
    assert chosen_design([7, 3, 5], 9, designs, "pynq-z2") == 3
    assert chosen_design([5, 3], 9, designs, "pynq-z2") == 5
    with pytest.raises(EehwError, match=r"none of the 1 top designs fits pynq-z2 .*LUT over by 353"):
        chosen_design([7], 9, designs, "pynq-z2")
    with pytest.raises(EehwError, match="the no-exit baseline does not fit pynq-z2"):
        chosen_design([3], 7, designs, "pynq-z2")
    # A ratio between designs the board cannot hold once synthesised is not a measured ratio.
    for i, d in designs.items():
        d["id"] = f"d{i}"
    key = "throughput_at_equal_luts"
    assert ratio_misses(key, {"candidate": 3, "baseline_candidate": 9}, designs) == []
    assert ratio_misses(key, {"candidate": 7, "baseline_candidate": 9}, designs) == [
        "d7: over the budget once synthesised, LUT over by 353 (53,553 / 53,200)"
    ]


def test_a_ratio_whose_design_overruns_the_board_is_picked_again_within_the_room_left():
    """The design behind a ratio, predicted within the budget, is over it once synthesised: the
    ratio is picked again among the early-exit candidates predicted below the budget less that
    design's prediction error; the baselines and the other ratios stay."""
    char = three_block_char()
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    brd = board()
    result = search(char, configs, brd, Constraints(), "throughput")
    t, b = result.table, result.baseline
    ratios = baseline_ratios(result)
    key = "mean_latency_at_equal_accuracy"
    first = ratios[key]["candidate"]
    measured = {"LUT": brd.budget.LUT + 1, "FF": 1, "DSP": 0, "BRAM18": 0}
    over = [f"LUT over by 1 ({brd.budget.LUT + 1:,} / {brd.budget.LUT:,})"]
    designs = {
        first: {"id": "first", "measured": {"resources": {**measured, "fits": False, "overruns": over}}},
        b: {"id": "baseline", "measured": {"resources": {**measured, "LUT": 10, "fits": True, "overruns": []}}},
    }
    untouched = {k: dict(ratios[k]) for k in ("luts_at_equal_throughput", "throughput_at_equal_luts")}
    untouched = {k: v for k, v in untouched.items() if v["candidate"] != first}
    fits, again = repick_missed_ratios(result, ratios, designs, brd.budget, result.fits)
    assert again == [key]
    # room left: the budget less the first design's error (measured - predicted) = its prediction - 1
    room = t["LUT"] <= t["LUT"][first] - 1
    ok = result.fits & (t["early_exits"] > 0) & (t["accuracy"] >= t["accuracy"][b] - 0.005 - 1e-12)
    ok &= t["worst_latency"] <= result.max_worst_latency
    assert (ok & room).any()
    assert ratios[key]["ratio"] == pytest.approx(t["mean_latency"][ok & room].min() / t["mean_latency"][b])
    assert ratios[key]["candidate"] != first and t["LUT"][ratios[key]["candidate"]] < t["LUT"][first]
    assert ratios[key]["passed_over"] == [f"first: over the budget once synthesised, {over[0]}"]
    assert not fits[first] and (fits[t["early_exits"] == 0] == result.fits[t["early_exits"] == 0]).all()
    for k, v in untouched.items():
        assert ratios[k] == v
    # Nothing over the budget: nothing picked again.
    designs[first]["measured"]["resources"].update(fits=True, overruns=[])
    designs[ratios[key]["candidate"]] = designs[first]
    assert repick_missed_ratios(result, ratios, designs, brd.budget, fits)[1] == []


def test_a_ratio_at_equal_throughput_whose_design_measures_slower_is_picked_again():
    """LUTs at equal throughput compares designs of one throughput: an early-exit design that
    measures more than THROUGHPUT_TOLERANCE under its baseline's throughput (the search's model
    missed, as mnist1d_cnn's did by 9 % at stop 30) is passed over, and the ratio is picked
    again from the rest; within the tolerance it stands."""
    char = three_block_char()
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    brd = board()
    result = search(char, configs, brd, Constraints(), "throughput")
    t = result.table
    key = "luts_at_equal_throughput"
    ratios = baseline_ratios(result)
    first, base = ratios[key]["candidate"], ratios[key]["baseline_candidate"]
    resources = {"LUT": 10, "FF": 1, "DSP": 0, "BRAM18": 0, "fits": True, "overruns": []}

    def measured(name, throughput):
        return {"id": name, "measured": {"resources": resources, "throughput_samples_per_cycle": throughput}}

    peak = float(t["throughput"][base])
    designs = {first: measured("first", peak * (1 - THROUGHPUT_TOLERANCE / 2)), base: measured("baseline", peak)}
    assert ratio_misses(key, ratios[key], designs) == []
    assert repick_missed_ratios(result, ratios, designs, brd.budget, result.fits)[1] == []
    designs[first] = measured("first", peak * 0.9)
    (miss,) = ratio_misses(key, ratios[key], designs)
    assert miss.startswith("first: throughput") and "10.0% under baseline's" in miss
    fits, again = repick_missed_ratios(result, ratios, designs, brd.budget, result.fits)
    assert again == [key] and not fits[first]
    assert ratios[key]["candidate"] != first and ratios[key]["passed_over"] == [miss]
    assert t["throughput"][ratios[key]["candidate"]] >= peak * (1 - 1e-12)
    # Only the early-exit design is passed over: a slow baseline is not this ratio's miss to repick.
    designs[first] = measured("first", peak)
    designs[base] = measured("baseline", peak * 0.5)
    assert ratio_misses(key, {"candidate": first, "baseline_candidate": base}, designs) == []


@pytest.mark.slow
def test_flow_builds_the_chosen_design(tiny_dse):
    path, report = tiny_dse
    d = flow.run(path, board="pynq-z2", stop_after="evaluate")
    chosen = json.loads((dse_dir("pynq-z2", d.cfg.name) / "chosen.json").read_text())
    assert chosen["training_hash"] == d.cfg.training_hash()
    exits, thresholds = flow._early_exit_choice(d)
    assert exits == report["chosen"]["exits"][:-1] and thresholds == report["chosen"]["thresholds"]
    flow.step_rtl(d)
    folds = {
        s.name: [s.folding.simd, s.folding.pe]
        for b in list(d.rtl["early_exit"].plan.blocks) + list(d.rtl["early_exit"].plan.heads.values())
        for s in b.stages
        if hasattr(s, "folding")
    }
    assert folds == report["chosen"]["folding"]
    # The flow's baseline is the DSE's: the no-exit design at its best folding for the board.
    base = d.rtl["baseline"].plan
    folds = {
        s.name: [s.folding.simd, s.folding.pe]
        for b in list(base.blocks) + list(base.heads.values())
        for s in b.stages
        if hasattr(s, "folding")
    }
    assert folds == report["baseline"]["folding"]


@pytest.mark.slow
def test_characterisation_covers_every_policy_exit_and_folding(tiny_dse_config, fake_synth_pool):
    from eehw.dse.characterise import characterise

    d = flow.run(tiny_dse_config, stop_after="evaluate")
    logits = cached_logits(d.cfg, d.data, d.golden)
    pols = hardware_policies(d.cfg, logits)
    assert set(pols) == {"margin", "max_softmax_pow2"}
    char = characterise(d.golden, board(), pols, max_simd=4, max_pe=2, pool=fake_synth_pool)
    # blocks.0 is 64 -> 16: lanes 1, 2, 4, 8 give (1,1), (2,1), (4,1), (4,2).
    assert [o.folding["blocks.0.2"] for o in char.options["blocks.0"]] == [(1, 1), (2, 1), (4, 1), (4, 2)]
    assert [o.ii for o in char.options["blocks.0"]] == [64 * 16, 64 * 16 // 2, 64 * 16 // 4, 64 * 16 // 8]
    configs = exit_configs(d.golden.exits, d.golden.logit_exps, logits, pols)
    assert {c.policy for c in configs} == {"margin", "max_softmax_pow2"}
    result = search(char, configs, board(), Constraints(), "latency")  # every glue key is there
    assert result.evaluated == sum(int(np.prod(Composer(char, c).sizes)) for c in configs)


def test_worst_case_latency_ceiling_keeps_slow_paths_out():
    """DeepSloth-style inputs all reach the final exit: --max-worst-latency bounds that path."""
    char = three_block_char()
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    points = _brute_force(char, configs, 53200, 0.0)
    limit = float(np.median([p[5] for p in points]))
    result = search(char, configs, board(), Constraints(max_worst_latency=limit), "latency")
    assert int(result.feasible.sum()) == sum(p[5] <= limit for p in points)
    best = min((p for p in points if p[5] <= limit), key=lambda p: (p[1], p[3], -p[0]))
    assert result.design(result.ranked[0])["predicted"]["mean_latency"] == pytest.approx(best[1])


def test_default_worst_case_ceiling_is_twice_the_baselines():
    """Without --max-worst-latency, no design may take more than twice the no-exit baseline's
    cycles to its final exit (the baseline being the objective's best no-exit design in budget)."""
    char = three_block_char()
    configs = [exit_config(p, f, a) for p, f, a in CONFIGS]
    points = _brute_force(char, configs, 53200, 0.0)
    no_exit = [p for p in points if len(configs[p[4]].positions) == 1]
    baseline = min(no_exit, key=lambda p: (p[1], p[3], -p[0]))
    limit = 2 * baseline[5]
    result = search(char, configs, board(), Constraints(min_accuracy=0.0), "latency")
    assert result.max_worst_latency == pytest.approx(limit)
    assert int(result.feasible.sum()) == sum(p[5] <= limit for p in points)
    assert any(p[5] > limit for p in points)  # the ceiling does cut something here


@pytest.mark.slow
def test_config_scheduler_reaches_the_executor(tiny_dse_config, tmp_path, monkeypatch):
    """`dse: {scheduler: ...}` in the config is the default of --scheduler."""
    from contextlib import contextmanager

    path = tmp_path / "tiny_dse.yaml"
    path.write_text(tiny_dse_config.read_text() + "dse: {scheduler: 'tcp://192.0.2.1:8786'}\n")
    seen = []

    @contextmanager
    def fake_executor(scheduler=None, workers=None):
        seen.append(scheduler)
        raise RuntimeError("stop before any job")
        yield

    monkeypatch.setattr("eehw.dse.executor.executor", fake_executor)
    with pytest.raises(RuntimeError, match="stop before"):
        run(path, "pynq-z2", policies=("margin",))
    assert seen == ["tcp://192.0.2.1:8786"]
    with pytest.raises(RuntimeError, match="stop before"):
        run(path, "pynq-z2", policies=("margin",), scheduler="tcp://198.51.100.7:8786")
    assert seen[-1] == "tcp://198.51.100.7:8786"


@pytest.mark.slow
def test_config_ceiling_factor_reaches_the_search(tiny_dse_config, tmp_path, monkeypatch):
    """`dse: {worst_latency_factor: X}` is the default of --worst-latency-factor."""
    path = tmp_path / "tiny_dse.yaml"
    path.write_text(tiny_dse_config.read_text() + "dse: {worst_latency_factor: 6}\n")
    seen = []

    def fake_search(char, configs, board, constraints, *args):
        seen.append(constraints.worst_latency_factor)
        raise RuntimeError("stop at the search")

    monkeypatch.setattr("eehw.dse.characterise.characterise", lambda *a, **k: SimpleNamespace(seconds=0.0))
    monkeypatch.setattr("eehw.dse.explore.search", fake_search)
    for given, expected in ((None, 6.0), (Constraints(worst_latency_factor=3.0), 3.0)):
        with pytest.raises(RuntimeError, match="stop at the search"):
            run(path, "pynq-z2", policies=("margin",), constraints=given, workers=1)
        assert seen[-1] == expected
