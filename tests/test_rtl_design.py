"""The generated early-exit tops in Verilator under cocotb, against the golden model and the
Python policy, for every shipped config: every test sample, 10k samples under random input
gaps and output backpressure, the stated worst-case latency, and the error flag.

The simulations run in the generated wrapper (eehw/hw/rtl/sim.py); on digits_mlp the wrapper is also
checked against the per-cycle Python testbench, an independent implementation of the same
stimulus, cycle for cycle.
"""

import os
import re
import subprocess

import numpy as np
import pytest

from eehw import flow
from eehw.hw.measure import expected_outputs
from eehw.hw.rtl.sim import simulate
from eehw.hw.rtl.verilate import PCH_HEADER, build_wrapper, verilate, wrapper_source
from eehw.hw.timing import exit_paths

CONFIGS = ["digits_mlp", "digits_cnn", "mnist1d_cnn"]


@pytest.fixture(scope="module", params=CONFIGS)
def design(request):
    return flow.run(request.param, board="pynq-z2", stop_after="rtl")


@pytest.fixture(scope="module")
def mlp():
    return flow.run("digits_mlp", board="pynq-z2", stop_after="rtl")


def _thresholds(design):
    return flow._early_exit_choice(design)[1]


def _spread_thresholds(design, rtl):
    """Thresholds under which samples leave at every exit (so every gate both forwards and
    drops), by the golden model and Python policy: the chosen ones scaled, or one power of two
    for every early exit, whichever spreads the samples best."""
    x, fmt = design.data.x_test, rtl.decision
    top = (1 << fmt.thr_w) - 1
    chosen = [t or 1 for t in _thresholds(design)]
    candidates = [[min(top, max(1, round(t * scale))) for t in chosen] for scale in (1, 0.5, 2, 0.25, 4)]
    candidates += [[1 << k] * len(chosen) for k in range(fmt.thr_w)]
    best, best_key = None, None
    for thresholds in candidates:
        exits, _ = expected_outputs(design.golden, rtl, flow.design_policy(design), x, thresholds)
        counts = np.bincount(exits, minlength=len(rtl.plan.exits))
        key = ((counts > 0).sum(), counts.min())  # every exit used, the rarest as often as can be
        if best_key is None or key > best_key:
            best, best_key = thresholds, key
    return best


def _check(design, rtl, sim, x, thresholds, repeat=1):
    """No sample lost or duplicated, no error, exit and class equal to golden + policy."""
    exp_exit, exp_class = expected_outputs(design.golden, rtl, flow.design_policy(design), x, thresholds)
    assert sim.samples == len(x) * repeat
    assert sim.missing == 0 and sim.duplicates == 0 and not sim.error_flag
    np.testing.assert_array_equal(sim.exit_index, np.tile(exp_exit, repeat))
    np.testing.assert_array_equal(sim.prediction, np.tile(exp_class, repeat))
    return exp_exit


@pytest.mark.slow
def test_every_test_sample_matches_golden_and_the_worst_case_latency_is_the_bound(design):
    x = design.data.x_test
    x_int = design.golden.quantize_input(x)
    for kind, thresholds in (("early_exit", _thresholds(design)), ("baseline", [])):
        rtl = design.rtl[kind]
        exits = _check(design, rtl, simulate(rtl, x_int, thresholds), x, thresholds)
        if kind == "early_exit":  # the early exits are used: not every sample goes to the final exit
            assert len(rtl.plan.exits) >= 2 and (exits < len(rtl.plan.exits) - 1).any()
        # Every early exit disabled: all to the final exit one at a time; the worst case is the
        # stated one to the cycle (eehw.hw.timing.worst_case_latency), and the DSE's composed
        # bound is never below it.
        worst = simulate(rtl, x_int[:8], [None] * len(thresholds), one_at_a_time=True)
        assert (worst.exit_index == len(rtl.plan.exits) - 1).all()
        assert worst.latency.max() == rtl.latency_bound <= exit_paths(rtl.plan, rtl.decision)[-1].latency, kind
        print(f"\n{rtl.top}: worst case {worst.latency.max()} cycles, bound {rtl.latency_bound}")


@pytest.mark.slow
def test_backpressure_loses_and_duplicates_nothing_over_10k_samples(design):
    rtl = design.rtl["early_exit"]
    x = design.data.x_test
    repeat = -(-10_000 // len(x))
    thresholds = _spread_thresholds(design, rtl)
    sim = simulate(rtl, design.golden.quantize_input(x), thresholds, repeat=repeat, gap_p=0.3, stall_p=0.4, seed=7)
    assert sim.samples >= 10_000
    exits = _check(design, rtl, sim, x, thresholds, repeat)
    assert len(set(exits.tolist())) == len(rtl.plan.exits), "some exit never taken: a gate path is not exercised"
    # The stalls did bite: results waited (latency under load above the idle latency).
    idle = simulate(rtl, design.golden.quantize_input(x[:200]), thresholds, one_at_a_time=True)
    assert sim.latency[:200].mean() > idle.latency.mean()
    print(
        f"\n{rtl.top}: {sim.samples} samples, {sim.missing} lost, {sim.duplicates} duplicated, "
        f"{sim.cycles} cycles in {sim.wall_seconds:.1f} s"
    )


@pytest.mark.slow
def test_wrapper_equals_the_per_cycle_cocotb_testbench(mlp):
    """Same samples, no random gaps: every exit, class, confidence and handshake cycle equal,
    streamed and one at a time."""
    rtl = mlp.rtl["early_exit"]
    x_int = mlp.golden.quantize_input(mlp.data.x_test[:40])
    for one_at_a_time in (False, True):
        fast = simulate(rtl, x_int, _thresholds(mlp), repeat=2, one_at_a_time=one_at_a_time)
        ref = simulate(rtl, x_int, _thresholds(mlp), repeat=2, one_at_a_time=one_at_a_time, harness="cocotb")
        for field in ("exit_index", "prediction", "confidence", "in_cycle", "out_cycle"):
            np.testing.assert_array_equal(getattr(fast, field), getattr(ref, field), err_msg=field)
        assert fast.cycles == ref.cycles and fast.error_flag == ref.error_flag is False


@pytest.mark.slow
def test_a_sample_whose_feature_beats_carry_a_wrong_tag_raises_the_top_error():
    """The exit gate checks every feature beat of a sample against its decision's tag: a fault
    on the first gate's feature tag (forced constant) reaches the top's sticky error, and the
    stream still flows (reported, never stalled): every sample leaves, under the forced tag."""
    design = flow.run("digits_cnn", board="pynq-z2", stop_after="rtl")
    rtl = design.rtl["early_exit"]
    x_int = design.golden.quantize_input(design.data.x_test[:3])
    clean = simulate(rtl, x_int, _thresholds(design))
    assert not clean.error_flag
    sim = simulate(rtl, x_int, [None] * len(_thresholds(design)), inject="initial force u_dut.g0_in_tuser = 16'h7fff;")
    assert sim.error_flag
    # The gate forwards the tag its feature beats carry, so each result is unmatched (a
    # "duplicate") and its own sample "missing": three of each, none lost to a stall.
    assert sim.missing == len(x_int) and sim.duplicates == len(x_int)


def _lint(files: list[str], top: str) -> None:
    from eehw.hw.tools.verilator import require_verilator, verilator_env

    env = {**os.environ, **verilator_env()}
    result = subprocess.run(
        [require_verilator(), "--lint-only", "-Wall", *files, "--top-module", top],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0 and "%Warning" not in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
def test_generated_tops_and_wrappers_are_lint_clean(design, tmp_path):
    """-Wall clean: every port and stage output is driven and used."""
    for rtl in design.rtl.values():
        _lint(["-f", str(rtl.out_dir / f"{rtl.top}.f")], rtl.top)
        wrapper = tmp_path / rtl.top / "eehw_tb.v"
        wrapper.parent.mkdir()
        wrapper.write_text(wrapper_source(rtl))
        _lint(["-f", str(rtl.out_dir / f"{rtl.top}.f"), str(wrapper)], "eehw_tb")


@pytest.mark.slow
def test_a_design_over_budget_says_which_resource_and_by_how_much(mlp, tmp_path):
    from eehw.board import load_board
    from eehw.hw.measure import resources

    board = tmp_path / "tiny.yaml"
    board.write_text(
        "name: tiny\npart: xc7z007sclg225-1\nfamily: xc7\nclock_mhz: 100\n"
        "budget: {LUT: 1000, FF: 1000000, BRAM18: 100, DSP: 100}\nshell: {type: zynq7}\n"
        "description: a board too small for the design\n"
    )
    res = resources(mlp.rtl["baseline"], load_board(str(board)))
    assert res["fits"] is False
    assert res["overruns"] == [f"LUT over by {res['LUT'] - 1000:,} ({res['LUT']:,} / 1,000)"]


@pytest.mark.slow
def test_a_repeated_simulation_is_read_from_the_cache(mlp):
    """The same build on the same stimulus: the second run is the stored result (no simulator
    run), equal to the first, unless asked to simulate; another stimulus is simulated."""
    rtl = mlp.rtl["baseline"]
    x_int = mlp.golden.quantize_input(mlp.data.x_test[:37])
    first = simulate(rtl, x_int, [], stall_p=0.25, seed=1234)
    again = simulate(rtl, x_int, [], stall_p=0.25, seed=1234)
    assert again.wall_seconds == 0.0
    np.testing.assert_array_equal(again.exit_index, first.exit_index)
    np.testing.assert_array_equal(again.prediction, first.prediction)
    np.testing.assert_array_equal(again.out_cycle, first.out_cycle)
    assert again.cycles == first.cycles
    fresh = simulate(rtl, x_int, [], stall_p=0.25, seed=1234, reuse=False)  # a benchmark timing the simulator
    assert fresh.wall_seconds > 0 and fresh.cycles == first.cycles
    other = simulate(rtl, x_int, [], stall_p=0.25, seed=1234, one_at_a_time=True)
    assert other.wall_seconds > 0 and other.cycles != first.cycles


def test_builds_share_the_precompiled_runtime_header_and_the_cached_main(mlp):
    """Two builds of one wrapper, a comment apart: both compile with the precompiled runtime
    header and gcc uses it (-Winvalid-pch would say otherwise in the log); the second links the
    cached simulation main instead of compiling it, and both equal the golden model cycle for cycle."""
    rtl, thresholds = mlp.rtl["early_exit"], _thresholds(mlp)
    x = mlp.data.x_test[:60]
    x_int = mlp.golden.quantize_input(x)
    runs, logs = [], []
    for build in ("first", "second"):
        inject = f"// {build} build, process {os.getpid()}"
        runs.append(simulate(rtl, x_int, thresholds, inject=inject, quick=True))
        logs.append((build_wrapper(rtl, inject, quick=True) / "build.log").read_text())
    for log in logs:
        header = re.search(r"-include (\S+)", log)
        assert header and header[1].endswith(PCH_HEADER) and os.path.exists(header[1] + ".gch"), log
        assert ".gch: not used" not in log and "invalid" not in log.replace("-Winvalid-pch", ""), log
    assert "-o verilator.o" not in logs[1], logs[1]
    for run in runs:
        _check(mlp, rtl, run, x, thresholds)
    np.testing.assert_array_equal(runs[0].out_cycle, runs[1].out_cycle)


def test_a_warning_that_stops_verilator_is_the_error_named(tmp_path):
    """Verilator ends a build it stops on a warning with "%Error: Exiting due to 1 warning(s)":
    the one line must name the warning itself, and no build is left where a finished one goes."""
    from eehw.errors import EehwError

    source = tmp_path / "narrow.v"
    source.write_text("module narrow(input wire [3:0] a, output wire [1:0] y);\n  assign y = a;\nendmodule\n")
    with pytest.raises(EehwError, match=r"Verilator build of narrow failed: %Warning-WIDTH\w*: \S*narrow\.v:2"):
        verilate([source], "narrow", tmp_path / "model", [])
    assert not (tmp_path / "model").exists()
